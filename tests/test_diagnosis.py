"""Diagnosis: plain-words labels for synthetic telemetry summaries and step-time regimes."""

from __future__ import annotations

import time

import pytest

from bench.analysis.diagnosis import diagnose
from bench.core.errors import BenchError
from bench.measure.telemetry.sampler import Telemetry
from bench.testing.fake_pynvml import make_fake_nvml


def summary(**fields):
    base = {"telemetry_source": "nvml", "kernel_active_pct_mean": None, "sm_activity_pct_mean": None,
            "tensor_activity_pct_mean": None, "dram_bw_pct_mean": None, "throttled_sample_fraction": 0.0,
            "power_capped": False, "thermally_throttled": False, "hw_slowdown": False,
            "sm_clock_mhz_median": 1980, "null_reasons": {}}
    base.update(fields)
    return base


def test_low_activity_with_flat_step_time_is_launch_bound():
    d = diagnose(summary(kernel_active_pct_mean=35, sm_activity_pct_mean=12, tensor_activity_pct_mean=3,
                         dram_bw_pct_mean=4), "flat")
    assert d.label == "launch-bound"
    assert d.basis == "telemetry+step_time" and not d.inferred_from_step_time_only
    assert "12%" in d.sentence


def test_high_sm_and_tensor_activity_with_linear_step_time_is_compute_bound():
    d = diagnose(summary(kernel_active_pct_mean=99, sm_activity_pct_mean=92, tensor_activity_pct_mean=65,
                         dram_bw_pct_mean=30), "linear")
    assert d.labels == ["compute-bound"]


def test_high_dram_bandwidth_with_low_tensor_activity_is_memory_bandwidth_bound():
    d = diagnose(summary(kernel_active_pct_mean=99, sm_activity_pct_mean=80, tensor_activity_pct_mean=8,
                         dram_bw_pct_mean=85), "linear")
    assert d.labels == ["memory-bandwidth-bound"]


def test_power_cap_bits_add_power_throttled_to_the_bottleneck():
    d = diagnose(summary(kernel_active_pct_mean=99, sm_activity_pct_mean=95, tensor_activity_pct_mean=70,
                         dram_bw_pct_mean=40, power_capped=True, throttled_sample_fraction=0.6,
                         sm_clock_mhz_median=1440), "linear")
    assert d.labels == ["compute-bound", "power-throttled"]
    assert d.label == "compute-bound, power-throttled"
    assert "power cap" in d.sentence and "60%" in d.sentence and "1440 MHz" in d.sentence


def test_thermal_bits_give_thermally_throttled():
    d = diagnose(summary(sm_activity_pct_mean=50, thermally_throttled=True, throttled_sample_fraction=0.3), None)
    assert "thermally throttled" in d.labels and "mixed" not in d.labels


def test_throttle_seen_in_too_few_samples_is_not_called_throttling():
    d = diagnose(summary(sm_activity_pct_mean=95, power_capped=True, throttled_sample_fraction=0.02), "linear")
    assert d.labels == ["compute-bound"]


def test_kernel_active_alone_cannot_tell_compute_from_memory_and_says_so():
    d = diagnose(summary(kernel_active_pct_mean=98), "linear")
    assert d.labels == ["compute-bound"] and "GPM" in d.sentence


def test_idle_gpu_while_step_time_grows_is_host_bound():
    d = diagnose(summary(kernel_active_pct_mean=30, sm_activity_pct_mean=10), "linear")
    assert d.labels == ["host-bound"]


def test_busy_gpu_with_flat_step_time_is_fixed_work_bound():
    d = diagnose(summary(sm_activity_pct_mean=90, tensor_activity_pct_mean=10, dram_bw_pct_mean=20), "flat")
    assert d.labels == ["fixed-work-bound"]


def test_without_telemetry_the_label_rests_on_step_time_and_says_so():
    cpu_summary = Telemetry.for_device("cpu").summary(steps=10, batch_size=4)
    d = diagnose(cpu_summary, "flat")
    assert d.label == "launch-bound"
    assert d.inferred_from_step_time_only and d.basis == "step_time_only"
    assert "step time only" in d.sentence and "not a CUDA device" in d.sentence
    assert diagnose(None, "linear").label == "compute-bound"


def test_no_telemetry_and_no_regime_is_undetermined():
    d = diagnose(None, None)
    assert d.label == "undetermined" and d.basis == "none"


def test_unknown_regime_is_rejected():
    with pytest.raises(BenchError):
        diagnose(None, "exponential")


def test_mfu_is_quoted_when_given():
    d = diagnose(summary(sm_activity_pct_mean=90, tensor_activity_pct_mean=60), "linear", mfu=0.42)
    assert "MFU 42%" in d.sentence and d.evidence["mfu"] == 0.42


def test_end_to_end_a_sampled_power_capped_busy_gpu_reads_as_compute_bound_and_throttled():
    fake = make_fake_nvml(utilization=(99, 60), clock_reasons=0x4, sm_clock_mhz=1440,
                          gpm_metrics={2: 93.0, 3: 40.0, 5: 71.0, 10: 35.0})
    tel = Telemetry.for_device("cuda:0", period_s=0.005, nvml=fake)
    with tel.measuring():
        time.sleep(0.25)  # GPM needs an interval of more than 100 ms
    s = tel.summary(steps=4, batch_size=256)
    tel.close()
    d = diagnose(s, "linear")
    assert d.labels == ["compute-bound", "power-throttled"]
    assert d.to_dict()["evidence"]["sm_activity_pct_mean"] == pytest.approx(93.0)


def test_flat_step_time_on_the_cpu_is_overhead_bound_not_launch_bound():
    from bench.analysis.diagnosis import diagnose

    cpu = diagnose(None, "flat", device_type="cpu")
    assert cpu.label == "overhead-bound" and cpu.inferred_from_step_time_only
    assert diagnose(None, "flat", device_type="cuda").label == "launch-bound"
    assert diagnose(None, "linear", device_type="cpu").label == "compute-bound"
