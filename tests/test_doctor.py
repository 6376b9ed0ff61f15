"""`bench doctor`: the NVML paths on the fake NVML (settings, processes, refresh periods on a fake clock,
the sampler's cost per tick), sustained load and the verdict on synthetic readings, and one short run of
the command on the CPU."""

from __future__ import annotations

import itertools
import json

import pytest

from bench.measure.telemetry.gpu_state import (
    measure_refresh_periods,
    read_gpu_settings,
    read_processes,
)
from bench.measure.telemetry.nvml import NvmlDevice
from bench.present.doctor import distorting_settings_warning, doctor_card, verdict_line
from bench.run.doctor import nvml_checks, ratio_summary, sustained_load, verdict
from bench.testing.fake_pynvml import FakeDevice, make_fake_nvml


class FakeTime:
    """A clock that moves only when something sleeps or works."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def counting(start: int):
    c = itertools.count(start)
    return lambda: next(c)


def card(clock: FakeTime, **fields) -> object:
    """A fake card whose readings change at each refresh, with the refresh periods of a real one."""
    device = FakeDevice(energy_mj=counting(1_000_000), power_mw=counting(300_000),
                        power_instant_mw=counting(320_000), utilization=lambda: (50, 20),
                        sm_clock_mhz=counting(1500),
                        refresh_s={"energy_mj": 0.1, "power_mw": 0.05, "power_instant_mw": 0.02, "sm_clock_mhz": 0.2},
                        **fields)
    nvml = make_fake_nvml([device], clock=clock)
    nvml.nvmlInit()
    return nvml


def test_refresh_periods_are_measured_from_when_each_reading_changes():
    clock = FakeTime()
    nvml = card(clock)
    out = measure_refresh_periods(NvmlDevice(nvml, nvml.nvmlDeviceGetHandleByIndex(0)), duration_s=2.0,
                                  poll_s=0.001, clock=clock, sleep=clock.sleep)
    assert out["energy_counter"]["refresh_s"] == pytest.approx(0.1, abs=0.002)
    assert out["power_w"]["refresh_s"] == pytest.approx(0.05, abs=0.002)
    assert out["power_instant_w"]["refresh_s"] == pytest.approx(0.02, abs=0.002)
    assert out["sm_clock_mhz"]["refresh_s"] == pytest.approx(0.2, abs=0.002)
    # Utilisation held still at 50%: no period is claimed, and the reason says so.
    assert out["kernel_active_pct"]["refresh_s"] is None
    assert "changed 0 time(s)" in out["kernel_active_pct"]["reason"]
    assert out["energy_counter"]["resolution_s"] == pytest.approx(0.001)


def test_a_reading_the_card_does_not_answer_has_no_period_and_its_nvml_reason():
    clock = FakeTime()
    nvml = card(clock, gpm_supported=False)
    nvml.not_supported.add("nvmlDeviceGetTotalEnergyConsumption")
    out = measure_refresh_periods(NvmlDevice(nvml, nvml.nvmlDeviceGetHandleByIndex(0)), duration_s=0.5,
                                  poll_s=0.001, clock=clock, sleep=clock.sleep)
    assert out["energy_counter"]["refresh_s"] is None and "NOT_SUPPORTED" in out["energy_counter"]["reason"]
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1  # not asked again


def test_other_processes_are_listed_with_their_memory_and_this_one_left_out():
    nvml = make_fake_nvml(processes=[(111, 3 * 2**30), (222, None), (333, 2**20)])
    nvml.nvmlInit()
    out = read_processes(nvml, nvml.nvmlDeviceGetHandleByIndex(0), own_pid=333)
    assert out["reason"] is None
    assert [(p["pid"], p["used_gpu_memory_bytes"]) for p in out["processes"]] == [(111, 3 * 2**30), (222, None)]
    nvml.not_supported.add("nvmlDeviceGetComputeRunningProcesses")
    out = read_processes(nvml, nvml.nvmlDeviceGetHandleByIndex(0))
    assert out["processes"] is None and "NOT_SUPPORTED" in out["reason"]


def test_changed_application_clocks_and_a_lowered_power_limit_are_read_as_found():
    nvml = make_fake_nvml(app_sm_clock_mhz=1410, enforced_power_limit_mw=500_000, clock_reasons=0x2 | 0x1)
    nvml.nvmlInit()
    s = read_gpu_settings(nvml, nvml.nvmlDeviceGetHandleByIndex(0))
    assert s["app_clocks_changed"] is True and s["app_sm_clock_mhz"] == 1410
    assert s["power_limit_below_default"] is True and s["power_limit_w"] == 500.0
    assert s["clocks_held_by_setting"] is True and s["clock_event_reasons_now"] == ["gpu_idle",
                                                                                  "applications_clocks_setting"]
    plain = make_fake_nvml()
    plain.nvmlInit()
    s = read_gpu_settings(plain, plain.nvmlDeviceGetHandleByIndex(0))
    assert s["app_clocks_changed"] is False and s["power_limit_below_default"] is False


def test_nvml_checks_measure_the_samplers_cost_per_tick_and_put_everything_in_the_verdict():
    clock = FakeTime()
    nvml = card(clock, processes=[(4242, 5 * 2**30)], app_sm_clock_mhz=1200)
    worked = []
    gpu = nvml_checks(nvml, nvml.nvmlDeviceGetHandleByIndex(0), refresh_poll_s=1.0, ticks=40, clock=clock,
                      sleep=clock.sleep, busy=lambda: worked.append(clock()))
    assert len(worked) == gpu["refresh"]["energy_counter"]["polls"] in (500, 501)  # one unit of work per 2 ms poll
    assert gpu["refresh"]["energy_counter"]["refresh_s"] == pytest.approx(0.1, abs=0.003)
    tick = gpu["sampler_tick"]
    assert tick["nvml_calls_per_tick"] == 3.75 and tick["ticks"] == 40 and tick["us_per_tick_median"] > 0
    report = {"gpu": gpu, "fingerprint": {}, "distorting_env": [], "timers": {}, "skipped": {}}
    report["verdict"] = verdict(report)
    kinds = [p["kind"] for p in report["verdict"]["problems"]]
    assert kinds == ["processes", "app_clocks"]
    line = verdict_line(report)
    assert "pid 4242" in line and "5,120 MiB" in line and "1200 MHz" in line
    assert "the timers were not compared" in line


def row(median, lo, hi):
    return {"ratio_median": median, "ratio_ci95": [lo, hi], "rounds": 8}


def test_the_verdict_gives_the_widest_timer_disagreement_and_names_distorting_settings():
    report = {"timers": {"launch_bound": {"harness_blocks_vs_torch": row(1.01, 0.99, 1.03),
                                          "harness_vs_torch": row(0.8, 0.7, 0.9),  # per-step: not like for like
                                          "wall_vs_torch": row(1.02, 1.0, 1.04)},
                         "compute_bound": {"harness_blocks_vs_torch": row(0.995, 0.99, 1.0),
                                           "wall_vs_torch": {"ratio_median": 1.005, "ratio_ci95": None}}},
              "distorting_env": [{"name": "CUDA_LAUNCH_BLOCKING", "value": "1", "why": "each launch waits"}],
              "skipped": {"nvml": "not a GPU"}}
    v = verdict(report)
    assert v["timers_agree_within"] == pytest.approx(0.04)
    assert v["skipped"] == ["nvml"]
    report["verdict"] = v
    line = verdict_line(report)
    assert line.startswith("step times from this machine agree within ±4.0% between timers; these settings")
    assert "CUDA_LAUNCH_BLOCKING=1" in line
    report["distorting_env"] = []
    report["verdict"] = verdict(report)
    assert verdict_line(report).endswith("no setting, process or clock behaviour found that makes them untrustworthy")


def test_a_sampler_whose_ci_lies_above_one_percent_is_a_problem_and_one_that_spans_it_is_not():
    base = {"timers": {}, "distorting_env": [], "skipped": {}}
    assert verdict({**base, "sampler_overhead": row(1.03, 1.02, 1.05)})["problems"][0]["kind"] == "sampler"
    assert verdict({**base, "sampler_overhead": row(1.01, 0.99, 1.03)})["problems"] == []


def test_a_ratio_needs_six_rounds_for_a_ci():
    assert ratio_summary([1.0, 1.1, 0.9])["ratio_ci95"] is None
    assert "at least 6" in ratio_summary([1.0, 1.1, 0.9])["ci_reason"]
    ci = ratio_summary([1.0, 1.01, 0.99, 1.02, 0.98, 1.03, 0.97, 1.0])["ratio_ci95"]
    assert ci[0] <= 1.0 <= ci[1]


def sustained(clock_mhz, reasons, step_s):
    """sustained_load on a fake clock: each step takes step_s(t) seconds; the state follows clock_mhz(t)."""
    t = FakeTime()
    start = t.now

    def step():
        t.sleep(step_s(t.now - start))

    def state():
        now = t.now - start
        return {"clock_mhz": clock_mhz(now), "power_w": 700.0, "throttle_reasons": reasons(now)}

    return sustained_load(step, None, duration_s=20.0, read_state=state, interval_s=0.5, clock=t)


def test_sustained_load_tells_a_clock_that_falls_to_the_power_cap_from_one_that_holds():
    capped = sustained(lambda t: 1980 if t < 8 else 1440, lambda t: ["sw_power_cap"] if t >= 8 else [],
                       lambda t: 0.010 if t < 8 else 0.0135)
    assert capped["clock_not_kept"] is True and capped["step_slowed"] is True
    assert capped["clock_mhz_last_over_first"] == pytest.approx(1440 / 1980)
    assert capped["step_s_last_over_first"] == pytest.approx(1.35, rel=0.01)
    assert capped["throttle_reasons_last"] == ["sw_power_cap"] and capped["throttle_reasons_first"] == []
    assert capped["duration_s"] >= 20.0 and capped["intervals"] >= 40
    steady = sustained(lambda t: 1980, lambda t: [], lambda t: 0.010)
    assert steady["clock_not_kept"] is False and steady["step_slowed"] is False
    assert steady["clock_mhz_last_over_first"] == 1.0


def test_sustained_load_without_a_clock_reading_says_why():
    t = FakeTime()
    out = sustained_load(lambda: t.sleep(0.01), None, duration_s=2.0, clock=t, interval_s=0.5,
                         read_state=lambda: {"clock_mhz": None, "null_reasons": {"clock_mhz": "no cpufreq"}})
    assert out["clock_mhz_last_over_first"] is None
    assert "no cpufreq" in out["null_reasons"]["clock_mhz_last_over_first"]


def test_a_sweep_under_cuda_launch_blocking_gets_a_warning_line():
    from bench.measure.conditions import distorting_env_settings

    lines = distorting_settings_warning(distorting_env_settings({"CUDA_LAUNCH_BLOCKING": "1", "OMP_NUM_THREADS": "2"}))
    assert len(lines) == 1 and lines[0].startswith("CUDA_LAUNCH_BLOCKING=1 is set: each launch waits")


def test_too_few_rounds_is_bad_input_in_one_line(capsys):
    from bench.cli import main

    assert main(["doctor", "--rounds", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 6 rounds" in err[0]


def test_bench_doctor_runs_on_the_cpu_and_names_what_it_skipped(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--quick", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["quick"] is True
    assert "not a CUDA GPU" in report["skipped"]["nvml"] and report["gpu"] is None
    assert report["sampler_overhead"] is None and "sampler_overhead" in report["skipped"]
    for name in ("launch_bound", "compute_bound"):
        t = report["timers"][name]
        assert t["timer"] == "host" and len(t["harness_round_medians_s"]) == 6
        assert t["harness_vs_torch"]["ratio_ci95"] is not None
        assert t["harness_blocks_vs_torch"]["ratio_ci95"] is not None
    assert report["sustained"]["duration_s"] >= 1.0 and report["sustained"]["intervals"] >= 2
    assert report["env_settings"]["CUDA_LAUNCH_BLOCKING"] == "1"
    assert report["fingerprint"]["timing_env"] == {"CUDA_LAUNCH_BLOCKING": "1"}
    assert printed[-1].startswith("verdict     step times from this machine agree within ±")
    assert "CUDA_LAUNCH_BLOCKING=1" in printed[-1]
    assert any(line.startswith("skipped     nvml:") for line in printed)
    assert doctor_card(report) == printed


def test_a_sweep_under_cuda_launch_blocking_warns_loudly_and_records_it_in_each_points_conditions(
        tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    out = tmp_path / "sweep.json"
    assert main(["sweep", "-d", "cpu", "-b", "2", "-a", "in_features=8", "-a", "hidden=8", "-a", "depth=1",
                 "--min-samples", "6", "--min-time", "0.005", "--budget", "0.05", "-q", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "bench sweep: WARNING: CUDA_LAUNCH_BLOCKING=1 is set" in err
    data = json.loads(out.read_text())
    point = data["points"][0]
    assert point["conditions"]["start"]["env_settings"]["CUDA_LAUNCH_BLOCKING"] == "1"
    assert data["environment"]["timing_env"] == {"CUDA_LAUNCH_BLOCKING": "1"}  # the sweep's fingerprint


def test_the_gpu_path_reads_the_fake_card_and_its_card_names_every_gpu_finding(tmp_path, capsys):
    """run_doctor's NVML half on the CPU: steps on the CPU, NVML from a fake card (real time, short periods)."""
    import time

    from bench.run.doctor import DoctorConfig, run_doctor

    started = []  # when the sustained load (1 s with --quick) began: half a second in, the fake card hits its cap

    def capped() -> bool:
        return bool(started) and time.perf_counter() - started[0] > 0.5

    device = FakeDevice(energy_mj=counting(1_000_000), power_mw=counting(300_000), power_instant_mw=counting(320_000),
                        sm_clock_mhz=lambda: 1440 if capped() else 1980, clock_reasons=lambda: 0x4 if capped() else 0,
                        refresh_s={"energy_mj": 0.02, "power_mw": 0.02, "power_instant_mw": 0.01},
                        processes=[(4242, 5 * 2**30)])
    nvml = make_fake_nvml([device])
    report = run_doctor(DoctorConfig(device="cpu", quick=True, threads=1, nvml=nvml, nvml_device="cuda:0",
                                     sustained_s=2.0),
                        progress=lambda text: started.append(time.perf_counter()) if text.startswith("sustained") else None)
    gpu = report["gpu"]
    assert 0.009 <= gpu["refresh"]["power_instant_w"]["refresh_s"] <= 0.05  # real time on a loaded machine
    assert gpu["refresh"]["kernel_active_pct"]["refresh_s"] is None  # the fake's utilisation holds still
    assert gpu["sampler_tick"]["nvml_calls_per_tick"] == 3.75
    assert report["sampler_overhead"]["rounds"] == 6 and report["sampler_overhead"]["ratio_ci95"] is not None
    assert report["sustained"]["timeline"][0]["clock_mhz"] == 1980 and report["sustained"]["clock_not_kept"]
    assert nvml.init_count == 0  # every nvmlInit balanced
    kinds = [p["kind"] for p in report["verdict"]["problems"]]
    assert "processes" in kinds and "sustained" in kinds and "nvml" not in report["skipped"]
    card = doctor_card(json.loads(json.dumps(report)))
    text = "\n".join(card)
    assert "processes   pid 4242 (5,120 MiB)" in text and "sampler     " in text and "nvml        refreshes every" in text
    assert "overhead    sampler on vs off at a launch-bound step" in text
    assert "clock-event reasons at the end: sw_power_cap" in text
    assert card[-1].startswith("verdict     ") and "short points run at clocks a long run does not keep" in card[-1]


def test_a_check_that_fails_is_named_with_its_error_and_the_others_still_report(monkeypatch):
    import bench.run.doctor as doctor

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text")

    monkeypatch.setattr(doctor, "sustained_load", oom)
    calls = []

    def first_fails(step, device, **kwargs):  # the launch-bound step fails, the compute-bound one agrees
        calls.append(step)
        if len(calls) == 1:
            oom()
        return {"timer": "host", "harness_blocks_vs_torch": row(1.01, 0.99, 1.02), "harness_vs_torch": row(1.0, 0.99, 1.01),
                "wall_vs_torch": row(1.02, 1.0, 1.03), "torch_benchmark_median_s": 0.01}

    monkeypatch.setattr(doctor, "timer_agreement", first_fails)
    kept = []
    report = doctor.run_doctor(doctor.DoctorConfig(device="cpu", quick=True, threads=1),
                               checkpoint=lambda partial: kept.append(json.loads(json.dumps(partial))))
    # Before each check the report so far is handed out (a run cut off keeps it), saying what was running.
    assert [k["unfinished"].split(" ")[0] for k in kept] == ["timer", "timer", "sustained"]
    assert kept[0]["timers"] == {} and list(kept[2]["timers"]) == ["compute_bound"] and "verdict" in kept[0]
    assert "unfinished" not in report
    assert report["skipped"]["sustained"] == "failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert report["skipped"]["timers.launch_bound"].startswith("failed: RuntimeError")
    assert report["sustained"] is None and list(report["timers"]) == ["compute_bound"]
    assert report["verdict"]["timers_agree_within"] == pytest.approx(0.03)
    card = doctor_card(report)
    assert "skipped     sustained: failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in card
    assert card[-1].startswith("verdict     step times from this machine agree within ±3.0%")


def test_the_gpu_lines_of_the_card_say_unknown_for_what_the_card_did_not_answer():
    nvml = make_fake_nvml(not_supported={"nvmlDeviceGetPowerManagementDefaultLimit", "nvmlDeviceGetComputeRunningProcesses"})
    nvml.nvmlInit()
    clock = FakeTime()
    gpu = nvml_checks(nvml, nvml.nvmlDeviceGetHandleByIndex(0), refresh_poll_s=0.1, ticks=4, clock=clock,
                      sleep=clock.sleep)
    report = {"device": "cuda:0", "fingerprint": {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_ecc_enabled": True},
              "gpu": gpu, "timers": {"launch_bound": None}, "distorting_env": [], "skipped": {}}
    report["verdict"] = verdict(report)
    text = "\n".join(doctor_card(report))
    assert "power limit 700 W (default unknown)" in text and "ECC on" in text and "persistence ?" in text
    assert "processes   unknown (nvmlDeviceGetComputeRunningProcesses: not supported" in text
    assert "nvml        refreshes every: energy_counter ?" in text  # the fake's counter held still
    assert report["verdict"]["timers_agree_within"] is None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_quick_doctor_on_a_real_gpu_reads_nvml_and_times_with_cuda_events():
    from bench.run.doctor import DoctorConfig, run_doctor

    report = run_doctor(DoctorConfig(device="cuda", quick=True))
    assert "nvml" not in report["skipped"], report["skipped"]
    gpu = report["gpu"]
    assert gpu["sampler_tick"]["nvml_calls_per_tick"] <= 4.75 and gpu["sampler_tick"]["us_per_tick_median"] > 0
    assert set(gpu["refresh"]) == {"energy_counter", "power_w", "power_instant_w", "kernel_active_pct", "sm_clock_mhz"}
    assert gpu["refresh"]["energy_counter"]["refresh_s"] is not None  # the counter moves on any powered card
    assert all(row["timer"] == "cuda_event" for row in report["timers"].values())
    assert report["sustained"]["timeline"][0]["clock_mhz"] is not None
    assert doctor_card(report)[-1].startswith("verdict     step times from this machine agree within ±")
