"""`bench sweep`: step time, throughput and memory across batch sizes, with a verdict at the end."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from bench.cli import COMMANDS, Deferred
from bench.core.budget import MEASURE_DEFAULTS
from bench.core.errors import BenchError
from bench.core.io import check_output_file
from bench.core.params import (
    fraction,
    nonnegative_float,
    nonnegative_int,
    parse_list,
    positive_float,
    positive_int,
)
from bench.core.vocabulary import PRECISIONS, STEP_OPTIMIZERS

DEFAULT_REPORTS_DIR = Path("reports")


def register(sub) -> None:
    def d(field: str) -> Deferred:  # every default is the library's (measuring ones: MEASURE_DEFAULTS)
        return Deferred.attribute("bench.run.sweep", "SweepConfig", field)

    def max_batch_text() -> str:
        from bench.run.sweep import DEFAULT_MAX_BATCH

        return ", ".join(f"{v} on {k}" for k, v in DEFAULT_MAX_BATCH.items())

    p = sub.add_parser("sweep", help=COMMANDS["sweep"].help,
                       description="Measure a training step across batch sizes and say where 'equal time per "
                                   "step' stops holding. Defaults run on a CPU in well under a minute.")
    w = p.add_argument_group("what to measure")
    w.add_argument("-w", "--workload", default=d("workload"),
                   help="built-in (mlp, cnn, resnet50, transformer), torchvision:<name>, or package.module:function "
                        "(default: %(default)s)")
    w.add_argument("-a", "--workload-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="workload parameter, repeatable (e.g. -a seq_len=256)")
    w.add_argument("-d", "--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available; default)")
    w.add_argument("-p", "--precision", default=d("precision"), choices=PRECISIONS,
                   help="fp32, tf32, bf16 autocast, fp16 autocast with a gradient scaler (default: %(default)s)")
    w.add_argument("--optimizer", default=d("optimizer"), choices=STEP_OPTIMIZERS, help="(default: %(default)s)")
    w.add_argument("--channels-last", action="store_true", help="channels_last memory format (image workloads)")
    w.add_argument("--compile", action="store_true", help="torch.compile the model")
    b = p.add_argument_group("batch sizes")
    b.add_argument("-b", "--batch-sizes", metavar="LIST",
                   help="comma-separated batch sizes (default: powers of two from --min-batch to --max-batch)")
    b.add_argument("--min-batch", type=positive_int, default=d("min_batch"), help="(default: %(default)s)")
    b.add_argument("--max-batch", type=positive_int, default=Deferred(lambda: None, text=max_batch_text),
                   help="largest power of two to try (default: %(default)s; OOM ends it sooner)")
    b.add_argument("--no-largest-search", action="store_true",
                   help="after an out-of-memory point, do not search for the largest batch that fits (nor confirm it)")
    m = p.add_argument_group("measurement")
    m.add_argument("--ci-target", type=fraction, default=d("ci_target"),
                   help="stop a point once the 95%% CI of the median is within ± this fraction (default: %(default)s)")
    m.add_argument("--min-samples", type=positive_int, default=d("min_samples"), help="(default: %(default)s)")
    m.add_argument("--min-time", type=nonnegative_float, default=None,
                   help=f"seconds of measured steps per point, at least (default: {MEASURE_DEFAULTS['min_time_s']:g}, "
                        "or the budget if smaller)")
    m.add_argument("--budget", type=positive_float, default=d("budget_s"),
                   help="seconds of timed steps per point, at most, to within a step; warm-up is apart "
                        "(default: %(default)s)")
    m.add_argument("--warmup-max", type=positive_float, default=d("warmup_max_s"), metavar="S",
                   help="seconds of warm-up per point, at most, after its first step; warm-up ends sooner once "
                        "step times stop moving either way (default: %(default)s)")
    m.add_argument("--eps", type=fraction, default=d("eps"),
                   help="'equal time' tolerance relative to the smallest batch (default: %(default)s)")
    m.add_argument("--no-telemetry", action="store_true", help="do not sample NVML during timed blocks")
    m.add_argument("--peak-tflops", type=positive_float, default=None,
                   help="peak TFLOP/s for MFU instead of the data-sheet table (e.g. what `bench peak` measured)")
    m.add_argument("--threads", type=int, default=None, metavar="N",  # SweepConfig checks it
                   help="torch.set_num_threads(N) for the run, recorded in the results (default: torch's own choice)")
    m.add_argument("--seed", type=nonnegative_int, default=d("seed"))
    dp = p.add_argument_group("data parallel (under torchrun: every rank measures, rank 0 writes; README, "
                              "'Several GPUs')")
    dp.add_argument("--dist-timeout", type=float, default=d("dist_timeout_s"), metavar="S",
                    help="seconds a rank waits for another in a collective before the point (or the job) fails "
                         "(default: %(default)s)")
    dp.add_argument("--no-comm-share", action="store_true",
                    help="do not also time each point without gradient all-reduce (DDP no_sync)")
    dp.add_argument("--no-scaling-baseline", action="store_true",
                    help="do not also time each point on rank 0 alone (the weak-scaling baseline)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", help="results JSON (default: reports/sweep-<workload>-<device>-<precision>-<time>.json)")
    o.add_argument("--resume", action="store_true", help="continue the sweep in --output, skipping points it has")
    o.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    o.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 if any point failed with an error (out of memory is a result, not a failure); "
                        "without it, exit 1 only when no point was measured at all")
    p.set_defaults(func=run)


def auto_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_output(workload: str, device: str, precision: str) -> Path:
    import bench.present.fmt as fmt

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return DEFAULT_REPORTS_DIR / f"sweep-{fmt.slug(workload)}-{fmt.slug(device)}-{precision}-{stamp}.json"


def config_from_args(args: argparse.Namespace):
    from bench.measure.workloads import parse_workload_args
    from bench.run.sweep import SweepConfig

    return SweepConfig(
        workload=args.workload, workload_args=parse_workload_args(args.workload_arg),
        device=auto_device(args.device), precision=args.precision, optimizer=args.optimizer,
        channels_last=args.channels_last, compile=args.compile,
        batch_sizes=parse_list(args.batch_sizes, int, "batch size", positive=True), min_batch=args.min_batch, max_batch=args.max_batch,
        ci_target=args.ci_target, min_samples=args.min_samples, min_time_s=args.min_time, budget_s=args.budget,
        warmup_max_s=args.warmup_max,
        eps=args.eps, find_largest=not args.no_largest_search, peak_tflops=args.peak_tflops, seed=args.seed, telemetry=not args.no_telemetry,
        threads=args.threads, dist_timeout_s=args.dist_timeout, comm_share=not args.no_comm_share,
        scaling_baseline=not args.no_scaling_baseline,
    )


def run(args: argparse.Namespace) -> int:
    from bench.cli import output_console
    from bench.cli.progress import SweepProgress, long_run_warning
    from bench.measure.distributed import (
        DistributedError,
        launched,
        leave,
        main_rank,
        terminated_as_error,
    )
    from bench.present.distributed import distributed_verdict
    from bench.present.steptime import sweep_verdict, warmup_cost_sentence
    from bench.present.tables import sweep_table
    from bench.run.sweep import prepare, run_sweep

    if args.resume and not args.output:
        raise BenchError("--resume needs -o/--output: the file of the sweep to continue")
    if args.resume and args.overwrite:
        raise BenchError("--resume and --overwrite contradict each other: continue the file, or replace it")
    config = config_from_args(args)
    workload, _ = prepare(config)  # bad input fails here, before any progress bar or file
    output = Path(args.output) if args.output else default_output(config.workload, config.device, config.precision)
    main = main_rank()  # under torchrun only rank 0 writes and prints
    if main:
        check_output_file(output, resume=args.resume, overwrite=args.overwrite)
        args.results_path = output  # for the message if interrupted
    console = output_console()  # logs: no wrapping mid-table
    warning = long_run_warning(len(config.planned_batch_sizes()), config.budget_s, config.warmup_max_s)
    if warning and main:
        print(f"bench sweep: note: {warning}", file=sys.stderr)
    if main:  # a setting that distorts every step time: said before anything runs (and kept in each point's conditions)
        from bench.measure.conditions import distorting_env_settings, read_env_settings
        from bench.present.doctor import distorting_settings_warning

        for line in distorting_settings_warning(distorting_env_settings(read_env_settings())):
            print(f"bench sweep: WARNING: {line}", file=sys.stderr)
    try:
        with terminated_as_error() if launched() else nullcontext(), \
                SweepProgress(console, enabled=main and not args.quiet) as progress:
            result = run_sweep(config, workload=workload, output=output if main else None, resume=args.resume,
                               overwrite=args.overwrite, progress=progress)
    except DistributedError:
        if launched() and not main:
            return 0  # rank 0 says what happened; exiting quietly lets it finish saying it
        raise
    finally:
        leave()
    if not main:
        return 0
    console.print(sweep_table(result))
    for sentence in sweep_verdict(result) + distributed_verdict(result) + [warmup_cost_sentence(result)]:
        if sentence:
            console.print(sentence, highlight=False)
    if result.largest_batch_reason:
        console.print(f"Largest batch that fits: {result.largest_batch_that_fits or '—'} "
                      f"({result.largest_batch_reason}).", highlight=False)
    console.print(f"Results: {output}", highlight=False)
    return failure_status("bench sweep", result.points, args.fail_on_error)


def failure_status(command: str, points, fail_on_error: bool) -> int:
    """Exit status of a sweep that ran: 1 (and one line on stderr) when no point was measured, or with
    `fail_on_error` when any point failed with an error; else 0. Out of memory is a result."""
    from bench.core.vocabulary import STATUS_ERROR

    points = list(points)
    errors = [p for p in points if p.status == STATUS_ERROR]
    if points and not any(p.ok for p in points):
        first = points[0]
        print(f"{command}: nothing was measured: all {len(points)} point(s) failed "
              f"(batch {first.batch_size}: {first.status}: {first.error or 'no message'})", file=sys.stderr)
        return 1
    if fail_on_error and errors:
        first = errors[0]
        print(f"{command}: {len(errors)} point(s) failed (batch {first.batch_size}: {first.error}); "
              "the others are in the results file", file=sys.stderr)
        return 1
    return 0

