"""The suites' records in pytest-benchmark JSON (extra_info, failed cases) and reading that JSON back
into SweepResults: ours with the library's samples, other projects' from pytest-benchmark's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis.steptime import analyse_sweep
from bench.core.errors import BenchError
from bench.core.io import json_safe
from bench.records.loader import load_sweeps
from bench.records.suite import (
    FAILED_CASES_KEY,
    HOST_TIMER,
    PytestBenchmarkRun,
    extra_info,
    failed_case_record,
    load_pytest_benchmark,
    sweeps_from_pytest_benchmark,
)
from bench.records.sweep import Measurement, SweepResult, save_sweep
from bench.run.suite import SuiteCase, SuiteSettings

SETTINGS = SuiteSettings(budget_s=0.5)
DATA = Path(__file__).parent / "data"


def info_for(case: SuiteCase, m: Measurement, batch_size: int) -> dict:
    return extra_info(m, case=case.case_at(batch_size), suite=case.suite, workload_args=case.args,
                      config=case.sweep_config(SETTINGS, batch_size).to_dict(), settings=SETTINGS.to_dict(),
                      torch_num_threads=1)


def our_benchmark(batch_size: int, samples: list[float], suite: str = "step_time", extra: dict | None = None) -> dict:
    """A benchmark entry as the suites write it: pytest-benchmark's keys plus our extra_info."""
    case = SuiteCase(suite, "mlp", "fp32", batch_size, "cpu", (("hidden", 16),))
    m = Measurement(case=case.sweep_config(SETTINGS, batch_size).case(batch_size, "mlp"), timer="host",
                    samples_s=samples, warmup_samples_s=[samples[0]] * 6, stop_reason="ci_target")
    info = json_safe(info_for(case, m, batch_size))
    info.update(extra or {})
    host = [s * 1.05 for s in samples]
    return {"group": None, "name": f"test_{suite}[{case.id}]", "fullname": f"suites/test_{suite}.py::test_{suite}[{case.id}]",
            "params": {"step_case": None}, "param": case.id, "extra_info": info, "options": {},
            "stats": {"min": min(host), "max": max(host), "mean": sum(host) / len(host), "median": sorted(host)[len(host) // 2],
                      "rounds": len(host), "data": host, "iterations": 1}}


def failed_case(batch_size: int, status: str = "oom", error: str = "OutOfMemoryError: CUDA out of memory",
                suite: str = "step_time", extra: dict | None = None) -> dict:
    """An entry of bench_failed_cases as the plugin writes it for a case the library could not measure."""
    case = SuiteCase(suite, "mlp", "fp32", batch_size, "cpu", (("hidden", 16),))
    config = case.sweep_config(SETTINGS, batch_size)
    m = Measurement(case=config.case(batch_size, "mlp"), status=status, error=error)
    info = json_safe({**info_for(case, m, batch_size), **(extra or {})})
    name = f"test_{suite}[{case.id}]"
    return failed_case_record(info, name=name, fullname=f"suites/test_{suite}.py::{name}", param=case.id,
                              test_outcome="failed", exception=AssertionError(f"{case.id}: {status}: {error}"))


def pb_file(benchmarks: list[dict], machine_info: dict | None = None, failed: list[dict] | None = None) -> dict:
    data = {"machine_info": machine_info if machine_info is not None else
            {"node": "n1", "bench_fingerprint": {"device_type": "cpu", "hash": "abc123", "null_reasons": {}}},
            "commit_info": {"id": "deadbeef", "dirty": False}, "benchmarks": benchmarks,
            "datetime": "2026-01-01T00:00:00+00:00", "version": "5.3.1"}
    if failed is not None:
        data[FAILED_CASES_KEY] = failed
    return data


def write(tmp_path, data, name="run.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


SAMPLES_A = [0.0010 + i * 1e-6 for i in range(12)]
SAMPLES_B = [0.0020 + i * 1e-6 for i in range(12)]


def test_points_of_one_case_become_one_sweep_with_the_library_samples(tmp_path):
    path = write(tmp_path, pb_file([our_benchmark(16, SAMPLES_B), our_benchmark(4, SAMPLES_A)]))
    (sweep,) = load_pytest_benchmark(path)
    assert [p.batch_size for p in sweep.points] == [4, 16]
    assert sweep.points[0].samples_s == SAMPLES_A and sweep.points[0].timer == "host"
    assert sweep.points[1].stats.median_s == pytest.approx(0.0020055, rel=1e-3)
    assert sweep.config["workload_args"] == {"hidden": 16} and sweep.config["batch_sizes"] == [4, 16]
    assert sweep.config["source"]["format"] == "pytest-benchmark" and sweep.config["suite"] == "step_time"
    assert sweep.environment["hash"] == "abc123" and sweep.environment["git_commit"] == "deadbeef"
    assert sweep.analysis is None  # reading analyses nothing: bench.analysis.steptime.analyse_sweep does
    assert analyse_sweep(sweep).reference_batch == 4


def test_different_suites_and_cases_stay_in_separate_sweeps(tmp_path):
    foreign = {"name": "test_sort", "fullname": "tests/test_x.py::test_sort", "params": None, "extra_info": {},
               "stats": {"data": [0.5, 0.6, 0.7], "iterations": 1}}
    path = write(tmp_path, pb_file([our_benchmark(4, SAMPLES_A), our_benchmark(4, SAMPLES_A, suite="memory"), foreign]))
    sweeps = load_pytest_benchmark(path)
    assert [s.config["suite"] for s in sweeps] == ["step_time", "memory", "pytest"]


def test_a_benchmark_without_our_extra_info_falls_back_to_pytest_benchmark_raw_timings(tmp_path):
    foreign = {"name": "test_sort[big]", "fullname": "tests/test_x.py::test_sort[big]", "params": {"batch_size": 32},
               "extra_info": {}, "stats": {"data": [0.5, 0.6, 0.7], "iterations": 1}}
    (sweep,) = load_pytest_benchmark(write(tmp_path, pb_file([foreign], machine_info={"node": "n1"})))
    (point,) = sweep.points
    assert point.samples_s == [0.5, 0.6, 0.7] and point.timer == HOST_TIMER and point.ok
    assert point.batch_size == 32 and point.case.workload == "test_sort"
    assert "no bench extra_info" in point.null_reasons["peak_allocated_bytes"]
    assert sweep.environment["hash"] is None and "no bench fingerprint" in sweep.environment["null_reasons"]["hash"]


def test_a_suite_benchmark_stripped_of_extra_info_is_recognised_by_its_name(tmp_path):
    bench = our_benchmark(16, SAMPLES_A)
    bench["extra_info"] = {}
    (sweep,) = load_pytest_benchmark(write(tmp_path, pb_file([bench])))
    (point,) = sweep.points
    assert (point.case.workload, point.case.precision, point.batch_size, point.case.device) == ("mlp", "fp32", 16, "cpu")
    assert point.samples_s == bench["stats"]["data"] and point.timer == HOST_TIMER


def test_summary_only_stats_become_an_error_point_that_says_why(tmp_path):
    bench = our_benchmark(16, SAMPLES_A)
    bench["extra_info"] = {}
    del bench["stats"]["data"]
    (sweep,) = load_pytest_benchmark(write(tmp_path, pb_file([bench])))
    assert sweep.points[0].status == "error" and "--benchmark-save-data" in sweep.points[0].error
    assert sweep.ok_points() == [] and analyse_sweep(sweep).points == []


def test_the_largest_batch_search_comes_back_with_its_probes(tmp_path):
    search = {"batch_size": 300, "reason": "batch 301 runs out of memory; found in 12 probe(s)", "limited": False,
              "probes": [{"batch_size": 256, "fits": True, "error": None}, {"batch_size": 512, "fits": False, "error": "OOM"}]}
    path = write(tmp_path, pb_file([our_benchmark(300, SAMPLES_A, suite="largest_batch", extra={"largest_batch": search})]))
    (sweep,) = load_pytest_benchmark(path)
    assert sweep.largest_batch_that_fits == 300 and "301" in sweep.largest_batch_reason
    assert [p.batch_size for p in sweep.probes] == [256, 512]


def test_failed_cases_come_back_as_oom_and_error_points_in_the_sweep_of_their_case(tmp_path):
    data = pb_file([our_benchmark(16, SAMPLES_B), our_benchmark(4, SAMPLES_A)],
                   failed=[failed_case(64), failed_case(32, status="error", error="ValueError: bad shape"),
                           failed_case(64, suite="memory")])
    step_time, memory = load_pytest_benchmark(write(tmp_path, data))
    assert [(p.batch_size, p.status) for p in step_time.points] == [(4, "ok"), (16, "ok"), (32, "error"), (64, "oom")]
    assert step_time.point(64).error == "OutOfMemoryError: CUDA out of memory" and not step_time.point(64).samples_s
    assert step_time.point(32).error == "ValueError: bad shape"
    assert step_time.config["batch_sizes"] == [4, 16, 32, 64]
    assert step_time.config["source"]["failed_cases"] == ["suites/test_step_time.py::test_step_time[mlp-fp32-bs64-cpu]",
                                                          "suites/test_step_time.py::test_step_time[mlp-fp32-bs32-cpu]"]
    # The analysis runs over the points that were measured; the failed ones do not break it.
    assert [p.batch_size for p in analyse_sweep(step_time).points] == [4, 16]
    assert [(p.batch_size, p.status) for p in memory.points] == [(64, "oom")]


def test_a_largest_batch_search_where_nothing_fits_comes_back_as_its_oom_boundary(tmp_path):
    search = {"batch_size": None, "reason": "even batch 1 runs out of memory", "limited": False,
              "probes": [{"batch_size": 2, "fits": False, "error": "OOM"}, {"batch_size": 1, "fits": False, "error": "OOM"}]}
    record = failed_case(1, suite="largest_batch", error=search["reason"], extra={"largest_batch": search})
    data = pb_file([], failed=[record])
    (sweep,) = load_pytest_benchmark(write(tmp_path, data))
    assert [(p.batch_size, p.status) for p in sweep.points] == [(1, "oom")]
    assert sweep.largest_batch_that_fits is None and sweep.largest_batch_reason == "even batch 1 runs out of memory"
    assert [p.batch_size for p in sweep.probes] == [2, 1]


def test_a_point_the_library_measured_whose_test_then_failed_takes_the_failure_and_keeps_its_samples(tmp_path):
    info = our_benchmark(8, SAMPLES_A)["extra_info"]
    record = failed_case_record(info, name="test_step_time[mlp-fp32-bs8-cpu]",
                                fullname="suites/test_step_time.py::test_step_time[mlp-fp32-bs8-cpu]",
                                exception=MemoryError("CUDA out of memory"))
    (sweep,) = load_pytest_benchmark(write(tmp_path, pb_file([], failed=[record])))
    (point,) = sweep.points
    assert point.status == "error" and point.error == "MemoryError: CUDA out of memory"
    assert point.samples_s == SAMPLES_A and "before pytest-benchmark timed it" in point.warnings[-1]


@pytest.mark.parametrize("failed, message", [
    ({"bad": 1}, "bench_failed_cases: expected an array or null, got an object"),
    (["x"], "bench_failed_cases[0]: expected an object, got the string 'x'"),
    ([{"name": "test_x", "status": "ok", "extra_info": {}}], "status 'ok' is not a failure"),
    ([{"name": "test_x", "status": "oom", "extra_info": {}}], "not a suite case id"),
])
def test_malformed_failed_cases_are_one_line_bench_errors(tmp_path, failed, message):
    with pytest.raises(BenchError) as e:
        load_pytest_benchmark(write(tmp_path, pb_file([our_benchmark(4, SAMPLES_A)], failed=failed)))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_sweeps_from_pytest_benchmark_round_trip_through_our_schema():
    sweeps = sweeps_from_pytest_benchmark(pb_file([our_benchmark(4, SAMPLES_A), our_benchmark(16, SAMPLES_B)]))
    again = SweepResult.from_dict(json.loads(json.dumps(sweeps[0].to_dict(), allow_nan=False)))
    assert [p.samples_s for p in again.points] == [SAMPLES_A, SAMPLES_B]
    assert again.environment["hash"] == "abc123"


def test_load_sweeps_reads_either_kind_of_file(tmp_path):
    sweep = SweepResult(config={"workload": "mlp"}, points=[Measurement.from_dict(
        our_benchmark(4, SAMPLES_A)["extra_info"]["measurement"])], finished=True)
    ours = save_sweep(sweep, tmp_path / "sweep.json")
    theirs = write(tmp_path, pb_file([our_benchmark(4, SAMPLES_A)]))
    assert [r.points[0].samples_s for r in load_sweeps(ours)] == [SAMPLES_A]
    assert [r.points[0].samples_s for r in load_sweeps(theirs)] == [SAMPLES_A]


@pytest.mark.parametrize("content, message", [
    ('{"schema": "something.else", "rows": []}', "(schema 'something.else'); expected a bench.sweep file or pytest-benchmark JSON"),
    ("[1, 2, 3]", "(a JSON array); expected a bench.sweep file or pytest-benchmark JSON"),
    ('{"schema": "bench.tta", "schema_version": 1}', "(schema 'bench.tta'); expected a bench.sweep file or"),
    ("{not json", "not valid JSON"),
])
def test_load_sweeps_rejects_other_files_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(BenchError) as e:
        load_sweeps(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_malformed_benchmarks_and_missing_files_are_bench_errors(tmp_path):
    bench = our_benchmark(4, SAMPLES_A)
    bench["extra_info"]["measurement"]["status"] = "exploded"
    with pytest.raises(BenchError, match=r"status: the string 'exploded' is not one of 'ok', 'oom', 'error'"):
        load_pytest_benchmark(write(tmp_path, pb_file([bench])))
    with pytest.raises(BenchError, match="not a pytest-benchmark JSON file"):
        load_pytest_benchmark(write(tmp_path, {"benchmarks": []}, "b.json"))
    with pytest.raises(BenchError, match="no such file"):
        load_sweeps(tmp_path / "missing.json")


def test_a_newer_extra_info_version_is_a_one_line_error(tmp_path):
    bench = our_benchmark(4, SAMPLES_A)
    bench["extra_info"]["bench_schema_version"] = 99
    with pytest.raises(BenchError) as e:
        load_pytest_benchmark(write(tmp_path, pb_file([bench])))
    assert "bench_schema_version 99 is newer than this tool reads (1)" in str(e.value) and "\n" not in str(e.value)


def test_extra_info_names_the_case_by_the_one_case_id():
    case = SuiteCase("memory", "resnet50", "bf16", 64, "cuda", optimizer="adamw", channels_last=True)
    m = Measurement(case=case.sweep_config(SETTINGS, 64).case(64, "resnet50"), status="oom", error="OOM")
    info = info_for(case, m, 64)
    assert info["case_id"] == info["key"] == case.id == "resnet50-bf16-bs64-cuda-adamw-channels_last"
    assert info["bench_schema"] == "bench.pytest" and info["null_reasons"]["step_time_median_s"].startswith("not measured: oom")


def test_the_run_record_exposes_pytest_benchmarks_keys_and_our_fingerprint(tmp_path):
    run = PytestBenchmarkRun.from_dict(pb_file([our_benchmark(4, SAMPLES_A)]), source="run.json")
    assert len(run.benchmarks) == 1 and run.datetime == "2026-01-01T00:00:00+00:00" and run.failed_cases == []
    assert run.environment["hash"] == "abc123" and run.environment["git_commit"] == "deadbeef"


def test_a_committed_pytest_benchmark_file_of_the_suites_still_loads():
    # Written by the suites before the records were moved (bench 0.1.0, pytest-benchmark 5.3.1).
    run = PytestBenchmarkRun.from_dict(json.loads((DATA / "pytest-benchmark-v1.json").read_text()))
    (sweep,) = run.sweeps()
    assert [p.batch_size for p in sweep.points] == [4, 16, 64] and all(p.ok and p.samples_s for p in sweep.points)
    assert sweep.points[0].case.key == "mlp-fp32-bs4-cpu" and sweep.config["suite"] == "step_time"
    assert sweep.environment["hash"] and sweep.environment["torch_version"]
    assert analyse_sweep(sweep).reference_batch == 4
