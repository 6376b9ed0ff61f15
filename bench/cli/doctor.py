"""`bench doctor`: one card saying whether step times from this machine can be trusted, and why not."""

from __future__ import annotations

import argparse
import json
import sys

from bench.core.params import positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="can step times from this machine be trusted? (about 1.5 minutes on a GPU)",
        description="Read the device, driver, CUDA/cuDNN/NCCL and torch, the GPU's settings (persistence, "
                    "application clocks, power limit, ECC, MIG), other processes on it and the environment settings "
                    "that change timing; measure how often each NVML reading refreshes, the telemetry sampler's "
                    "cost, whether three timers agree on a launch-bound and a compute-bound step, and whether "
                    "clocks hold under sustained load. On a CPU it runs what applies and names what it skipped. "
                    "Exit status: 0 done (whatever the verdict), 2 bad input.")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: 1 s of sustained load, 6 short rounds per comparison (figures rest on little)")
    p.add_argument("--sustained", type=positive_float, default=25.0, metavar="S", dest="sustained_s",
                   help="seconds of sustained load (default: %(default)s)")
    p.add_argument("--rounds", type=positive_int, default=8,
                   help="rounds per timer and sampler comparison, at least 6 for a 95%% CI (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                   help="also write everything measured to this JSON file ('-': to standard output, instead of the card)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core.errors import BenchError
    from bench.core.io import json_safe, write_json_atomic
    from bench.present.doctor import doctor_card
    from bench.run.doctor import MIN_ROUNDS, DoctorConfig, run_doctor

    if args.rounds < MIN_ROUNDS:
        raise BenchError(f"--rounds {args.rounds}: a 95% CI of a median needs at least {MIN_ROUNDS} rounds")
    to_stdout = args.json_path == "-"
    config = DoctorConfig(device=args.device, quick=args.quick, sustained_s=args.sustained_s, rounds=args.rounds,
                          threads=args.threads)
    # The JSON file is rewritten before each check, so a run cut off by a time limit keeps what it found
    # (its `unfinished` says which check was running).
    keep = (lambda partial: write_json_atomic(args.json_path, partial)) if args.json_path and not to_stdout else None
    report = run_doctor(config, progress=lambda text: print(f"bench doctor: {text}", file=sys.stderr, flush=True),
                        checkpoint=keep)
    if to_stdout:
        print(json.dumps(json_safe(report), indent=1, allow_nan=False))
        return 0
    if args.json_path:
        write_json_atomic(args.json_path, report)
    print("\n".join(doctor_card(report)))
    return 0
