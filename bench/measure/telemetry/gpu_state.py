"""What `bench doctor` reads off a GPU beyond its fingerprint: the settings that change step times
(application clocks, power cap against its default), the other processes on it, and how often each
NVML reading really refreshes (measured by polling, never assumed). NVML calls only, no CUDA.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

from bench.measure.telemetry.nvml import (
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    FieldUnavailable,
    NvmlDevice,
    as_text,
    decode_clock_event_reasons,
    describe_error,
)

# The readings whose refresh is measured, by the name used in the doctor's card and docs/telemetry.md.
REFRESH_READINGS = ("energy_counter", "power_w", "power_instant_w", "kernel_active_pct", "sm_clock_mhz")
# Fewer value changes than this in the polling window give no refresh period (two intervals at least).
MIN_CHANGES = 3


def _readers(device: NvmlDevice) -> dict[str, Callable[[], Any]]:
    return {"energy_counter": device.energy_mj, "power_w": device.power_w,
            "power_instant_w": device.power_instant_w,
            "kernel_active_pct": lambda: device.utilization_pct()[0], "sm_clock_mhz": device.sm_clock_mhz}


def measure_refresh_periods(device: NvmlDevice, *, duration_s: float = 3.0, poll_s: float = 0.002,
                            clock: Callable[[], float] = time.perf_counter,
                            sleep: Callable[[float], None] = time.sleep,
                            readers: dict[str, Callable[[], Any]] | None = None,
                            stop_after_changes: int | None = None,
                            work: Callable[[], Any] | None = None) -> dict[str, dict[str, Any]]:
    """How often each reading's value changes, polling all of them every `poll_s` for `duration_s`.

    Per reading: `refresh_s` (median interval between successive changes; None with `reason` under
    MIN_CHANGES changes), `changes`, `polls`,
    `resolution_s` (the measured mean poll interval: no period shorter than it can be seen). A reading
    that holds still (an idle card's utilisation) has no measurable period, which is said, not guessed.
    `stop_after_changes` ends the polling early once every reading has changed that many times.
    `work()`, if given, is called at every poll (e.g. to queue one large kernel, keeping the GPU busy
    without filling its launch queue).
    Run it while the GPU works, so the readings have something to change with.
    """
    readers = readers if readers is not None else _readers(device)
    last: dict[str, Any] = {}
    changes: dict[str, list[float]] = {k: [] for k in readers}
    failed: dict[str, str] = {}
    polls = 0
    start = clock()
    while True:
        now = clock()
        if now - start >= duration_s and polls:
            break
        if stop_after_changes and polls and all(len(changes[k]) >= stop_after_changes or k in failed for k in readers):
            break
        polls += 1
        if work is not None:
            work()
        for name, read in readers.items():
            if name in failed:
                continue
            try:
                value = read()
            except FieldUnavailable as e:
                failed[name] = str(e)
                continue
            if name in last and value != last[name]:
                changes[name].append(now)
            last[name] = value
        sleep(poll_s)
    elapsed = clock() - start
    resolution = elapsed / polls
    out: dict[str, dict[str, Any]] = {}
    for name in readers:
        times = changes[name]
        row: dict[str, Any] = {"refresh_s": None, "changes": len(times), "polls": polls,
                               "resolution_s": resolution, "window_s": elapsed}
        if name in failed:
            row["reason"] = failed[name]
        elif len(times) < MIN_CHANGES:
            row["reason"] = (f"its value changed {len(times)} time(s) in {elapsed:.3g} s of polling (at least "
                             f"{MIN_CHANGES} are needed): it holds still here, or refreshes more slowly than that")
        else:
            # Between two changes lies a whole number of periods (a refresh may repeat the value): the
            # median interval is the period while most refreshes bring a new value.
            row["refresh_s"] = statistics.median(b - a for a, b in zip(times, times[1:]))
        out[name] = row
    return out


def _try(nvml: Any, call: str, fn: Callable[[], Any], null: dict[str, str], key: str) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a reading, never a failure
        null[key] = describe_error(nvml, call, e)
        return None


def read_gpu_settings(nvml: Any, handle: Any) -> dict[str, Any]:
    """The card's settings that change step times, as found (never changed): application clocks against
    their defaults, the enforced power limit against the default one, and the clock-event reasons right
    now (applications_clocks_setting set on an idle card means clocks are held by a setting: application
    or locked clocks). `null_reasons` for what the card or driver does not answer."""
    null: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key, call, fn in (
        ("app_sm_clock_mhz", "nvmlDeviceGetApplicationsClock(SM)",
         lambda: nvml.nvmlDeviceGetApplicationsClock(handle, getattr(nvml, "NVML_CLOCK_SM", NVML_CLOCK_SM))),
        ("default_app_sm_clock_mhz", "nvmlDeviceGetDefaultApplicationsClock(SM)",
         lambda: nvml.nvmlDeviceGetDefaultApplicationsClock(handle, getattr(nvml, "NVML_CLOCK_SM", NVML_CLOCK_SM))),
        ("app_mem_clock_mhz", "nvmlDeviceGetApplicationsClock(MEM)",
         lambda: nvml.nvmlDeviceGetApplicationsClock(handle, getattr(nvml, "NVML_CLOCK_MEM", NVML_CLOCK_MEM))),
        ("default_app_mem_clock_mhz", "nvmlDeviceGetDefaultApplicationsClock(MEM)",
         lambda: nvml.nvmlDeviceGetDefaultApplicationsClock(handle, getattr(nvml, "NVML_CLOCK_MEM", NVML_CLOCK_MEM))),
        ("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit",
         lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0),
        ("default_power_limit_w", "nvmlDeviceGetPowerManagementDefaultLimit",
         lambda: nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) / 1000.0),
    ):
        out[key] = _try(nvml, call, fn, null, key)
    device = NvmlDevice(nvml, handle)
    try:
        mask = device.clock_event_reasons()
        out["clock_event_reasons_now"] = decode_clock_event_reasons(mask)
        out["clocks_held_by_setting"] = bool(mask & 0x2)
    except FieldUnavailable as e:
        out["clock_event_reasons_now"] = out["clocks_held_by_setting"] = None
        null["clock_event_reasons_now"] = null["clocks_held_by_setting"] = str(e)
    sm, default_sm = out["app_sm_clock_mhz"], out["default_app_sm_clock_mhz"]
    mem, default_mem = out["app_mem_clock_mhz"], out["default_app_mem_clock_mhz"]
    if None in (sm, default_sm):
        out["app_clocks_changed"] = None
        null["app_clocks_changed"] = null.get("app_sm_clock_mhz") or null.get("default_app_sm_clock_mhz", "")
    else:
        out["app_clocks_changed"] = sm != default_sm or (mem is not None and default_mem is not None
                                                         and mem != default_mem)
    limit, default = out["power_limit_w"], out["default_power_limit_w"]
    out["power_limit_below_default"] = None if None in (limit, default) else limit < default
    if out["power_limit_below_default"] is None:
        null["power_limit_below_default"] = null.get("power_limit_w") or null.get("default_power_limit_w", "")
    out["null_reasons"] = null
    return out


def read_processes(nvml: Any, handle: Any, own_pid: int | None = None) -> dict[str, Any]:
    """The compute processes on the GPU other than this one, with the GPU memory each holds
    (nvmlDeviceGetComputeRunningProcesses). `processes` is None with `reason` where NVML cannot tell
    (in a container NVML often sees no process at all: an empty list is what NVML said, not proof)."""
    own = os.getpid() if own_pid is None else own_pid
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception as e:  # noqa: BLE001
        return {"processes": None, "reason": describe_error(nvml, "nvmlDeviceGetComputeRunningProcesses", e)}
    rows = []
    for p in procs:
        pid = int(getattr(p, "pid", -1))
        if pid == own:
            continue
        used = getattr(p, "usedGpuMemory", None)
        try:
            name = as_text(nvml.nvmlSystemGetProcessName(pid))
        except Exception:  # noqa: BLE001 - the name is a courtesy
            name = None
        rows.append({"pid": pid, "name": name,
                     "used_gpu_memory_bytes": int(used) if isinstance(used, int) and used >= 0 else None})
    return {"processes": rows, "reason": None}
