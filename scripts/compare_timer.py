"""Cross-check: the harness's median step time against torch.utils.benchmark.Timer on the same step.

Interleaves the two methods in several rounds (so drift on a noisy machine hits both alike) and
prints, per batch size, both medians and their ratio. Usage:

    python scripts/compare_timer.py [--workload mlp] [--batch-sizes 16,256] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.utils.benchmark as tub

from bench.core.devices import resolve_device
from bench.core.io import write_json_atomic
from bench.measure.step import StepOptions, TrainStep
from bench.measure.timing import CIStoppingRule, MeasureLimits, measure, timer_for
from bench.measure.workloads import load_workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="16,256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="write the raw comparison here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workload = load_workload(args.workload)
    rows = []
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        step = TrainStep(workload, b, device, StepOptions())
        ours, ours_blocks, theirs = [], [], []
        for r in range(args.rounds):
            # Alternate which method goes first, so a drift within a round favours neither.
            for method in (("harness", "torch") if r % 2 == 0 else ("torch", "harness")):
                if method == "harness":
                    res = measure(step, timer=timer_for(device),
                                  rule=CIStoppingRule(ci_target=0.01),
                                  limits=MeasureLimits(min_samples=10, min_time_s=0.5, budget_s=3.0))
                    ours.append(statistics.median(res.samples_s))
                    # torch.utils.benchmark reports the median of per-block *means*: the like-for-like figure.
                    means, i = [], 0
                    for n in res.block_sizes:
                        means.append(sum(res.samples_s[i:i + n]) / n)
                        i += n
                    ours_blocks.append(statistics.median(means))
                else:
                    # torch.utils.benchmark synchronises CUDA itself; adaptive_autorange stops on IQR/median.
                    t = tub.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
                    theirs.append(t.adaptive_autorange(threshold=0.01, min_run_time=0.5, max_run_time=3.0).median)
        step.release()
        o, ob, t = statistics.median(ours), statistics.median(ours_blocks), statistics.median(theirs)
        # Paired per round: the two methods run back to back, so a machine-state change between
        # rounds (e.g. a bimodal thread schedule) cancels out of each ratio.
        paired = statistics.median(a / b for a, b in zip(ours, theirs))
        rows.append({"batch_size": b, "harness_median_s": o, "harness_block_mean_median_s": ob,
                     "torch_benchmark_median_s": t, "ratio": o / t, "paired_ratio_median": paired, "ratio_block_means": ob / t,
                     "harness_round_medians_s": ours, "harness_round_block_mean_medians_s": ours_blocks,
                     "torch_benchmark_round_medians_s": theirs})
        print(f"batch {b:>6}: harness median {o * 1e3:8.3f} ms ({(o / t - 1) * 100:+.1f}%), harness median of "
              f"block means {ob * 1e3:8.3f} ms ({(ob / t - 1) * 100:+.1f}%), torch.utils.benchmark {t * 1e3:8.3f} ms; "
              f"median of per-round ratios {paired:.3f} ({(paired - 1) * 100:+.1f}%)",
              flush=True)
    if args.json:
        write_json_atomic(args.json, {"workload": args.workload, "device": str(device),
                                      "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
