"""Cross-check: the harness's median step time (CUDA events on a GPU) against a wall clock around
blocks of steps ending in one device synchronise, and against torch.utils.benchmark.Timer, on the
same step.

Interleaves the three methods in several rounds, rotating which goes first (so drift on a noisy
machine hits all alike), and prints, per batch size, the medians and their ratios to torch's. Usage:

    python scripts/compare_timer.py [--workload mlp] [-a KEY=VALUE] [--precision bf16] [--channels-last]
                                    [--batch-sizes 16,256] [--rounds 5] [--budget 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.utils.benchmark as tub

from bench.core.devices import resolve_device, synchronizer
from bench.core.io import write_json_atomic
from bench.measure.step import StepOptions, TrainStep
from bench.measure.timing import CIStoppingRule, MeasureLimits, measure, timer_for
from bench.measure.workloads import load_workload, parse_workload_args
from bench.run.doctor import median_of_block_means, ratio_summary, wall_clock_per_step

wall_clock = wall_clock_per_step  # a host clock around k steps and one device synchronise (bench.run.doctor)


def ratio_ci(ratios: list[float]) -> list[float] | None:
    """Distribution-free 95% CI of the median per-round ratio (order statistics); None under 6 rounds."""
    return ratio_summary(ratios)["ratio_ci95"]


def describe_ci(ci: list[float] | None, rounds: int) -> str:
    if ci is None:
        return f"no 95% CI from {rounds} rounds: run at least 6"
    return f"95% CI {(ci[0] - 1) * 100:+.1f}% to {(ci[1] - 1) * 100:+.1f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("-a", "--workload-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per harness measurement (default: 3)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of steps per measurement, at least")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="16,256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="write the raw comparison here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workload = load_workload(args.workload, parse_workload_args(args.workload_arg))
    options = StepOptions(precision=args.precision, channels_last=args.channels_last)
    sync = synchronizer(device)
    min_time = min(args.min_time, args.budget)
    rows = []
    methods = ("harness", "wall", "torch")
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        step = TrainStep(workload, b, device, options)
        ours, ours_blocks, walls, theirs = [], [], [], []
        for r in range(args.rounds):
            # Rotate which method goes first, so a drift within a round favours none.
            for method in methods[r % 3:] + methods[:r % 3]:
                if method == "harness":
                    res = measure(step, timer=timer_for(device),
                                  rule=CIStoppingRule(ci_target=0.01),
                                  limits=MeasureLimits(min_samples=10, min_time_s=min_time, budget_s=args.budget))
                    ours.append(statistics.median(res.samples_s))
                    ours_blocks.append(median_of_block_means(res.samples_s, res.block_sizes))
                elif method == "wall":
                    typical = statistics.median(ours) if ours else 0.0
                    if not typical:  # nothing measured yet: one synchronised step sizes the blocks
                        t0 = time.perf_counter()
                        step()
                        if sync is not None:
                            sync()
                        typical = time.perf_counter() - t0
                    walls.append(wall_clock(step, sync, min_time, typical))
                else:
                    # torch.utils.benchmark synchronises CUDA itself; adaptive_autorange stops on IQR/median.
                    t = tub.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
                    theirs.append(t.adaptive_autorange(threshold=0.01, min_run_time=min_time,
                                                       max_run_time=args.budget).median)
        step.release()
        o, ob, t = statistics.median(ours), statistics.median(ours_blocks), statistics.median(theirs)
        w = statistics.median(walls)
        # Paired per round: the two methods run back to back, so a machine-state change between
        # rounds (e.g. a bimodal thread schedule) cancels out of each ratio.
        ratios = [a / b for a, b in zip(ours, theirs)]
        paired = statistics.median(ratios)
        paired_wall = statistics.median(a / b for a, b in zip(walls, theirs))
        paired_ci = ratio_ci(ratios)
        rows.append({"batch_size": b, "harness_median_s": o, "harness_block_mean_median_s": ob,
                     "wall_median_s": w, "torch_benchmark_median_s": t, "ratio": o / t, "paired_ratio_median": paired,
                     "ratio_block_means": ob / t, "wall_ratio": w / t, "wall_paired_ratio_median": paired_wall,
                     "paired_ratio_ci95": paired_ci,
                     "harness_round_medians_s": ours, "harness_round_block_mean_medians_s": ours_blocks,
                     "wall_round_medians_s": walls, "torch_benchmark_round_medians_s": theirs})
        print(f"batch {b:>6}: harness median {o * 1e3:8.3f} ms ({(o / t - 1) * 100:+.1f}%), harness median of "
              f"block means {ob * 1e3:8.3f} ms ({(ob / t - 1) * 100:+.1f}%), wall clock {w * 1e3:8.3f} ms "
              f"({(w / t - 1) * 100:+.1f}%), torch.utils.benchmark {t * 1e3:8.3f} ms; median of per-round ratios "
              f"{paired:.3f} ({(paired - 1) * 100:+.1f}%, {describe_ci(paired_ci, len(ratios))}), wall {paired_wall:.3f}",
              flush=True)
    if args.json:
        write_json_atomic(args.json, {"workload": args.workload, "workload_args": args.workload_arg,
                                      "precision": args.precision, "channels_last": args.channels_last,
                                      "device": str(device), "timer": timer_for(device).name,
                                      "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
