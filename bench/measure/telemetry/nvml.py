"""Failure-tolerant access to NVML (module `pynvml` from nvidia-ml-py) for one CUDA device.

Every reading answers a value or raises `FieldUnavailable` carrying a one-line reason; nothing here
invents a number. A call that answers NVML_ERROR_NOT_SUPPORTED once is not asked again.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

# Clock-event (formerly "throttle") reason bits, from nvml.h (nvmlClocksEventReason*). Kept here
# rather than read off the module so that decoding works whatever binding version is installed.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
POWER_THROTTLE_MASK = 0x4 | 0x80
THERMAL_THROTTLE_MASK = 0x20 | 0x40
HW_SLOWDOWN_MASK = 0x8
# Bits that mean "the clock is held below what the work asked for" (idle, sync boost and
# application-clock settings are not slowdowns of a busy GPU).
THROTTLE_MASK = POWER_THROTTLE_MASK | THERMAL_THROTTLE_MASK | HW_SLOWDOWN_MASK

# GPM metric ids (nvmlGpmMetricId_t); names are ours, in the user's words.
GPM_METRICS: dict[str, int] = {
    "sm_activity_pct": 2,        # NVML_GPM_METRIC_SM_UTIL: share of SMs busy, time-averaged
    "sm_occupancy_pct": 3,       # NVML_GPM_METRIC_SM_OCCUPANCY: resident warps / max warps
    "tensor_activity_pct": 5,    # NVML_GPM_METRIC_ANY_TENSOR_UTIL: share of time tensor cores busy
    "dram_bw_pct": 10,           # NVML_GPM_METRIC_DRAM_BW_UTIL: DRAM bandwidth / theoretical peak
}

# NVML's documentation of nvmlGpmSampleGet: two samples should be more than 100 ms apart, since the
# GPM counters are refreshed internally at about that rate; metrics over a shorter interval can be
# stale, zero or erratic. Intervals shorter than this are not used (see sampler.GPM_PERIOD_S).
GPM_MIN_INTERVAL_S = 0.1

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_FUNCTION_NOT_FOUND = 13


class NvmlUnavailable(Exception):
    """NVML cannot be used for this device at all; str(e) is the reason, in one line."""


class FieldUnavailable(Exception):
    """One reading could not be taken; str(e) is the reason."""


def decode_clock_event_reasons(mask: int | None) -> list[str]:
    """Names of the clock-event reason bits set in `mask`, lowest bit first; unknown bits as hex."""
    if not mask:
        return []
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names


def _const(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


def error_code(nvml: Any, exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def is_nvml_error(nvml: Any, exc: BaseException) -> bool:
    base = getattr(nvml, "NVMLError", None)
    return isinstance(base, type) and isinstance(exc, base)


def is_not_supported(nvml: Any, exc: BaseException) -> bool:
    return is_nvml_error(nvml, exc) and error_code(nvml, exc) == _const(
        nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED)


def is_function_not_found(nvml: Any, exc: BaseException) -> bool:
    return is_nvml_error(nvml, exc) and error_code(nvml, exc) == _const(
        nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", NVML_ERROR_FUNCTION_NOT_FOUND)


def describe_error(nvml: Any, call: str, exc: BaseException) -> str:
    if is_not_supported(nvml, exc):
        return f"{call}: not supported on this GPU/driver (NVML_ERROR_NOT_SUPPORTED)"
    if is_function_not_found(nvml, exc):
        return f"{call}: not in this driver's NVML (NVML_ERROR_FUNCTION_NOT_FOUND)"
    if is_nvml_error(nvml, exc):
        return f"{call}: NVML error: {exc}"
    return f"{call}: {type(exc).__name__}: {exc}"


def as_text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def load_nvml(nvml: Any = None) -> Any:
    """Return an initialised NVML module (the given one, else `import pynvml`).

    Raises NvmlUnavailable when the module is missing or the driver does not answer. Each
    successful call must be balanced by `shutdown_nvml` (NVML keeps a reference count).
    """
    if nvml is None:
        try:
            import pynvml as nvml  # noqa: PLC0415 - optional dependency, imported only when asked
        except ImportError:
            raise NvmlUnavailable("the pynvml module (package nvidia-ml-py) is not installed") from None
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError (no driver, library not found) or OSError from ctypes
        raise NvmlUnavailable(f"NVML did not start (no NVIDIA driver?): {describe_error(nvml, 'nvmlInit', e)}") from None
    return nvml


def shutdown_nvml(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # shutting down must never raise in cleanup paths
        pass


def parse_device(device: Any) -> tuple[str, int | None]:
    """(type, index) of a torch-style device: "cuda:1", "cuda", "cpu", torch.device, or an int (CUDA index)."""
    if isinstance(device, int) and not isinstance(device, bool):
        return "cuda", device
    dev_type = getattr(device, "type", None)
    if isinstance(dev_type, str):
        return dev_type, getattr(device, "index", None)
    text = str(device).strip().lower()
    if ":" in text:
        kind, _, idx = text.partition(":")
        try:
            return kind, int(idx)
        except ValueError:
            return kind, None
    return text, None


def _torch_cuda_uuid(index: int) -> str | None:
    """The CUDA device's UUID as torch sees it, when torch has CUDA; None otherwise."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        return str(uuid) if uuid is not None else None
    except Exception:
        return None


def device_handle(nvml: Any, device: Any) -> Any:
    """The NVML handle of a CUDA device, matched by UUID where torch can tell it.

    CUDA numbers devices fastest-first and after CUDA_VISIBLE_DEVICES; NVML numbers them by PCI
    bus. The UUID is the same in both, so it is tried first; the index path covers a torch
    without CUDA (tests with a fake NVML) and honours CUDA_VISIBLE_DEVICES.
    """
    kind, index = parse_device(device)
    if kind != "cuda":
        raise NvmlUnavailable(f"device {device!s} is not a CUDA device: NVML telemetry applies to NVIDIA GPUs only")
    index = 0 if index is None else index
    uuid = _torch_cuda_uuid(index)
    if uuid:
        for candidate in (uuid, f"GPU-{uuid}"):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(candidate)
            except Exception:
                continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    target: int | str = index
    if visible is not None and visible.strip():
        entries = [v.strip() for v in visible.split(",") if v.strip()]
        if index >= len(entries):
            raise NvmlUnavailable(f"cuda:{index} is not among CUDA_VISIBLE_DEVICES={visible!r}")
        entry = entries[index]
        if entry.upper().startswith("MIG-"):
            raise NvmlUnavailable(f"cuda:{index} is a MIG instance ({entry}): device-level NVML readings "
                                  "cover the whole GPU, not this slice, so none are reported")
        target = int(entry) if entry.isdigit() else entry
    try:
        if isinstance(target, int):
            return nvml.nvmlDeviceGetHandleByIndex(target)
        return nvml.nvmlDeviceGetHandleByUUID(target)
    except Exception as e:
        raise NvmlUnavailable(f"no NVML device for cuda:{index}: {describe_error(nvml, 'nvmlDeviceGetHandle', e)}") from None


def mig_enabled(nvml: Any, handle: Any) -> bool:
    """True when MIG mode is on. A GPU that cannot do MIG (NOT_SUPPORTED) is not in MIG mode."""
    try:
        current = nvml.nvmlDeviceGetMigMode(handle)[0]
    except Exception:
        return False
    return current == _const(nvml, "NVML_DEVICE_MIG_ENABLE", 1)


def field_value(fv: Any) -> float | int | None:
    """The number in one nvmlFieldValue_t, read through its declared value type."""
    members = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    name = members.get(getattr(fv, "valueType", 1), "uiVal")
    return getattr(fv.value, name, None)


class NvmlDevice:
    """Readings of one device. Each method returns a number or raises FieldUnavailable.

    A field whose call answered NOT_SUPPORTED (or is missing from the driver) is remembered and
    not asked again, so a sampler loop costs nothing for fields the card lacks. Safe to call from
    one sampler thread at a time; only NVML calls are made (no CUDA).
    """

    def __init__(self, nvml: Any, handle: Any):
        self.nvml = nvml
        self.handle = handle
        self._disabled: dict[str, str] = {}
        self._lock = threading.Lock()
        self.calls = 0  # NVML calls made (the sampler's cost per tick is measured with it)

    def disabled_reason(self, key: str) -> str | None:
        return self._disabled.get(key)

    def _call(self, key: str, call: str, fn: Callable[[], Any]) -> Any:
        reason = self._disabled.get(key)
        if reason is not None:
            raise FieldUnavailable(reason)
        self.calls += 1
        try:
            return fn()
        except Exception as e:
            reason = describe_error(self.nvml, call, e)
            if is_not_supported(self.nvml, e) or is_function_not_found(self.nvml, e) or isinstance(e, AttributeError):
                with self._lock:
                    self._disabled[key] = reason
            raise FieldUnavailable(reason) from None

    def utilization_pct(self) -> tuple[float, float]:
        """(kernel-active %, memory-controller %) over NVML's trailing sample window."""
        u = self._call("utilization", "nvmlDeviceGetUtilizationRates",
                       lambda: self.nvml.nvmlDeviceGetUtilizationRates(self.handle))
        return float(u.gpu), float(u.memory)

    def memory_used_bytes(self) -> int:
        m = self._call("memory", "nvmlDeviceGetMemoryInfo", lambda: self.nvml.nvmlDeviceGetMemoryInfo(self.handle))
        return int(m.used)

    def memory_total_bytes(self) -> int:
        m = self._call("memory", "nvmlDeviceGetMemoryInfo", lambda: self.nvml.nvmlDeviceGetMemoryInfo(self.handle))
        return int(m.total)

    def power_w(self) -> float:
        """Board power; on Ampere (except GA100) and later a 1 s trailing average."""
        mw = self._call("power", "nvmlDeviceGetPowerUsage", lambda: self.nvml.nvmlDeviceGetPowerUsage(self.handle))
        return mw / 1000.0

    def power_instant_w(self) -> float:
        fid = _const(self.nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)

        def read():
            fv = self.nvml.nvmlDeviceGetFieldValues(self.handle, [fid])[0]
            if getattr(fv, "nvmlReturn", 0) != 0:
                # The call succeeded but this field did not: surface it as that field's error.
                raise self.nvml.NVMLError(fv.nvmlReturn)
            return field_value(fv)

        mw = self._call("power_instant", "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)", read)
        if mw is None:
            raise FieldUnavailable("NVML_FI_DEV_POWER_INSTANT: field had no value")
        return float(mw) / 1000.0

    def power_fields(self) -> tuple[float | None, float | None, dict[str, str]]:
        """(1 s average W, instantaneous W, reasons) in one nvmlDeviceGetFieldValues call, where the sampler
        used to make two. A field the card does not answer is not asked again: the average then comes from
        nvmlDeviceGetPowerUsage (the same 1 s average on Ampere and later), the instant one is None."""
        avg_id = _const(self.nvml, "NVML_FI_DEV_POWER_AVERAGE", NVML_FI_DEV_POWER_AVERAGE)
        inst_id = _const(self.nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        wanted = [(key, fid) for key, fid in (("power_avg_field", avg_id), ("power_instant", inst_id))
                  if key not in self._disabled]
        values: dict[str, float | None] = {"power_avg_field": None, "power_instant": None}
        reasons: dict[str, str] = {}
        if wanted:
            call = "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_AVERAGE, NVML_FI_DEV_POWER_INSTANT)"
            try:
                fvs = self._call("power_fields", call,
                                 lambda: self.nvml.nvmlDeviceGetFieldValues(self.handle, [f for _, f in wanted]))
            except FieldUnavailable as e:
                fvs = None
                reasons["power_fields"] = str(e)
            for i, (key, fid) in enumerate(wanted):
                if fvs is None:
                    continue
                fv = fvs[i]
                code = getattr(fv, "nvmlReturn", 0)
                mw = field_value(fv) if code == 0 else None
                if code != 0 or mw is None:
                    name = "NVML_FI_DEV_POWER_AVERAGE" if fid == avg_id else "NVML_FI_DEV_POWER_INSTANT"
                    why = (f"nvmlDeviceGetFieldValues({name}): not supported on this GPU/driver "
                           f"(NVML_ERROR_NOT_SUPPORTED)" if code == NVML_ERROR_NOT_SUPPORTED
                           else f"nvmlDeviceGetFieldValues({name}): " + (f"NVML return code {code}" if code
                                                                         else "field had no value"))
                    with self._lock:
                        self._disabled[key] = why
                else:
                    values[key] = float(mw) / 1000.0
        if "power_fields" in self._disabled:
            for key in ("power_avg_field", "power_instant"):
                self._disabled.setdefault(key, self._disabled["power_fields"])
        avg = values["power_avg_field"]
        if avg is None:
            try:
                avg = self.power_w()
            except FieldUnavailable as e:
                reasons["power_w"] = str(e)
        instant = values["power_instant"]
        if instant is None:
            reasons["power_instant_w"] = self._disabled.get("power_instant") or reasons.get(
                "power_fields", "NVML_FI_DEV_POWER_INSTANT: no value")
        return avg, instant, reasons

    def sm_clock_mhz(self) -> int:
        clock = _const(self.nvml, "NVML_CLOCK_SM", NVML_CLOCK_SM)
        return int(self._call("sm_clock", "nvmlDeviceGetClockInfo(SM)",
                              lambda: self.nvml.nvmlDeviceGetClockInfo(self.handle, clock)))

    def temperature_c(self) -> float:
        sensor = _const(self.nvml, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)
        return float(self._call("temperature", "nvmlDeviceGetTemperature",
                                lambda: self.nvml.nvmlDeviceGetTemperature(self.handle, sensor)))

    def clock_event_reasons(self) -> int:
        """Bit mask of why clocks are below their maximum (newer name first, then the old one)."""
        def read():
            fn = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            if fn is not None:
                try:
                    return fn(self.handle)
                except Exception as e:
                    if not (is_function_not_found(self.nvml, e) or is_not_supported(self.nvml, e)):
                        raise
            return self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons(self.handle)

        return int(self._call("clock_events", "nvmlDeviceGetCurrentClocksEventReasons", read))

    def energy_mj(self) -> int:
        """Total energy since the driver loaded, in millijoules (Volta and later)."""
        return int(self._call("energy", "nvmlDeviceGetTotalEnergyConsumption",
                              lambda: self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)))


class GpmReader:
    """GPU Performance Monitoring (Hopper and later): metrics computed between two samples.

    `take()` grabs a new sample and returns the metrics over the interval since the previous
    one (None for the first sample after `reset()`). Samples alternate between two buffers
    allocated once, so a sampler loop allocates nothing. The caller spaces the calls: NVML wants
    more than GPM_MIN_INTERVAL_S between two samples.
    """

    def __init__(self, nvml: Any, handle: Any):
        self.nvml = nvml
        self.handle = handle
        self.supported = False
        self.reason: str | None = None
        self.metric_reasons: dict[str, str] = {}
        self._samples: list[Any] = []
        self._have_previous = False
        self._current = 0
        self._request: Any = None
        query = getattr(nvml, "nvmlGpmQueryDeviceSupport", None)
        if query is None:
            self.reason = "GPM: this pynvml has no nvmlGpmQueryDeviceSupport (needs nvidia-ml-py >= 12.535)"
            return
        try:
            support = query(handle)
        except Exception as e:
            self.reason = f"GPM: {describe_error(nvml, 'nvmlGpmQueryDeviceSupport', e)}"
            return
        if not getattr(support, "isSupportedDevice", 0):
            self.reason = "GPM: nvmlGpmQueryDeviceSupport says this GPU is not supported (GPM needs Hopper or newer)"
            return
        try:
            self._samples = [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()]
            self._request = nvml.c_nvmlGpmMetricsGet_t()
        except Exception as e:
            self.close()
            self.reason = f"GPM: {describe_error(nvml, 'nvmlGpmSampleAlloc', e)}"
            return
        self.supported = True

    def reset(self) -> None:
        """Forget the previous sample, so no interval spans a gap between sweep points."""
        self._have_previous = False

    @property
    def has_sample(self) -> bool:
        """Whether a sample is held that the next `take()` will measure from."""
        return self._have_previous

    def take(self) -> dict[str, float | None] | None:
        if not self.supported:
            return None
        nvml = self.nvml
        current = self._samples[self._current]
        try:
            nvml.nvmlGpmSampleGet(self.handle, current)
        except Exception as e:
            self.reason = f"GPM: {describe_error(nvml, 'nvmlGpmSampleGet', e)}"
            self._have_previous = False
            return None
        previous = self._samples[1 - self._current]
        had_previous = self._have_previous
        self._have_previous = True
        self._current = 1 - self._current
        if not had_previous:
            return None
        req = self._request
        req.version = _const(nvml, "NVML_GPM_METRICS_GET_VERSION", 1)
        req.numMetrics = len(GPM_METRICS)
        req.sample1 = previous
        req.sample2 = current
        for i, metric_id in enumerate(GPM_METRICS.values()):
            req.metrics[i].metricId = metric_id
        try:
            nvml.nvmlGpmMetricsGet(req)
        except Exception as e:
            self.reason = f"GPM: {describe_error(nvml, 'nvmlGpmMetricsGet', e)}"
            return None
        out: dict[str, float | None] = {}
        for i, name in enumerate(GPM_METRICS):
            m = req.metrics[i]
            if getattr(m, "nvmlReturn", 0) != 0:
                out[name] = None
                self.metric_reasons[name] = f"GPM metric {GPM_METRICS[name]}: NVML return code {m.nvmlReturn}"
            else:
                out[name] = float(m.value)
        return out

    def close(self) -> None:
        free = getattr(self.nvml, "nvmlGpmSampleFree", None)
        for s in self._samples:
            try:
                if free is not None:
                    free(s)
            except Exception:
                pass
        self._samples = []
        self.supported = False
