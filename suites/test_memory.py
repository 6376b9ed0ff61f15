"""Peak GPU memory of a training step under the options that change it most (optimizer state, autocast)."""

from bench.run.suite import benchmark_case


def test_peak_memory(benchmark, memory_case, bench_settings):
    benchmark.group = f"memory {memory_case.workload}"
    m = benchmark_case(benchmark, memory_case, bench_settings)
    assert m.ok, f"{memory_case.id}: {m.status}: {m.error}"
    assert m.peak_allocated_bytes is not None, m.null_reasons.get("peak_allocated_bytes")
    benchmark.extra_info["bytes_per_sample"] = m.peak_allocated_bytes / m.batch_size
