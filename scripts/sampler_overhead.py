"""Step-time cost of the telemetry sampler: the same step timed with the sampler on and off, per batch size.

"On" is how a sweep point runs it: one sampler thread for the whole point, started before warm-up,
with the timed blocks marked within it. Rounds alternate off/on (the order flipping each round) so
drift on a noisy machine hits both alike; the figure per batch size is the median of the per-round
ratios (on/off) with a distribution-free 95% interval (order statistics: at least 6 rounds). The default batch sizes, MLP 1-64, are where a step is
launch-bound on a GPU, the regime most sensitive to a thread taking the GIL; add a large batch for a
compute-bound one. On CUDA it samples the real GPU through pynvml; elsewhere it runs the real sampler
thread against the fake NVML module of the tests, a CPU stand-in (its Python work per tick holds the
GIL, so it is pessimistic against real NVML calls, which release it). Usage:

    python scripts/sampler_overhead.py [--device cpu] [--workload mlp] [-a hidden=64]
                                       [--batch-sizes 1,2,4,8,16,32,64] [--rounds 8] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys

from bench.core.devices import resolve_device
from bench.core.params import parse_list
from bench.measure.step import StepOptions, TrainStep
from bench.measure.telemetry.sampler import NvmlTelemetry, Telemetry, tick_cost
from bench.measure.workloads import load_workload, parse_workload_args
from bench.run.doctor import sampler_overhead


def fake_telemetry(period_s: float):
    from bench.testing.fake_pynvml import make_fake_nvml

    nvml = make_fake_nvml()
    nvml.nvmlInit()
    return (NvmlTelemetry(nvml, nvml.nvmlDeviceGetHandleByIndex(0), period_s),
            "fake pynvml (bench/testing/fake_pynvml.py): a CPU stand-in")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("-a", "--workload-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="workload parameter, repeatable (e.g. -a hidden=64 for sub-millisecond CPU steps)")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64",
                    help="comma-separated (default: 1-64, launch-bound on a GPU; add e.g. 512 for a compute-bound one)")
    ap.add_argument("--batch-size", type=int, default=None, help="one batch size (as --batch-sizes N)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per measurement (default: 1)")
    ap.add_argument("--period", type=float, default=0.05, help="sampling period, seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--ticks", type=int, default=2000, help="ticks timed for the cost of one tick (default: 2000)")
    ap.add_argument("--json", help="write the raw rounds here")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [args.batch_size] if args.batch_size else parse_list(args.batch_sizes, int, "batch size", positive=True)
    device = resolve_device(args.device)
    if device.type == "cuda":
        tel, source = Telemetry.for_device(device, period_s=args.period), "pynvml"
    else:
        tel, source = fake_telemetry(args.period)
    workload = load_workload(args.workload, parse_workload_args(args.workload_arg))
    print(f"sampler: {source}, period {args.period * 1e3:.0f} ms, on {device} ({torch.get_num_threads()} torch "
          f"thread(s)), {workload.description or args.workload}, {args.rounds} rounds per batch size, "
          f"{args.budget:g} s per measurement")
    if not tel.available:
        print(f"no sampler on {device}: {tel.reason}")
        return 1
    tick = tick_cost(tel.device, ticks=args.ticks)
    print(f"one tick: {tick['us_per_tick_median']:.1f} µs median (p90 {tick['us_per_tick_p90']:.1f} µs) over "
          f"{tick['ticks']} ticks read back to back, {tick['nvml_calls_per_tick']:.2f} NVML calls per tick")
    print(f"{'batch':>6} {'off median':>12} {'on median':>12} {'on/off':>8}   95% CI")
    rows = []
    for b in sizes:
        step = TrainStep(workload, b, device, StepOptions())
        # The loop of `bench doctor` (bench.run.doctor.sampler_overhead): rounds alternate which goes first.
        r = sampler_overhead(step, device, tel, rounds=args.rounds, budget_s=args.budget)
        step.release()
        ci = r["ratio_ci95"]
        rows.append({"batch_size": b, "off_medians_s": r["off_round_medians_s"], "on_medians_s": r["on_round_medians_s"],
                     "ratio_median": r["ratio_median"], "ratio_ci95": ci, "ci_reason": r.get("ci_reason")})
        interval = f"{(ci[0] - 1) * 100:+.2f}% .. {(ci[1] - 1) * 100:+.2f}%" if ci else r["ci_reason"]
        print(f"{b:>6} {r['off_median_s'] * 1e3:>9.3f} ms {r['on_median_s'] * 1e3:>9.3f} ms "
              f"{(r['ratio_median'] - 1) * 100:>+7.2f}%   {interval}", flush=True)
    tel.close()
    if args.json:
        from bench.core.io import write_json_atomic

        write_json_atomic(args.json, {"device": str(device), "source": source, "period_s": args.period,
                                      "torch_threads": torch.get_num_threads(), "workload": args.workload,
                                      "workload_args": parse_workload_args(args.workload_arg),
                                      "rounds": args.rounds, "budget_s": args.budget,
                                      "sampler": "one thread per point, started before warm-up",
                                      "tick": tick, "batch_sizes": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
