"""Background NVML/GPM sampling through a sweep point, summarised over its timed blocks (`Telemetry`).

One sampler thread per point, started before warm-up (`sampling()`) and stopped after the last
timed block; the blocks are marked within it (`measuring()`), and only what was sampled inside them
is summarised. A thread per block would put its start-up ticks (several NVML calls, each taking the
GIL) on the first steps after every host sync, where a launch-bound step is most sensitive. The
sampler makes NVML calls only (no CUDA calls), so the timed steps in the main thread are never
synchronised by it. See docs/telemetry.md for every field.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from bench.measure.telemetry.nvml import (
    GPM_METRICS,
    GPM_MIN_INTERVAL_S,
    HW_SLOWDOWN_MASK,
    POWER_THROTTLE_MASK,
    THERMAL_THROTTLE_MASK,
    THROTTLE_MASK,
    FieldUnavailable,
    GpmReader,
    NvmlDevice,
    NvmlUnavailable,
    as_text,
    decode_clock_event_reasons,
    device_handle,
    load_nvml,
    mig_enabled,
    parse_device,
    shutdown_nvml,
)

DEFAULT_PERIOD_S = 0.05
# Each tick reads what changes fast (utilisation, both powers in one field-values call, clock-event
# reasons: 3 NVML calls); every SLOW_EVERY-th tick (the first included) also what changes slowly or is
# summarised by a median or maximum (memory used, SM clock, temperature: 3 more). 3.75 calls per tick
# on average, where every tick made 7, each a GIL hand-off that a launch-bound step may wait on.
SLOW_EVERY = 4
# A GPM sample is taken only when at least this long has passed since the previous one: twice NVML's
# documented minimum (GPM_MIN_INTERVAL_S, 0.1 s), so each interval spans several internal refreshes.
# The GPM interval runs on across the consecutive timed blocks of one point (timed blocks last about
# 0.1 s each); intervals that begin before the first timed block (in warm-up) are not used, and a last
# sample closes the interval when the point is summarised, if GPM_MIN_INTERVAL_S has passed.
GPM_PERIOD_S = 0.2
# Energy from the counter needs the timed blocks of a point to span at least this many of the counter's
# refreshes, measured (`energy_refresh_period`): the sum of per-block differences is off by up to a refresh's
# worth of energy at each end of the timed span, so 10 refreshes bound that error to 20% (far less on
# average). Shorter points get energy null, "too short", with the figures.
MIN_ENERGY_REFRESHES = 10
# How long `for_device` polls the energy counter (once per process and GPU, before any step runs) to find
# its refresh period; it stops as soon as the counter has changed four times.
ENERGY_REFRESH_PROBE_S = 1.0
_ENERGY_REFRESH: "weakref.WeakKeyDictionary[Any, dict[str, tuple[float | None, str | None]]]" = \
    weakref.WeakKeyDictionary()
MEASURE = "measure"
MEMORY_USED_SCOPE = ("device-wide: nvmlDeviceGetMemoryInfo().used counts the CUDA context and every process on the "
                     "GPU, sampled every few ticks; this process's caching-allocator peaks are peak_allocated_bytes "
                     "and peak_reserved_bytes")
# Raw series kept in the summary are thinned to at most this many points (statistics use all).
MAX_SERIES_POINTS = 400

SAMPLE_FIELDS = ("kernel_active_pct", "mem_ctrl_pct", "memory_used_bytes", "power_w", "power_instant_w",
                 "sm_clock_mhz", "clock_event_reasons", "temperature_c")
GPM_FIELDS = tuple(GPM_METRICS)

# Every key of a summary, in a stable order; values may be None (with null_reasons[key]).
SUMMARY_FIELDS = (
    "telemetry_source", "n_samples", "n_blocks", "sample_period_s", "measured_time_s",
    "kernel_active_pct_mean", "kernel_active_pct_max", "mem_ctrl_pct_mean",
    "memory_used_bytes_max", "memory_used_scope",
    "power_w_energy_mean", "power_source",
    "power_w_mean", "power_w_max", "power_instant_w_mean", "power_instant_w_max",
    "sm_clock_mhz_median", "sm_clock_mhz_min", "sm_clock_mhz_max",
    "temperature_c_max",
    "n_gpm_intervals", "sm_activity_pct_mean", "sm_occupancy_pct_mean", "tensor_activity_pct_mean",
    "dram_bw_pct_mean",
    "energy_j", "energy_per_step_j", "energy_per_sample_j", "energy_source", "energy_note",
    "energy_counter_refresh_s", "energy_counter_refreshes",
    "steps", "batch_size",
    "throttle_reasons", "throttled", "throttled_sample_fraction", "power_capped", "thermally_throttled",
    "hw_slowdown",
    "series", "gpm_series",
)


@dataclass
class Sample:
    """One sampler tick. `t_s` is seconds since the first measured block began."""

    t_s: float
    kernel_active_pct: float | None = None
    mem_ctrl_pct: float | None = None
    memory_used_bytes: int | None = None
    power_w: float | None = None
    power_instant_w: float | None = None
    sm_clock_mhz: int | None = None
    clock_event_reasons: int | None = None
    temperature_c: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GpmInterval:
    """GPM metrics over the interval (t_s - dt_s, t_s] between two GPM samples."""

    t_s: float
    dt_s: float
    sm_activity_pct: float | None = None
    sm_occupancy_pct: float | None = None
    tensor_activity_pct: float | None = None
    dram_bw_pct: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Block:
    """One `measuring()` window: its span, the energy counter at both ends, and what was sampled."""

    start_s: float
    end_s: float | None = None
    energy_start_mj: int | None = None
    energy_end_mj: int | None = None
    samples: list[Sample] = field(default_factory=list)
    gpm: list[GpmInterval] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s


class _SamplerThread(threading.Thread):
    """Samples every `period_s` from start until stopped, handing each Sample to `sink`.

    `gpm_tick()` is offered every tick; it takes a GPM sample only when GPM_PERIOD_S has passed.
    """

    def __init__(self, device: NvmlDevice, sink: Callable[[Sample], None], gpm_tick: Callable[[], None] | None,
                 period_s: float, clock_zero: float, reasons: dict[str, str]):
        super().__init__(name="bench-telemetry-sampler", daemon=True)
        self.device = device
        self.sink = sink
        self.gpm_tick = gpm_tick
        self.period_s = period_s
        self.clock_zero = clock_zero
        self.reasons = reasons
        self.stop_event = threading.Event()
        self.ticks = 0

    def run(self) -> None:
        while True:
            self._tick()
            if self.stop_event.wait(self.period_s):
                break

    def _tick(self) -> None:
        try:
            self.sink(self._read())
            if self.gpm_tick is not None:
                self.gpm_tick()
        except Exception as e:  # a sampler must never take the run down
            self.reasons.setdefault("sampler", f"sampler error: {type(e).__name__}: {e}")

    def _read(self) -> Sample:
        d = self.device
        s = Sample(t_s=time.perf_counter() - self.clock_zero)
        slow = self.ticks % SLOW_EVERY == 0
        self.ticks += 1
        try:
            s.kernel_active_pct, s.mem_ctrl_pct = d.utilization_pct()
        except FieldUnavailable as e:
            self.reasons["kernel_active_pct"] = self.reasons["mem_ctrl_pct"] = str(e)
        s.power_w, s.power_instant_w, why = d.power_fields()
        for name in ("power_w", "power_instant_w"):
            if name in why:
                self.reasons[name] = why[name]
        reads = [("clock_event_reasons", d.clock_event_reasons)]
        if slow:
            reads += [("memory_used_bytes", d.memory_used_bytes), ("sm_clock_mhz", d.sm_clock_mhz),
                      ("temperature_c", d.temperature_c)]
        for name, read in reads:
            try:
                setattr(s, name, read())
            except FieldUnavailable as e:
                self.reasons[name] = str(e)
        return s


def tick_cost(device: NvmlDevice, ticks: int = 200, clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """What one sampler tick costs the process: microseconds per tick (median and 90th percentile over
    `ticks` ticks read back to back, on this thread) and NVML calls per tick. GPM, sampled every
    GPM_PERIOD_S rather than every tick, is not included."""
    thread = _SamplerThread(device, lambda s: None, None, DEFAULT_PERIOD_S, clock(), {})
    calls_before = device.calls
    times = []
    for _ in range(ticks):
        t0 = clock()
        thread._read()
        times.append((clock() - t0) * 1e6)
    times.sort()
    return {"us_per_tick_median": statistics.median(times), "us_per_tick_p90": times[int(0.9 * (len(times) - 1))],
            "nvml_calls_per_tick": (device.calls - calls_before) / ticks, "ticks": ticks,
            "period_s": DEFAULT_PERIOD_S, "slow_fields_every": SLOW_EVERY}


def energy_refresh_period(nvml: Any, handle: Any, max_s: float = ENERGY_REFRESH_PROBE_S) -> tuple[float | None, str | None]:
    """(seconds between refreshes of the energy counter, None) or (None, reason): polled every millisecond
    for at most `max_s`, once per process and GPU (the answer is kept). NVML calls only."""
    from bench.measure.telemetry.gpu_state import MIN_CHANGES, measure_refresh_periods

    try:
        uuid = as_text(nvml.nvmlDeviceGetUUID(handle))
    except Exception:  # noqa: BLE001 - a handle without a UUID is still measured, just not kept
        uuid = None
    known = _ENERGY_REFRESH.get(nvml, {})
    if uuid is not None and uuid in known:
        return known[uuid]
    device = NvmlDevice(nvml, handle)
    row = measure_refresh_periods(device, duration_s=max_s, poll_s=0.001, readers={"energy_counter": device.energy_mj},
                                  stop_after_changes=MIN_CHANGES + 1)["energy_counter"]
    answer = (row["refresh_s"], None if row["refresh_s"] is not None else
              f"the energy counter's refresh period could not be measured: {row['reason']}")
    if uuid is not None:
        _ENERGY_REFRESH.setdefault(nvml, {})[uuid] = answer
    return answer


class Telemetry:
    """What ran on the GPU during a sweep point's timed blocks, and at what clock and power.

    This base class is the "nothing to measure" case (CPU device, no driver, no pynvml, MIG):
    `measuring()` costs nothing and `summary()` is all None with a reason for each field.
    Use `Telemetry.for_device(...)` to get the right kind.
    """

    available = False

    def __init__(self, reason: str | None = "telemetry not started", period_s: float = DEFAULT_PERIOD_S):
        self.reason = reason
        self.period_s = period_s

    @classmethod
    def for_device(cls, device: Any, period_s: float = DEFAULT_PERIOD_S, nvml: Any = None,
                   energy_refresh_s: float | str | None = MEASURE) -> "Telemetry":
        """NVML telemetry for a CUDA device, else a no-op Telemetry that says why.

        `nvml` is the module to use (tests inject a fake); None imports pynvml if installed.
        `energy_refresh_s`: the energy counter's refresh period; MEASURE (the default) measures it
        (`energy_refresh_period`, once per process and GPU). Never raises for an unusable environment.
        """
        if not (isinstance(period_s, (int, float)) and period_s > 0):
            from bench.core.errors import BenchError

            raise BenchError(f"telemetry sampling period must be a positive number of seconds, got {period_s!r}")
        try:
            kind, _ = parse_device(device)
            if kind != "cuda":
                return cls(f"device {device!s} is not a CUDA device: NVML telemetry applies to NVIDIA GPUs only",
                           period_s)
            module = load_nvml(nvml)
        except NvmlUnavailable as e:
            return cls(str(e), period_s)
        try:
            handle = device_handle(module, device)
            if mig_enabled(module, handle):
                raise NvmlUnavailable("MIG mode is enabled on this GPU: NVML utilisation, power and energy are "
                                      "device-wide (all MIG instances), not this process's slice, so none are reported")
            refresh, why = (energy_refresh_period(module, handle) if energy_refresh_s == MEASURE
                            else (energy_refresh_s, None if energy_refresh_s else "not measured (none given)"))
            return NvmlTelemetry(module, handle, period_s, energy_refresh_s=refresh, energy_refresh_reason=why)
        except NvmlUnavailable as e:
            shutdown_nvml(module)
            return cls(str(e), period_s)
        except Exception as e:  # an unexpected binding failure must not stop a sweep
            shutdown_nvml(module)
            return cls(f"NVML telemetry could not start: {type(e).__name__}: {e}", period_s)

    def sampling(self) -> contextlib.AbstractContextManager:
        """Context manager around a whole point (enter before warm-up): one sampler for all its blocks."""
        return contextlib.nullcontext()

    def measuring(self) -> contextlib.AbstractContextManager:
        """Context manager around one timed block (enter before the first step, leave after the sync)."""
        return contextlib.nullcontext()

    def summary(self, steps: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {k: None for k in SUMMARY_FIELDS}
        out["steps"] = steps
        out["batch_size"] = batch_size
        reasons = {k: self.reason for k in SUMMARY_FIELDS if k not in ("steps", "batch_size")}
        if steps is None:
            reasons["steps"] = "steps not passed to summary()"
        if batch_size is None:
            reasons["batch_size"] = "batch_size not passed to summary()"
        out["null_reasons"] = reasons
        return out

    def reset(self) -> None:
        """Forget the blocks measured so far (start a new sweep point with the same sampler)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Telemetry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NvmlTelemetry(Telemetry):
    """Telemetry from NVML (and GPM where supported) for one CUDA device.

    `sampling()` runs one sampler thread for a whole point; `measuring()` marks a timed block within
    it (and starts the thread, if `sampling()` did not, to run until the point is summarised).
    Samples and GPM intervals are kept for the point and given to the blocks whose span they fall in
    when the point is summarised: what was sampled in warm-up or between blocks is left out.
    """

    available = True

    def __init__(self, nvml: Any, handle: Any, period_s: float = DEFAULT_PERIOD_S, *,
                 energy_refresh_s: float | None = None, energy_refresh_reason: str | None = None):
        super().__init__(reason=None, period_s=period_s)
        self.energy_refresh_s = energy_refresh_s
        self.energy_refresh_reason = energy_refresh_reason or (
            None if energy_refresh_s else "the energy counter's refresh period was not measured")
        self.nvml = nvml
        self.device = NvmlDevice(nvml, handle)
        self.gpm = GpmReader(nvml, handle)
        self.blocks: list[Block] = []
        self.reasons: dict[str, str] = {}
        self.threads_started = 0
        self._samples: list[Sample] = []
        self._gpm: list[GpmInterval] = []
        self._thread: _SamplerThread | None = None
        self._clock_zero: float | None = None
        self._gpm_last_s: float | None = None  # time of the last GPM sample, on the blocks' clock
        self._closing_gpm: GpmInterval | None = None  # the interval closed when the point is summarised
        self._closed = False
        self._active = False

    def reset(self) -> None:
        self.stop()
        self.blocks = []
        self.reasons = {}
        self._samples = []
        self._gpm = []
        self._closing_gpm = None
        self._clock_zero = None
        self._gpm_last_s = None
        self.gpm.reset()

    # ---- the sampler thread

    def start(self) -> None:
        """Start the point's sampler thread (once; a no-op while it runs)."""
        if self._closed:
            raise RuntimeError("Telemetry.start() after close()")
        if self._thread is not None:
            return
        if self._clock_zero is None:
            self._clock_zero = time.perf_counter()
        self._thread = _SamplerThread(self.device, self._samples.append, self._take_gpm if self.gpm.supported else None,
                                      self.period_s, self._clock_zero, self.reasons)
        self.threads_started += 1
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler thread, if it runs."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop_event.set()
            thread.join()

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop()

    def _take_gpm(self, min_gap_s: float = GPM_PERIOD_S) -> GpmInterval | None:
        """Take a GPM sample if `min_gap_s` has passed since the previous one (or there is none), and
        keep the interval it closes. Called by the sampler thread, or after it stopped."""
        if not self.gpm.supported:
            return None
        t = time.perf_counter() - self._clock_zero
        last = self._gpm_last_s if self.gpm.has_sample else None
        if last is not None and t - last < min_gap_s:
            return None
        metrics = self.gpm.take()
        self._gpm_last_s = t if self.gpm.has_sample else None
        if metrics is not None and last is not None:
            interval = GpmInterval(t_s=t, dt_s=t - last, **metrics)
            self._gpm.append(interval)
            return interval
        return None

    def _finish_gpm(self) -> None:
        """Close the point's last GPM interval, if measured time has passed since its last sample and
        NVML's minimum interval allows; else that time is left out of the GPM means."""
        if self._active or self._thread is not None or not self.blocks or self._gpm_last_s is None \
                or not self.gpm.supported:
            return
        last = self.blocks[-1]
        if last.end_s is not None and last.end_s > self._gpm_last_s:
            try:
                interval = self._take_gpm(GPM_MIN_INTERVAL_S)
            except Exception as e:  # a sampler must never take the run down
                self.reasons.setdefault("sampler", f"sampler error: {type(e).__name__}: {e}")
                return
            if interval is not None:
                self._closing_gpm = interval

    def _assign(self) -> None:
        """Give each block the samples taken within its span, and the GPM intervals that lie within
        the timed span (from the first block's start) to the block they end in (or the block before a
        gap); the interval closed at the end of the point goes to the last block."""
        done = [b for b in self.blocks if b.end_s is not None]
        for b in done:
            b.samples = [smp for smp in self._samples if b.start_s <= smp.t_s <= b.end_s]
            b.gpm = []
        if not done:
            return
        first, last = done[0], done[-1]
        for g in self._gpm:
            if g is self._closing_gpm:
                last.gpm.append(g)
                continue
            if g.t_s - g.dt_s < first.start_s or g.t_s > last.end_s:
                continue
            owner = [b for b in done if b.start_s <= g.t_s][-1]
            owner.gpm.append(g)

    # ---- the blocks

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        if self._closed:
            raise RuntimeError("Telemetry.measuring() after close()")
        if self._active:
            raise RuntimeError("Telemetry.measuring() blocks cannot nest")
        self._active = True
        now = time.perf_counter()
        if self._clock_zero is None:
            self._clock_zero = now
        block = Block(start_s=now - self._clock_zero)
        try:
            block.energy_start_mj = self.device.energy_mj()
        except FieldUnavailable as e:
            self.reasons["energy_counter"] = str(e)
        self.start()  # no-op under sampling(); else one thread from the first block to the summary
        try:
            yield
        finally:
            # The block's steps are over (the caller synchronised): mark its end, read the counter.
            block.end_s = time.perf_counter() - self._clock_zero
            if block.energy_start_mj is not None:
                try:
                    block.energy_end_mj = self.device.energy_mj()
                except FieldUnavailable as e:
                    self.reasons["energy_counter"] = str(e)
            self.blocks.append(block)
            self._active = False

    def summary(self, steps: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        self.stop()  # the point is over
        self._finish_gpm()
        self._assign()
        reasons = dict(self.reasons)
        if self.gpm.reason:
            for name in GPM_FIELDS:
                reasons.setdefault(name, self.gpm.reason)
        for name, why in self.gpm.metric_reasons.items():
            reasons.setdefault(name, why)
        return summarize_blocks(self.blocks, steps=steps, batch_size=batch_size, period_s=self.period_s,
                                reasons=reasons, energy_refresh_s=self.energy_refresh_s,
                                energy_refresh_reason=self.energy_refresh_reason)

    def close(self) -> None:
        if self._closed:
            return
        self.stop()
        self._finish_gpm()
        self._assign()
        self._closed = True
        self.gpm.close()
        shutdown_nvml(self.nvml)


def _values(samples: list[Any], name: str) -> list[float]:
    return [v for v in (getattr(s, name) for s in samples) if v is not None]


def _thin(values: list[Any], limit: int = MAX_SERIES_POINTS) -> list[Any]:
    if len(values) <= limit:
        return list(values)
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


def summarize_blocks(blocks: list[Block], *, steps: int | None, batch_size: int | None, period_s: float,
                     reasons: dict[str, str] | None = None, energy_refresh_s: float | None = None,
                     energy_refresh_reason: str | None = None) -> dict[str, Any]:
    """Flat, JSON-ready summary of measured blocks; a field that has no data is None with a reason.

    Energy from the counter is kept only when the blocks span MIN_ENERGY_REFRESHES of the counter's
    refresh period `energy_refresh_s` (measured); without it, energy is None with `energy_refresh_reason`.

    `reasons` maps a field (or "energy_counter"/"sampler") to why its reading failed; it is used
    only for fields that end up None.
    """
    reasons = dict(reasons or {})
    out: dict[str, Any] = {k: None for k in SUMMARY_FIELDS}
    null: dict[str, str] = {}
    samples = [s for b in blocks for s in b.samples]
    # NVML's GPM metrics over less than GPM_MIN_INTERVAL_S can be stale or zero: such intervals are not used.
    all_intervals = [g for b in blocks for g in b.gpm]
    intervals = [g for g in all_intervals if g.dt_s >= GPM_MIN_INTERVAL_S]
    done = [b for b in blocks if b.end_s is not None]
    nothing = "no measuring() block was run for this point" if not blocks else None

    def why(name: str, default: str) -> str:
        return nothing or reasons.get(name) or reasons.get("sampler") or default

    out["telemetry_source"] = "nvml"
    out["n_samples"] = len(samples)
    out["n_blocks"] = len(done)
    out["sample_period_s"] = period_s
    out["measured_time_s"] = sum(b.duration_s for b in done) if done else None
    if out["measured_time_s"] is None:
        null["measured_time_s"] = why("measured_time_s", "no completed block")
    out["steps"] = steps
    out["batch_size"] = batch_size
    if steps is None:
        null["steps"] = "steps not passed to summary()"
    if batch_size is None:
        null["batch_size"] = "batch_size not passed to summary()"

    def stat(key: str, source: str, fn) -> None:
        vals = _values(samples, source)
        if vals:
            out[key] = fn(vals)
        else:
            null[key] = why(source, "no sample answered this reading")

    stat("kernel_active_pct_mean", "kernel_active_pct", statistics.fmean)
    stat("kernel_active_pct_max", "kernel_active_pct", max)
    stat("mem_ctrl_pct_mean", "mem_ctrl_pct", statistics.fmean)
    stat("memory_used_bytes_max", "memory_used_bytes", max)
    if out["memory_used_bytes_max"] is not None:
        # NVML's figure is the whole GPU's, not this process's allocator: said beside it, in the record.
        out["memory_used_scope"] = MEMORY_USED_SCOPE
    else:
        null["memory_used_scope"] = null["memory_used_bytes_max"]
    stat("power_w_mean", "power_w", statistics.fmean)
    stat("power_w_max", "power_w", max)
    stat("power_instant_w_mean", "power_instant_w", statistics.fmean)
    stat("power_instant_w_max", "power_instant_w", max)
    stat("sm_clock_mhz_median", "sm_clock_mhz", statistics.median)
    stat("sm_clock_mhz_min", "sm_clock_mhz", min)
    stat("sm_clock_mhz_max", "sm_clock_mhz", max)
    stat("temperature_c_max", "temperature_c", max)

    out["n_gpm_intervals"] = len(intervals)
    short = len(all_intervals) - len(intervals)
    no_interval = (f"no GPM interval of at least {GPM_MIN_INTERVAL_S:g} s (NVML needs more than 100 ms between "
                   f"two GPM samples; this point's timed blocks lasted {out['measured_time_s'] or 0:.3g} s in all"
                   + (f"; {short} shorter interval(s) dropped" if short else "") + ")")
    for name in GPM_FIELDS:
        key = f"{name}_mean"
        pairs = [(g.dt_s, getattr(g, name)) for g in intervals if getattr(g, name) is not None]
        total = sum(dt for dt, _ in pairs)
        if pairs and total > 0:
            # Intervals differ in length (the last one may be short): weight by time covered.
            out[key] = sum(dt * v for dt, v in pairs) / total
        elif intervals:
            null[key] = why(name, "no GPM interval answered this metric")
        else:
            null[key] = why(name, no_interval)

    _energy(done, samples, steps, batch_size, reasons, out, null, nothing, energy_refresh_s, energy_refresh_reason)
    _power(out, null, reasons, nothing)
    _throttle(samples, out, null, why)

    series_keys = ("t_s",) + SAMPLE_FIELDS
    out["series"] = {k: _thin([getattr(s, k) for s in samples]) for k in series_keys} if samples else None
    if not samples:
        null["series"] = why("series", "no samples")
    gpm_keys = ("t_s", "dt_s") + GPM_FIELDS
    out["gpm_series"] = {k: _thin([getattr(g, k) for g in intervals]) for k in gpm_keys} if intervals else None
    if not intervals:
        null["gpm_series"] = why("sm_activity_pct", no_interval)

    for k in SUMMARY_FIELDS:
        if out[k] is None and k not in null:
            null[k] = why(k, "not measured")
    out["null_reasons"] = {k: v for k, v in null.items() if out.get(k) is None}
    return out


def _energy(done: list[Block], samples: list[Sample], steps: int | None, batch_size: int | None,
            reasons: dict[str, str], out: dict, null: dict, nothing: str | None,
            refresh_s: float | None = None, refresh_reason: str | None = None) -> None:
    energy_j: float | None = None
    too_short: str | None = None
    measured = sum(b.duration_s for b in done)
    out["energy_counter_refresh_s"] = refresh_s
    if refresh_s:
        out["energy_counter_refreshes"] = measured / refresh_s
    else:
        null["energy_counter_refresh_s"] = null["energy_counter_refreshes"] = (
            refresh_reason or "the energy counter's refresh period was not measured")
    if not done:
        null["energy_j"] = nothing or "no completed block"
    elif all(b.energy_start_mj is not None and b.energy_end_mj is not None for b in done):
        deltas = [b.energy_end_mj - b.energy_start_mj for b in done]
        if not all(d >= 0 for d in deltas):
            reasons.setdefault("energy_counter", "energy counter went backwards during a block (driver reloaded?)")
        elif not refresh_s:
            too_short = (f"energy counter read, but {refresh_reason or 'its refresh period was not measured'}: "
                         "whether the timed blocks span enough of its refreshes cannot be told")
        elif measured / refresh_s < MIN_ENERGY_REFRESHES:
            too_short = (f"too short: the timed blocks lasted {measured:.3g} s in all, {measured / refresh_s:.1f} "
                         f"refreshes of the energy counter (it refreshed every {refresh_s * 1e3:.0f} ms, measured); "
                         f"at least {MIN_ENERGY_REFRESHES} are needed")
        else:
            energy_j = sum(deltas) / 1000.0
            out["energy_source"] = "counter"
            out["energy_note"] = (f"nvmlDeviceGetTotalEnergyConsumption difference over each block, summed; the counter "
                                  f"refreshed every {refresh_s * 1e3:.0f} ms (measured), {measured / refresh_s:.0f} times "
                                  f"over the timed blocks: within ±{2 * refresh_s / measured:.0%} of the energy")
    if too_short is not None:
        null["energy_j"] = too_short
    elif energy_j is None and done:
        counter_why = reasons.get("energy_counter", "energy counter not read for every block")
        for source, label in (("power_instant_w", "instantaneous"), ("power_w", "1 s average")):
            per_block = [_values(b.samples, source) for b in done]
            if all(per_block):
                energy_j = sum(sum(v) / len(v) * b.duration_s for v, b in zip(per_block, done))
                out["energy_source"] = "integrated_power"
                out["energy_note"] = (f"energy counter unavailable ({counter_why}); integrated as mean {label} "
                                      "sampled power x block duration, summed over blocks")
                break
            pooled = [v for vals in per_block for v in vals]
            empty = sum(1 for v in per_block if not v)
            if pooled:
                # One sampler per point: a block shorter than the period may hold no sample.
                energy_j = sum(pooled) / len(pooled) * sum(b.duration_s for b in done)
                out["energy_source"] = "integrated_power"
                out["energy_note"] = (f"energy counter unavailable ({counter_why}); integrated as mean {label} "
                                      f"sampled power over the timed blocks x their total duration ({empty} "
                                      "block(s) shorter than the sampling period held no sample)")
                break
        else:
            null["energy_j"] = (f"energy counter unavailable ({counter_why}) and no power samples in every block "
                                f"({reasons.get('power_w', 'power not sampled')})")
    out["energy_j"] = energy_j
    if energy_j is None:
        for k in ("energy_per_step_j", "energy_per_sample_j", "energy_source", "energy_note"):
            null[k] = null.get("energy_j", "energy not measured")
        return
    if steps and steps > 0:
        out["energy_per_step_j"] = energy_j / steps
        if batch_size and batch_size > 0:
            out["energy_per_sample_j"] = energy_j / (steps * batch_size)
        else:
            null["energy_per_sample_j"] = "batch_size not passed to summary()"
    else:
        null["energy_per_step_j"] = "steps not passed to summary() (need the number of timed steps in the blocks)"
        null["energy_per_sample_j"] = null["energy_per_step_j"]


def _power(out: dict, null: dict, reasons: dict[str, str], nothing: str | None) -> None:
    """The point's mean power over its timed blocks. NVML's power reading (power_w_*) is a 1 s trailing
    average that mixes in the idle second before a short block, so energy / time is preferred."""
    if out["energy_source"] == "counter" and out["measured_time_s"]:
        out["power_w_energy_mean"] = out["energy_j"] / out["measured_time_s"]
        out["power_source"] = "energy_counter"
    elif out["power_instant_w_mean"] is not None:
        out["power_w_energy_mean"] = out["power_instant_w_mean"]
        out["power_source"] = "instant_samples"
    else:
        why = nothing or (f"energy counter unavailable ({reasons.get('energy_counter', 'not read for every block')}) "
                          f"and no instantaneous power samples ({null.get('power_instant_w_mean', 'not sampled')})")
        null["power_w_energy_mean"] = null["power_source"] = why


def _throttle(samples: list[Sample], out: dict, null: dict, why) -> None:
    masks = [s.clock_event_reasons for s in samples if s.clock_event_reasons is not None]
    if not masks:
        for k in ("throttle_reasons", "throttled", "throttled_sample_fraction", "power_capped",
                  "thermally_throttled", "hw_slowdown"):
            null[k] = why("clock_event_reasons", "no clock-event reasons sampled")
        return
    seen = 0
    for m in masks:
        seen |= m
    out["throttle_reasons"] = decode_clock_event_reasons(seen)
    out["throttled"] = bool(seen & THROTTLE_MASK)
    out["throttled_sample_fraction"] = sum(1 for m in masks if m & THROTTLE_MASK) / len(masks)
    out["power_capped"] = bool(seen & POWER_THROTTLE_MASK)
    out["thermally_throttled"] = bool(seen & THERMAL_THROTTLE_MASK)
    out["hw_slowdown"] = bool(seen & HW_SLOWDOWN_MASK)
