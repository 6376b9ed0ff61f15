"""The largest batch that fits in GPU memory (doubling, then a memory model with bisection as its safeguard, confirmed by a full measurement), and the step time there."""

from bench.run.suite import benchmark_largest_batch


def test_largest_batch(benchmark, largest_batch_case, bench_settings):
    benchmark.group = f"largest_batch {largest_batch_case.workload}"
    found, m = benchmark_largest_batch(benchmark, largest_batch_case, bench_settings)
    assert m is not None, f"{largest_batch_case.id}: {found.reason}"
    assert m.ok, f"{largest_batch_case.id} at batch {found.batch_size}: {m.status}: {m.error}"
