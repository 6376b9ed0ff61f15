"""`bench allreduce`: all-reduce time and bandwidth across message sizes, under torchrun."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from bench.cli import COMMANDS, Deferred
from bench.core.params import parse_list

DEFAULT_REPORTS_DIR = Path("reports")


def register(sub) -> None:
    def d(field: str) -> Deferred:  # the library's defaults, read when needed (bench.run.allreduce loads numpy)
        return Deferred.attribute("bench.run.allreduce", "AllreduceConfig", field)

    p = sub.add_parser("allreduce", help=COMMANDS["allreduce"].help,
                       description="Time torch.distributed.all_reduce over message sizes on every rank of a torchrun "
                                   "job and print algorithm and bus bandwidth as NCCL's tests define them "
                                   "(busbw = algbw * 2(n-1)/n). Launch: torchrun --standalone --nproc_per_node=N "
                                   "-m bench allreduce.")
    p.add_argument("-d", "--device", default="auto",
                   help="cuda (each rank its own GPU: NCCL), cpu (Gloo), or auto (cuda if available; default)")
    p.add_argument("-s", "--sizes", metavar="LIST",
                   help="comma-separated message sizes in bytes (default: powers of 4 from 4 KiB to 64 MiB on a GPU, "
                        "4 MiB on a CPU)")
    p.add_argument("--dtype", default=d("dtype"), choices=Deferred.attribute("bench.run.allreduce", "DTYPES"),
                   metavar="DTYPE", help="%(choices)s (default: %(default)s)")
    p.add_argument("--budget", type=float, default=d("budget_s"), help="seconds of measuring per size, at most "
                                                                   "(default: %(default)s)")
    p.add_argument("--min-samples", type=int, default=d("min_samples"), help="(default: %(default)s)")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per size, at least")
    p.add_argument("--ci-target", type=float, default=d("ci_target"), help="(default: %(default)s)")
    p.add_argument("--dist-timeout", type=float, default=d("timeout_s"), metavar="S",
                   help="seconds a rank waits for another in a collective (default: %(default)s)")
    p.add_argument("-o", "--output", help="results JSON (default: reports/allreduce-<device>-<n>ranks-<time>.json)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.cli.sweep import auto_device
    from bench.measure.distributed import (
        DistributedError,
        launched,
        leave,
        main_rank,
        terminated_as_error,
    )
    from bench.present.distributed import allreduce_table, allreduce_verdict
    from bench.run.allreduce import AllreduceConfig, run_allreduce

    config = AllreduceConfig(device=auto_device(args.device), sizes_bytes=parse_list(args.sizes, int, "message size",
                                                                                     positive=True),
                             dtype=args.dtype, budget_s=args.budget, min_samples=args.min_samples,
                             min_time_s=args.min_time, ci_target=args.ci_target, timeout_s=args.dist_timeout)
    config.validate()
    main = main_rank()
    import bench.present.fmt as fmt

    output = Path(args.output) if args.output else DEFAULT_REPORTS_DIR / (
        f"allreduce-{fmt.slug(config.device)}-{_world()}ranks-{datetime.now().strftime('%Y%m%dT%H%M%S')}.json")
    try:
        with terminated_as_error() if launched() else nullcontext():
            result = run_allreduce(config, output=output if main else None, overwrite=args.overwrite)
    except DistributedError:
        if launched() and not main:
            return 0  # rank 0 says what happened
        raise
    finally:
        leave()
    if not main:
        return 0
    for line in allreduce_verdict(result) + allreduce_table(result):
        print(line)
    print(f"Results: {output}")
    return 0


def _world() -> str:
    import os

    return os.environ.get("WORLD_SIZE", "1")
