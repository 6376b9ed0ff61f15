"""Benchmark histories: keyed on the hardware, compared across software upgrades, which are marked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import bench.analysis.regression as R
from bench.core.fingerprint import HARDWARE_FIELDS, canonical_hash

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
H100 = {"device_type": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_total_bytes": 85520809984,
        "gpu_compute_capability": "9.0", "cpu_model": "AMD EPYC 9454", "cpu_count": 16}


@dataclass
class Run:
    path: str
    data: dict


def fingerprint(**changes) -> dict:
    fp = {**H100, "gpu_uuid": "GPU-1", "driver_version": "580.159.04", "cuda_runtime_version": "13.0",
          "cudnn_version": 91900, "torch_version": "2.11.0", "python_version": "3.12.3", "os_release": "6.8.0",
          **changes}
    stable = tuple(sorted(k for k in fp))
    fp["hash"] = canonical_hash(fp, stable)
    fp["model_hash"] = canonical_hash(fp, tuple(k for k in stable if k != "gpu_uuid"))
    return fp


def run(day: int, median_s: float, fp: dict | None = None, **machine) -> Run:
    stats = {"median": median_s, "q1": median_s * 0.99, "q3": median_s * 1.01, "mean": median_s, "rounds": 10}
    info = {"machine": "x86_64", "system": "Linux", "python_version": "3.12.3", "release": "6.8.0",
            "cpu": {"brand_raw": "AMD EPYC 9454"}, **machine}
    if fp is not None:
        info["bench_fingerprint"] = fp
    return Run(f"run{day}.json", {"machine_info": info, "datetime": (T0 + timedelta(days=day)).isoformat(),
                                  "benchmarks": [{"fullname": "t.py::test_step", "stats": stats}]})


def test_a_slowdown_that_arrives_with_a_torch_upgrade_is_compared_and_marked():
    runs = [run(0, 1.0, fingerprint()), run(1, 1.0, fingerprint()), run(2, 1.5, fingerprint(torch_version="2.12.0"))]
    (h,) = R.benchmark_history(runs)
    assert [r.median_s for r in h.runs] == [1.0, 1.0, 1.5]
    assert h.regressions == [2] and h.latest_regressed
    assert h.environment_changes == {2: "torch_version 2.11.0 → 2.12.0"}


def test_history_key_is_the_hardware_only():
    a = R.machine_key({"bench_fingerprint": fingerprint()})
    upgraded = R.machine_key({"bench_fingerprint": fingerprint(driver_version="590.1", cudnn_version=92000,
                                                               python_version="3.13.1", os_release="6.11.0")})
    other_card = R.machine_key({"bench_fingerprint": fingerprint(gpu_uuid="GPU-2")})
    assert a == upgraded == other_card
    assert a[0] == canonical_hash(fingerprint(), HARDWARE_FIELDS)
    assert R.machine_key({"bench_fingerprint": fingerprint(gpu_name="NVIDIA H200")})[0] != a[0]
    assert R.machine_key({"bench_fingerprint": fingerprint(cpu_count=32)})[0] != a[0]


def test_different_hardware_keeps_separate_histories():
    runs = [run(0, 1.0, fingerprint()), run(1, 1.5, fingerprint(gpu_name="NVIDIA H200",
                                                                 gpu_memory_total_bytes=150e9))]
    assert sorted(len(h.runs) for h in R.benchmark_history(runs)) == [1, 1]


def test_unchanged_software_marks_nothing():
    (h,) = R.benchmark_history([run(0, 1.0, fingerprint()), run(1, 1.0, fingerprint(gpu_uuid="GPU-2"))])
    assert h.environment_changes == {} and h.regressions == []


def test_runs_without_a_fingerprint_mark_a_python_or_kernel_change():
    (h,) = R.benchmark_history([run(0, 1.0), run(1, 1.0, python_version="3.13.1", release="6.11.0")])
    assert h.environment_changes == {1: "python_version 3.12.3 → 3.13.1; release 6.8.0 → 6.11.0"}


def test_regression_needs_both_a_5_percent_slowdown_and_separate_iqrs():
    def stats(med, q1, q3):
        return R.RunStats(T0, "x", med, q1, q3)

    assert R.is_regression(stats(1.0, 0.99, 1.01), stats(1.10, 1.09, 1.11))
    assert not R.is_regression(stats(1.0, 0.99, 1.01), stats(1.04, 1.03, 1.05))  # apart, but under 5%
    assert not R.is_regression(stats(1.0, 0.8, 1.2), stats(1.10, 0.9, 1.3))  # 10% slower, but IQRs overlap
    assert not R.is_regression(stats(1.0, 0.99, 1.01), stats(0.8, 0.79, 0.81))  # faster
    assert not R.is_regression(stats(1.0, None, None), stats(2.0, None, None))  # spread unknown: no claim


def test_runs_timed_by_different_clocks_are_not_compared():
    host = R.RunStats(T0, "x", 1.0, 0.99, 1.01)
    device = R.RunStats(T0, "y", 2.0, 1.99, 2.01, source=R.SOURCE_LIBRARY, timer="cuda_event")
    assert not R.is_regression(host, device)
    assert R.timing_change(host, device) == "timing pytest-benchmark rounds → bench cuda_event"
    assert R.timing_change(host, host) is None


def bench_entry(samples, stats=None, status="ok"):
    measurement = {"status": status, "timer": "cuda_event", "samples_s": samples}
    return {"extra_info": {"bench_schema": "bench.pytest", "bench_schema_version": 1, "measurement": measurement},
            "stats": stats or {"median": 9.0, "q1": 8.0, "q3": 10.0, "rounds": 3}}


def test_benchmark_stats_are_the_librarys_samples_where_recorded_else_pytest_benchmarks():
    lib = R.benchmark_stats(bench_entry([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert (lib.median_s, lib.q1_s, lib.q3_s, lib.n) == (3.0, 2.0, 4.0, 5)
    assert (lib.source, lib.timer) == (R.SOURCE_LIBRARY, "cuda_event")
    theirs = R.benchmark_stats({"extra_info": {"note": "x"}, "stats": {"median": 9.0, "q1": 8.0, "q3": 10.0, "rounds": 3}})
    assert (theirs.median_s, theirs.q1_s, theirs.q3_s, theirs.n, theirs.source) == (9.0, 8.0, 10.0, 3, R.SOURCE_PYTEST)
    # a bench point that failed, or carries no samples, has only pytest-benchmark's numbers (if any)
    assert R.benchmark_stats(bench_entry([], status="ok")).source == R.SOURCE_PYTEST
    assert R.benchmark_stats(bench_entry([1.0], status="oom")).source == R.SOURCE_PYTEST
    assert R.benchmark_stats({"stats": {}}) is None


def test_history_is_judged_on_the_librarys_samples():
    def lib_run(day, centre):
        r = run(day, 5.0)  # pytest-benchmark's median stays 5.0 in every run
        r.data["benchmarks"][0].update(bench_entry([centre * (1 + 0.001 * k) for k in range(-5, 6)],
                                                   stats=r.data["benchmarks"][0]["stats"]))
        return r

    (h,) = R.benchmark_history([lib_run(0, 1.0), lib_run(1, 1.0), lib_run(2, 1.2)])
    assert [r.median_s for r in h.runs] == [1.0, 1.0, 1.2]
    assert h.regressions == [2] and {r.source for r in h.runs} == {R.SOURCE_LIBRARY}
