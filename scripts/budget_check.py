"""Does the per-point budget hold, and what does warm-up cost? One line per batch size for a
ResNet-style conv net about the size of ResNet-18 (the built-in `cnn`, width 64, two blocks per stage)
timed on the CPU by the same loop as `bench sweep` (`bench.measure.timing.measure`).

    python scripts/budget_check.py [--budget 2] [--batch-sizes 2,8,32] [--image-size 64] [--warmup-max 30]

Prints, per batch size: the median step, the warm-up's wall time and how it ended, the timed steps'
wall time against the budget (the ceiling is the budget to within one step), the samples and blocks
taken, how the point stopped, and the point's warnings (e.g. the budget that would give a CI).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.core.params import parse_list, positive_float, positive_int


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=positive_float, default=2.0)
    p.add_argument("--warmup-max", type=positive_float, default=30.0)
    p.add_argument("--batch-sizes", default="2,8,32")
    p.add_argument("--image-size", type=positive_int, default=64)
    p.add_argument("--width", type=positive_int, default=64)
    p.add_argument("--blocks", type=positive_int, default=2)
    args = p.parse_args(argv)

    import torch

    from bench.measure.step import StepOptions, TrainStep
    from bench.measure.timing import HostTimer, MeasureLimits, WarmupRule, measure
    from bench.measure.workloads import cnn

    torch.manual_seed(0)
    workload = cnn(image_size=args.image_size, width=args.width, blocks=args.blocks)
    params = sum(p.numel() for p in workload.build_model().parameters())
    print(f"cnn width={args.width} blocks={args.blocks} image={args.image_size}: {params / 1e6:.1f} M parameters, "
          f"{torch.get_num_threads()} thread(s); budget {args.budget:g} s, warm-up limit {args.warmup_max:g} s")
    for b in parse_list(args.batch_sizes, int, "batch size", positive=True):
        step = TrainStep(workload, b, "cpu", StepOptions(), seed=0)
        res = measure(step, timer=HostTimer(), limits=MeasureLimits(budget_s=args.budget),
                      warmup=WarmupRule(max_time_s=args.warmup_max))
        timed = res.wall_time_s - res.warmup_wall_time_s
        print(f"batch {b}: step {statistics.median(res.samples_s):.3g} s; warm-up {res.warmup_wall_time_s:.2f} s "
              f"({len(res.warmup_samples_s)} steps, {res.warmup_reason}); timed {timed:.2f} s of a {args.budget:g} s "
              f"budget ({timed / args.budget:.0%}); point after its first step {res.wall_time_s - res.warmup_samples_s[0]:.2f} s; "
              f"{len(res.samples_s)} samples in {len(res.block_sizes)} blocks; stopped: {res.stop_reason}")
        for w in res.warnings:
            print(f"    {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
