"""The machine's state around a measurement, as pyperf records it: load average, CPU governor and
frequency, torch's thread count, the machine's and this process's CPU time; and from readings at the
start and end of points, how busy the machine was with other work while they ran.

These are volatile readings: they belong with each measurement (`Measurement.conditions`), never in
the fingerprint, which is the stable identity that decides whether two results may be compared. The
thread count is a setting of the run (like the precision), not an identity of the machine, so it is
recorded here and in the sweep's config (`threads`), not hashed: a sweep at 1 thread and one at 2 on
the same machine are two settings on the same hardware and software, not two machines.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

# The kernel's 1-minute load average is an exponential moving average of the runnable (and
# uninterruptible) threads with this time constant, updated every LOADAVG_UPDATE_S.
LOADAVG_TAU_S = 60.0
LOADAVG_UPDATE_S = 5.0
# A window shorter than this spans too few kernel updates to invert the average over it.
MIN_WINDOW_S = 3 * LOADAVG_UPDATE_S
# Other work counts as keeping the run from a core when it exceeds the cores the run leaves free by this.
BUSY_MARGIN = 0.5

CPU_ROOT = "/sys/devices/system/cpu"
LOADAVG_PATH = "/proc/loadavg"
CPUINFO_PATH = "/proc/cpuinfo"
STAT_PATH = "/proc/stat"
# CPU times tick at USER_HZ (10 ms on Linux): a window this long resolves the CPUs others used to ~1%.
MIN_CPU_WINDOW_S = 1.0
# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal ... ; busy is all but
# idle and iowait (guest time is already inside user). Steal is time the hypervisor gave to other guests.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def cpus_available() -> int | None:
    """The CPUs this process may run on (its affinity mask), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def read_loadavg(path: str | os.PathLike = LOADAVG_PATH) -> tuple[list[float] | None, str | None]:
    """([1-min, 5-min, 15-min] load averages], None) or (None, reason)."""
    try:
        parts = Path(path).read_text().split()
        return [float(v) for v in parts[:3]], None
    except (OSError, ValueError, IndexError) as e:
        try:
            return [float(v) for v in os.getloadavg()], None
        except (AttributeError, OSError):
            return None, f"load average unreadable ({path}: {type(e).__name__}; os.getloadavg() unavailable)"


def read_cpu_busy(path: str | os.PathLike = STAT_PATH) -> tuple[float | None, str | None]:
    """(CPU-seconds the whole machine has spent busy since boot, summed over its CPUs, None), or
    (None, reason): /proc/stat's aggregate line, every state but idle and iowait (steal included)."""
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "cpu":
                ticks = [int(v) for v in parts[1:]]
                return sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK"), None
        return None, f"no aggregate 'cpu' line in {path}"
    except (OSError, ValueError, AttributeError) as e:
        return None, f"machine CPU time unreadable ({path}: {type(e).__name__})"


def read_cpu_frequency(root: str | os.PathLike = CPU_ROOT,
                       cpuinfo: str | os.PathLike = CPUINFO_PATH) -> tuple[dict[str, Any], dict[str, str]]:
    """The CPU frequency governors (name -> CPUs) and current frequencies (min/median/max MHz over
    the CPUs) from cpufreq, falling back to /proc/cpuinfo's "cpu MHz" for the frequency; each value
    that cannot be read is left out with a reason."""
    out: dict[str, Any] = {}
    null: dict[str, str] = {}
    governors: Counter = Counter()
    freqs: list[float] = []
    max_freqs: list[float] = []
    for d in sorted(Path(root).glob("cpu[0-9]*/cpufreq")):
        try:
            governors[(d / "scaling_governor").read_text().strip()] += 1
        except OSError:
            pass
        for name, into in (("scaling_cur_freq", freqs), ("cpuinfo_max_freq", max_freqs)):
            try:
                into.append(int((d / name).read_text().strip()) / 1000.0)  # kHz -> MHz
            except (OSError, ValueError):
                pass
    if governors:
        out["cpu_governors"] = dict(governors)
    else:
        null["cpu_governors"] = f"no cpufreq scaling_governor under {root} (no cpufreq driver, or a VM)"
    source = "cpufreq scaling_cur_freq"
    if not freqs:
        try:
            for line in Path(cpuinfo).read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "cpu MHz":
                    freqs.append(float(value))
            source = "/proc/cpuinfo cpu MHz"
        except (OSError, ValueError):
            pass
    if freqs:
        out["cpu_freq_mhz"] = {"min": min(freqs), "median": statistics.median(freqs), "max": max(freqs)}
        out["cpu_freq_source"] = source
    else:
        null["cpu_freq_mhz"] = f"no scaling_cur_freq under {root} and no 'cpu MHz' in {cpuinfo}"
    if max_freqs:
        out["cpu_max_freq_mhz"] = max(max_freqs)
    return out, null


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # noqa: BLE001 - a reading, never a failure
        return None


def read_conditions(*, clock: Callable[[], float] = time.time, loadavg_path: str | os.PathLike = LOADAVG_PATH,
                    cpu_root: str | os.PathLike = CPU_ROOT, cpuinfo: str | os.PathLike = CPUINFO_PATH,
                    torch_threads: Callable[[], int | None] = _torch_threads,
                    stat_path: str | os.PathLike = STAT_PATH,
                    process_cpu: Callable[[], float] = time.process_time) -> dict[str, Any]:
    """One reading of the machine's state: `at` (seconds since the epoch), `load_avg` ([1, 5, 15]-minute),
    `cpus` (CPUs this process may use), `torch_num_threads`, `cpu_busy_s` (the machine's busy CPU time
    since boot, `read_cpu_busy`), `own_cpu_s` (this process's CPU time, all its threads) with its `pid`,
    `cpu_governors`, `cpu_freq_mhz` (min/median/max), `cpu_freq_source`, `cpu_max_freq_mhz`;
    `null_reasons` for what is unreadable."""
    null: dict[str, str] = {}
    load, why = read_loadavg(loadavg_path)
    if why:
        null["load_avg"] = why
    busy, why = read_cpu_busy(stat_path)
    if why:
        null["cpu_busy_s"] = why
    freq, freq_null = read_cpu_frequency(cpu_root, cpuinfo)
    null.update(freq_null)
    threads = torch_threads()
    if threads is None:
        null["torch_num_threads"] = "torch is not importable"
    return {"at": clock(), "load_avg": load, "cpus": cpus_available(), "torch_num_threads": threads,
            "cpu_busy_s": busy, "own_cpu_s": process_cpu(), "pid": os.getpid(), **freq, "null_reasons": null}


# --------------------------------------------------------------------------- how busy the machine was


@dataclass(frozen=True)
class MachineLoad:
    """How much other work the machine ran while a sweep's points were measured.

    Over the `window_s` from the first point's start to the last point's end, by the first basis the
    readings allow:

    - `basis` "cpu time": `mean_load` is the CPUs the whole machine kept busy on average (its busy CPU
      time from /proc/stat over the window) and `other_load` the part of it that was not this process
      (its own CPU time, every thread, subtracted): other processes, and a hypervisor's steal. Needs
      both readings from one process and a window of at least MIN_CPU_WINDOW_S.
    - `basis` "window": `mean_load` is the average number of runnable threads (the 1-minute load
      averages at both ends, the kernel's exponential averaging inverted) and `other_load` that less
      the run's own threads. Needs a window of at least MIN_WINDOW_S.
    - `basis` "1-min load average": the 1-minute load average at the end, less the run's share of it.
      Coarse: it also counts whatever this process itself ran in the minute before the window.

    `own_threads` is what the run itself keeps runnable (torch's threads on a CPU, the one launching
    thread on a GPU); `free_cpus` = `cpus` minus `own_threads`. `busy`: `other_load` exceeds
    `free_cpus` by more than BUSY_MARGIN, so the run's threads waited for a core.
    """

    window_s: float
    mean_load: float
    own_threads: float
    other_load: float
    cpus: int
    free_cpus: float
    busy: bool
    basis: str
    load_avg_1m_max: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "MachineLoad | None":
        if not d:
            return None
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def own_threads(device_type: str, torch_num_threads: int | None) -> float:
    """The threads a run keeps runnable: torch's intra-op threads on a CPU, one (the thread that
    launches kernels and waits for them) on a GPU."""
    if device_type == "cpu":
        return float(torch_num_threads or 1)
    return 1.0


def machine_load(readings: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], device_type: str) -> tuple[MachineLoad | None, str | None]:
    """The machine's load over the points whose (start, end) readings (`read_conditions`) are given.

    Returns (MachineLoad, None), or (None, reason) when there are no readable readings. The window
    runs from the earliest start to the latest end.
    """
    pairs = [(s, e) for s, e in readings if _load(s) is not None and _load(e) is not None
             and isinstance(s.get("at"), (int, float)) and isinstance(e.get("at"), (int, float))]
    if not pairs:
        return None, "no load-average readings with the points (not recorded, or unreadable on this system)"
    first = min((s for s, _ in pairs), key=lambda r: r["at"])
    last = max((e for _, e in pairs), key=lambda r: r["at"])
    window = max(0.0, float(last["at"]) - float(first["at"]))
    cpus = next((int(r["cpus"]) for r in (last, first) if isinstance(r.get("cpus"), int) and r["cpus"] > 0), None)
    if cpus is None:
        return None, "the readings do not say how many CPUs the run could use"
    threads = [r.get("torch_num_threads") for s, e in pairs for r in (s, e) if isinstance(r.get("torch_num_threads"), int)]
    own = own_threads(device_type, max(threads) if threads else None)
    l0, l1 = _load(first), _load(last)
    decay = math.exp(-window / LOADAVG_TAU_S)
    cpu_time = _cpu_time_delta(first, last) if window >= MIN_CPU_WINDOW_S else None
    if cpu_time is not None:
        busy_s, own_s = cpu_time
        mean_load = busy_s / window
        other = max(0.0, (busy_s - own_s) / window)
        basis = "cpu time"
    elif window >= MIN_WINDOW_S:
        mean_load = max(0.0, (l1 - l0 * decay) / (1.0 - decay))
        other = max(0.0, mean_load - own)
        basis = "window"
    else:
        # Too short to invert: the last minute's average, in which the run itself has had only this
        # long to show (the rest of that minute's load was the machine's own).
        mean_load = l1
        other = max(0.0, l1 - own * (1.0 - decay))
        basis = "1-min load average"
    free = cpus - own
    peak = max(_load(r) for s, e in pairs for r in (s, e))
    return MachineLoad(window_s=window, mean_load=mean_load, own_threads=own, other_load=other, cpus=cpus,
                       free_cpus=free, busy=other > free + BUSY_MARGIN, basis=basis, load_avg_1m_max=peak), None


def _cpu_time_delta(first: Mapping[str, Any], last: Mapping[str, Any]) -> tuple[float, float] | None:
    """(machine busy CPU-seconds, this process's CPU-seconds) between two readings of one process, or
    None when either is missing or they come from different processes (a resumed sweep)."""
    values = [r.get(k) for r in (first, last) for k in ("cpu_busy_s", "own_cpu_s")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if first.get("pid") is None or first.get("pid") != last.get("pid"):
        return None
    busy, own = values[2] - values[0], values[3] - values[1]
    if busy < 0 or own < 0:
        return None
    return busy, own


def _load(reading: Mapping[str, Any]) -> float | None:
    la = reading.get("load_avg") if isinstance(reading, Mapping) else None
    if isinstance(la, (list, tuple)) and la and isinstance(la[0], (int, float)) and math.isfinite(la[0]):
        return float(la[0])
    return None
