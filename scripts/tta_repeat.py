"""Is `bench tta` reproducible on this machine? Run the same study twice and compare, batch by batch: the
step-time interval (the 95% CI of the median step time, the table's "step time"), the time-to-target
interval and the naive-error interval must overlap, and wherever one run's naive-error interval excludes
zero the other run's interval must not exclude zero on the other side (a sign flip). The 95% CI of the
mean step time (which time to target multiplies) is compared too and printed; on a machine whose load
differs between the runs it need not overlap (the mean counts the waits for a CPU), so it is reported,
not checked.

    python scripts/tta_repeat.py                    # two default runs (`bench tta` defaults; ~2 x 2 minutes)
    python scripts/tta_repeat.py -- -b 8,64,512 --seeds 0,1 --lr-points 2     # reduced settings: any bench tta options
    python scripts/tta_repeat.py --keep reports/repeat -- ...                # keep both results files

Exit status 0 when every check passes, 1 when one fails. Prints the machine load of each run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _overlap(a, b) -> bool | None:
    if None in (a[0], a[1], b[0], b[1]):
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _fmt_iv(lo, hi, scale=1.0, unit="") -> str:
    if lo is None or hi is None:
        return "—"
    return f"[{lo * scale:.3g}, {hi * scale:.3g}]{unit}"


def run_once(argv: list[str], out: Path):
    from bench.cli import build_parser
    from bench.cli.tta import study_config_from_args
    from bench.run.study import run_study

    args = build_parser().parse_args(["tta", *argv])
    cfg = study_config_from_args(args)
    t0 = time.perf_counter()
    result = run_study(cfg, output=out, overwrite=True)
    return result, time.perf_counter() - t0


def compare(r1, r2) -> tuple[list[str], bool]:
    lines, ok = [], True
    a1, a2 = r1.analysis, r2.analysis
    lines.append(f"{'batch':>6} {'check':<18} {'run 1':>22} {'run 2':>22}  verdict")
    for b1 in a1.batches:
        b2 = a2.batch(b1.batch_size)
        if b2 is None:
            continue
        checks = [
            ("step time", (b1.step_time_ci_low_s, b1.step_time_ci_high_s),
             (b2.step_time_ci_low_s, b2.step_time_ci_high_s), 1e6, " µs"),
            ("(mean step time)", (b1.step_time_mean_ci_low_s, b1.step_time_mean_ci_high_s),
             (b2.step_time_mean_ci_low_s, b2.step_time_mean_ci_high_s), 1e6, " µs"),
            ("time to target", (b1.time_to_target_low_s, b1.time_to_target_high_s),
             (b2.time_to_target_low_s, b2.time_to_target_high_s), 1e3, " ms"),
            ("naive error", (b1.naive_rel_error_low, b1.naive_rel_error_high),
             (b2.naive_rel_error_low, b2.naive_rel_error_high), 100.0, " %"),
        ]
        for name, i1, i2, scale, unit in checks:
            o = _overlap(i1, i2)
            verdict = "overlap" if o else "no interval" if o is None else "DISJOINT"
            if name.startswith("("):
                verdict = verdict.lower() + " (reported, not checked)"
            elif o is False or (o is None and name != "naive error"):
                ok = False
            lines.append(f"{b1.batch_size:>6} {name:<18} {_fmt_iv(*i1, scale, unit):>22} {_fmt_iv(*i2, scale, unit):>22}  "
                         f"{verdict}")
        claims = []
        for b in (b1, b2):
            lo, hi = b.naive_rel_error_low, b.naive_rel_error_high
            claims.append(None if lo is None or hi is None or lo <= 0 <= hi else lo > 0)
        if None not in claims and claims[0] != claims[1]:
            ok = False
            lines.append(f"{b1.batch_size:>6} naive error: the runs' intervals exclude 0 on opposite sides  SIGN FLIP")
        elif claims[0] is not None or claims[1] is not None:
            sign = "long (+)" if next(c for c in claims if c is not None) else "short (−)"
            both = "both runs" if None not in claims else "one run (the other's interval holds 0)"
            lines.append(f"{b1.batch_size:>6} naive error sign: {sign} in {both}; no flip")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tta_args", nargs="*", help="options passed to both `bench tta` runs (after --)")
    p.add_argument("--keep", metavar="DIR", help="write the two results files here (default: a temporary folder)")
    args = p.parse_args(argv)
    from bench.present.tta import rounds_sentence

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep) if args.keep else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        for i in (1, 2):
            r, secs = run_once(args.tta_args, d / f"run{i}.json")
            results.append(r)
            print(f"run {i}: {secs:.0f} s; B_crit {r.analysis.scaling_fit.b_crit:.3g}; "
                  f"{rounds_sentence(r.step_time_rounds) or 'no interleaved rounds'}", flush=True)
    lines, ok = compare(*results)
    print("\n".join(lines))
    print("PASS: every interval overlaps and no sign flips" if ok else "FAIL: see DISJOINT / SIGN FLIP above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
