"""Step-time cost of the telemetry sampler: the same compute-bound step timed with the sampler on and off.

Rounds alternate off/on so drift on a noisy machine hits both alike; the figure is the median of the
per-round ratios (on/off) with a bootstrap 95% interval. On CUDA it samples the real GPU through
pynvml; elsewhere it runs the real sampler thread against the fake NVML module of the tests (its
Python work per tick holds the GIL, so it is a pessimistic stand-in for real NVML calls, which
release it). Usage:

    python scripts/sampler_overhead.py [--device cpu] [--workload mlp] [--batch-size 512] [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from bench.core.devices import resolve_device
from bench.measure.step import StepOptions, TrainStep
from bench.measure.telemetry.sampler import NvmlTelemetry, Telemetry
from bench.measure.timing import CIStoppingRule, MeasureLimits, measure, timer_for
from bench.measure.workloads import load_workload


def fake_telemetry(period_s: float):
    from bench.testing.fake_pynvml import make_fake_nvml

    nvml = make_fake_nvml()
    nvml.nvmlInit()
    return NvmlTelemetry(nvml, nvml.nvmlDeviceGetHandleByIndex(0), period_s), "fake pynvml (bench/testing/fake_pynvml.py)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--period", type=float, default=0.05, help="sampling period, seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="write the raw rounds here")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    step = TrainStep(load_workload(args.workload), args.batch_size, device, StepOptions())
    if device.type == "cuda":
        tel, source = Telemetry.for_device(device, period_s=args.period), "pynvml"
    else:
        tel, source = fake_telemetry(args.period)
    rule = CIStoppingRule(ci_target=0.005)
    limits = MeasureLimits(min_samples=20, min_time_s=1.0, budget_s=3.0)
    timer = timer_for(device)
    off, on = [], []
    for r in range(args.rounds):
        # Alternate which goes first, so a drift within a round favours neither.
        for sampling in ((False, True) if r % 2 == 0 else (True, False)):
            res = measure(step, timer=timer, rule=rule, limits=limits, around_block=tel.measuring if sampling else None)
            (on if sampling else off).append(statistics.median(res.samples_s))
    summary = tel.summary(steps=1, batch_size=args.batch_size)
    tel.close()
    step.release()
    ratios = np.array(on) / np.array(off)
    rng = np.random.default_rng(0)
    boot = [np.median(rng.choice(ratios, ratios.size)) for _ in range(2000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    med = float(np.median(ratios))
    print(f"sampler ({source}, period {args.period * 1e3:.0f} ms, {summary.get('n_samples')} samples over all "
          f"rounds) on {device}, {args.workload} batch {args.batch_size}: step time off {statistics.median(off) * 1e3:.3f} ms, "
          f"on {statistics.median(on) * 1e3:.3f} ms; on/off = {med:.4f} ({(med - 1) * 100:+.2f}%), "
          f"95% CI {(lo - 1) * 100:+.2f}% .. {(hi - 1) * 100:+.2f}% over {args.rounds} rounds")
    if args.json:
        import torch

        from bench.core.io import write_json_atomic

        write_json_atomic(args.json, {"device": str(device), "source": source, "period_s": args.period,
                                      "torch_threads": torch.get_num_threads(),
                                      "workload": args.workload, "batch_size": args.batch_size,
                                      "off_medians_s": off, "on_medians_s": on, "ratio_median": med,
                                      "ratio_ci95": [float(lo), float(hi)]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
