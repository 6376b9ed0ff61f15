"""How busy the machine was with other work while points were measured, as data: `MachineLoad` and the
arithmetic that derives it from readings taken at the start and end of each point (the readings
themselves are taken by `bench.measure.conditions.read_conditions`). Pure: no clock, no /proc.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

# The kernel's 1-minute load average is an exponential moving average of the runnable (and
# uninterruptible) threads with this time constant, updated every LOADAVG_UPDATE_S.
LOADAVG_TAU_S = 60.0
LOADAVG_UPDATE_S = 5.0
# A window shorter than this spans too few kernel updates to invert the average over it.
MIN_WINDOW_S = 3 * LOADAVG_UPDATE_S
# Other work counts as keeping the run from a core when it exceeds the cores the run leaves free by this.
BUSY_MARGIN = 0.5
# CPU times tick at USER_HZ (10 ms on Linux): a window this long resolves the CPUs others used to ~1%.
MIN_CPU_WINDOW_S = 1.0


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
