"""`bench peak`: measure the device's matmul TFLOP/s per precision and compare with its datasheet."""

from __future__ import annotations

import argparse
import sys

from bench.cli import COMMANDS, Deferred
from bench.core.params import nonnegative_float, positive_float, positive_int
from bench.core.vocabulary import PRECISIONS


def _peak_default(key: str) -> Deferred:
    return Deferred.attribute("bench.measure.telemetry.peaks", "PEAK_DEFAULTS", key)


def register(subparsers) -> None:
    p = subparsers.add_parser("peak", help=COMMANDS["peak"].help,
        description="Time n x n x n matmuls per precision (CUDA events on a GPU; on a CPU it measures the "
                    "CPU and says so) and print achieved TFLOP/s beside the datasheet peak.")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available, else cpu)")
    p.add_argument("--precision", action="append", choices=PRECISIONS, dest="precisions",
                   help="precision to measure; repeat for several (default: all the device supports)")
    p.add_argument("--size", type=positive_int, default=None, help="matrix size n (default: 8192 on a GPU, 1024 on a CPU)")
    p.add_argument("--warmup", type=nonnegative_float, default=_peak_default("warmup_s"), dest="warmup_s", metavar="S",
                   help="seconds of matmuls run and discarded first, so clocks are up (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=_peak_default("repeats"),
                   help="timed repeats per precision (default: %(default)s)")
    p.add_argument("--min-repeat-s", type=positive_float, default=_peak_default("min_repeat_s"),
                   help="each repeat runs back-to-back matmuls for at least this long (default: %(default)s)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    p.set_defaults(func=run)


def format_table(results) -> str:
    """A small text table of peak results (shows data; measures nothing)."""
    lines = []
    if results and results[0].measured == "cpu":
        lines.append(f"Measured the CPU ({results[0].device_name or 'unknown model'}), not a GPU.")
    elif results:
        lines.append(f"Device: {results[0].device_name} ({results[0].device})")
    lines.append(f"{'precision':<10}{'median TFLOP/s':>16}{'spread':>9}{'best TFLOP/s':>14}{'datasheet':>11}"
                 f"{'fraction':>10}  note")
    for r in results:
        def f(v, fmt="{:.4g}"):
            return fmt.format(v) if v is not None else "-"
        note = r.null_reasons.get("tflops_median", "")
        if r.telemetry and r.telemetry.get("throttled"):
            note = f"throttled ({', '.join(r.telemetry.get('throttle_reasons') or [])}); SM clock median " \
                   f"{f(r.telemetry.get('sm_clock_mhz_median'), '{:.0f}')} MHz"
        spread = f"±{r.tflops_spread:.1%}" if r.tflops_spread is not None else "-"
        lines.append(f"{r.precision:<10}{f(r.tflops_median):>16}{spread:>9}{f(r.tflops_best):>14}{f(r.table_tflops):>11}"
                     f"{f(r.fraction_of_table):>10}  {note}")
    timed = [r for r in results if r.repeats]
    if timed:
        lines.append(f"{timed[0].repeats} timed repeats of {timed[0].size}x{timed[0].size} matmuls per precision, each "
                     f"after at least {min(r.warmup_s for r in timed):.2g} s of warm-up; spread: half the range of the "
                     "repeats relative to their median.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bench.measure.telemetry.peaks import PEAK_DEFAULTS, measure_peak

    warmup_s = getattr(args, "warmup_s", PEAK_DEFAULTS["warmup_s"])
    if args.json_path:
        from bench.core.io import check_output_file

        check_output_file(args.json_path, resume=None, overwrite=getattr(args, "overwrite", False))  # before measuring, not after
        args.results_path = args.json_path
    results = measure_peak(device=args.device, precisions=args.precisions, size=args.size, repeats=args.repeats,
                           min_repeat_s=args.min_repeat_s, warmup_s=warmup_s)
    print(format_table(results))
    if args.json_path:
        from bench.core.io import write_json_atomic

        # Without --overwrite, never replace a file, even one that appeared while measuring.
        write_json_atomic(args.json_path, {"peak": [r.to_dict() for r in results]}, replace=getattr(args, "overwrite", False))
        print(f"wrote {args.json_path}")
    if results and all(r.tflops_median is None for r in results):  # the epilog's 1: ran, measured nothing
        first = results[0]
        print(f"bench peak: nothing was measured: every precision failed ({first.precision}: "
              f"{first.null_reasons.get('tflops_median', 'not measured')})", file=sys.stderr)
        return 1
    return 0

