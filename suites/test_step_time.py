"""Training step time per workload, precision, batch size and device (CUDA events, then pytest-benchmark's
host clock around rounds of k steps and one device synchronise)."""

from bench.run.suite import benchmark_case


def test_step_time(benchmark, step_case, bench_settings):
    benchmark.group = f"step_time {step_case.workload} {step_case.device}"
    m = benchmark_case(benchmark, step_case, bench_settings)
    assert m.ok, f"{step_case.id}: {m.status}: {m.error}"
