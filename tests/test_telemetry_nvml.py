"""Telemetry sampler and per-point summary, on CPU through the fake pynvml module."""

from __future__ import annotations

import json
import sys
import time

import pytest

from bench.measure.telemetry.nvml import GPM_MIN_INTERVAL_S, decode_clock_event_reasons
from bench.measure.telemetry.sampler import (
    GPM_PERIOD_S,
    SUMMARY_FIELDS,
    Block,
    GpmInterval,
    NvmlTelemetry,
    Sample,
    Telemetry,
    summarize_blocks,
)
from bench.testing.fake_pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeDevice,
    make_fake_nvml,
)

PERIOD_S = 0.005
# Long enough for one GPM interval of GPM_PERIOD_S (NVML wants > 100 ms between GPM samples).
GPM_BLOCK_S = GPM_PERIOD_S + 0.03


@pytest.fixture(autouse=True)
def _no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


# The fake's energy counter answers a new value at every call unless a refresh period is configured: a
# refresh every millisecond, given rather than measured so the configured readings are not spent on it.
FAKE_ENERGY_REFRESH_S = 0.001


def measure(fake, blocks=1, block_s=0.03, steps=None, batch_size=None, device="cuda:0",
            energy_refresh_s=FAKE_ENERGY_REFRESH_S):
    tel = Telemetry.for_device(device, period_s=PERIOD_S, nvml=fake, energy_refresh_s=energy_refresh_s)
    try:
        for _ in range(blocks):
            with tel.measuring():
                time.sleep(block_s)
        return tel.summary(steps=steps, batch_size=batch_size)
    finally:
        tel.close()


def assert_all_none_with_reasons(summary, must_mention):
    for key in SUMMARY_FIELDS:
        if key in ("steps", "batch_size"):
            continue
        assert summary[key] is None, key
        assert must_mention in summary["null_reasons"][key], (key, summary["null_reasons"][key])


# --- normal readings ---------------------------------------------------------------------------

def test_constant_readings_give_their_values_as_means_in_named_units():
    fake = make_fake_nvml(utilization=(73, 41), power_mw=412_500, power_instant_mw=455_000, sm_clock_mhz=1755,
                          memory_used_bytes=3 * 2**30, temperature_c=61)
    s = measure(fake, steps=10, batch_size=8, block_s=GPM_BLOCK_S)
    assert s["telemetry_source"] == "nvml"
    assert s["kernel_active_pct_mean"] == 73
    assert s["mem_ctrl_pct_mean"] == 41
    assert s["power_w_mean"] == pytest.approx(412.5)
    assert s["power_instant_w_max"] == pytest.approx(455.0)
    assert s["sm_clock_mhz_median"] == 1755
    assert s["memory_used_bytes_max"] == 3 * 2**30
    assert s["temperature_c_max"] == 61
    assert s["sm_activity_pct_mean"] == pytest.approx(60.0)
    assert s["sm_occupancy_pct_mean"] == pytest.approx(30.0)
    assert s["tensor_activity_pct_mean"] == pytest.approx(40.0)
    assert s["dram_bw_pct_mean"] == pytest.approx(25.0)
    assert s["n_samples"] >= 2 and s["n_gpm_intervals"] >= 1
    assert s["null_reasons"] == {}


def test_varying_readings_average_to_the_mean_of_the_kept_series():
    fake = make_fake_nvml(utilization=[(10, 5), (30, 15), (50, 25)] * 200, sm_clock_mhz=[1400, 1980, 1600] * 200)
    s = measure(fake)
    series = s["series"]
    assert len(series["t_s"]) == s["n_samples"]
    assert s["kernel_active_pct_mean"] == pytest.approx(sum(series["kernel_active_pct"]) / s["n_samples"])
    assert set(series["kernel_active_pct"]) <= {10, 30, 50}
    assert s["sm_clock_mhz_min"] == min(v for v in series["sm_clock_mhz"] if v is not None)  # slow ticks only
    assert series["t_s"] == sorted(series["t_s"])


def test_summary_has_every_field_and_is_strict_json():
    s = measure(make_fake_nvml(), steps=5, batch_size=2)
    assert set(SUMMARY_FIELDS) <= set(s)
    json.dumps(s, allow_nan=False)


def test_blocks_accumulate_across_several_measuring_windows():
    s = measure(make_fake_nvml(), blocks=3, block_s=0.01)
    assert s["n_blocks"] == 3
    assert s["measured_time_s"] >= 0.03
    assert s["n_samples"] >= 1  # one sampler for the point, ticking every 5 ms through the blocks


def test_first_block_starts_the_clock_and_samples_fall_inside_blocks():
    fake = make_fake_nvml()
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=fake)
    with tel.measuring():
        time.sleep(0.01)
    time.sleep(0.02)
    with tel.measuring():
        time.sleep(0.01)
    tel.close()
    for block in tel.blocks:
        assert all(block.start_s <= smp.t_s <= block.end_s for smp in block.samples)
    assert tel.blocks[1].start_s - tel.blocks[0].end_s >= 0.02


def test_summarize_blocks_weights_gpm_intervals_by_their_length():
    blocks = [Block(start_s=0.0, end_s=1.0, energy_start_mj=0, energy_end_mj=500,
                    samples=[Sample(0.0, kernel_active_pct=20, power_w=100), Sample(1.0, kernel_active_pct=40, power_w=300)],
                    gpm=[GpmInterval(0.75, 0.75, sm_activity_pct=80), GpmInterval(1.0, 0.25, sm_activity_pct=40)])]
    s = summarize_blocks(blocks, steps=5, batch_size=10, period_s=0.05, energy_refresh_s=0.1)
    assert s["kernel_active_pct_mean"] == 30
    assert s["power_w_mean"] == 200
    assert s["sm_activity_pct_mean"] == pytest.approx(70.0)  # (0.75*80 + 0.25*40) / 1.0
    assert s["energy_j"] == 0.5 and s["energy_per_step_j"] == 0.1 and s["energy_per_sample_j"] == 0.01


def test_close_balances_nvml_init_and_frees_gpm_samples():
    fake = make_fake_nvml()
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=fake)
    assert fake.init_count == 1
    tel.close()
    tel.close()
    assert fake.init_count == 0
    assert fake.calls["nvmlGpmSampleFree"] == 2


def test_device_index_follows_cuda_visible_devices(monkeypatch):
    fake = make_fake_nvml(devices=[FakeDevice(power_mw=100_000), FakeDevice(power_mw=250_000, uuid="GPU-b")])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert measure(fake)["power_w_mean"] == pytest.approx(250.0)


# --- one sampler per point (issue 10, item 8) ------------------------------------------------------


def test_one_sampler_thread_runs_through_a_point_however_many_blocks(counted_threads):
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=make_fake_nvml())
    with tel.sampling():
        time.sleep(0.02)  # warm-up
        for _ in range(5):
            with tel.measuring():
                time.sleep(0.01)
    s = tel.summary(steps=5, batch_size=1)
    tel.close()
    assert len(counted_threads) == 1 and s["n_blocks"] == 5


def test_what_is_sampled_in_warm_up_or_between_blocks_is_left_out():
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=make_fake_nvml())
    with tel.sampling():
        time.sleep(0.03)  # warm-up
        with tel.measuring():
            time.sleep(0.02)
        time.sleep(0.03)  # e.g. the FLOP-count step
        with tel.measuring():
            time.sleep(0.02)
    s = tel.summary()
    tel.close()
    for block in tel.blocks:
        assert all(block.start_s <= smp.t_s <= block.end_s for smp in block.samples)
    assert s["n_samples"] == sum(len(b.samples) for b in tel.blocks) < len(tel._samples)


def test_gpm_intervals_that_begin_in_warm_up_are_left_out():
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=make_fake_nvml())
    with tel.sampling():
        time.sleep(GPM_PERIOD_S + 0.05)  # warm-up: a GPM interval closes in it
        with tel.measuring():
            time.sleep(2 * GPM_PERIOD_S + 0.05)
    s = tel.summary()
    tel.close()
    start = tel.blocks[0].start_s
    assert s["n_gpm_intervals"] >= 1
    assert all(t - dt >= start for t, dt in zip(s["gpm_series"]["t_s"], s["gpm_series"]["dt_s"]))


# --- graceful absence ----------------------------------------------------------------------------

def test_cpu_device_measures_nothing_and_never_touches_nvml():
    fake = make_fake_nvml()
    tel = Telemetry.for_device("cpu", nvml=fake)
    with tel.measuring():
        pass
    s = tel.summary(steps=3, batch_size=2)
    assert not tel.available and sum(fake.calls.values()) == 0
    assert_all_none_with_reasons(s, "not a CUDA device")
    assert s["steps"] == 3


def test_missing_pynvml_module_gives_nulls_with_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    tel = Telemetry.for_device("cuda:0")
    assert not tel.available
    assert_all_none_with_reasons(tel.summary(), "nvidia-ml-py")


def test_pynvml_none_imports_the_installed_module(monkeypatch):
    fake = make_fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S)
    assert tel.available and fake.init_count == 1
    tel.close()


@pytest.mark.parametrize("code", [NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND])
def test_no_driver_gives_nulls_with_reason(code):
    tel = Telemetry.for_device("cuda:0", nvml=make_fake_nvml(init_error=code))
    with tel.measuring():
        pass
    assert_all_none_with_reasons(tel.summary(), "NVML did not start")


def test_mig_mode_gives_nulls_saying_device_level_readings_do_not_apply():
    fake = make_fake_nvml(mig=(1, 1))
    tel = Telemetry.for_device("cuda:0", nvml=fake)
    assert not tel.available
    assert_all_none_with_reasons(tel.summary(), "MIG")
    assert fake.init_count == 0


def test_mig_instance_in_cuda_visible_devices_gives_nulls(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-6b3e8c1a-0000-0000-0000-000000000000")
    tel = Telemetry.for_device("cuda:0", nvml=make_fake_nvml())
    assert_all_none_with_reasons(tel.summary(), "MIG")


def test_not_supported_call_nulls_only_its_field_and_is_not_asked_again():
    fake = make_fake_nvml(not_supported={"nvmlDeviceGetTemperature"})
    s = measure(fake)
    assert s["temperature_c_max"] is None
    assert "NOT_SUPPORTED" in s["null_reasons"]["temperature_c_max"]
    assert s["kernel_active_pct_mean"] == 50 and s["power_instant_w_mean"] == pytest.approx(320.0)
    assert "kernel_active_pct_mean" not in s["null_reasons"]
    assert fake.calls["nvmlDeviceGetTemperature"] == 1


def test_the_sampler_makes_under_four_nvml_calls_per_tick_reading_slow_fields_every_fourth_tick():
    from bench.measure.telemetry.nvml import NvmlDevice
    from bench.measure.telemetry.sampler import SLOW_EVERY, _SamplerThread

    fake = make_fake_nvml()
    fake.nvmlInit()
    device = NvmlDevice(fake, fake.nvmlDeviceGetHandleByIndex(0))
    thread = _SamplerThread(device, lambda s: None, None, 0.05, 0.0, {})
    before = sum(fake.calls.values())
    samples = [thread._read() for _ in range(40)]
    per_tick = (sum(fake.calls.values()) - before) / 40
    assert per_tick == device.calls / 40 == 3 + 3 / SLOW_EVERY  # 7 per tick before
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0  # both powers from one field-values call
    assert [s.sm_clock_mhz is not None for s in samples[:8]] == [True, False, False, False] * 2
    assert all(s.power_w == 300.0 and s.power_instant_w == 320.0 and s.clock_event_reasons == 0 for s in samples)


def test_without_the_average_power_field_the_sampler_falls_back_to_power_usage_and_stops_asking_the_field():
    from bench.measure.telemetry.nvml import NvmlDevice

    fake = make_fake_nvml()
    fake.nvmlInit()
    real = fake.nvmlDeviceGetFieldValues

    def no_average(handle, ids):
        out = real(handle, ids)
        for fv in out:
            if fv.fieldId == fake.NVML_FI_DEV_POWER_AVERAGE:
                fv.nvmlReturn = fake.NVML_ERROR_NOT_SUPPORTED
        return out

    fake.nvmlDeviceGetFieldValues = no_average
    device = NvmlDevice(fake, fake.nvmlDeviceGetHandleByIndex(0))
    readings = [device.power_fields() for _ in range(3)]
    assert all(r[:2] == (300.0, 320.0) for r in readings)
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 3 and device.calls == 6


def test_instant_power_field_not_supported_nulls_only_instant_power():
    s = measure(make_fake_nvml(not_supported={"nvmlDeviceGetFieldValues"}))
    assert s["power_instant_w_max"] is None
    assert "POWER_INSTANT" in s["null_reasons"]["power_instant_w_max"]
    assert s["power_w_mean"] == pytest.approx(300.0)


def test_unexpected_error_in_a_reading_becomes_a_reason_not_a_crash():
    def broken():
        raise ValueError("sensor glitch")

    s = measure(make_fake_nvml(temperature_c=broken))
    assert s["temperature_c_max"] is None
    assert "sensor glitch" in s["null_reasons"]["temperature_c_max"]
    assert s["kernel_active_pct_mean"] == 50


def test_gpm_unsupported_nulls_gpm_fields_only():
    s = measure(make_fake_nvml(gpm_supported=False))
    for key in ("sm_activity_pct_mean", "sm_occupancy_pct_mean", "tensor_activity_pct_mean", "dram_bw_pct_mean"):
        assert s[key] is None
        assert "GPM" in s["null_reasons"][key]
    assert s["n_gpm_intervals"] == 0
    assert s["kernel_active_pct_mean"] == 50


def test_binding_without_gpm_functions_nulls_gpm_fields():
    s = measure(make_fake_nvml(with_gpm=False))
    assert s["tensor_activity_pct_mean"] is None and "GPM" in s["null_reasons"]["tensor_activity_pct_mean"]


def test_one_missing_gpm_metric_nulls_only_that_metric():
    s = measure(make_fake_nvml(gpm_metrics={2: 88.0, 3: 30.0, 5: 70.0}), block_s=GPM_BLOCK_S)
    assert s["dram_bw_pct_mean"] is None and "GPM metric 10" in s["null_reasons"]["dram_bw_pct_mean"]
    assert s["sm_activity_pct_mean"] == pytest.approx(88.0)


# --- GPM sample spacing (NVML: more than 100 ms between two GPM samples) -------------------------

@pytest.fixture(scope="module")
def gpm_run():
    """Four consecutive timed blocks of 0.07 s on a fake whose GPM counters go stale under 0.1 s."""
    fake = make_fake_nvml(gpm_refresh_s=0.1)
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=fake)
    for _ in range(4):
        with tel.measuring():
            time.sleep(0.07)
    s = tel.summary(steps=40, batch_size=8)
    tel.close()
    return fake, tel, s


def test_gpm_samples_are_a_gpm_period_apart_and_the_last_at_least_nvmls_minimum(gpm_run):
    fake, _, s = gpm_run
    gaps = [b - a for a, b in zip(fake.gpm_sample_times, fake.gpm_sample_times[1:])]
    assert gaps and all(g >= GPM_PERIOD_S for g in gaps[:-1]) and gaps[-1] >= GPM_MIN_INTERVAL_S, gaps
    assert s["n_gpm_intervals"] == len(gaps)
    assert all(dt >= GPM_MIN_INTERVAL_S for dt in s["gpm_series"]["dt_s"])
    assert s["sm_activity_pct_mean"] == pytest.approx(60.0)  # no stale (zero) interval diluted it


def test_gpm_interval_runs_across_consecutive_blocks_of_a_point(gpm_run):
    _, tel, s = gpm_run
    boundaries = [b.end_s for b in tel.blocks[:-1]]
    spans = [(t - dt, t) for t, dt in zip(s["gpm_series"]["t_s"], s["gpm_series"]["dt_s"])]
    assert any(lo < edge < hi for lo, hi in spans for edge in boundaries), (spans, boundaries)


def test_final_gpm_sample_at_summary_closes_an_interval_shorter_than_the_gpm_period():
    fake = make_fake_nvml()
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=fake)
    with tel.measuring():
        time.sleep(GPM_MIN_INTERVAL_S + 0.03)
    s = tel.summary()
    tel.close()
    assert s["n_gpm_intervals"] == 1 and len(fake.gpm_sample_times) == 2
    assert GPM_MIN_INTERVAL_S <= s["gpm_series"]["dt_s"][0] < GPM_PERIOD_S
    assert s["tensor_activity_pct_mean"] == pytest.approx(40.0)


def test_point_shorter_than_nvmls_gpm_minimum_has_no_gpm_means_and_says_why():
    s = measure(make_fake_nvml(), blocks=2, block_s=0.02)
    assert s["n_gpm_intervals"] == 0
    for key in ("sm_activity_pct_mean", "tensor_activity_pct_mean", "dram_bw_pct_mean", "gpm_series"):
        assert s[key] is None and "100 ms" in s["null_reasons"][key], s["null_reasons"].get(key)
    assert s["kernel_active_pct_mean"] == 50


def test_summarize_blocks_drops_gpm_intervals_shorter_than_nvmls_minimum():
    short = GpmInterval(0.05, 0.05, sm_activity_pct=0.0)  # stale: counters not yet refreshed
    block = Block(start_s=0.0, end_s=0.4, samples=[Sample(0.0)], gpm=[short, GpmInterval(0.35, 0.3, sm_activity_pct=80)])
    s = summarize_blocks([block], steps=None, batch_size=None, period_s=0.05)
    assert s["sm_activity_pct_mean"] == 80 and s["n_gpm_intervals"] == 1
    only_short = summarize_blocks([Block(0.0, 0.1, samples=[Sample(0.0)], gpm=[short])], steps=None, batch_size=None,
                                  period_s=0.05)
    assert only_short["sm_activity_pct_mean"] is None
    assert "1 shorter interval(s) dropped" in only_short["null_reasons"]["sm_activity_pct_mean"]


def test_summary_before_any_block_says_nothing_was_measured():
    tel = Telemetry.for_device("cuda:0", nvml=make_fake_nvml())
    s = tel.summary()
    tel.close()
    assert s["kernel_active_pct_mean"] is None and "no measuring()" in s["null_reasons"]["kernel_active_pct_mean"]
    assert s["energy_j"] is None and "no measuring()" in s["null_reasons"]["energy_j"]


# --- energy --------------------------------------------------------------------------------------

def test_energy_comes_from_counter_differences_over_blocks():
    # Counter read at each block's start and end: (6000-1000) + (13000-10000) mJ = 8 J.
    fake = make_fake_nvml(energy_mj=[1000, 6000, 10000, 13000])
    s = measure(fake, blocks=2, steps=8, batch_size=4)
    assert s["energy_source"] == "counter"
    assert s["energy_j"] == 8.0
    assert s["energy_per_step_j"] == 1.0
    assert s["energy_per_sample_j"] == 0.25


def test_energy_falls_back_to_integrated_power_and_says_so():
    fake = make_fake_nvml(not_supported={"nvmlDeviceGetTotalEnergyConsumption"}, power_instant_mw=250_000)
    s = measure(fake, blocks=2, steps=4, batch_size=1)
    assert s["energy_source"] == "integrated_power"
    assert s["energy_j"] == pytest.approx(250.0 * s["measured_time_s"])
    assert "NOT_SUPPORTED" in s["energy_note"] and "instantaneous" in s["energy_note"]
    assert s["energy_per_step_j"] == pytest.approx(s["energy_j"] / 4)


def test_no_counter_and_no_power_leaves_energy_null_with_reason():
    fake = make_fake_nvml(not_supported={"nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage",
                                         "nvmlDeviceGetFieldValues"})
    s = measure(fake, steps=2, batch_size=2)
    for key in ("energy_j", "energy_per_step_j", "energy_per_sample_j", "energy_source"):
        assert s[key] is None and "energy counter unavailable" in s["null_reasons"][key]


def test_power_is_counter_energy_over_the_timed_time_not_nvmls_one_second_average():
    # The 1 s trailing average (power_mw) still remembers the idle second before the block.
    fake = make_fake_nvml(energy_mj=[0, 20_000], power_mw=90_000, power_instant_mw=380_000)
    s = measure(fake, block_s=0.03)
    assert s["power_source"] == "energy_counter"
    assert s["power_w_energy_mean"] == pytest.approx(20.0 / s["measured_time_s"])
    assert s["power_w_mean"] == pytest.approx(90.0)  # the raw 1 s average is kept beside it


def test_power_falls_back_to_instant_samples_then_to_null_with_reason():
    no_counter = measure(make_fake_nvml(not_supported={"nvmlDeviceGetTotalEnergyConsumption"}, power_instant_mw=250_000))
    assert no_counter["power_source"] == "instant_samples" and no_counter["power_w_energy_mean"] == pytest.approx(250.0)
    neither = measure(make_fake_nvml(not_supported={"nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetFieldValues"}))
    assert neither["power_w_energy_mean"] is None and neither["power_w_mean"] == pytest.approx(300.0)
    assert "energy counter unavailable" in neither["null_reasons"]["power_w_energy_mean"]
    assert "POWER_INSTANT" in neither["null_reasons"]["power_w_energy_mean"]


def test_energy_per_step_needs_the_step_count():
    s = measure(make_fake_nvml(energy_mj=[0, 2000]))
    assert s["energy_j"] == 2.0
    assert s["energy_per_step_j"] is None and "steps" in s["null_reasons"]["energy_per_step_j"]


# --- clock-event (throttle) reasons --------------------------------------------------------------

@pytest.mark.parametrize("mask, names, flag", [
    (0x4, ["sw_power_cap"], "power_capped"),
    (0x40, ["hw_thermal_slowdown"], "thermally_throttled"),
    (0x20, ["sw_thermal_slowdown"], "thermally_throttled"),
    (0x8, ["hw_slowdown"], "hw_slowdown"),
])
def test_throttle_bits_are_decoded_and_set_throttled(mask, names, flag):
    s = measure(make_fake_nvml(clock_reasons=mask))
    assert s["throttle_reasons"] == names
    assert s["throttled"] is True and s[flag] is True
    assert s["throttled_sample_fraction"] == 1.0


def test_idle_bit_alone_is_not_throttling():
    s = measure(make_fake_nvml(clock_reasons=0x1))
    assert s["throttle_reasons"] == ["gpu_idle"]
    assert s["throttled"] is False and s["power_capped"] is False


def test_older_binding_name_for_clock_reasons_is_used_when_the_new_one_is_missing():
    fake = make_fake_nvml(with_event_reasons=False, clock_reasons=0x4)
    s = measure(fake)
    assert s["power_capped"] is True
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] >= 2


def test_decode_names_known_bits_and_keeps_unknown_ones_visible():
    assert decode_clock_event_reasons(0x4 | 0x40 | 0x8000) == ["sw_power_cap", "hw_thermal_slowdown", "unknown_0x8000"]
    assert decode_clock_event_reasons(0) == []


def test_nesting_measuring_blocks_is_refused():
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=make_fake_nvml())
    assert isinstance(tel, NvmlTelemetry)
    with tel.measuring():
        with pytest.raises(RuntimeError):
            with tel.measuring():
                pass
    tel.close()


# --- on a real GPU (skipped elsewhere) -----------------------------------------------------------

def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_real_nvml_sees_a_busy_gpu_during_matmuls():
    import torch

    tel = Telemetry.for_device("cuda:0", period_s=0.05)
    assert tel.available, tel.reason
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    steps = 0
    with tel.measuring():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.5:
            for _ in range(20):
                a @ a
            steps += 20
            torch.cuda.synchronize()
    s = tel.summary(steps=steps, batch_size=1)
    tel.close()
    assert s["kernel_active_pct_mean"] > 50
    assert s["energy_source"] == "counter" and s["energy_j"] > 0
    assert s["power_w_mean"] > 0 and s["sm_clock_mhz_median"] > 0
    if torch.cuda.get_device_capability(0) >= (9, 0):
        assert s["tensor_activity_pct_mean"] > 10, s["null_reasons"]
    json.dumps(s, allow_nan=False)


# --- energy against the counter's refresh period (measured) ---------------------------------------

def counter_blocks(n: int, block_s: float) -> list[Block]:
    return [Block(start_s=i * block_s, end_s=(i + 1) * block_s, energy_start_mj=i * 1000, energy_end_mj=(i + 1) * 1000)
            for i in range(n)]


def test_energy_over_too_few_counter_refreshes_is_null_too_short_never_zero():
    # Five 80 ms blocks against a counter refreshed every 100 ms: 4 refreshes, 10 needed.
    s = summarize_blocks(counter_blocks(5, 0.08), steps=50, batch_size=8, period_s=0.05, energy_refresh_s=0.1)
    assert s["energy_j"] is None and s["energy_per_step_j"] is None
    why = s["null_reasons"]["energy_j"]
    assert why.startswith("too short: the timed blocks lasted 0.4 s in all, 4.0 refreshes") and "100 ms" in why
    assert s["energy_counter_refresh_s"] == 0.1 and s["energy_counter_refreshes"] == pytest.approx(4.0)
    # Fifteen such blocks span 12 refreshes: the counter's energy is kept, with its bound.
    s = summarize_blocks(counter_blocks(15, 0.08), steps=150, batch_size=8, period_s=0.05, energy_refresh_s=0.1)
    assert s["energy_j"] == 15.0 and s["energy_source"] == "counter"
    assert "refreshed every 100 ms (measured), 12 times" in s["energy_note"] and "±17%" in s["energy_note"]


def test_without_a_measured_refresh_period_the_counters_energy_is_not_claimed():
    s = summarize_blocks(counter_blocks(15, 0.08), steps=150, batch_size=8, period_s=0.05,
                         energy_refresh_reason="the energy counter's refresh period could not be measured: x")
    assert s["energy_j"] is None and "could not be measured: x" in s["null_reasons"]["energy_j"]
    assert "could not be measured" in s["null_reasons"]["energy_counter_refresh_s"]


def test_for_device_measures_the_counters_refresh_once_per_gpu_and_uses_it():
    import itertools

    from bench.measure.telemetry.sampler import energy_refresh_period

    counter = itertools.count(0, 500)
    fake = make_fake_nvml([FakeDevice(energy_mj=lambda: next(counter), refresh_s={"energy_mj": 0.01})])
    tel = Telemetry.for_device("cuda:0", period_s=PERIOD_S, nvml=fake)
    try:
        # Real time, polled every millisecond: a loaded machine can only lengthen what it sees.
        assert 0.009 <= tel.energy_refresh_s <= 0.04
        calls = fake.calls["nvmlDeviceGetTotalEnergyConsumption"]
        fake.nvmlInit()
        assert energy_refresh_period(fake, fake.nvmlDeviceGetHandleByIndex(0)) == (tel.energy_refresh_s, None)
        assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == calls  # kept, not measured again
        fake.nvmlShutdown()
        with tel.measuring():
            time.sleep(0.45)
        s = tel.summary(steps=10, batch_size=2)
        assert s["energy_source"] == "counter" and s["energy_counter_refreshes"] >= 10
    finally:
        tel.close()
    still = make_fake_nvml()  # a counter that never moves: no period, and no energy claimed
    s = measure(still, energy_refresh_s="measure")
    assert s["energy_j"] is None and "could not be measured" in s["null_reasons"]["energy_j"]


def test_nvml_memory_used_is_labelled_device_wide_beside_the_allocator_peaks():
    s = measure(make_fake_nvml(memory_used_bytes=12 * 2**30))
    assert s["memory_used_bytes_max"] == 12 * 2**30
    assert s["memory_used_scope"].startswith("device-wide") and "other" not in s["null_reasons"]
    assert "every process on the GPU" in s["memory_used_scope"] and "peak_allocated_bytes" in s["memory_used_scope"]
    none = measure(make_fake_nvml(not_supported={"nvmlDeviceGetMemoryInfo"}))
    assert none["memory_used_scope"] is None and "NOT_SUPPORTED" in none["null_reasons"]["memory_used_scope"]
