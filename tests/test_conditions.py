"""The machine's state around a measurement (load average, CPU governor and frequency, threads) and how
busy the machine was with other work: read from fake /proc and /sys trees, judged on synthetic readings."""

from __future__ import annotations

import math

import pytest

from bench.core.load import BUSY_MARGIN, machine_load, own_threads
from bench.measure.conditions import read_conditions


def fake_machine(tmp_path, *, governors=("performance", "performance"), freqs_khz=(3_000_000, 2_400_000),
                 loadavg="1.50 0.80 0.40 2/300 1234\n", cpuinfo="cpu MHz\t\t: 2100.000\n"):
    cpu = tmp_path / "cpu"
    for i, (gov, f) in enumerate(zip(governors, freqs_khz)):
        d = cpu / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(gov + "\n")
        (d / "scaling_cur_freq").write_text(f"{f}\n")
        (d / "cpuinfo_max_freq").write_text("3500000\n")
    cpu.mkdir(exist_ok=True)
    (tmp_path / "loadavg").write_text(loadavg)
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    return dict(loadavg_path=tmp_path / "loadavg", cpu_root=cpu, cpuinfo=tmp_path / "cpuinfo")


def test_a_reading_holds_load_governors_frequencies_and_threads(tmp_path):
    r = read_conditions(clock=lambda: 123.0, torch_threads=lambda: 4, **fake_machine(tmp_path))
    assert r["at"] == 123.0 and r["load_avg"] == [1.5, 0.8, 0.4]
    assert r["cpu_governors"] == {"performance": 2}
    assert r["cpu_freq_mhz"] == {"min": 2400.0, "median": 2700.0, "max": 3000.0}
    assert r["cpu_freq_source"] == "cpufreq scaling_cur_freq" and r["cpu_max_freq_mhz"] == 3500.0
    assert r["torch_num_threads"] == 4 and isinstance(r["cpus"], int) and r["null_reasons"] == {}


def test_without_cpufreq_the_frequency_comes_from_cpuinfo_and_the_governor_is_null_with_a_reason(tmp_path):
    paths = fake_machine(tmp_path, governors=(), freqs_khz=())
    r = read_conditions(torch_threads=lambda: 1, **paths)
    assert "cpu_governors" not in r and "no cpufreq" in r["null_reasons"]["cpu_governors"]
    assert r["cpu_freq_mhz"]["median"] == 2100.0 and r["cpu_freq_source"] == "/proc/cpuinfo cpu MHz"


def reading(at: float, load_1m: float, cpus: int = 16, threads: int = 8) -> dict:
    return {"at": at, "load_avg": [load_1m, 0.0, 0.0], "cpus": cpus, "torch_num_threads": threads}


def settled(start_load: float, mean_load: float, window_s: float) -> float:
    """The 1-minute load average after `window_s` of `mean_load` runnable threads, from `start_load`."""
    d = math.exp(-window_s / 60.0)
    return start_load * d + mean_load * (1 - d)


def test_the_mean_load_over_a_window_is_recovered_from_the_load_averages_at_its_ends():
    end = settled(2.0, 9.0, 45.0)
    load, why = machine_load([(reading(0.0, 2.0), reading(20.0, 3.0)), (reading(20.0, 3.0), reading(45.0, end))], "cuda")
    assert why is None and load.basis == "window" and load.window_s == 45.0
    assert load.mean_load == pytest.approx(9.0) and load.own_threads == 1.0 and load.other_load == pytest.approx(8.0)
    assert load.cpus == 16 and load.free_cpus == 15.0 and load.busy is False


def test_the_machine_is_busy_when_other_work_exceeds_the_cpus_the_run_leaves_free():
    # A CPU run with 8 threads on 16 CPUs leaves 8 free.
    over = settled(0.0, 8.0 + 8.0 + BUSY_MARGIN + 0.5, 60.0)
    under = settled(0.0, 8.0 + 8.0 + BUSY_MARGIN - 0.1, 60.0)
    assert machine_load([(reading(0.0, 0.0), reading(60.0, over))], "cpu")[0].busy is True
    assert machine_load([(reading(0.0, 0.0), reading(60.0, under))], "cpu")[0].busy is False
    assert own_threads("cpu", 8) == 8.0 and own_threads("cuda", 8) == 1.0


def test_a_window_too_short_to_invert_uses_the_last_minutes_average_less_the_runs_share_of_it():
    load, _ = machine_load([(reading(0.0, 6.0, cpus=2, threads=2), reading(6.0, 6.1, cpus=2, threads=2))], "cpu")
    assert load.basis == "1-min load average" and load.mean_load == 6.1
    assert load.other_load == pytest.approx(6.1 - 2 * (1 - math.exp(-0.1)))
    assert load.busy is True


def test_without_readings_there_is_no_load_and_a_reason():
    assert machine_load([], "cpu") == (None, "no load-average readings with the points (not recorded, or "
                                             "unreadable on this system)")
    assert machine_load([({}, {"at": 1.0, "load_avg": None})], "cpu")[0] is None


def cpu_reading(at: float, busy_s: float, own_s: float, *, load_1m: float = 3.0, cpus: int = 2, threads: int = 2,
                pid: int = 100) -> dict:
    return {**reading(at, load_1m, cpus=cpus, threads=threads), "cpu_busy_s": busy_s, "own_cpu_s": own_s, "pid": pid}


def test_a_reading_holds_the_machines_busy_cpu_time_and_this_processs_own(tmp_path):
    paths = fake_machine(tmp_path)
    # USER_HZ ticks: user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text("cpu  300 20 80 5000 400 10 5 85 7 0\ncpu0 150 10 40 2500 200 5 2 40 3 0\n")
    r = read_conditions(torch_threads=lambda: 1, stat_path=tmp_path / "stat", process_cpu=lambda: 12.5, **paths)
    hz = __import__("os").sysconf("SC_CLK_TCK")
    assert r["cpu_busy_s"] == pytest.approx((300 + 20 + 80 + 10 + 5 + 85) / hz)  # idle, iowait and guest left out
    assert r["own_cpu_s"] == 12.5 and r["pid"] == __import__("os").getpid()
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    r = read_conditions(torch_threads=lambda: 1, stat_path=tmp_path / "stat", **paths)
    assert r["cpu_busy_s"] is None and "no aggregate 'cpu' line" in r["null_reasons"]["cpu_busy_s"]


def test_cpu_time_measures_other_work_even_in_a_short_window_after_this_process_kept_the_machine_busy():
    # A suite's cases: this process kept both CPUs busy for the minute before (load average 2.0 at the
    # start), then ran 9 s more; the machine's busy CPU time grew by exactly the process's own. The load
    # average alone would call that other work; CPU time says nobody else ran.
    load, _ = machine_load([(cpu_reading(0.0, 1000.0, 500.0, load_1m=2.0), cpu_reading(9.0, 1018.0, 518.0, load_1m=2.1))],
                           "cpu")
    assert load.basis == "cpu time" and load.mean_load == pytest.approx(2.0)
    assert load.other_load == pytest.approx(0.0) and load.busy is False
    # Another process used 1.5 CPUs of the two over the same 9 s: this run got only half a CPU.
    load, _ = machine_load([(cpu_reading(0.0, 1000.0, 500.0), cpu_reading(9.0, 1018.0, 504.5))], "cpu")
    assert load.other_load == pytest.approx(1.5) and load.busy is True  # more than 0 free CPUs + 0.5


def test_cpu_time_needs_one_process_and_a_window_of_a_second_else_the_load_average_decides():
    # Readings from two processes (a resumed sweep): their own CPU times do not subtract.
    load, _ = machine_load([(cpu_reading(0.0, 1000.0, 500.0, pid=1), cpu_reading(30.0, 1060.0, 5.0, pid=2))], "cpu")
    assert load.basis == "window"
    load, _ = machine_load([(cpu_reading(0.0, 1000.0, 500.0), cpu_reading(0.5, 1001.0, 501.0))], "cpu")
    assert load.basis == "1-min load average"
    no_stat = {**cpu_reading(20.0, 0.0, 0.0), "cpu_busy_s": None}
    assert machine_load([(cpu_reading(0.0, 1000.0, 500.0), no_stat)], "cpu")[0].basis == "window"


def test_a_reading_records_the_environment_settings_that_change_timing_and_leaves_others_out(tmp_path):
    env = {"CUDA_LAUNCH_BLOCKING": "1", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
           "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT": "100", "TORCH_CUDNN_V8_API_SOMETHING_NEW": "x",
           "OMP_NUM_THREADS": "2", "HOME": "/root", "PATH": "/bin"}
    r = read_conditions(torch_threads=lambda: 1, environ=env, **fake_machine(tmp_path))
    assert r["env_settings"] == {"CUDA_LAUNCH_BLOCKING": "1", "OMP_NUM_THREADS": "2",
                                 "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
                                 "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT": "100", "TORCH_CUDNN_V8_API_SOMETHING_NEW": "x"}


def test_thread_counts_and_visible_devices_are_recorded_but_not_hashed_and_launch_blocking_distorts():
    from bench.measure.conditions import distorting_env_settings, hashed_env_settings

    settings = {"CUDA_LAUNCH_BLOCKING": "1", "CUDA_VISIBLE_DEVICES": "1", "OMP_NUM_THREADS": "4",
                "NVIDIA_TF32_OVERRIDE": "0"}
    assert hashed_env_settings(settings) == {"CUDA_LAUNCH_BLOCKING": "1", "NVIDIA_TF32_OVERRIDE": "0"}
    assert [d["name"] for d in distorting_env_settings(settings)] == ["CUDA_LAUNCH_BLOCKING"]
    assert distorting_env_settings({"CUDA_LAUNCH_BLOCKING": "0"}) == []
