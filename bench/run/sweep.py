"""Sweep one workload over batch sizes: measure each point, survive OOM and errors, find the largest batch.

Out-of-memory is a result, not a crash: the point is recorded as `oom`, larger sizes are not tried,
and a bisection between the last batch that fit and the first that did not finds the largest batch
that fits. Any other failure at one point is recorded with its message and the sweep goes on. The
results file is rewritten atomically after every point, so an interrupted sweep keeps what it
measured and `resume=True` skips it.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable

from bench.core.devices import free_memory, is_oom, resolve_device
from bench.core.errors import BenchError
from bench.core.params import one_line
from bench.core.vocabulary import STATUS_ERROR, STATUS_OK, STATUS_OOM
from bench.measure.telemetry import Telemetry
from bench.measure.telemetry.fingerprint import fingerprint
from bench.measure.timing import (
    MEASURE_DEFAULTS,
    MeasureLimits,
    StoppingRule,
    WarmupRule,
    check_stopping_rule,
    describe_rule,
    make_stopping_rule,
    measure,
    timer_for,
)
from bench.records.sweep import (
    Case,
    Measurement,
    Probe,
    SweepResult,
    load_sweep,
    save_sweep,
)
from bench.run.bounds import check_workload_fits
from bench.run.runner import Identity, Resumable

DEFAULT_MAX_BATCH = {"cpu": 1024, "cuda": 65536}
PROBE_STEPS = 2  # steps per fit probe: the second step has optimizer state allocated too

# Config fields that define what is measured, and how: a resumed sweep must match them, so that every
# point in one file was measured the same way. (The batch-size plan may grow.)
IDENTITY_FIELDS = ("workload", "workload_args", "device", "precision", "optimizer", "channels_last", "compile", "seed",
                   "ci_target", "min_samples", "min_time_s", "budget_s", "warmup_max_s", "cudnn_benchmark",
                   "telemetry", "telemetry_period_s", "stopping_rule")


@dataclass
class SweepConfig:
    """What to sweep and how to measure each point."""

    workload: str = "mlp"
    workload_args: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    optimizer: str = "sgd"
    channels_last: bool = False
    compile: bool = False
    batch_sizes: list[int] | None = None  # None: powers of two from min_batch to max_batch
    min_batch: int = 1
    max_batch: int | None = None  # None: DEFAULT_MAX_BATCH for the device type
    # When a point has samples enough: a name in bench.measure.timing.STOPPING_RULES ("ci": built with
    # ci_target), or any object with the StoppingRule protocol (e.g. FixedCountRule(50)).
    stopping_rule: str | StoppingRule = "ci"
    ci_target: float = MEASURE_DEFAULTS["ci_target"]
    # The limits of every point (MeasureLimits); defaults from MEASURE_DEFAULTS. min_time_s None: the
    # default minimum time, lowered to the budget when the budget is smaller.
    min_samples: int = MEASURE_DEFAULTS["min_samples"]
    min_time_s: float | None = None
    budget_s: float = MEASURE_DEFAULTS["budget_s"]
    warmup_max_s: float = MEASURE_DEFAULTS["warmup_max_s"]
    eps: float = 0.05
    find_largest: bool = True
    seed: int = 0
    peak_tflops: float | None = None  # override the data-sheet peak used for MFU (e.g. from `bench peak`)
    cudnn_benchmark: bool = True  # let cuDNN autotune convolutions on CUDA (warm-up absorbs the tuning)
    telemetry: bool = True
    telemetry_period_s: float = 0.05

    def validate(self) -> None:
        for b in self.batch_sizes or []:
            if not isinstance(b, int) or isinstance(b, bool) or b < 1:
                raise BenchError(f"batch sizes must be positive integers, got {b!r}")
        if self.min_batch < 1:
            raise BenchError(f"minimum batch size must be >= 1, got {self.min_batch}")
        if self.max_batch is not None and self.max_batch < self.min_batch:
            raise BenchError(f"maximum batch size {self.max_batch} is below the minimum {self.min_batch}")
        if not 0 < self.eps < 1:
            raise BenchError(f"equal-time tolerance must be between 0 and 1, got {self.eps}")
        if self.peak_tflops is not None and not 0 < self.peak_tflops < float("inf"):
            raise BenchError(f"peak TFLOP/s must be a positive number, got {self.peak_tflops}")
        # Each builds and validates its own fields (one-line errors).
        self.rule()
        self.limits()
        self.warmup_rule()

    def device_type(self) -> str:
        return self.device.split(":")[0]

    def planned_batch_sizes(self) -> list[int]:
        if self.batch_sizes:
            return sorted(set(self.batch_sizes))
        hi = self.max_batch or DEFAULT_MAX_BATCH.get(self.device_type(), 1024)
        sizes, b = [], 1
        while b <= hi:
            if b >= self.min_batch:
                sizes.append(b)
            b *= 2
        return sizes or [self.min_batch]

    def step_options(self):
        from bench.measure.step import StepOptions

        return StepOptions(precision=self.precision, optimizer=self.optimizer, channels_last=self.channels_last,
                           compile=self.compile, cudnn_benchmark=self.cudnn_benchmark)

    def rule(self) -> StoppingRule:
        """The stopping rule: `stopping_rule` if it is a rule object, else the registered rule by that name."""
        if isinstance(self.stopping_rule, str):
            params = {"ci_target": self.ci_target} if self.stopping_rule == "ci" else {}
            return make_stopping_rule(self.stopping_rule, **params)
        return check_stopping_rule(self.stopping_rule)

    def limits(self) -> MeasureLimits:
        return MeasureLimits(budget_s=self.budget_s, min_time_s=self.min_time_s, min_samples=self.min_samples)

    def warmup_rule(self) -> WarmupRule:
        return WarmupRule(max_time_s=self.warmup_max_s)

    def case(self, batch_size: int, workload_name: str | None = None) -> Case:
        return Case(workload=workload_name or self.workload, batch_size=batch_size, device=self.device,
                    precision=self.precision, optimizer=self.optimizer,
                    channels_last=self.channels_last, compile=self.compile)

    def to_dict(self) -> dict:
        """The settings as used: the minimum time in force, and the stopping rule with the limits it ran under."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "stopping_rule"}
        limits = self.limits()
        d["min_time_s"] = limits.effective_min_time_s
        d["planned_batch_sizes"] = self.planned_batch_sizes()
        d["stopping_rule"] = {**describe_rule(self.rule()), **limits.to_dict()}
        d["warmup_rule"] = self.warmup_rule().to_dict()
        return d


# --------------------------------------------------------------------------- one point


def _reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _read_peak_memory(device, m: Measurement) -> None:
    import torch

    if device.type == "cuda":
        m.peak_allocated_bytes = int(torch.cuda.max_memory_allocated(device))
        m.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(device))
    else:
        reason = f"allocator peak statistics exist only on CUDA devices (this point ran on {device.type})"
        m.null_reasons["peak_allocated_bytes"] = reason
        m.null_reasons["peak_reserved_bytes"] = reason


def _telemetry(config: SweepConfig, device) -> Telemetry:
    if not config.telemetry:
        # The base Telemetry is the null object: nothing sampled, every field null with this reason.
        return Telemetry("telemetry turned off for this sweep", config.telemetry_period_s)
    return Telemetry.for_device(device, period_s=config.telemetry_period_s)


def measure_point(workload, config: SweepConfig, batch_size: int, device) -> Measurement:
    """Build a fresh training step at `batch_size`, warm it up, time it, and record the outcome.

    Never raises for a failure of the workload itself: OOM and other exceptions become the point's status.
    """
    from bench.measure.step import TrainStep

    m = Measurement(case=config.case(batch_size, workload.name))
    step = None
    tel = None
    failure: tuple[str, str] | None = None
    try:
        options = config.step_options()
        step = TrainStep(workload, batch_size, device, options, seed=config.seed)
        _reset_peak_memory(device)
        tel = _telemetry(config, device)
        timing = measure(step, timer=timer_for(device), rule=config.rule(), limits=config.limits(),
                         warmup=config.warmup_rule(), around_block=tel.measuring)
        m.timer = timing.timer
        m.samples_s = timing.samples_s
        m.warmup_samples_s = timing.warmup_samples_s
        m.warmup_reason = timing.warmup_reason
        m.block_medians_s = timing.block_medians_s
        m.stop_reason = timing.stop_reason
        m.wall_time_s = timing.wall_time_s
        m.warnings += timing.warnings
        _read_peak_memory(device, m)
        m.skipped_steps = step.skipped_steps
        if m.skipped_steps is None:
            m.null_reasons["skipped_steps"] = "only fp16 with a gradient scaler skips steps"
        summary = tel.summary(steps=len(timing.samples_s), batch_size=batch_size)
        m.null_reasons.update(summary.pop("null_reasons", {}) or {})
        m.telemetry = summary
        _add_flops(m, step, config, device)
    except BenchError:
        raise  # a configuration problem, not a property of this point
    except Exception as e:  # noqa: BLE001 - every failure of the workload is a result
        failure = (STATUS_OOM if is_oom(e) else STATUS_ERROR, one_line(e))
    finally:
        if tel is not None:
            tel.close()
        if step is not None:
            step.release()
        del step
        free_memory(device)
    if failure:
        m.status, m.error = failure
        m.samples_s, m.block_medians_s = [], []
    return m


def _add_flops(m: Measurement, step, config: SweepConfig, device) -> None:
    """FLOPs of one step (counted once, outside the timed window), achieved TFLOP/s and MFU."""
    import torch

    from bench.measure.telemetry import (
        flop_fields,
        flops_per_step,
        matmul_precision_for,
        peak_tflops,
    )

    flops, why = flops_per_step(step)
    if config.peak_tflops is not None:
        peak_args = (config.peak_tflops, "user override (--peak-tflops)", None)
    elif device.type == "cuda":
        # While the step's TF32 setting is in force, so fp32 maps to the right peak.
        peak = peak_tflops(torch.cuda.get_device_name(device), matmul_precision_for(config.precision))
        peak_args = (peak.tflops, peak.source, peak.reason)
    else:
        peak_args = (None, None, f"no peak table for {device.type} devices (NVIDIA GPUs only; see `bench peak`)")
    fields = flop_fields(flops, why, m.stats.median_s if m.samples_s else None, *peak_args)
    m.null_reasons.update(fields.pop("null_reasons", {}) or {})
    m.telemetry.update(fields)


def probe_fits(workload, config: SweepConfig, batch_size: int, device) -> Probe:
    """Does a training step at `batch_size` run (PROBE_STEPS steps) without running out of memory?"""
    import torch

    from bench.measure.step import TrainStep

    step = None
    outcome: Probe
    try:
        options = config.step_options()
        step = TrainStep(workload, batch_size, device, options, seed=config.seed)
        for _ in range(PROBE_STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        outcome = Probe(batch_size, True)
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001
        # A failure other than memory does not bound the search: the prefix says so.
        outcome = Probe(batch_size, False, one_line(e) if is_oom(e) else Probe.NOT_OOM_PREFIX + one_line(e))
    finally:
        if step is not None:
            step.release()
        del step
        free_memory(device)
    return outcome


def bisect_largest_batch(workload, config: SweepConfig, device, lo: int, hi: int, *, probe=None,
                         on_probe: Callable[[Probe], None] | None = None,
                         before_probe: Callable[[int, int, int], None] | None = None) -> tuple[int, int, str | None]:
    """Narrow `lo` (fits, or 0) and `hi` (out of memory) until they are adjacent.

    Returns (lo, hi, None), or (lo, hi, reason) when a probe failed for a reason other than memory,
    which ends the search. `probe` defaults to `probe_fits`; tests pass a fake.
    """
    probe = probe or probe_fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if before_probe:
            before_probe(mid, lo, hi)
        p = probe(workload, config, mid, device)
        if on_probe:
            on_probe(p)
        if p.fits:
            lo = mid
        elif p.failed_otherwise:
            return lo, hi, f"search stopped: batch {mid} failed for another reason ({p.error})"
        else:
            hi = mid
    return lo, hi, None


# --------------------------------------------------------------------------- the sweep


ProgressFn = Callable[[str, dict], None]


def environment_info(device) -> dict:
    """The fingerprint of `device` (bench.measure.telemetry.fingerprint) for the results file."""
    return fingerprint(device)


def sweep_identity(config: dict, environment: dict) -> Identity:
    """What a resumed sweep must match: the IDENTITY_FIELDS of its config, and the fingerprint hash."""
    return Identity({k: config.get(k) for k in IDENTITY_FIELDS}, environment.get("hash"))


def _largest_fit_bounds(result: SweepResult) -> tuple[int, int] | None:
    """(largest batch known to fit, smallest known not to fit), from points and probes; None if no OOM seen."""
    fits = [p.batch_size for p in result.points if p.status == STATUS_OK]
    fits += [p.batch_size for p in result.probes if p.fits]
    ooms = [p.batch_size for p in result.points if p.status == STATUS_OOM]
    ooms += [p.batch_size for p in result.probes if p.out_of_memory]
    if not ooms:
        return None
    hi = min(ooms)
    lo = max([b for b in fits if b < hi], default=0)
    return lo, hi


def prepare(config: SweepConfig, workload=None):
    """Check everything a sweep needs before measuring anything; returns (workload, device).

    Raises BenchError for bad settings, an unknown device or workload, or options the device lacks.
    """
    from bench.measure.step import check_options
    from bench.measure.workloads import load_workload

    config.validate()
    device = resolve_device(config.device)
    if workload is None:
        workload = load_workload(config.workload, config.workload_args)
    check_options(config.step_options(), device)
    check_workload_fits(workload, device, config.batch_sizes or ([config.max_batch] if config.max_batch else []))
    return workload, device


def run_sweep(
    config: SweepConfig,
    *,
    workload=None,
    output: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> SweepResult:
    """Measure every planned batch size, then search the largest batch that fits, then analyse.

    `workload` overrides `config.workload` with a ready Workload object (e.g. a training task's
    model). With `output`, the results file is rewritten atomically after each point; an existing
    file is kept unless `overwrite`; with `resume`, points already in that file (measured with the
    same settings on the same machine) are kept and not measured again, and failed ones are retried.
    """
    workload, device = prepare(config, workload)
    notify = progress or (lambda event, info: None)
    settings, environment = config.to_dict(), environment_info(device)
    run = Resumable.open(
        output, resume=resume, overwrite=overwrite,
        create=lambda: SweepResult(config=settings, environment=environment,
                                   created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        load=load_sweep, save=save_sweep, entries=lambda r: r.points, key=lambda p: p.batch_size,
        identity=sweep_identity(settings, environment),
        identity_of=lambda r: sweep_identity(r.config, r.environment),
        # A failure other than memory may have been passing (a busy device, a driver hiccup): try again.
        failed=lambda p: p.status == STATUS_ERROR)
    result, save = run.result, run.save

    planned = config.planned_batch_sizes()
    notify("start", {"planned": planned, "done": [p.batch_size for p in result.points]})
    for b in planned:
        if b in run.done:
            notify("skip", {"batch_size": b, "status": result.point(b).status})
            continue
        bounds = _largest_fit_bounds(result)
        if bounds is not None and b >= bounds[1]:
            notify("skip", {"batch_size": b, "status": "larger than an out-of-memory batch"})
            continue
        notify("point", {"batch_size": b})
        t0 = time.perf_counter()
        m = measure_point(workload, config, b, device)
        run.add(m)
        notify("done", {"batch_size": b, "measurement": m, "seconds": time.perf_counter() - t0})

    bounds = _largest_fit_bounds(result)
    if bounds is None:
        ok = [p.batch_size for p in result.points if p.ok]
        result.largest_batch_that_fits = None
        result.largest_batch_limited = bool(ok)
        result.largest_batch_reason = (f"no out-of-memory up to batch {max(ok)}, the largest tried: the limit lies beyond"
                                       if ok else "no batch size ran")
    elif config.find_largest:
        def record(probe: Probe) -> None:
            result.probes.append(probe)
            save()

        lo, hi, stopped = bisect_largest_batch(workload, config, device, *bounds, on_probe=record,
                                               before_probe=lambda b, lo, hi: notify("probe", {"batch_size": b, "low": lo, "high": hi}))
        result.largest_batch_that_fits = lo if lo > 0 else None
        result.largest_batch_reason = stopped or (
            f"batch {hi} runs out of memory; found by bisection in {len(result.probes)} probe(s)"
            if lo > 0 else f"even batch {hi} runs out of memory")
    else:
        lo, hi = bounds
        result.largest_batch_that_fits = lo if lo > 0 else None
        result.largest_batch_reason = f"search turned off: batch {lo} fits and {hi} does not"

    from bench.analysis.steptime import analyse_sweep

    result.analysis = analyse_sweep(result, eps=config.eps, noise_target=config.ci_target).to_dict()
    run.finish()
    notify("finish", {"result": result})
    return result
