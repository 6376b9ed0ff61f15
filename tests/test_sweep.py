"""The sweep: OOM is a result, errors are recorded, the largest batch is found, results survive interruption."""

import json
import statistics

import pytest
import torch
from torch import nn

from bench.core.errors import BenchError
from bench.measure.workloads import Workload
from bench.records.sweep import Measurement, load_sweep
from bench.run.sweep import SweepConfig, run_sweep

FAST = dict(device="cpu", min_samples=6, min_time_s=0.005, budget_s=0.05, warmup_max_s=0.05, telemetry=False)


class MemoryLimited(nn.Module):
    """A linear model that 'runs out of memory' above a batch size, like a GPU would."""

    def __init__(self, limit, fail_with=None, fail_at=()):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.limit = limit
        self.fail_at = set(fail_at)
        self.fail_with = fail_with

    def forward(self, x):
        b = x.shape[0]
        if self.limit is not None and b > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {b} MiB")
        if b in self.fail_at:
            raise self.fail_with
        return self.lin(x)


def tiny_workload(limit=None, fail_with=None, fail_at=(), built=None):
    def build_model():
        if built is not None and torch.empty(0).device.type != "meta":  # not the size check's build on meta
            built.append(1)
        return MemoryLimited(limit, fail_with, fail_at)

    return Workload(
        name="tiny",
        build_model=build_model,
        make_batch=lambda b, device: (torch.randn(b, 4, device=device), torch.randint(0, 2, (b,), device=device)),
        loss_fn=nn.functional.cross_entropy,
    )


def test_out_of_memory_ends_growth_and_bisection_finds_the_exact_boundary(tmp_path):
    out = tmp_path / "sweep.json"
    result = run_sweep(SweepConfig(batch_sizes=[1, 2, 4, 8, 16, 32, 64, 128], **FAST),
                       workload=tiny_workload(limit=37), output=out)
    statuses = {p.batch_size: p.status for p in result.points}
    # 128 never tried; 37, the answer of the probes, confirmed by a full measurement
    assert statuses == {1: "ok", 2: "ok", 4: "ok", 8: "ok", 16: "ok", 32: "ok", 64: "oom", 37: "ok"}
    assert result.largest_batch_that_fits == 37
    assert [p.batch_size for p in result.probes] == [48, 40, 36, 38, 37]
    assert [p.kind for p in result.probes] == ["bisection"] * 5  # no capacity known on the CPU: no memory model
    assert "5 probe(s) (5 bisection)" in result.largest_batch_reason
    assert "confirmed by a full measurement at batch 37" in result.largest_batch_reason
    assert result.point(64).error.startswith("OutOfMemoryError")
    assert load_sweep(out).largest_batch_that_fits == 37


def test_a_point_that_raises_another_error_is_recorded_and_the_sweep_goes_on(tmp_path):
    wl = tiny_workload(fail_with=ValueError("Expected more than 1 value per channel when training"), fail_at={1})
    result = run_sweep(SweepConfig(batch_sizes=[1, 2, 4], **FAST), workload=wl)
    p1 = result.point(1)
    assert p1.status == "error" and "Expected more than 1 value per channel" in p1.error
    assert p1.samples_s == []
    assert [p.status for p in result.points if p.batch_size > 1] == ["ok", "ok"]
    assert result.largest_batch_that_fits is None
    assert "no out-of-memory" in result.largest_batch_reason


def test_no_out_of_memory_reports_that_the_limit_lies_beyond(tmp_path):
    result = run_sweep(SweepConfig(batch_sizes=[1, 2], **FAST), workload=tiny_workload())
    assert result.largest_batch_that_fits is None
    assert "beyond" in result.largest_batch_reason


def test_points_are_saved_as_they_complete_and_resume_skips_them(tmp_path):
    out = tmp_path / "sweep.json"
    built = []

    def interrupt_at_8(event, info):
        if event == "point" and info["batch_size"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepConfig(batch_sizes=[2, 4, 8, 16], **FAST), workload=tiny_workload(built=built),
                  output=out, progress=interrupt_at_8)
    saved = json.loads(out.read_text())
    assert [p["case"]["batch_size"] for p in saved["points"]] == [2, 4]
    assert saved["finished"] is False

    built.clear()
    result = run_sweep(SweepConfig(batch_sizes=[2, 4, 8, 16], **FAST), workload=tiny_workload(built=built),
                       output=out, resume=True)
    assert [p.batch_size for p in result.points] == [2, 4, 8, 16]
    assert len(built) == 2  # only 8 and 16 were measured again
    assert load_sweep(out).finished is True
    # the first two points kept their original raw samples
    assert load_sweep(out).point(2).samples_s == [float(v) for v in saved["points"][0]["samples_s"]]


def test_resume_refuses_a_file_measured_with_other_settings(tmp_path):
    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload(), output=out)
    before = out.read_text()
    with pytest.raises(BenchError, match="precision"):
        run_sweep(SweepConfig(batch_sizes=[2], precision="bf16", **FAST), workload=tiny_workload(), output=out,
                  resume=True)
    assert out.read_text() == before


def test_results_round_trip_through_json_and_dataframe(tmp_path):
    out = tmp_path / "sweep.json"
    result = run_sweep(SweepConfig(batch_sizes=[1, 2, 4], **FAST), workload=tiny_workload(limit=3), output=out)
    loaded = load_sweep(out)
    assert loaded.to_dict() == json.loads(out.read_text())
    assert [p.samples_s for p in loaded.points] == [p.samples_s for p in result.points]  # in batch-size order
    df = loaded.to_dataframe()
    assert list(df["batch_size"]) == [1, 2, 3, 4]  # 3: the largest batch that fits, measured to confirm it
    assert list(df["status"]) == ["ok", "ok", "ok", "oom"]
    ok = df[df.status == "ok"]
    assert (ok["median_s"] > 0).all()
    assert (ok["throughput_samples_per_s"] == ok["batch_size"] / ok["mean_s"]).all()  # n·B / Σt
    assert df.loc[df.status == "oom", "median_s"].isna().all()  # not measured is missing, never 0
    assert df.loc[df.status == "oom", "diagnosis"].isna().all() and ok["diagnosis"].notna().all()


def test_memory_on_cpu_is_null_with_a_reason():
    result = run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload())
    p = result.point(2)
    assert p.peak_allocated_bytes is None
    assert "CUDA" in p.null_reasons["peak_allocated_bytes"]


def test_builtin_mlp_sweep_measures_positive_step_times():
    # The budget counts warm-up: room enough for the minimum samples past a stray slow step on a busy machine.
    result = run_sweep(SweepConfig(workload="mlp", workload_args={"in_features": 32, "hidden": 32, "depth": 1},
                                   batch_sizes=[1, 4], **{**FAST, "budget_s": 0.2}))
    assert [p.status for p in result.points] == ["ok", "ok"]
    assert all(p.stats.median_s > 0 and p.stats.n >= 6 for p in result.points)
    assert result.analysis is not None and result.analysis["reference_batch"] == 1 and "verdict" not in result.analysis


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_sizes=[0]), "positive"),
    (dict(batch_sizes=[-4]), "positive"),
    (dict(min_batch=0), "minimum batch"),
    (dict(max_batch=1, min_batch=4), "below the minimum"),
    (dict(eps=0), "tolerance"),
])
def test_bad_sweep_settings_are_rejected(kwargs, message):
    with pytest.raises(BenchError, match=message):
        run_sweep(SweepConfig(**{**FAST, **kwargs}), workload=tiny_workload())


def test_default_plan_is_powers_of_two_up_to_the_device_default():
    assert SweepConfig(device="cpu").planned_batch_sizes()[-1] == 1024
    assert SweepConfig(min_batch=3, max_batch=40).planned_batch_sizes() == [4, 8, 16, 32]
    assert SweepConfig(batch_sizes=[8, 2, 8]).planned_batch_sizes() == [2, 8]


def test_points_carry_flops_diagnosis_and_telemetry_nulls_with_reasons():
    result = run_sweep(SweepConfig(workload="mlp", workload_args={"in_features": 32, "hidden": 32, "depth": 1},
                                   batch_sizes=[2, 8], **{**FAST, "telemetry": True}))
    for p in result.points:
        t = p.telemetry
        # Linear layers 32->32 and 32->10, forward 2*B*(32*32+32*10), backward twice that (weights + inputs)
        # except the first layer, whose input needs no gradient.
        assert t["flops_per_step"] > 0
        assert t["achieved_tflops"] > 0
        assert t["mfu"] is None and "peak" in p.null_reasons["mfu"]
        assert t["kernel_active_pct_mean"] is None and "CUDA" in p.null_reasons["kernel_active_pct_mean"]
        assert t["diagnosis"]["label"] and t["diagnosis"]["sentence"]
        assert t["diagnosis"]["basis"] != "telemetry"  # the CPU has no device telemetry to rest on
    assert result.point(8).telemetry["flops_per_step"] == 4 * result.point(2).telemetry["flops_per_step"]


def test_a_peak_override_gives_mfu_even_on_the_cpu():
    result = run_sweep(SweepConfig(workload="mlp", workload_args={"in_features": 32, "hidden": 32, "depth": 1},
                                   batch_sizes=[4], peak_tflops=0.5, **FAST))
    t = result.point(4).telemetry
    assert t["peak_tflops"] == 0.5 and "override" in t["peak_source"]
    assert t["mfu"] == pytest.approx(t["achieved_tflops"] / 0.5)


# ---- on a GPU ----------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class GiBPerSample(nn.Module):
    """Holds batch-size GiB of activations on the device: real out-of-memory at a known size."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        hold = torch.empty(x.shape[0] << 30, dtype=torch.uint8, device=x.device)
        return self.lin(x) + hold[:1].float() * 0


@pytest.mark.gpu
@needs_cuda
def test_real_cuda_sweep_times_with_events_reads_memory_and_survives_real_oom():
    wl = Workload(name="gib", build_model=GiBPerSample,
                  make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                  loss_fn=nn.functional.cross_entropy)
    free_gib = torch.cuda.mem_get_info()[0] / 2**30
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    result = run_sweep(SweepConfig(device="cuda", batch_sizes=sizes, min_samples=6, min_time_s=0.01,
                                   budget_s=0.2, warmup_max_s=1.0), workload=wl)
    ok = result.ok_points()
    assert ok and all(p.timer == "cuda_event" for p in ok)
    assert all(p.peak_allocated_bytes >= p.batch_size << 30 for p in ok)
    assert any(p.status == "oom" for p in result.points)
    # the largest batch that fits is within a few GiB of the free memory, and a small batch runs after the OOM
    assert free_gib - 8 <= result.largest_batch_that_fits <= free_gib
    again = run_sweep(SweepConfig(device="cuda", batch_sizes=[1], min_samples=6, min_time_s=0.01, budget_s=0.2),
                      workload=wl)
    assert again.point(1).ok


@pytest.mark.gpu
@needs_cuda
def test_real_cuda_sweep_carries_nvml_telemetry_and_energy():
    result = run_sweep(SweepConfig(device="cuda", workload="mlp", workload_args={"hidden": 4096, "in_features": 4096},
                                   batch_sizes=[4096], min_samples=10, min_time_s=1.0, budget_s=3.0))
    t = result.point(4096).telemetry
    if "pynvml" in result.point(4096).null_reasons.get("kernel_active_pct_mean", ""):
        pytest.skip("nvidia-ml-py is not installed here")
    assert t["kernel_active_pct_mean"] > 50
    assert t["energy_per_sample_j"] is None or t["energy_per_sample_j"] > 0
    assert t["flops_per_step"] > 0 and t["achieved_tflops"] > 0
    assert result.environment.get("hash")


def test_allocator_failures_of_cublas_and_cudnn_count_as_out_of_memory():
    from bench.core.devices import is_oom

    assert is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ALLOCATED"))
    assert not is_oom(RuntimeError("Expected more than 1 value per channel when training"))


def test_results_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    import os

    out = tmp_path / "sweep.json"
    old = os.umask(0o022)
    try:
        run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload(), output=out)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_resume_measures_failed_points_again_but_keeps_good_ones(tmp_path):
    out = tmp_path / "sweep.json"
    wl = tiny_workload(fail_with=RuntimeError("device busy"), fail_at={4})
    first = run_sweep(SweepConfig(batch_sizes=[2, 4], **FAST), workload=wl, output=out)
    assert first.point(4).status == "error"
    built = []
    second = run_sweep(SweepConfig(batch_sizes=[2, 4], **FAST), workload=tiny_workload(built=built), output=out,
                       resume=True)
    assert second.point(4).status == "ok" and second.point(2).samples_s == first.point(2).samples_s
    assert len(built) == 1


def test_resume_refuses_a_file_from_other_hardware(tmp_path, monkeypatch):
    import bench.run.sweep as sweep_module

    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload(), output=out)
    monkeypatch.setattr(sweep_module, "environment_info", lambda device: {"hash": "another-machine"})
    with pytest.raises(BenchError, match="other hardware or software"):
        run_sweep(SweepConfig(batch_sizes=[2, 4], **FAST), workload=tiny_workload(), output=out, resume=True)


def test_resume_refuses_other_measurement_settings(tmp_path):
    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload(), output=out)
    with pytest.raises(BenchError, match="budget_s"):
        run_sweep(SweepConfig(batch_sizes=[2, 4], **{**FAST, "budget_s": 0.1}), workload=tiny_workload(),
                  output=out, resume=True)


# ---- limits and stopping rules from the library ---------------------------------------------------


class FixedCount:
    """A stopping rule written against the documented protocol (bench.measure.timing.StoppingRule), in
    user code: exactly `count` samples per point."""

    name = "fixed"

    def __init__(self, count):
        self.count = count

    def should_stop(self, samples, elapsed_s, block_medians=None):
        return "fixed_count" if len(samples) >= self.count else None

    def max_more_samples(self, n_taken):
        return self.count - n_taken

    def to_dict(self):
        return {"name": self.name, "count": self.count}


class BudgetOnly:
    """The least a rule must have: a name and should_stop. It never stops a point; the budget does."""

    name = "budget_only"

    def should_stop(self, samples, elapsed_s, block_medians=None):
        return None


def test_a_custom_fixed_count_rule_measures_every_point_of_a_sweep(tmp_path):
    out = tmp_path / "sweep.json"
    config = SweepConfig(batch_sizes=[2, 4], stopping_rule=FixedCount(7), **{**FAST, "budget_s": 60.0})
    result = run_sweep(config, workload=tiny_workload(), output=out)
    assert [(p.stop_reason, len(p.samples_s)) for p in result.points] == [("fixed_count", 7), ("fixed_count", 7)]
    saved = load_sweep(out).config["stopping_rule"]
    assert (saved["name"], saved["count"], saved["budget_s"]) == ("fixed", 7, 60.0)


def test_a_custom_budget_only_rule_runs_each_point_to_its_budget():
    result = run_sweep(SweepConfig(batch_sizes=[2], stopping_rule=BudgetOnly(), **FAST), workload=tiny_workload())
    p = result.point(2)
    assert p.stop_reason == "budget" and len(p.samples_s) >= 1
    assert "time budget ran out before the 'budget_only' stopping rule was met" in p.warnings
    assert result.config["stopping_rule"]["name"] == "budget_only"


def test_a_rule_is_chosen_by_name_too():
    assert SweepConfig(stopping_rule="count").rule().to_dict() == {"name": "count", "count": 20}
    assert SweepConfig(ci_target=0.05).rule().to_dict() == {"name": "ci", "ci_target": 0.05}
    with pytest.raises(BenchError, match="unknown stopping rule 'nope'"):
        SweepConfig(stopping_rule="nope").validate()


def test_resume_refuses_a_file_measured_with_another_rule(tmp_path):
    out = tmp_path / "sweep.json"
    fast = {**FAST, "budget_s": 60.0}
    run_sweep(SweepConfig(batch_sizes=[2], stopping_rule=FixedCount(7), **fast), workload=tiny_workload(), output=out)
    again = run_sweep(SweepConfig(batch_sizes=[2, 4], stopping_rule=FixedCount(7), **fast), workload=tiny_workload(),
                      output=out, resume=True)
    assert [p.batch_size for p in again.points] == [2, 4]
    with pytest.raises(BenchError, match="stopping_rule.count=7, not 9"):
        run_sweep(SweepConfig(batch_sizes=[2, 4], stopping_rule=FixedCount(9), **fast), workload=tiny_workload(),
                  output=out, resume=True)


def test_the_sweep_defaults_are_the_measuring_defaults():
    from bench.core.budget import MEASURE_DEFAULTS

    c = SweepConfig()
    assert (c.budget_s, c.min_samples, c.ci_target, c.warmup_max_s) == (
        MEASURE_DEFAULTS["budget_s"], MEASURE_DEFAULTS["min_samples"], MEASURE_DEFAULTS["ci_target"],
        MEASURE_DEFAULTS["warmup_max_s"])
    assert c.to_dict()["min_time_s"] == MEASURE_DEFAULTS["min_time_s"]


def test_a_small_budget_alone_works_from_the_library():
    config = SweepConfig(budget_s=0.2)
    config.validate()
    assert config.to_dict()["min_time_s"] == 0.2 and config.to_dict()["stopping_rule"]["min_time_s"] == 0.2
    result = run_sweep(SweepConfig(batch_sizes=[2], device="cpu", budget_s=0.05, warmup_max_s=0.05, telemetry=False),
                       workload=tiny_workload())
    assert result.point(2).ok and result.config["min_time_s"] == 0.05


def test_an_explicit_minimum_time_above_the_budget_is_rejected_in_one_line():
    with pytest.raises(BenchError, match=r"^minimum time 1 s exceeds the time budget 0.5 s: no point could stop on its rule$"):
        SweepConfig(min_time_s=1.0, budget_s=0.5).validate()


def test_telemetry_turned_off_leaves_every_telemetry_field_null_with_that_reason():
    off = run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload()).point(2)
    on = run_sweep(SweepConfig(batch_sizes=[2], **{**FAST, "telemetry": True}), workload=tiny_workload()).point(2)
    assert set(off.telemetry) == set(on.telemetry)  # one null object: the same fields either way
    assert off.telemetry["power_w_mean"] is None
    assert off.null_reasons["power_w_mean"] == "telemetry turned off for this sweep"


# ---- out-of-memory as CUDA libraries report it (issue 10, item 1) ------------------------------------


@pytest.mark.parametrize("message", [
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",  # cuDNN 9, a convolution at the limit
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",
    "cuDNN Frontend error: [cudnn_frontend] Error: CUDNN_STATUS_ALLOC_FAILED",
    "cuFFT error: CUFFT_ALLOC_FAILED",
    "CUDA error: out of memory (cudaErrorMemoryAllocation)",
])
def test_cuda_library_allocation_failures_count_as_out_of_memory(message):
    from bench.core.devices import is_oom

    assert is_oom(RuntimeError(message))


def test_an_accelerator_error_carrying_cuda_memory_allocation_is_out_of_memory_and_others_are_not():
    from bench.core.devices import is_oom

    oom = torch.AcceleratorError("CUDA error: the launch ran out of resources")
    oom.error_code = 2  # cudaErrorMemoryAllocation, as torch sets it
    assert is_oom(oom)
    illegal = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
    illegal.error_code = 700
    assert not is_oom(illegal)
    assert not is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"))


def test_a_cudnn9_allocation_failure_bounds_the_search_instead_of_ending_it():
    cudnn_oom = RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED")

    class CudnnLimited(MemoryLimited):
        def forward(self, x):
            if x.shape[0] > 37:
                raise cudnn_oom
            return self.lin(x)

    wl = Workload(name="conv-at-the-limit", build_model=lambda: CudnnLimited(None),
                  make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                  loss_fn=nn.functional.cross_entropy)
    result = run_sweep(SweepConfig(batch_sizes=[8, 16, 32, 64, 128], **FAST), workload=wl)
    assert result.point(64).status == "oom" and result.point(128) is None  # larger sizes not tried
    assert result.largest_batch_that_fits == 37
    assert all(p.out_of_memory or p.fits for p in result.probes)


# ---- memory: peaks after warm-up, allocator retries, the largest batch (issue 10, items 2 and 10) ------


class FakeAllocator:
    """The caching allocator as bench.measure.memory reports it, driven by a fake workload: each step
    at batch B needs memory(B) units (plus `warmup_extra` in a step's first two calls, as cuDNN's
    autotuning workspaces do, and `later_extra` from its third call on, as a long run's fragmentation
    does); more than `capacity` is out of memory."""

    available = True
    reason = None

    def __init__(self, memory, capacity, warmup_extra=0, later_extra=0, retry_after_call=None):
        self.memory, self.capacity = memory, capacity
        self.warmup_extra, self.later_extra, self.retry_after_call = warmup_extra, later_extra, retry_after_call
        self.calls = self.peak = self.retries = 0

    def new_step(self):
        self.calls = 0

    def run(self, b):
        self.calls += 1
        need = self.memory(b) + (self.warmup_extra if self.calls <= 2 else self.later_extra)
        if need > self.capacity:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {need} units")
        self.peak = max(self.peak, need)
        if self.retry_after_call is not None and self.calls > self.retry_after_call and self.calls % 5 == 0:
            self.retries += 1

    def reset_peaks(self):
        self.peak = 0

    def peaks(self):
        return self.peak, self.peak

    def alloc_retries(self):
        return self.retries

    def capacity_bytes(self):
        return self.capacity


def allocator_workload(fake):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)
            fake.new_step()

        def forward(self, x):
            fake.run(x.shape[0])
            return self.lin(x)

    return Workload(name="fake-memory", build_model=Model,
                    make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                    loss_fn=nn.functional.cross_entropy)


@pytest.fixture
def fake_allocator(monkeypatch):
    import bench.run.sweep as sweep_module

    def install(fake):
        monkeypatch.setattr(sweep_module, "allocator_memory", lambda device: fake)
        return fake

    return install


def test_peak_memory_is_of_the_timed_steps_and_the_warm_up_peak_is_kept_apart(fake_allocator):
    fake = fake_allocator(FakeAllocator(lambda b: 100 * b, capacity=10**9, warmup_extra=5000))
    p = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=allocator_workload(fake)).point(4)
    assert p.peak_allocated_bytes == p.peak_reserved_bytes == 400  # the autotuning workspace is not in it
    assert p.warmup_peak_allocated_bytes == p.warmup_peak_reserved_bytes == 5400
    assert "peak_allocated_bytes" not in p.null_reasons


def test_allocator_retries_are_counted_over_the_timed_steps_and_warned_about(fake_allocator):
    quiet = fake_allocator(FakeAllocator(lambda b: b, capacity=10**9))
    p = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=allocator_workload(quiet)).point(4)
    assert p.num_alloc_retries == 0 and not any("retried" in w for w in p.warnings)
    retrying = fake_allocator(FakeAllocator(lambda b: b, capacity=10**9, retry_after_call=0))
    p = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=allocator_workload(retrying)).point(4)
    assert 0 < p.num_alloc_retries < retrying.retries  # the warm-up's retries are not counted
    assert any("retried" in w and "allocation(s) during the timed steps" in w for w in p.warnings)


def test_memory_fields_are_null_with_a_reason_on_the_cpu():
    p = run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload()).point(2)
    for k in ("peak_allocated_bytes", "warmup_peak_reserved_bytes", "num_alloc_retries"):
        assert getattr(p, k) is None and "only on CUDA" in p.null_reasons[k]


SWEEP = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


def test_the_memory_model_finds_the_exact_largest_batch_in_a_few_probes_and_a_full_measurement_confirms_it(
        tmp_path, fake_allocator):
    fake = fake_allocator(FakeAllocator(lambda b: 1_500 + 40 * b, capacity=80_000))  # truth: 1962
    out = tmp_path / "sweep.json"
    result = run_sweep(SweepConfig(batch_sizes=SWEEP, **FAST), workload=allocator_workload(fake), output=out)
    assert result.largest_batch_that_fits == 1962
    assert 1 <= len(result.probes) <= 4 and "model" in [p.kind for p in result.probes]
    assert all(p.peak_reserved_bytes == 1_500 + 40 * p.batch_size for p in result.probes if p.fits)
    assert result.point(1962).ok  # the answer, measured in full
    reason = result.largest_batch_reason
    assert "after the sweep's 9 measured point(s)" in reason and "memory-model" in reason
    assert "confirmed by a full measurement at batch 1962" in reason
    saved = load_sweep(out)
    assert [(p.kind, p.peak_reserved_bytes) for p in saved.probes] == [(p.kind, p.peak_reserved_bytes)
                                                                       for p in result.probes]


class TorchWordedAllocator(FakeAllocator):
    """FakeAllocator in bytes, out of memory in torch's words, with `outside` bytes of the capacity
    beyond the allocator's reach (bench.testing.fake_cuda formats the message)."""

    def __init__(self, memory, capacity, outside):
        super().__init__(memory, capacity - outside)
        self.total, self.outside = capacity, outside

    def run(self, b):
        from bench.testing.fake_cuda import format_size

        self.calls += 1
        need = self.memory(b)
        if need > self.capacity:
            held = self.capacity - 30 * 2**20
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {format_size(need - held)}. GPU 0 has a total capacity of "
                f"{format_size(self.total)} of which {format_size(self.capacity - held)} is free. Of the allocated "
                f"memory {format_size(held)} is allocated by PyTorch, and 0 bytes is reserved by PyTorch but "
                "unallocated.")
        self.peak = max(self.peak, need)

    def capacity_bytes(self):
        return self.total  # what the search is told: more than the allocator can reach


def test_the_reason_says_what_the_out_of_memory_message_taught_the_search(fake_allocator):
    GIB = 2**30
    fake = fake_allocator(TorchWordedAllocator(lambda b: GIB + 40 * 2**20 * b, capacity=80 * GIB, outside=3 * GIB))
    result = run_sweep(SweepConfig(batch_sizes=[256, 512, 1024, 2048], **FAST), workload=allocator_workload(fake))
    truth = (77 * GIB - GIB) // (40 * 2**20)  # 1945
    assert result.largest_batch_that_fits == truth and len(result.probes) <= 4
    assert "an out-of-memory message said the allocator can reach 77.00 GiB (3.00 GiB of the device's capacity " \
           "is outside it)" in result.largest_batch_reason


def test_a_run_cut_off_before_the_confirmation_keeps_the_largest_batch_found_so_far(tmp_path, fake_allocator):
    fake = fake_allocator(FakeAllocator(lambda b: 1_500 + 40 * b, capacity=80_000))  # truth: 1962
    out = tmp_path / "sweep.json"
    seen = []

    def progress(event, info):
        if event == "probe":  # the file as it stands before each probe
            saved = load_sweep(out)
            seen.append((saved.largest_batch_that_fits, saved.largest_batch_reason))
        if event == "confirm":
            raise KeyboardInterrupt  # the job is cut off before the full measurement

    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepConfig(batch_sizes=SWEEP, **FAST), workload=allocator_workload(fake), output=out,
                  progress=progress)
    assert seen[0][0] == 1024 and seen[0][1].startswith("provisional: batch 1024 fits and 2048 does not")
    saved = load_sweep(out)
    assert saved.largest_batch_that_fits == 1962
    assert saved.largest_batch_reason.startswith("provisional: batch 1962 fits a 2-step probe and 1963 does not")
    assert "not yet confirmed by a full measurement" in saved.largest_batch_reason


def test_a_batch_that_passes_its_short_probe_but_not_a_full_measurement_is_backed_off_from(fake_allocator):
    # Steps after the second need 20 units more: a 2-step probe fits up to 180, a full measurement to 176.
    fake = fake_allocator(FakeAllocator(lambda b: 100 + 5 * b, capacity=1000, later_extra=20))
    result = run_sweep(SweepConfig(batch_sizes=[8, 16, 32, 64, 128, 256], **FAST), workload=allocator_workload(fake))
    assert result.largest_batch_that_fits == 176
    assert result.point(180).status == "oom" and result.point(176).ok and result.point(177).status == "oom"
    assert "ran out of memory in a full measurement" in result.largest_batch_reason
    assert result.largest_batch_reason.startswith("batch 177 runs out of memory in a full measurement")


def _timed_by_formula(monkeypatch, fake, slow: bool):
    """Points measured by formula instead of the clock (this test is about the verdict, not the timer):
    20 µs per sample with 1% noise (seeded); twice that when its memory is within 10% of the capacity
    and `slow` (cuDNN's autotuning has dropped the fast algorithms for want of room)."""
    import numpy as np

    import bench.run.sweep as sweep_module

    rng = np.random.default_rng(3)

    def measure(workload, config, b, device, **kw):
        m = Measurement(case=config.case(b, workload.name))
        if fake.memory(b) > fake.capacity:
            m.status, m.error = "oom", "OutOfMemoryError: CUDA out of memory"
            return m
        per_sample = 40e-6 if slow and fake.memory(b) >= 0.9 * fake.capacity else 20e-6
        m.samples_s = list(b * per_sample * (1 + 0.01 * rng.standard_normal(60)))
        m.block_sizes, m.block_medians_s = [20] * 3, [statistics.median(m.samples_s[i:i + 20]) for i in (0, 20, 40)]
        m.peak_reserved_bytes = m.warmup_peak_reserved_bytes = fake.memory(b)
        return m

    monkeypatch.setattr(sweep_module, "measure_point", measure)


@pytest.mark.parametrize("slow", [True, False])
def test_a_largest_batch_slowed_near_the_memory_limit_is_reported_as_a_possible_false_knee(
        monkeypatch, fake_allocator, slow):
    fake = fake_allocator(FakeAllocator(lambda b: 100 + 10 * b, capacity=1000))  # truth: 90
    _timed_by_formula(monkeypatch, fake, slow)
    result = run_sweep(SweepConfig(batch_sizes=[16, 32, 64, 128], **FAST), workload=allocator_workload(fake))
    assert result.largest_batch_that_fits == 90 and result.point(90).ok
    said = [w for w in result.point(90).warnings if "false knee" in w]
    if slow:
        assert len(said) == 1 and said[0].startswith("time per sample at batch 90 is 10")  # about +100%
        assert "above batch 64's while its peak memory is 100% of what the allocator could reach" in said[0]
        assert said[0] in result.largest_batch_reason
    else:
        assert said == [] and "false knee" not in result.largest_batch_reason


def test_turning_the_search_off_still_reports_the_bracket(fake_allocator):
    fake = fake_allocator(FakeAllocator(lambda b: 1_500 + 40 * b, capacity=80_000))
    result = run_sweep(SweepConfig(batch_sizes=SWEEP, find_largest=False, **FAST), workload=allocator_workload(fake))
    assert result.probes == [] and result.largest_batch_that_fits == 1024
    assert result.largest_batch_reason == "search turned off: batch 1024 fits and 2048 does not"


# ---- honest counts (issue 10, item 11) -----------------------------------------------------------------


def scaler_step(scale_at):
    """A TrainStep whose fp16 loss scale after its n-th step is scale_at(n) (a drop is a skipped step)."""
    from bench.measure.step import ScaleDropCounter, TrainStep

    class ScalerStep(TrainStep):
        def _build(self, seed):
            super()._build(seed)
            self.calls = 0
            self._scale_drops = ScaleDropCounter(2.0 ** 16, "cpu")

        def _step(self):
            super()._step()
            self.calls += 1
            self._scale_drops.observe(torch.tensor(float(scale_at(self.calls))))

    return ScalerStep


def test_skipped_steps_count_only_the_timed_steps(monkeypatch):
    import bench.measure.step as step_module

    # fp16's GradScaler skips its first steps while the loss scale settles: here, the first three.
    monkeypatch.setattr(step_module, "TrainStep", scaler_step(lambda calls: 2.0 ** (16 - min(calls, 3))))
    p = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=tiny_workload()).point(4)
    assert p.skipped_steps == 0


def test_under_compile_flops_are_counted_on_the_eager_model_and_the_compiled_one_never_runs_after_timing(
        monkeypatch):
    compiled_calls = []

    class Compiled(nn.Module):  # what torch.compile returns, as FlopCounterMode sees it: nothing counted
        def __init__(self, module):
            super().__init__()
            self.inner = module

        def forward(self, x):
            compiled_calls.append(1)
            with torch.no_grad():
                out = self.inner(x)
            return out.detach().requires_grad_()  # no counted backward either

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Compiled(module))
    p = run_sweep(SweepConfig(batch_sizes=[4], compile=True, **FAST), workload=tiny_workload()).point(4)
    assert p.ok
    # nn.Linear(4, 2) at batch 4: forward 2·4·4·2, the weight's gradient as much (the input needs none)
    assert p.telemetry["flops_per_step"] == 2 * (2 * 4 * 4 * 2)
    assert p.telemetry["flops_counted"].endswith("counted on the model before torch.compile")
    assert len(compiled_calls) == len(p.warmup_samples_s) + len(p.samples_s)  # no step after the timing


def test_skipped_fp16_steps_are_in_the_terminal_verdict_not_only_the_report(monkeypatch):
    import bench.measure.step as step_module
    from bench.present.steptime import sweep_verdict

    # A loss scale that drops at every step: every timed step is skipped. (65536 / steps, not a halving:
    # warm-up may run thousands of steps, and 2**-k underflows to 0 in float32, where drops stop.)
    monkeypatch.setattr(step_module, "TrainStep", scaler_step(lambda calls: 2.0 ** 16 / (1 + calls)))
    result = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=tiny_workload())
    p = result.point(4)
    assert p.skipped_steps == len(p.samples_s) > 0
    said = [s for s in sweep_verdict(result) if "gradient scaler skipped" in s]
    assert said == [f"The fp16 gradient scaler skipped the optimizer update (inf/NaN gradients) in timed steps: "
                    f"{p.skipped_steps} of {len(p.samples_s)} at batch 4; those steps did less work than a training "
                    "step, so the step times there are not all of full steps."]


# ---- one sampler per point, host syncs, threads (issue 10, items 8, 9; 15) -----------------------------


def test_a_point_runs_one_sampler_thread_started_before_warm_up(monkeypatch, counted_threads):
    import threading

    import bench.measure.telemetry.sampler as sampler
    import bench.run.sweep as sweep_module
    from bench.testing.fake_pynvml import make_fake_nvml

    nvml = make_fake_nvml()
    nvml.nvmlInit()
    monkeypatch.setattr(sweep_module, "_telemetry",
                        lambda config, device: sampler.NvmlTelemetry(nvml, nvml.nvmlDeviceGetHandleByIndex(0), 0.005))
    running_at_first_step = []

    class Watched(MemoryLimited):
        def forward(self, x):
            if not running_at_first_step:
                running_at_first_step.append(any(t.name == "bench-telemetry-sampler" for t in threading.enumerate()))
            return super().forward(x)

    wl = Workload(name="watched", build_model=lambda: Watched(None),
                  make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                  loss_fn=nn.functional.cross_entropy)
    p = run_sweep(SweepConfig(batch_sizes=[4], **{**FAST, "telemetry": True}), workload=wl).point(4)
    assert len(p.block_sizes) > 1 and len(counted_threads) == 1
    assert running_at_first_step == [True]
    assert p.telemetry["n_blocks"] == len(p.block_sizes)


def test_a_host_sync_in_the_step_becomes_a_warning_on_the_point(monkeypatch):
    import warnings
    from functools import partial

    import bench.run.sweep as sweep_module
    from bench.measure.timing import find_host_syncs

    class DebugMode:  # torch.cuda's sync-debug switch, as find_host_syncs uses it
        mode = 0

        def get_sync_debug_mode(self):
            return self.mode

        def set_sync_debug_mode(self, mode):
            self.mode = {"default": 0, "warn": 1}.get(mode, mode)

    cuda = DebugMode()
    monkeypatch.setattr(sweep_module, "sync_check_for", lambda device, **kw: partial(find_host_syncs, cuda=cuda, **kw))

    class ItemCalling(MemoryLimited):
        def forward(self, x):
            if cuda.mode == 1:
                warnings.warn("called a synchronizing CUDA operation")  # what loss.item() does in "warn" mode
            return super().forward(x)

    wl = Workload(name="item", build_model=lambda: ItemCalling(None),
                  make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                  loss_fn=nn.functional.cross_entropy)
    p = run_sweep(SweepConfig(batch_sizes=[4], **FAST), workload=wl).point(4)
    assert any("makes the host wait for the device" in w and "tests/test_sweep.py:" in w for w in p.warnings)


def test_threads_are_set_for_the_run_recorded_and_put_back():
    seen = []

    class Counting(MemoryLimited):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    wl = Workload(name="threads", build_model=lambda: Counting(None),
                  make_batch=lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                  loss_fn=nn.functional.cross_entropy)
    before = torch.get_num_threads()
    result = run_sweep(SweepConfig(batch_sizes=[2], threads=2, **FAST), workload=wl)
    assert set(seen) == {2} and result.config["threads"] == 2
    assert torch.get_num_threads() == before
    with pytest.raises(BenchError, match="threads must be a positive integer"):
        SweepConfig(threads=0).validate()


# ---- on a GPU: the real-card side of issue 10's items 1, 2, 9 and 10 ----------------------------------


@pytest.mark.gpu
@needs_cuda
def test_real_out_of_memory_in_a_convolution_is_recognised():
    from bench.core.devices import is_oom

    free, _ = torch.cuda.mem_get_info()
    side = int((free / (16 * 64 * 4)) ** 0.5)  # a 64-channel fp32 input using a sixteenth of free memory
    x = torch.empty((1, 64, side, side), device="cuda")
    conv = nn.Conv2d(64, 4096, 3, padding=1).cuda()  # its output needs 64x the input: more than the device holds
    with pytest.raises(Exception) as e:
        conv(x)
    assert is_oom(e.value), repr(e.value)
    del x, conv
    torch.cuda.empty_cache()


class BigWarmUp(nn.Module):
    """Holds 1 GiB more during its first two steps only, as cuDNN's autotuning workspaces do."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls <= 2:
            hold = torch.empty(1 << 30, dtype=torch.uint8, device=x.device)
            return self.lin(x) + hold[:1].float() * 0
        return self.lin(x)


def _tiny_batch(b, d):
    return torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)


@pytest.mark.gpu
@needs_cuda
def test_real_peak_memory_excludes_warm_up_and_counts_allocator_retries():
    wl = Workload(name="big-warm-up", build_model=BigWarmUp, make_batch=_tiny_batch, loss_fn=nn.functional.cross_entropy)
    p = run_sweep(SweepConfig(device="cuda", batch_sizes=[8], min_samples=6, min_time_s=0.05, budget_s=0.5),
                  workload=wl).point(8)
    assert p.ok and p.warmup_peak_allocated_bytes >= 1 << 30
    assert p.peak_allocated_bytes < 1 << 28
    assert p.num_alloc_retries == 0


@pytest.mark.gpu
@needs_cuda
def test_real_host_sync_in_a_loss_is_found_and_a_clean_step_has_none():
    def loss_with_item(out, y):
        loss = nn.functional.cross_entropy(out, y)
        loss.item()  # a host sync in every step
        return loss

    syncing = Workload(name="item", build_model=lambda: MemoryLimited(None), make_batch=_tiny_batch,
                       loss_fn=loss_with_item)
    clean = Workload(name="clean", build_model=lambda: MemoryLimited(None), make_batch=_tiny_batch,
                     loss_fn=nn.functional.cross_entropy)
    cfg = dict(device="cuda", batch_sizes=[8], min_samples=6, min_time_s=0.05, budget_s=0.5)
    assert any("makes the host wait for the device" in w for w in run_sweep(SweepConfig(**cfg), workload=syncing).point(8).warnings)
    assert not any("host wait" in w for w in run_sweep(SweepConfig(**cfg), workload=clean).point(8).warnings)


class MiBPerSample(nn.Module):
    """Holds 64 MiB of activations per sample: peak memory linear in the batch, OOM at a known size."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        hold = torch.empty(x.shape[0] << 26, dtype=torch.uint8, device=x.device)
        return self.lin(x) + hold[:1].float() * 0


@pytest.mark.gpu
@needs_cuda
def test_real_largest_batch_is_found_by_the_memory_model_and_confirmed_by_a_full_measurement():
    wl = Workload(name="mib", build_model=MiBPerSample, make_batch=_tiny_batch, loss_fn=nn.functional.cross_entropy)
    free, _ = torch.cuda.mem_get_info()
    sizes = [2 ** k for k in range(4, 20) if 2 ** (k - 1) << 26 <= 2 * free]
    result = run_sweep(SweepConfig(device="cuda", batch_sizes=sizes, min_samples=6, min_time_s=0.02, budget_s=0.2,
                                   telemetry=False), workload=wl)
    largest = result.largest_batch_that_fits
    assert largest is not None and result.point(largest).ok  # measured in full
    assert (largest << 26) <= free and ((largest + 2) << 26) > free - (1 << 30)
    fits = [p for p in result.probes if p.fits]
    assert fits and all(p.peak_reserved_bytes >= p.batch_size << 26 for p in fits)
    assert "model" in [p.kind for p in result.probes] and len(result.probes) <= 6, result.largest_batch_reason


def test_resume_refuses_a_file_whose_points_were_warmed_up_another_way(tmp_path):
    out = tmp_path / "sweep.json"
    run_sweep(SweepConfig(batch_sizes=[2], **FAST), workload=tiny_workload(), output=out)
    data = json.loads(out.read_text())
    data["config"]["warmup_rule"] = {"min_steps": 2, "window": 3, "tolerance": 0.05, "max_steps": 200, "max_time_s": 30.0}
    out.write_text(json.dumps(data))
    with pytest.raises(BenchError, match="warmup_rule"):
        run_sweep(SweepConfig(batch_sizes=[2, 4], **FAST), workload=tiny_workload(), output=out, resume=True)
