"""The pytest plugin and the suite support library: case selection, options, rounds, device-correct timing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

# A step imports torch._dynamo, which registers C++ operators once per process; pytester's in-process
# runs drop the modules they imported, so a second run would import (and register) it again and fail.
import torch._dynamo  # noqa: F401

from bench.core.errors import BenchError
from bench.core.io import json_safe
from bench.records.loader import load_sweeps
from bench.records.suite import FAILED_CASES_KEY, failed_case_record
from bench.records.sweep import Case, Measurement, Probe
from bench.run.suite import (
    CPU_BATCH_SIZES,
    CPU_PRECISIONS,
    CPU_WORKLOADS,
    SuiteCase,
    SuiteOptions,
    SuiteSettings,
    benchmark_largest_batch,
    catalogue,
    find_largest_batch,
    plan_rounds,
    select_cases,
)

pytest_plugins = ("pytester",)


def no_precision_problem(precision: str, device: str) -> str | None:
    return None


def select(suite: str, has_cuda: bool, **options) -> list:
    return select_cases(suite, SuiteOptions.parse(**options), has_cuda=has_cuda,
                        precision_check=no_precision_problem)


# --------------------------------------------------------------------------- selecting cases


def test_cpu_machine_runs_the_cpu_subset_and_skips_gpu_cases_with_a_reason():
    selected = select("step_time", has_cuda=False)
    runs = [s.case for s in selected if s.skip_reason is None]
    skipped = [s for s in selected if s.skip_reason]
    assert {c.device for c in runs} == {"cpu"}
    assert len(runs) == len(CPU_WORKLOADS) * len(CPU_PRECISIONS) * len(CPU_BATCH_SIZES)
    assert skipped and all(s.case.device == "cuda" for s in skipped)
    assert all("CUDA is not available" in s.skip_reason for s in skipped)
    assert {s.case.precision for s in skipped} >= {"tf32", "fp16"}
    assert "resnet50" in {s.case.workload for s in skipped}


def test_largest_batch_and_memory_cases_are_gpu_only_and_say_why_on_a_cpu():
    largest = select("largest_batch", has_cuda=False)
    memory = select("memory", has_cuda=False)
    assert largest and all("largest-batch search runs only on a GPU" in s.skip_reason for s in largest)
    assert memory and all("peak-memory statistics exist only on CUDA" in s.skip_reason for s in memory)


def test_case_ids_name_workload_precision_batch_size_and_device():
    ids = [s.case.id for s in select("step_time", has_cuda=False)]
    assert "mlp-fp32-bs64-cpu" in ids
    assert "resnet50-bf16-bs64-cuda-channels_last" in ids
    assert len(ids) == len(set(ids))
    assert [s.case.id for s in select("largest_batch", has_cuda=True)][0].endswith("-bsmax-cuda-channels_last")
    assert any(s.case.id.endswith("-adamw") for s in select("memory", has_cuda=True))


def test_device_cpu_skips_gpu_cases_even_where_cuda_exists_and_cuda_skips_the_cpu_subset():
    on_cpu = select("step_time", has_cuda=True, device="cpu")
    assert all(("--bench-device cpu" in (s.skip_reason or "")) == (s.case.device == "cuda") for s in on_cpu)
    on_cuda = select("step_time", has_cuda=True, device="cuda")
    assert all(("--bench-device cuda" in (s.skip_reason or "")) == (s.case.device == "cpu") for s in on_cuda)


def test_device_cuda_without_cuda_is_an_error_not_a_silent_skip():
    with pytest.raises(BenchError, match="CUDA is not available"):
        select("step_time", has_cuda=False, device="cuda")


def test_subset_cpu_leaves_the_gpu_tier_out():
    selected = select("step_time", has_cuda=True, subset="cpu")
    assert selected and all(s.case.device == "cpu" for s in selected)
    assert catalogue("largest_batch", "cpu") == []


def test_filters_select_workloads_and_precisions_and_replace_batch_sizes():
    selected = select("step_time", has_cuda=False, workloads="mlp", precisions="fp32", batch_sizes="4,1")
    assert {s.case.id for s in selected} == {"mlp-fp32-bs1-cpu", "mlp-fp32-bs4-cpu",
                                              "mlp-fp32-bs1-cuda", "mlp-fp32-bs4-cuda"}


def test_a_precision_the_gpu_cannot_run_is_skipped_with_the_library_reason():
    selected = select_cases("step_time", SuiteOptions.parse(workloads="mlp"), has_cuda=True,
                            precision_check=lambda p, d: "tf32 needs compute capability 8.0" if p == "tf32" else None)
    tf32 = [s for s in selected if s.case.precision == "tf32"]
    assert tf32 and all(s.skip_reason == "tf32 needs compute capability 8.0" for s in tf32)
    assert all(s.skip_reason is None for s in selected if s.case.precision != "tf32")


def test_under_torchrun_the_largest_batch_suite_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    largest = select("largest_batch", has_cuda=True)
    assert largest and all(s.skip_reason.startswith("the largest-batch search is one device's") for s in largest)
    assert all(s.skip_reason is None for s in select("step_time", has_cuda=True))
    monkeypatch.delenv("WORLD_SIZE")
    assert all(s.skip_reason is None for s in select("largest_batch", has_cuda=True))


@pytest.mark.parametrize("options, message", [
    ({"workloads": "mlp,bert"}, "--bench-workloads: unknown 'bert'"),
    ({"precisions": "fp8"}, "--bench-precisions: unknown 'fp8'"),
    ({"batch_sizes": "4,x"}, "--bench-batch-sizes: 'x' is not an integer"),
    ({"batch_sizes": "0"}, "--bench-batch-sizes: must be a positive integer"),
    ({"budget": "-1"}, "--bench-budget must be a positive number"),
    ({"budget": "nan"}, "--bench-budget must be a positive number"),
    ({"device": "tpu"}, "--bench-device must be one of"),
])
def test_bad_options_are_one_line_errors_naming_the_option(options, message):
    with pytest.raises(BenchError) as e:
        SuiteOptions.parse(**options)
    assert message in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- rounds and helpers


def measured(median_s: float, n: int = 20, warmup: int = 9) -> Measurement:
    return Measurement(case=Case("mlp", 8), samples_s=[median_s] * n, warmup_samples_s=[median_s] * warmup)


def test_rounds_cover_the_minimum_time_at_the_library_median():
    plan = plan_rounds(measured(0.001), SuiteSettings(budget_s=2.0, min_time_s=0.5))
    assert plan.steps_per_round == 10 and plan.rounds == 50  # 50 rounds of 10 ms: 0.5 s of steps
    assert plan.warmup_rounds == 1  # the library's 9 warm-up steps fit one round of 10


def test_a_round_is_the_fewest_steps_that_last_10_ms_and_one_step_when_a_step_is_longer():
    assert plan_rounds(measured(0.0003), SuiteSettings()).steps_per_round == 34  # 10.2 ms
    assert plan_rounds(measured(0.004), SuiteSettings()).steps_per_round == 3
    assert plan_rounds(measured(0.05), SuiteSettings()).steps_per_round == 1
    assert plan_rounds(measured(0.0003), SuiteSettings(round_min_s=0.0)).steps_per_round == 1


def test_warm_up_rounds_repeat_the_librarys_warm_up_steps_in_rounds_of_k():
    # 0.5 s of warm-up at 0.3 ms steps is ~1,700 steps: 50 rounds of 34 steps, not 200 rounds of 34 (2 s).
    plan = plan_rounds(measured(0.0003, warmup=1700), SuiteSettings())
    assert (plan.steps_per_round, plan.warmup_rounds) == (34, 50)
    long = plan_rounds(measured(0.0003, warmup=100_000), SuiteSettings(warmup_max_s=1.0))
    assert long.warmup_rounds * long.steps_per_round * 0.0003 <= 1.0  # capped by the warm-up time limit


def test_rounds_stop_at_the_budget_for_slow_steps_but_never_below_the_minimum():
    plan = plan_rounds(measured(0.3), SuiteSettings(budget_s=2.0, min_time_s=0.5, min_samples=10))
    assert plan.rounds == 7 and "budget" in plan.reason
    plan = plan_rounds(measured(1.0), SuiteSettings(budget_s=2.0, min_rounds=5))
    assert plan.rounds == 5 and "minimum" in plan.reason


def test_suite_settings_take_the_measuring_defaults_and_the_one_minimum_time_rule():
    from bench.core.budget import MEASURE_DEFAULTS

    s = SuiteSettings()
    assert (s.budget_s, s.effective_min_time_s, s.min_samples, s.ci_target) == (
        MEASURE_DEFAULTS["budget_s"], MEASURE_DEFAULTS["min_time_s"], MEASURE_DEFAULTS["min_samples"],
        MEASURE_DEFAULTS["ci_target"])
    small = SuiteOptions.parse(budget="0.05").settings
    assert small.effective_min_time_s == 0.05
    assert SuiteCase("step_time", "mlp", "fp32", 4, "cpu").sweep_config(small, 4).to_dict()["min_time_s"] == 0.05
    with pytest.raises(BenchError, match="minimum time 1 s exceeds the time budget 0.5 s"):
        SuiteSettings(min_time_s=1.0, budget_s=0.5)


def test_json_safe_turns_nan_and_numpy_into_plain_json():
    import numpy as np

    out = json_safe({"a": float("nan"), "b": np.float32(1.5), "c": [math.inf, np.int64(3)], "d": (1, 2)})
    assert out == {"a": None, "b": 1.5, "c": [None, 3], "d": [1, 2]}
    json.dumps(out, allow_nan=False)


def fake_probe(capacity: int, fail_at: int | None = None, memory=None):
    """Probes of a workload that runs out of memory above `capacity`; with `memory(batch)`, a probe
    that fits reports that peak, as probe_fits does on CUDA."""
    calls = []

    def probe(workload, config, batch_size, device):
        calls.append(batch_size)
        if fail_at is not None and batch_size >= fail_at:
            return Probe(batch_size, False, "not out of memory: ValueError: bad shape")
        fits = batch_size <= capacity
        return Probe(batch_size, fits, None if fits else "OutOfMemoryError",
                     peak_reserved_bytes=memory(batch_size) if fits and memory else None)

    return probe, calls


def fake_measure(fits_up_to: int):
    """Full measurements (measure_point) of a workload that runs out of memory above `fits_up_to`."""
    calls = []

    def measure(workload, config, batch_size, device):
        calls.append(batch_size)
        case = Case("fake", batch_size)
        if batch_size > fits_up_to:
            return Measurement(case, status="oom", error="OutOfMemoryError: CUDA out of memory")
        return Measurement(case, samples_s=[0.01] * 10)

    return measure, calls


def test_largest_batch_doubles_then_bisects_to_the_exact_limit():
    probe, calls = fake_probe(capacity=300)
    measure, measured = fake_measure(300)
    found = find_largest_batch(None, None, "cuda", start=1, limit=65536, probe=probe, measure=measure,
                               capacity_bytes=None)
    assert found.batch_size == 300 and not found.limited
    assert calls[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert len(found.probes) == len(calls) and "batch 301 runs out of memory" in found.reason
    assert found.confirmed and measured == [300]


def test_largest_batch_reports_a_limit_it_never_reached_and_stops_on_other_failures():
    probe, _ = fake_probe(capacity=10**9)
    measure, _ = fake_measure(10**9)
    found = find_largest_batch(None, None, "cuda", start=4, limit=64, probe=probe, measure=measure)
    assert found.batch_size is None and found.limited and found.largest_ran == 64 and "lies beyond" in found.reason
    probe, _ = fake_probe(capacity=10**9, fail_at=16)
    found = find_largest_batch(None, None, "cuda", start=1, limit=64, probe=probe, measure=measure)
    assert found.batch_size == 8 and found.reason.startswith("search stopped: batch 16 failed for another reason")


def test_the_probe_count_includes_the_doubling_phase():
    probe, calls = fake_probe(capacity=300)
    measure, _ = fake_measure(300)
    found = find_largest_batch(None, None, "cuda", start=1, limit=65536, probe=probe, measure=measure,
                               capacity_bytes=None)
    n = len(calls)
    assert found.probe_counts == {"doubling": 10, "model": 0, "bisection": n - 10}
    assert f"found in {n} probe(s) (10 doubling, {n - 10} bisection)" in found.reason
    assert found.to_dict()["probe_counts"]["doubling"] == 10


def test_with_probe_peaks_and_the_capacity_the_memory_model_needs_fewer_probes_than_bisection():
    memory = lambda b: 2_000_000_000 + 30_000_000 * b  # noqa: E731
    capacity = 80 * 2**30  # the largest batch that fits: 2796
    truth = (capacity - 2_000_000_000) // 30_000_000
    probe, calls = fake_probe(capacity=truth, memory=memory)
    measure, _ = fake_measure(truth)
    found = find_largest_batch(None, None, "cuda", start=1, limit=65536, probe=probe, measure=measure,
                               capacity_bytes=capacity)
    plain_probe, plain_calls = fake_probe(capacity=truth)
    plain = find_largest_batch(None, None, "cuda", start=1, limit=65536, probe=plain_probe, measure=measure,
                               capacity_bytes=None)
    assert found.batch_size == plain.batch_size == truth
    assert found.probe_counts["model"] >= 1 and len(calls) <= len(plain_calls) - 6


def test_the_answer_is_confirmed_by_a_full_measurement_that_backs_off_on_out_of_memory():
    probe, _ = fake_probe(capacity=300)
    measure, measured = fake_measure(290)  # a full measurement needs more than a 2-step probe
    found = find_largest_batch(None, None, "cuda", start=1, limit=65536, probe=probe, measure=measure,
                               capacity_bytes=None)
    assert found.batch_size == 290 and found.confirmed
    assert measured[:4] == [300, 299, 297, 293] and 290 in measured
    assert [c["status"] for c in found.confirmations if c["batch_size"] == 291] == ["oom"]
    assert found.reason.startswith("batch 291 runs out of memory in a full measurement")


# --------------------------------------------------------------------------- inside pytest-benchmark

FAKE_DEVICE = '''
import time

class FakeDevice:
    """A device that queues work: a step returns at once; the work finishes `work_s` later."""

    def __init__(self, work_s):
        self.work_s = work_s
        self.done_at = 0.0
        self.synchronised = 0

    def step(self):
        self.done_at = max(self.done_at, time.perf_counter()) + self.work_s

    def synchronize(self):
        self.synchronised += 1
        remaining = self.done_at - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
'''


def run_inline(pytester, source: str, *args: str, ret: int = 0):
    pytester.makepyfile(test_inner=FAKE_DEVICE + textwrap.dedent(source))
    out = pytester.path / "out.json"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--benchmark-json={out}", *args)
    assert result.ret == ret, result.stdout.str()
    return result, json.loads(out.read_text())


def test_pytest_benchmark_stats_include_queued_device_work_only_when_the_step_synchronises(pytester):
    _, data = run_inline(pytester, '''
        from bench.run.suite import time_synchronised

        def test_synchronised(benchmark):
            dev = FakeDevice(0.02)
            samples = time_synchronised(benchmark, dev.step, dev.synchronize, rounds=5, warmup_rounds=1)
            assert len(samples) == 5 and dev.synchronised == 6

        def test_unsynchronised(benchmark):
            dev = FakeDevice(0.02)
            time_synchronised(benchmark, dev.step, None, rounds=5, warmup_rounds=1)
    ''')
    stats = {b["name"]: b["stats"] for b in data["benchmarks"]}
    assert stats["test_synchronised"]["mean"] >= 0.02
    assert stats["test_synchronised"]["min"] >= 0.02
    assert stats["test_unsynchronised"]["median"] < 0.02


def test_a_round_of_k_steps_synchronises_once_after_its_last_step_and_its_stats_are_per_step(pytester):
    _, data = run_inline(pytester, '''
        from bench.run.suite import time_synchronised

        def test_rounds(benchmark):
            dev = FakeDevice(0.004)
            samples = time_synchronised(benchmark, dev.step, dev.synchronize, rounds=5, warmup_rounds=2,
                                        steps_per_round=4)
            assert len(samples) == 5 and dev.synchronised == 7  # one per round, warm-up rounds included
    ''')
    (b,) = data["benchmarks"]
    assert b["stats"]["iterations"] == 4
    assert b["stats"]["min"] >= 0.004  # per step, the device work included


def test_the_ratio_of_the_two_medians_is_recorded_and_a_gap_over_10_percent_is_a_warning():
    from bench.run.suite import RoundsPlan, host_timing_info

    m = measured(0.010)
    plan = RoundsPlan(10, 1, "why", steps_per_round=1)
    close = host_timing_info(m, [0.0105] * 10, plan, "fake")
    assert close["library_to_pytest_benchmark"] == pytest.approx(0.010 / 0.0105) and close["warning"] is None
    assert close["library_median_s"] == 0.010 and close["relative_to_library_median"] == pytest.approx(0.05)
    far = host_timing_info(m, [0.0125] * 10, plan, "fake")
    assert "differ by more than 10% (library / pytest-benchmark = 0.8)" in far["warning"]
    assert far["warning"].endswith("the nightly gate uses the library's median")


def test_a_disagreement_between_the_two_timings_is_a_warning_on_the_point_in_the_json_and_in_pytest(pytester):
    result, data = run_inline(pytester, '''
        import time
        import torch
        from bench.run.suite import SuiteCase, SuiteSettings, benchmark_case

        def test_case(benchmark):
            torch.set_num_threads(1)
            case = SuiteCase("step_time", "mlp", "fp32", 4, "cpu", (("hidden", 16), ("in_features", 16), ("depth", 1)))
            # A synchronise that takes 50 ms: far more than a round's steps, which the library never waits for.
            m = benchmark_case(benchmark, case, SuiteSettings(budget_s=0.05), synchronize=lambda: time.sleep(0.05))
            assert any("differ by more than 10%" in w for w in m.warnings)
    ''')
    info = data["benchmarks"][0]["extra_info"]
    warning = info["pytest_benchmark_timing"]["warning"]
    assert warning in info["warnings"] and warning in info["measurement"]["warnings"]
    assert info["pytest_benchmark_timing"]["library_to_pytest_benchmark"] < 0.9
    assert "TimingDisagreement" in result.stdout.str()


def test_benchmark_case_records_the_library_measurement_and_synchronises_every_round(pytester):
    _, data = run_inline(pytester, '''
        import torch
        from bench.run.suite import SuiteCase, SuiteSettings, benchmark_case

        def test_case(benchmark):
            torch.set_num_threads(1)
            calls = []
            case = SuiteCase("step_time", "mlp", "fp32", 4, "cpu", (("hidden", 16), ("in_features", 16), ("depth", 1)))
            m = benchmark_case(benchmark, case, SuiteSettings(budget_s=0.05), synchronize=lambda: calls.append(1))
            timing = benchmark.extra_info["pytest_benchmark_timing"]
            assert m.ok and len(calls) == timing["rounds"] + timing["warmup_rounds"]
    ''')
    (bench,) = data["benchmarks"]
    info = bench["extra_info"]
    assert info["bench_schema"] == "bench.pytest" and info["case_id"] == "mlp-fp32-bs4-cpu"
    assert info["status"] == "ok" and info["timer"] == "host"
    assert info["measurement"]["samples_s"] and "warmup_samples_s" not in info["measurement"]
    assert info["step_time_median_s"] == pytest.approx(sorted(info["measurement"]["samples_s"])[
        len(info["measurement"]["samples_s"]) // 2], rel=0.5)
    timing = info["pytest_benchmark_timing"]
    assert timing["method"] == "host clock around k steps and one device synchronise per round"
    assert bench["stats"]["rounds"] == timing["rounds"]
    assert bench["stats"]["iterations"] == timing["steps_per_round"] >= 1  # pytest-benchmark's stats are per step
    assert timing["library_to_pytest_benchmark"] == pytest.approx(info["step_time_median_s"] / bench["stats"]["median"])


def test_plugin_parametrises_by_fixture_and_adds_the_fingerprint_to_machine_info(pytester):
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    result, data = run_inline(pytester, '''
        def test_step_time(step_case):
            assert step_case.device == "cpu"

        def test_machine(benchmark):
            benchmark.pedantic(lambda: None, rounds=1)
    ''', "--bench-device=cpu", "--bench-workloads=mlp", "--bench-precisions=fp32", "-v", "-rs")
    result.stdout.fnmatch_lines(["*test_step_time?mlp-fp32-bs64-cpu? PASSED*",
                                 "*test_step_time?mlp-fp32-bs64-cuda? SKIPPED*",
                                 "SKIPPED ?3? test_inner.py: needs a CUDA GPU: --bench-device cpu leaves the GPU cases out"])
    fp = data["machine_info"]["bench_fingerprint"]
    assert fp["device_type"] == "cpu" and isinstance(fp["hash"], str) and "git_commit" not in fp
    assert fp["torch_version"]


# A user workload (package.module:function) that runs out of memory above `limit` samples, as a GPU would.
OOM_SUITE = '''
    import torch
    from torch import nn
    from bench.run.suite import SuiteCase, SuiteSettings, benchmark_case

    def oom_mlp(limit: int = 8):
        class Model(nn.Linear):
            def forward(self, x):
                if x.shape[0] > limit:
                    raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} GiB")
                return super().forward(x)

        return (lambda: Model(4, 2), lambda b, device: (torch.randn(b, 4, device=device), torch.randn(b, 2, device=device)),
                nn.functional.mse_loss)

    def run(benchmark, batch_size):
        torch.set_num_threads(1)
        case = SuiteCase("step_time", "test_inner:oom_mlp", "fp32", batch_size, "cpu")
        m = benchmark_case(benchmark, case, SuiteSettings(budget_s=0.05, warmup_max_s=0.05, telemetry=False),
                           synchronize=None)
        assert m.ok, f"{case.id}: {m.status}: {m.error}"
'''


def pytest_benchmark_compare(*files, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", *map(str, files)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_an_out_of_memory_case_fails_its_test_and_is_kept_in_the_json_under_bench_failed_cases(pytester):
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    result, data = run_inline(pytester, OOM_SUITE + '''
    def test_fits(benchmark):
        run(benchmark, 4)

    def test_oom(benchmark):
        run(benchmark, 16)
    ''', ret=pytest.ExitCode.TESTS_FAILED)
    result.assert_outcomes(passed=1, failed=1)  # a nightly job goes red on an out-of-memory regression
    assert [b["name"] for b in data["benchmarks"]] == ["test_fits"]
    (failed,) = data[FAILED_CASES_KEY]
    assert failed["name"] == "test_oom" and failed["fullname"] == "test_inner.py::test_oom"
    assert failed["status"] == "oom" and failed["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert failed["test_outcome"] == "failed" and failed["case_id"] == "test_inner:oom_mlp-fp32-bs16-cpu"
    info = failed["extra_info"]
    assert info["status"] == "oom" and info["batch_size"] == 16 and info["measurement"]["status"] == "oom"
    assert info["null_reasons"]["step_time_median_s"].startswith("not measured: oom")
    result.stdout.fnmatch_lines(["*bench: failed cases*", "test_inner:oom_mlp-fp32-bs16-cpu: oom: OutOfMemoryError*"])


def test_pytest_benchmark_compare_accepts_the_failed_cases_and_our_adapter_reads_the_oom_point(pytester):
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    run_inline(pytester, OOM_SUITE + '''
    def test_fits(benchmark):
        run(benchmark, 8)

    def test_oom(benchmark):
        run(benchmark, 9)
    ''', ret=pytest.ExitCode.TESTS_FAILED)
    out = pytester.path / "out.json"
    proc = pytest_benchmark_compare(out, cwd=pytester.path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test_fits" in proc.stdout
    (sweep,) = load_sweeps(out)
    assert [(p.batch_size, p.status) for p in sweep.points] == [(8, "ok"), (9, "oom")]
    assert sweep.points[1].error.startswith("OutOfMemoryError") and sweep.ok_points() == sweep.points[:1]
    assert sweep.config["source"]["failed_cases"] == ["test_inner.py::test_oom"]


@pytest.mark.filterwarnings("ignore:Not saving anything, no benchmarks have been run")
def test_a_run_in_which_every_case_failed_still_writes_the_json_with_them(pytester):
    # pytest-benchmark alone writes no file at all when nothing was timed.
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    storage = pytester.path / "storage"
    _, data = run_inline(pytester, OOM_SUITE + '''
    def test_oom(benchmark):
        run(benchmark, 16)
    ''', "--benchmark-autosave", f"--benchmark-storage=file://{storage}", ret=pytest.ExitCode.TESTS_FAILED)
    assert data["benchmarks"] == [] and {"machine_info", "commit_info", "datetime", "version"} <= set(data)
    assert "bench_fingerprint" in data["machine_info"]
    assert [f["status"] for f in data[FAILED_CASES_KEY]] == ["oom"]
    (saved,) = storage.rglob("0001_*.json")
    assert [f["case_id"] for f in json.loads(saved.read_text())[FAILED_CASES_KEY]] == ["test_inner:oom_mlp-fp32-bs16-cpu"]
    assert pytest_benchmark_compare(pytester.path / "out.json", cwd=pytester.path).returncode == 0
    (sweep,) = load_sweeps(pytester.path / "out.json")
    assert [(p.batch_size, p.status) for p in sweep.points] == [(16, "oom")]


def test_a_case_measured_by_the_library_whose_test_then_runs_out_of_memory_is_recorded_as_oom():
    info = {"bench_schema": "bench.pytest", "suite": "step_time", "case_id": "mlp-fp32-bs4-cpu", "status": "ok",
            "error": None}
    record = failed_case_record(info, name="t", fullname="f::t", test_outcome="failed",
                                exception=torch.cuda.OutOfMemoryError("CUDA out of memory.\nmore"))
    assert (record["status"], record["error"]) == ("oom", "OutOfMemoryError: CUDA out of memory.")
    assert record["extra_info"]["status"] == "ok"  # the library's own record is kept as it was
    other = failed_case_record(info, name="t", fullname="f::t", exception=ValueError("bad shape"))
    assert (other["status"], other["error"]) == ("error", "ValueError: bad shape")
    assert failed_case_record({"anything": 1}, name="t", fullname="f::t") is None  # not ours


def test_largest_batch_that_never_fits_records_the_smallest_failing_batch_as_oom():
    probe, _ = fake_probe(capacity=0)
    benchmark = SimpleNamespace(extra_info={})
    case = SuiteCase("largest_batch", "mlp", "fp32", None, "cpu", (("hidden", 8), ("in_features", 8), ("depth", 1)))
    found, m = benchmark_largest_batch(benchmark, case, SuiteSettings(budget_s=0.05), probe=probe, start=2, limit=8)
    info = benchmark.extra_info
    assert m is None and found.batch_size is None
    # Batch 2 failed, then the bisection tried 1: the record is at 1, the boundary.
    assert [p["batch_size"] for p in info["largest_batch"]["probes"]] == [2, 1]
    assert (info["status"], info["batch_size"], info["case_id"]) == ("oom", 1, "mlp-fp32-bs1-cpu")
    assert info["measurement"]["status"] == "oom" and info["error"] == "even batch 1 runs out of memory"
    assert info["largest_batch"]["batch_size"] is None


def test_plugin_turns_a_bad_option_into_a_usage_error(pytester):
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    pytester.makepyfile(test_x="def test_x(step_case): pass")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--bench-workloads=bert")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--bench-workloads: unknown 'bert'" in result.stderr.str()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_where_there_is_none_stops_the_run(pytester):
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    pytester.makepyfile(test_x="def test_x(step_case): pass")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--bench-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--bench-device cuda asked for, but CUDA is not available here" in result.stderr.str()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_pytest_benchmark_stats_cover_the_device_work(pytester):
    # A step with milliseconds of GPU work: timing only its launch would give far less than CUDA events.
    _, data = run_inline(pytester, '''
        from bench.run.suite import SuiteCase, SuiteSettings, benchmark_case

        def test_case(benchmark):
            case = SuiteCase("step_time", "mlp", "fp32", 4096, "cuda",
                             (("hidden", 4096), ("in_features", 4096), ("depth", 4)))
            assert benchmark_case(benchmark, case, SuiteSettings(budget_s=1.0)).ok
    ''')
    (bench,) = data["benchmarks"]
    info = bench["extra_info"]
    assert info["timer"] == "cuda_event" and info["pytest_benchmark_timing"]["synchronize"] == "torch.cuda.synchronize"
    assert bench["stats"]["median"] >= 0.9 * info["step_time_median_s"]
    assert bench["stats"]["iterations"] == info["pytest_benchmark_timing"]["steps_per_round"]
    assert info["pytest_benchmark_timing"]["library_to_pytest_benchmark"] > 0
    assert info["peak_allocated_bytes"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("ignore:Not saving anything, no benchmarks have been run")
def test_on_a_gpu_a_real_out_of_memory_case_reaches_bench_failed_cases(pytester):
    # 2**20 samples of 2**16 floats: a 256 GiB batch, beyond any single card.
    pytester.makeconftest("from bench.pytest_plugin import *  # noqa")
    _, data = run_inline(pytester, '''
        from bench.run.suite import SuiteCase, SuiteSettings, benchmark_case

        def test_case(benchmark):
            case = SuiteCase("step_time", "mlp", "fp32", 1 << 20, "cuda",
                             (("in_features", 1 << 16), ("hidden", 16), ("depth", 1)))
            m = benchmark_case(benchmark, case, SuiteSettings(budget_s=0.2))
            assert m.ok, m.error
    ''', ret=pytest.ExitCode.TESTS_FAILED)
    (failed,) = data[FAILED_CASES_KEY]
    assert failed["status"] == "oom" and "out of memory" in failed["error"].lower()
    assert failed["extra_info"]["device"] == "cuda" and data["benchmarks"] == []
