"""A stand-in for the `pynvml` module (nvidia-ml-py) so GPU telemetry paths run in CPU tests.

`make_fake_nvml(...)` returns a fresh module object with the real module's names (nvmlInit,
NVMLError_NotSupported, NVML_FI_DEV_POWER_INSTANT, GPM functions, clock-event constants, ...) and
readings configured per test. A reading may be a constant, a list (one item per call, the last one
repeating) or a callable taking no arguments. Listing a function name in `not_supported` makes it
raise NVMLError_NotSupported, as a card without that feature would.
"""

from __future__ import annotations

import itertools
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Error codes, as in nvml.h.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

_ERROR_NAMES = {
    NVML_ERROR_UNINITIALIZED: ("Uninitialized", "NVMLError_Uninitialized"),
    NVML_ERROR_INVALID_ARGUMENT: ("Invalid Argument", "NVMLError_InvalidArgument"),
    NVML_ERROR_NOT_SUPPORTED: ("Not Supported", "NVMLError_NotSupported"),
    NVML_ERROR_NO_PERMISSION: ("Insufficient Permissions", "NVMLError_NoPermission"),
    NVML_ERROR_NOT_FOUND: ("Not Found", "NVMLError_NotFound"),
    NVML_ERROR_DRIVER_NOT_LOADED: ("Driver Not Loaded", "NVMLError_DriverNotLoaded"),
    NVML_ERROR_LIBRARY_NOT_FOUND: ("NVML Shared Library Not Found", "NVMLError_LibraryNotFound"),
    NVML_ERROR_FUNCTION_NOT_FOUND: ("Function Not Found", "NVMLError_FunctionNotFound"),
    NVML_ERROR_GPU_IS_LOST: ("GPU is lost", "NVMLError_GpuIsLost"),
    NVML_ERROR_UNKNOWN: ("Unknown Error", "NVMLError_Unknown"),
}


class NVMLError(Exception):
    """Same shape as pynvml.NVMLError: NVMLError(code) returns the subclass for that code."""

    _valClassMapping: dict[int, type] = {}

    def __new__(typ, value):
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self):
        return _ERROR_NAMES.get(self.value, (f"NVML Error with code {self.value}",))[0]

    def __eq__(self, other):
        return getattr(other, "value", None) == self.value

    __hash__ = Exception.__hash__


_ERROR_CLASSES: dict[str, type] = {}
for _code, (_text, _cls_name) in _ERROR_NAMES.items():
    def _make_new(code):
        def new(typ, *args):
            return NVMLError.__new__(typ, code)
        return new
    _cls = type(_cls_name, (NVMLError,), {"__new__": _make_new(_code)})
    NVMLError._valClassMapping[_code] = _cls
    _ERROR_CLASSES[_cls_name] = _cls

CONSTANTS = {
    "NVML_SUCCESS": NVML_SUCCESS,
    **{name: value for name, value in globals().items() if name.startswith("NVML_ERROR_")},
    "NVML_CLOCK_GRAPHICS": 0, "NVML_CLOCK_SM": 1, "NVML_CLOCK_MEM": 2, "NVML_CLOCK_VIDEO": 3,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_FI_DEV_POWER_AVERAGE": 185, "NVML_FI_DEV_POWER_INSTANT": 186,
    "NVML_VALUE_TYPE_DOUBLE": 0, "NVML_VALUE_TYPE_UNSIGNED_INT": 1,
    "NVML_DEVICE_MIG_DISABLE": 0, "NVML_DEVICE_MIG_ENABLE": 1,
    "NVML_FEATURE_DISABLED": 0, "NVML_FEATURE_ENABLED": 1,
    "NVML_GPM_METRICS_GET_VERSION": 1, "NVML_GPM_SUPPORT_VERSION": 1, "NVML_GPM_METRIC_MAX": 477,
    "NVML_GPM_METRIC_GRAPHICS_UTIL": 1, "NVML_GPM_METRIC_SM_UTIL": 2, "NVML_GPM_METRIC_SM_OCCUPANCY": 3,
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL": 5, "NVML_GPM_METRIC_DRAM_BW_UTIL": 10,
    "NVML_NVLINK_MAX_LINKS": 18,
    "NVML_TOPOLOGY_INTERNAL": 0, "NVML_TOPOLOGY_SINGLE": 10, "NVML_TOPOLOGY_MULTIPLE": 20,
    "NVML_TOPOLOGY_HOSTBRIDGE": 30, "NVML_TOPOLOGY_NODE": 40, "NVML_TOPOLOGY_SYSTEM": 50,
}
_REASONS = {"GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8,
            "SyncBoost": 0x10, "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40,
            "HwPowerBrakeSlowdown": 0x80, "DisplayClockSetting": 0x100, "None": 0x0}
for _name, _bit in _REASONS.items():
    CONSTANTS[f"nvmlClocksEventReason{_name}"] = _bit
    CONSTANTS[f"nvmlClocksThrottleReason{_name}"] = _bit


@dataclass
class FakeDevice:
    """Configured readings of one fake GPU (defaults: an idle-ish H100 SXM)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    compute_capability: tuple[int, int] = (9, 0)
    utilization: Any = (50, 20)              # (kernel-active %, memory-controller %)
    memory_used_bytes: Any = 10 * 2**30
    memory_total_bytes: int = 80 * 2**30
    power_mw: Any = 300_000
    power_instant_mw: Any = 320_000
    sm_clock_mhz: Any = 1980
    mem_clock_mhz: Any = 2619
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    clock_reasons: Any = 0
    energy_mj: Any = 1_000_000
    temperature_c: Any = 45
    power_limit_mw: int = 700_000
    enforced_power_limit_mw: int = 700_000
    ecc: tuple[int, int] = (1, 1)
    mig: tuple[int, int] = (0, 0)
    persistence: int = 1
    gpm_supported: bool = True
    # GPM metric id -> reading; a missing id answers NOT_SUPPORTED for that metric only.
    gpm_metrics: dict[int, Any] = field(default_factory=lambda: {2: 60.0, 3: 30.0, 5: 40.0, 10: 25.0})
    # The real counters refresh internally (NVML asks for > 100 ms between samples): two samples closer
    # than this give stale metrics, read here as 0.0. 0 turns the effect off.
    gpm_refresh_s: float = 0.0
    # Interconnect: the state of each NVLink link (1 active, 0 not; empty: no NVLink, NOT_SUPPORTED),
    # the PCIe link, and the topology level to each other device (by index; missing: SYSTEM).
    nvlink_states: tuple[int, ...] = ()
    pcie_generation: int = 5
    pcie_width: int = 16
    topology: dict[int, int] = field(default_factory=dict)
    # How often each reading refreshes on the card, seconds, by the name of the field above ("energy_mj",
    # "power_mw", "power_instant_mw", "utilization", "sm_clock_mhz", ...): between refreshes a call answers
    # the value of the last refresh (on the module's clock), as NVML does. Missing: a new value every call.
    refresh_s: dict[str, float] = field(default_factory=dict)
    # Compute processes on the GPU: (pid, used GPU memory in bytes, or None where NVML cannot tell).
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    # Application clocks (current and default, MHz) and the default power limit.
    app_sm_clock_mhz: int = 1980
    default_app_sm_clock_mhz: int = 1980
    app_mem_clock_mhz: int = 2619
    default_app_mem_clock_mhz: int = 2619
    default_power_limit_mw: int = 700_000


class _Handle:
    def __init__(self, index: int):
        self.index = index

    def __repr__(self):
        return f"<fake nvmlDevice {self.index}>"


class _Reading:
    """Turns a configured value (constant, list, callable) into one value per call."""

    def __init__(self):
        self._iters: dict[tuple[int, str], Any] = {}
        self._last: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()

    def next(self, dev_index: int, key: str, spec: Any) -> Any:
        if callable(spec):
            return spec()
        if isinstance(spec, list):
            with self._lock:
                it = self._iters.setdefault((dev_index, key), iter(spec))
                try:
                    self._last[(dev_index, key)] = next(it)
                except StopIteration:
                    pass
                return self._last[(dev_index, key)]
        return spec


def make_fake_nvml(devices: list[FakeDevice] | None = None, *, init_error: int | None = None,
                   not_supported: tuple[str, ...] | set[str] = (), driver_version: str = "580.159.04",
                   cuda_driver_version: int = 13000, with_gpm: bool = True,
                   with_event_reasons: bool = True, clock: Any = time.perf_counter,
                   **device_fields: Any) -> types.ModuleType:
    """A fresh fake `pynvml` module.

    devices: the GPUs (default: one FakeDevice built from `device_fields`).
    init_error: an NVML error code nvmlInit raises (e.g. NVML_ERROR_DRIVER_NOT_LOADED).
    not_supported: function names that raise NVMLError_NotSupported ("nvmlDeviceGetFieldValues"
        answers per-field NOT_SUPPORTED instead, as the real call does).
    with_gpm / with_event_reasons: False removes the GPM functions / the newer clock-event name,
        as an older nvidia-ml-py would.
    clock: the time source of the readings' refresh periods (FakeDevice.refresh_s); tests pass a fake one.
    The module records `calls` (a Counter of function names), `init_count` and `gpm_sample_times`
    (time.perf_counter() of each nvmlGpmSampleGet).
    """
    devs = devices if devices is not None else [FakeDevice(**device_fields)]
    m = types.ModuleType("pynvml")
    m.__dict__.update(CONSTANTS)
    m.__dict__.update(_ERROR_CLASSES)
    m.NVMLError = NVMLError
    m.devices = devs
    m.calls = Counter()
    m.init_count = 0
    m.gpm_sample_times = []
    m.not_supported = set(not_supported)
    reading = _Reading()
    gpm_seq = itertools.count(1)

    def api(fn):
        name = fn.__name__

        def wrapper(*args, **kwargs):
            m.calls[name] += 1
            if name not in ("nvmlInit", "nvmlInitWithFlags") and m.init_count <= 0:
                raise NVMLError(NVML_ERROR_UNINITIALIZED)
            if name in m.not_supported and name != "nvmlDeviceGetFieldValues":
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            return fn(*args, **kwargs)

        wrapper.__name__ = name
        setattr(m, name, wrapper)
        return wrapper

    def dev(handle) -> FakeDevice:
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(devs):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return devs[handle.index]

    refreshed: dict[tuple[int, str], tuple[int, Any]] = {}

    def value(handle, key):
        d = dev(handle)
        period = d.refresh_s.get(key)
        if not period:
            return reading.next(handle.index, key, getattr(d, key))
        # A new value only when the card's refresh period has turned over since the last one.
        epoch = int(clock() // period)
        held = refreshed.get((handle.index, key))
        if held is None or held[0] != epoch:
            held = (epoch, reading.next(handle.index, key, getattr(d, key)))
            refreshed[(handle.index, key)] = held
        return held[1]

    @api
    def nvmlInit():
        if init_error is not None:
            raise NVMLError(init_error)
        m.init_count += 1

    @api
    def nvmlInitWithFlags(flags):
        nvmlInit()

    @api
    def nvmlShutdown():
        m.init_count -= 1

    @api
    def nvmlSystemGetDriverVersion():
        return driver_version

    @api
    def nvmlSystemGetCudaDriverVersion():
        return cuda_driver_version

    @api
    def nvmlDeviceGetCount():
        return len(devs)

    @api
    def nvmlDeviceGetHandleByIndex(index):
        if not 0 <= index < len(devs):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    @api
    def nvmlDeviceGetHandleByUUID(uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for i, d in enumerate(devs):
            if d.uuid == uuid:
                return _Handle(i)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    @api
    def nvmlDeviceGetName(handle):
        return dev(handle).name

    @api
    def nvmlDeviceGetUUID(handle):
        return dev(handle).uuid

    @api
    def nvmlDeviceGetCudaComputeCapability(handle):
        return tuple(dev(handle).compute_capability)

    @api
    def nvmlDeviceGetUtilizationRates(handle):
        gpu, mem = value(handle, "utilization")
        return types.SimpleNamespace(gpu=gpu, memory=mem)

    @api
    def nvmlDeviceGetMemoryInfo(handle, version=None):
        d = dev(handle)
        used = value(handle, "memory_used_bytes")
        return types.SimpleNamespace(total=d.memory_total_bytes, used=used, free=d.memory_total_bytes - used)

    @api
    def nvmlDeviceGetPowerUsage(handle):
        return value(handle, "power_mw")

    @api
    def nvmlDeviceGetFieldValues(handle, fieldIds):
        out = []
        for fid in fieldIds:
            fv = types.SimpleNamespace(fieldId=fid, scopeId=0, timestamp=0, latencyUsec=0, valueType=1,
                                       nvmlReturn=NVML_SUCCESS, value=types.SimpleNamespace(uiVal=0, dVal=0.0))
            if fid == CONSTANTS["NVML_FI_DEV_POWER_INSTANT"] and "nvmlDeviceGetFieldValues" not in m.not_supported:
                fv.value.uiVal = value(handle, "power_instant_mw")
            elif fid == CONSTANTS["NVML_FI_DEV_POWER_AVERAGE"] and "nvmlDeviceGetFieldValues" not in m.not_supported:
                fv.value.uiVal = value(handle, "power_mw")
            else:
                fv.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            out.append(fv)
        return out

    @api
    def nvmlDeviceGetClockInfo(handle, clock_type):
        return value(handle, "sm_clock_mhz" if clock_type == 1 else "mem_clock_mhz")

    @api
    def nvmlDeviceGetMaxClockInfo(handle, clock_type):
        d = dev(handle)
        return d.max_sm_clock_mhz if clock_type == 1 else d.max_mem_clock_mhz

    @api
    def nvmlDeviceGetCurrentClocksThrottleReasons(handle):
        return value(handle, "clock_reasons")

    if with_event_reasons:
        @api
        def nvmlDeviceGetCurrentClocksEventReasons(handle):
            return value(handle, "clock_reasons")

    @api
    def nvmlDeviceGetTotalEnergyConsumption(handle):
        return value(handle, "energy_mj")

    @api
    def nvmlDeviceGetTemperature(handle, sensor):
        return value(handle, "temperature_c")

    @api
    def nvmlDeviceGetPowerManagementLimit(handle):
        return dev(handle).power_limit_mw

    @api
    def nvmlDeviceGetEnforcedPowerLimit(handle):
        return dev(handle).enforced_power_limit_mw

    @api
    def nvmlDeviceGetPowerManagementDefaultLimit(handle):
        return dev(handle).default_power_limit_mw

    @api
    def nvmlDeviceGetApplicationsClock(handle, clock_type):
        d = dev(handle)
        return d.app_sm_clock_mhz if clock_type in (0, 1) else d.app_mem_clock_mhz

    @api
    def nvmlDeviceGetDefaultApplicationsClock(handle, clock_type):
        d = dev(handle)
        return d.default_app_sm_clock_mhz if clock_type in (0, 1) else d.default_app_mem_clock_mhz

    @api
    def nvmlDeviceGetComputeRunningProcesses(handle):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF,
                                      computeInstanceId=0xFFFFFFFF) for pid, used in dev(handle).processes]

    @api
    def nvmlSystemGetProcessName(pid):
        return f"fake-process-{pid}"

    @api
    def nvmlDeviceGetEccMode(handle):
        return list(dev(handle).ecc)

    @api
    def nvmlDeviceGetMigMode(handle):
        return list(dev(handle).mig)

    @api
    def nvmlDeviceGetPersistenceMode(handle):
        return dev(handle).persistence

    @api
    def nvmlDeviceGetNvLinkState(handle, link):
        states = dev(handle).nvlink_states
        if not states:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < len(states):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return states[link]

    @api
    def nvmlDeviceGetCurrPcieLinkGeneration(handle):
        return dev(handle).pcie_generation

    @api
    def nvmlDeviceGetCurrPcieLinkWidth(handle):
        return dev(handle).pcie_width

    @api
    def nvmlDeviceGetTopologyCommonAncestor(handle1, handle2):
        if dev(handle1) is dev(handle2):
            return CONSTANTS["NVML_TOPOLOGY_INTERNAL"]
        return dev(handle1).topology.get(handle2.index, CONSTANTS["NVML_TOPOLOGY_SYSTEM"])

    if with_gpm:
        class c_nvmlGpmMetricsGet_t:
            def __init__(self):
                self.version = 0
                self.numMetrics = 0
                self.sample1 = None
                self.sample2 = None
                self.metrics = [types.SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0)
                                for _ in range(CONSTANTS["NVML_GPM_METRIC_MAX"])]

        m.c_nvmlGpmMetricsGet_t = c_nvmlGpmMetricsGet_t

        @api
        def nvmlGpmQueryDeviceSupport(handle):
            return types.SimpleNamespace(version=1, isSupportedDevice=int(dev(handle).gpm_supported))

        @api
        def nvmlGpmSampleAlloc():
            return types.SimpleNamespace(handle=None, seq=None, freed=False, time=None)

        @api
        def nvmlGpmSampleFree(sample):
            sample.freed = True

        @api
        def nvmlGpmSampleGet(handle, sample):
            if not dev(handle).gpm_supported:
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            sample.handle = handle
            sample.seq = next(gpm_seq)
            sample.time = time.perf_counter()
            m.gpm_sample_times.append(sample.time)
            return sample

        @api
        def nvmlGpmMetricsGet(request):
            s1, s2 = request.sample1, request.sample2
            if (request.version != 1 or s1 is None or s2 is None or s1.seq is None or s2.seq is None
                    or s2.seq <= s1.seq or s1.handle.index != s2.handle.index):
                raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
            d = dev(s2.handle)
            stale = s2.time - s1.time < d.gpm_refresh_s
            for i in range(request.numMetrics):
                metric = request.metrics[i]
                spec = d.gpm_metrics.get(metric.metricId)
                if spec is None:
                    metric.nvmlReturn, metric.value = NVML_ERROR_NOT_SUPPORTED, 0.0
                else:
                    metric.nvmlReturn = NVML_SUCCESS
                    value = float(reading.next(s2.handle.index, f"gpm{metric.metricId}", spec))
                    metric.value = 0.0 if stale else value
            return request

    return m
