"""Sweep one workload over batch sizes: measure each point, survive OOM and errors, find the largest batch.

Out-of-memory is a result, not a crash: the point is recorded as `oom` and larger sizes are not
tried. Between the last batch that fit and the first that did not, the largest batch that fits is
found by probes (a memory model fitted to the measured peaks predicts it; bisection is the
safeguard: bench.run.largest), then confirmed by a full measurement, backing off on out-of-memory.
Any other failure at one point is recorded with its message and the sweep goes on. The results file
is rewritten atomically after every point, so an interrupted sweep keeps what it measured and
`resume=True` skips it.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from bench.core.budget import MEASURE_DEFAULTS
from bench.core.devices import free_memory, is_oom, resolve_device
from bench.core.errors import BenchError
from bench.core.params import MAX_THREADS, one_line
from bench.core.vocabulary import STATUS_ERROR, STATUS_OK, STATUS_OOM
from bench.measure.conditions import read_conditions
from bench.measure.distributed import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    Ranks,
    check_timeout,
    join,
    rank_device,
)
from bench.measure.memory import AllocatorMemory, allocator_memory
from bench.measure.telemetry import Telemetry
from bench.measure.telemetry.fingerprint import fingerprint
from bench.measure.timing import (
    MeasureLimits,
    StoppingRule,
    WarmupRule,
    check_stopping_rule,
    describe_rule,
    make_stopping_rule,
    measure,
    sync_check_for,
    timer_for,
)
from bench.records.distributed import DistributedRun
from bench.records.sweep import (
    Case,
    Measurement,
    Probe,
    SweepResult,
    load_sweep,
    save_sweep,
)
from bench.run.bounds import check_workload_fits
from bench.run.distributed import baseline_name, measure_data_parallel_point, rank_infos
from bench.run.largest import LargestBatchSearch, describe_probes, search_largest_batch
from bench.run.runner import Identity, Resumable

DEFAULT_MAX_BATCH = {"cpu": 1024, "cuda": 65536}
PROBE_STEPS = 2  # steps per fit probe: the second step has optimizer state allocated too

# Config fields that define what is measured, and how: a resumed sweep must match them, so that every
# point in one file was measured the same way. (The batch-size plan may grow.)
IDENTITY_FIELDS = ("workload", "workload_args", "device", "precision", "optimizer", "channels_last", "compile", "seed",
                   "ci_target", "min_samples", "min_time_s", "budget_s", "warmup_max_s", "cudnn_benchmark",
                   "telemetry", "telemetry_period_s", "stopping_rule", "threads", "warmup_rule", "distributed")
# Settings of a data-parallel run (torchrun): kept out of a single-process file's config; under torchrun
# they go in its `distributed` object.
DISTRIBUTED_FIELDS = ("dist_timeout_s", "comm_share", "scaling_baseline")


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
    threads: int | None = None  # torch.set_num_threads for the run (None: torch's own choice)
    # Under torchrun (a data-parallel job; ignored in one process): how long a rank waits for another in
    # a collective, and what is measured beside each point at the same per-rank batch: the step
    # without gradient all-reduce (communication share) and rank 0 alone (weak-scaling efficiency).
    dist_timeout_s: float = DEFAULT_TIMEOUT_S
    comm_share: bool = True
    scaling_baseline: bool = True

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
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or not 1 <= self.threads <= MAX_THREADS):
            raise BenchError(f"threads must be a positive integer, at most {MAX_THREADS} (more threads than any "
                             f"machine has cores), got {str(self.threads)[:24]}")
        check_timeout(self.dist_timeout_s)
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
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
             if f.name != "stopping_rule" and f.name not in DISTRIBUTED_FIELDS}
        limits = self.limits()
        d["min_time_s"] = limits.effective_min_time_s
        d["planned_batch_sizes"] = self.planned_batch_sizes()
        d["stopping_rule"] = {**describe_rule(self.rule()), **limits.to_dict()}
        d["warmup_rule"] = self.warmup_rule().in_force(limits, self.rule()).to_dict()
        return d

    def distributed_settings(self, ranks: Ranks) -> dict:
        """The `distributed` object of a data-parallel run's config: what a resumed run must match."""
        return {"world_size": ranks.world_size, "backend": ranks.backend, "comm_share": self.comm_share,
                "scaling_baseline": baseline_name(self)}


# --------------------------------------------------------------------------- one point


MEMORY_FIELDS = ("peak_allocated_bytes", "peak_reserved_bytes", "warmup_peak_allocated_bytes",
                 "warmup_peak_reserved_bytes", "num_alloc_retries")


def _memory_nulls(m: Measurement, mem: AllocatorMemory) -> None:
    if not mem.available:
        for k in MEMORY_FIELDS:
            m.null_reasons[k] = mem.reason
    elif m.num_alloc_retries is None:
        m.null_reasons["num_alloc_retries"] = "the allocator's memory_stats() did not report num_alloc_retries"


def _telemetry(config: SweepConfig, device) -> Telemetry:
    if not config.telemetry:
        # The base Telemetry is the null object: nothing sampled, every field null with this reason.
        return Telemetry("telemetry turned off for this sweep", config.telemetry_period_s)
    return Telemetry.for_device(device, period_s=config.telemetry_period_s)


class PointHooks:
    """How `measure_point` runs one point at the places where a data-parallel point differs: the
    timer, the clock of the measuring loop, what happens once the step is built and once it is
    measured, and how a failure becomes the point's status. These defaults are the single-process
    way; bench.run.distributed.DataParallelHooks overrides them."""

    clock = staticmethod(time.perf_counter)
    sync_check_skip = 0  # warm-up steps the host-sync check lets pass first (DDP's bucket rebuild)

    def timer(self, device):
        return timer_for(device)

    def prepared(self, step) -> None:
        """The step is built; warm-up comes next."""

    def measured(self, m: Measurement, timing, step) -> None:
        """The point is measured and recorded in `m` (FLOPs too)."""

    def failure(self, exc: Exception) -> tuple[str, str]:
        """(status, one-line message) of a point whose workload raised `exc`."""
        return STATUS_OOM if is_oom(exc) else STATUS_ERROR, one_line(exc)


SINGLE_PROCESS = PointHooks()


def measure_point(workload, config: SweepConfig, batch_size: int, device, *,
                  hooks: PointHooks = SINGLE_PROCESS) -> Measurement:
    """Build a fresh training step at `batch_size`, warm it up, time it, and record the outcome.

    One telemetry sampler runs from before warm-up to the end of the timing (the timed blocks are
    marked within it). Peak memory statistics are reset after warm-up, so the point's peaks are those
    of its timed steps and the warm-up's are kept apart; allocator retries and skipped fp16 steps are
    counted over the timed steps only. Never raises for a failure of the workload itself: OOM and
    other exceptions become the point's status. `hooks` (default: one process) is how a rank of a
    data-parallel job measures its part (bench.run.distributed).
    """
    from bench.measure.step import TrainStep

    m = Measurement(case=config.case(batch_size, workload.name))
    step = None
    tel = None
    failure: tuple[str, str] | None = None
    try:
        options = config.step_options()
        step = TrainStep(workload, batch_size, device, options, seed=config.seed)
        hooks.prepared(step)
        mem = allocator_memory(device)
        mem.reset_peaks()  # the warm-up's peaks: this point's own (model and batch included)
        tel = _telemetry(config, device)
        retries_at_start: list[int | None] = [None]

        def after_warmup() -> None:
            m.warmup_peak_allocated_bytes, m.warmup_peak_reserved_bytes = mem.peaks()
            mem.reset_peaks()
            retries_at_start[0] = mem.alloc_retries()
            step.reset_skipped_steps()  # noqa: F821 - the enclosing scope binds it (and dels it at the end)

        m.conditions["start"] = read_conditions()  # the machine's load, CPU clocks, threads (volatile)
        with tel.sampling():
            timing = measure(step, timer=hooks.timer(device), rule=config.rule(), limits=config.limits(),
                             warmup=config.warmup_rule(), around_block=tel.measuring, after_warmup=after_warmup,
                             check_step=sync_check_for(device, skip=hooks.sync_check_skip),
                             clock=hooks.clock)
        m.conditions["end"] = read_conditions()
        m.peak_allocated_bytes, m.peak_reserved_bytes = mem.peaks()
        retries = mem.alloc_retries()
        if retries is not None and retries_at_start[0] is not None:
            m.num_alloc_retries = retries - retries_at_start[0]
            if m.num_alloc_retries > 0:
                m.warnings.append(f"the caching allocator retried {m.num_alloc_retries} allocation(s) during the timed "
                                  "steps (it freed its cache and called cudaMalloc again): memory pressure, and "
                                  "step times include those stalls")
        _memory_nulls(m, mem)
        # Over the timed steps only: reset after warm-up, read before the FLOP-count step runs.
        m.skipped_steps = step.skipped_steps
        if m.skipped_steps is None:
            m.null_reasons["skipped_steps"] = "only fp16 with a gradient scaler skips steps"
        m.timer = timing.timer
        m.samples_s = timing.samples_s
        m.warmup_samples_s = timing.warmup_samples_s
        m.warmup_reason = timing.warmup_reason
        m.block_medians_s = timing.block_medians_s
        m.block_sizes = timing.block_sizes
        m.block_shortfall = timing.block_shortfall
        m.stop_reason = timing.stop_reason
        m.wall_time_s = timing.wall_time_s
        m.warnings = timing.warnings + m.warnings
        summary = tel.summary(steps=len(timing.samples_s), batch_size=batch_size)
        m.null_reasons.update(summary.pop("null_reasons", {}) or {})
        m.telemetry = summary
        with step.gradient_sync(False):  # FLOPs are the same without all-reduce, and no rank waits for another
            _add_flops(m, step, config, device)
        hooks.measured(m, timing, step)
    except BenchError:
        raise  # a configuration problem, not a property of this point
    except Exception as e:  # noqa: BLE001 - every failure of the workload is a result
        failure = hooks.failure(e)
    finally:
        if tel is not None:
            tel.close()
        if step is not None:
            step.release()
        del step
        free_memory(device)
    if failure:
        m.status, m.error = failure
        m.samples_s, m.block_medians_s, m.block_sizes, m.block_shortfall = [], [], [], None
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

    # On the eager module: torch.compile's kernels run where FlopCounterMode cannot see them (0 FLOPs),
    # and counting through the compiled one could recompile after the timing.
    with step.eager():
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
    if config.compile and fields["flops_counted"]:
        fields["flops_counted"] += "; counted on the model before torch.compile"
    m.telemetry.update(fields)


def probe_fits(workload, config: SweepConfig, batch_size: int, device) -> Probe:
    """Does a training step at `batch_size` run (PROBE_STEPS steps) without running out of memory?

    The allocator's peak statistics are reset after the first step (and its cache emptied), so a probe
    that fits reports the steady peak reserved bytes (on CUDA), which the largest-batch search's memory
    model anchors on; one that runs out of memory keeps torch's message, which tells the search what
    the allocator can reach."""
    import torch

    from bench.measure.step import TrainStep

    step = None
    outcome: Probe
    try:
        mem = allocator_memory(device)
        mem.reset_peaks()
        options = config.step_options()
        step = TrainStep(workload, batch_size, device, options, seed=config.seed)
        for i in range(PROBE_STEPS):
            step()
            if i == 0 and PROBE_STEPS > 1 and device.type == "cuda":
                # The peak the search fits is the steady one: cuDNN's autotuning in the first step takes
                # workspace only where it finds room, and its cached segments would hide the steady peak.
                torch.cuda.synchronize(device)
                torch.cuda.empty_cache()
                mem.reset_peaks()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        outcome = Probe(batch_size, True, peak_reserved_bytes=mem.peaks()[1])
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


FROM_DEVICE: Any = object()  # a default meaning "read it from the device"
ProbeFn = Callable[[Any, SweepConfig, int, Any], Probe]
MeasureFn = Callable[[Any, SweepConfig, int, Any], Measurement]


def search_largest(workload, config: SweepConfig, device, *, lo: int = 0, hi: int | None = None,
                   known_peaks=(), start: int = 1, limit: int | None = None, probe: ProbeFn | None = None,
                   capacity_bytes: Any = FROM_DEVICE,
                   on_probe: Callable[[Probe, str], None] | None = None,
                   before_probe: Callable[[int, str, int, int | None], None] | None = None) -> LargestBatchSearch:
    """The largest batch that fits, by `bench.run.largest.search_largest_batch` with real probes
    (`probe_fits`, or `probe`): each probe gets its `kind`, and the ones that fit report their peak.

    The device's capacity defaults to what its allocator could reserve now (free memory plus what it
    holds, from torch.cuda.mem_get_info); without one (off CUDA) the search doubles and bisects.
    """
    probe = probe or probe_fits
    if capacity_bytes is FROM_DEVICE:
        capacity_bytes = allocator_memory(device).capacity_bytes()

    def run(b: int) -> Probe:
        return probe(workload, config, b, device)

    def told(p: Probe, kind: str) -> None:
        p.kind = kind
        if on_probe is not None:
            on_probe(p, kind)

    return search_largest_batch(run, lo=lo, hi=hi, known_peaks=known_peaks, capacity_bytes=capacity_bytes,
                                start=start, limit=limit, before_probe=before_probe, on_probe=told)


@dataclass
class Confirmation:
    """The largest batch a full measurement confirmed (None: none above the floor), the smallest a
    full measurement found out of memory (None: none), the full measurements made on the way (in
    order), and how it went, in words."""

    batch_size: int | None
    smallest_oom: int | None = None
    measured: list[Measurement] = field(default_factory=list)
    note: str = ""

    @property
    def backed_off(self) -> bool:
        return self.smallest_oom is not None


def confirm_largest_batch(workload, config: SweepConfig, device, candidate: int, *, floor: int = 0,
                          measured_ok=(), measure: MeasureFn | None = None,
                          on_measured: Callable[[Measurement], None] | None = None) -> Confirmation:
    """Confirm that `candidate` (which passed a short probe) fits a full measurement: warm-up, the
    timed steps and the FLOP-count step, on an allocator that has run as long as a measured point's.

    On out-of-memory back off (1, then 2, 4, ... batches below) until a full measurement fits or the
    `floor` (a batch already measured in full) is reached, then bisect with full measurements up to
    the smallest batch that ran out of memory in one. Batches in `measured_ok` count as measured in
    full without measuring again. `measure` defaults to `measure_point`; tests pass a fake.
    """
    measure = measure or measure_point
    known_ok = set(measured_ok)
    made: list[Measurement] = []

    def run(b: int) -> Measurement | None:
        if b in known_ok:
            return None  # measured in full already
        m = measure(workload, config, b, device)
        made.append(m)
        if on_measured is not None:
            on_measured(m)
        return m

    def failed_otherwise(m: Measurement, fits: int) -> Confirmation:
        return Confirmation(fits or None, None, made,
                            f"batch {m.batch_size} passed its probe but its full measurement failed for another "
                            f"reason ({m.error}); the largest measured in full is {fits or 'none'}")

    b, back, oom = candidate, 1, None
    while b > floor:
        m = run(b)
        if m is None or m.ok:
            break
        if m.status != STATUS_OOM:
            return failed_otherwise(m, floor)
        oom = b
        b, back = max(floor, b - back), back * 2
    if oom is None:
        note = (f"batch {b} was measured in full" if b in known_ok else f"confirmed by a full measurement at batch {b}")
        return Confirmation(b, None, made, note)
    lo = max(b, floor)
    while oom - lo > 1:  # between a full measurement that fit (or the floor) and one that did not
        mid = (lo + oom) // 2
        m = run(mid)
        if m is None or m.ok:
            lo = mid
        elif m.status == STATUS_OOM:
            oom = mid
        else:
            return failed_otherwise(m, lo)
    if not lo:
        return Confirmation(None, oom, made, f"batch {candidate} passed its probe but even batch {oom} ran out of "
                                             "memory in a full measurement")
    return Confirmation(lo, oom, made, f"batch {candidate} passed its probe but ran out of memory in a full "
                                       f"measurement; backing off and bisecting with full measurements found batch "
                                       f"{lo} (batch {oom} runs out of memory in one)")


def _known_peaks(result: SweepResult) -> list[tuple[int, int]]:
    """(batch, peak reserved bytes) of what ran: measured points (their warm-up peak too, which holds
    autotuning workspaces a probe also needs) and probes that fit."""
    out = []
    for p in result.points:
        vals = [v for v in (p.peak_reserved_bytes, p.warmup_peak_reserved_bytes) if v is not None]
        if p.ok and vals:
            out.append((p.batch_size, max(vals)))
    out += [(p.batch_size, p.peak_reserved_bytes) for p in result.probes if p.fits and p.peak_reserved_bytes is not None]
    return out


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) for the block, the previous count put back after (None: unchanged)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    device = resolve_device(rank_device(config.device))  # under torchrun: this rank's GPU
    if workload is None:
        workload = load_workload(config.workload, config.workload_args)
    check_options(config.step_options(), device)
    check_workload_fits(workload, device, config.batch_sizes or ([config.max_batch] if config.max_batch else []))
    return workload, device


FALSE_KNEE_JUMP = 0.10  # time per sample this much above the batch below it, beyond both CIs
NEAR_CAPACITY = 0.90  # peak reserved memory at least this share of what the allocator could reach


def false_knee(result: SweepResult, capacity_bytes: float | None) -> str | None:
    """A sentence when the largest batch that fits looks timed with slower kernels: its time per sample
    jumps (by more than FALSE_KNEE_JUMP, beyond both 95% CIs) above the next smaller measured batch's
    while its peak memory is near the device's capacity. cuDNN's autotuning then drops the algorithms
    whose workspace no longer fits, so the step slows for want of memory, not of compute: a false
    knee. None when it does not look so, or when a reading is missing (no capacity off CUDA)."""
    b = result.largest_batch_that_fits
    if b is None or not capacity_bytes:
        return None
    ok = sorted((p for p in result.points if p.ok and p.samples_s), key=lambda p: p.batch_size)
    top = next((p for p in ok if p.batch_size == b), None)
    below = [p for p in ok if p.batch_size < b]
    if top is None or not below:
        return None
    prev = below[-1]
    peak = max((v for v in (top.peak_reserved_bytes, top.warmup_peak_reserved_bytes) if v is not None), default=None)
    if peak is None or peak < NEAR_CAPACITY * capacity_bytes:
        return None
    s, q = top.stats, prev.stats
    if None in (s.ci_low_s, q.ci_high_s):
        return None
    jump = (s.median_s / b) / (q.median_s / prev.batch_size) - 1
    if jump <= FALSE_KNEE_JUMP or s.ci_low_s / b <= q.ci_high_s / prev.batch_size:
        return None
    return (f"time per sample at batch {b:,} is {jump:.0%} above batch {prev.batch_size:,}'s while its peak memory "
            f"is {peak / capacity_bytes:.0%} of what the allocator could reach: cuDNN's autotuning may have dropped "
            "algorithms whose workspace no longer fit, so this point may be timed with slower kernels (a false "
            "knee); a batch a little smaller shows the card's own step time")


def _provisional(result: SweepResult, run: Resumable, batch_size: int, reason: str) -> None:
    """Record `batch_size` as the largest batch that fits so far, with `reason`, and save the file."""
    result.largest_batch_that_fits = batch_size
    result.largest_batch_reason = "provisional: " + reason
    run.save()


def _find_and_confirm_largest(workload, config: SweepConfig, device, result: SweepResult, run: Resumable,
                              bounds: tuple[int, int], notify: ProgressFn) -> None:
    """Search between `bounds` (largest known to fit, smallest known not to), confirm the answer with a
    full measurement (backing off on out-of-memory), and say in the reason how it was found."""
    lo, hi = bounds
    # Saved as soon as known, each answer provisional until the next: a run cut off keeps the best so far.
    if lo > 0:
        _provisional(result, run, lo, f"batch {lo} fits and {hi} does not in the sweep; the search for the largest "
                                      "batch between them had not finished")

    def record(probe: Probe, kind: str) -> None:
        result.probes.append(probe)
        if probe.fits and probe.batch_size > (result.largest_batch_that_fits or 0):
            _provisional(result, run, probe.batch_size,
                         f"batch {probe.batch_size} fits a {PROBE_STEPS}-step probe; the search had not finished")
        run.save()

    search = search_largest(workload, config, device, lo=lo, hi=hi, known_peaks=_known_peaks(result),
                            on_probe=record,
                            before_probe=lambda b, kind, lo, hi: notify("probe", {"batch_size": b, "kind": kind,
                                                                                   "low": lo, "high": hi}))
    measured_ok = {p.batch_size for p in result.points if p.ok}
    n_points = len(result.points)
    found = f"after the sweep's {n_points} measured point(s), {describe_probes([p.kind for p in result.probes])}"
    if search.ceiling_bytes is not None:
        found += (f"; an out-of-memory message said the allocator can reach {search.ceiling_bytes / 2**30:.2f} GiB "
                  f"({search.outside_bytes / 2**30:.2f} GiB of the device's capacity is outside it)")
    if search.largest is None:
        result.largest_batch_that_fits = None
        result.largest_batch_reason = search.stopped or f"even batch {search.smallest_oom} runs out of memory ({found})"
        return
    floor = max((b for b in measured_ok if b <= search.largest), default=0)

    def measured(m: Measurement) -> None:
        run.add(m)
        notify("confirmed", {"batch_size": m.batch_size, "measurement": m})

    _provisional(result, run, search.largest, f"batch {search.largest} fits a {PROBE_STEPS}-step probe and "
                                               f"{search.smallest_oom} does not ({found}); not yet confirmed by a "
                                               "full measurement")
    notify("confirm", {"batch_size": search.largest})
    confirmed = confirm_largest_batch(workload, config, device, search.largest, floor=floor, measured_ok=measured_ok,
                                      on_measured=measured)
    result.points.sort(key=lambda p: p.batch_size)  # as the file lists them
    result.largest_batch_that_fits = confirmed.batch_size
    head = search.stopped or f"batch {search.smallest_oom} runs out of memory"
    if confirmed.backed_off:
        head = f"batch {confirmed.smallest_oom} runs out of memory in a full measurement"
    result.largest_batch_reason = f"{head}; found {found}; {confirmed.note}"
    knee = false_knee(result, allocator_memory(device).capacity_bytes())
    if knee:
        result.largest_batch_reason += f"; {knee}"
        result.point(confirmed.batch_size).warnings.append(knee)


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

    Under torchrun (WORLD_SIZE set) every rank runs this together: each point is measured under DDP by
    all ranks (bench.run.distributed), only rank 0 writes `output` and reports progress, and every rank
    returns the same result. The single-process path is unchanged when no process group is started.
    """
    workload, device = prepare(config, workload)
    ranks = join(device, config.dist_timeout_s)
    with torch_threads(config.threads):
        if ranks is None:
            return _run_sweep(config, workload, device, output=output, resume=resume, overwrite=overwrite,
                              progress=progress)
        return _run_sweep_data_parallel(config, workload, device, ranks, output=output, resume=resume,
                                        overwrite=overwrite, progress=progress)


def _open_results(config: SweepConfig, device, *, output, resume: bool, overwrite: bool,
                  settings: dict | None = None, environment: dict | None = None) -> Resumable:
    settings = settings if settings is not None else config.to_dict()
    environment = environment if environment is not None else environment_info(device)
    return Resumable.open(
        output, resume=resume, overwrite=overwrite,
        create=lambda: SweepResult(config=settings, environment=environment,
                                   created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        load=load_sweep, save=save_sweep, entries=lambda r: r.points, key=lambda p: p.batch_size,
        identity=sweep_identity(settings, environment),
        identity_of=lambda r: sweep_identity(r.config, r.environment),
        # A failure other than memory may have been passing (a busy device, a driver hiccup): try again.
        failed=lambda p: p.status == STATUS_ERROR)


def _run_sweep(config: SweepConfig, workload, device, *, output, resume: bool, overwrite: bool,
               progress: ProgressFn | None) -> SweepResult:
    run = _open_results(config, device, output=output, resume=resume, overwrite=overwrite)
    return _sweep_points(config, workload, device, run, progress or (lambda event, info: None), measure_point)


def _run_sweep_data_parallel(config: SweepConfig, workload, device, ranks: Ranks, *, output, resume: bool,
                             overwrite: bool, progress: ProgressFn | None) -> SweepResult:
    """Every rank sweeps in lockstep; rank 0 opens, writes and reports, the others keep a copy in memory.
    A job that can no longer run (a rank gone) records why in rank 0's file before it ends."""
    from bench.measure.telemetry.interconnect import interconnect

    settings = {**config.to_dict(), "distributed": config.distributed_settings(ranks)}
    environment = environment_info(device)
    infos = rank_infos(ranks, device, environment, interconnect(device))
    opened, problem = None, None
    if ranks.is_main:
        try:
            opened = _open_results(config, device, output=output, resume=resume, overwrite=overwrite,
                                   settings=settings, environment=environment)
        except BenchError as e:
            problem = str(e)
    shared = ranks.broadcast("opened", {"problem": problem} if problem else
                             {"result": opened.result.to_dict() if opened else None})
    if shared.get("problem"):
        raise BenchError(shared["problem"])
    run = opened if opened is not None else Resumable(SweepResult.from_dict(shared["result"]), None, save=save_sweep,
                                                      entries=lambda r: r.points, key=lambda p: p.batch_size)
    run.result.distributed = DistributedRun(ranks.world_size, ranks.backend, ranks.timeout_s, config.comm_share,
                                            baseline_name(config), infos)
    notify = (progress or (lambda event, info: None)) if ranks.is_main else (lambda event, info: None)

    def measure_fn(workload, config, b, device):
        return measure_data_parallel_point(measure_point, workload, config, b, device, ranks)

    try:
        return _sweep_points(config, workload, device, run, notify, measure_fn, ranks=ranks)
    except DistributedError as e:
        run.result.distributed.failure = str(e)
        run.save()
        where = f"; the points measured before are in {run.path}" if run.path is not None else ""
        raise DistributedError(f"{e}{where}") from None


def _sweep_points(config: SweepConfig, workload, device, run: Resumable, notify: ProgressFn, measure_fn,
                  ranks: Ranks | None = None) -> SweepResult:
    result = run.result
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
        m = measure_fn(workload, config, b, device)
        run.add(m)
        notify("done", {"batch_size": b, "measurement": m, "seconds": time.perf_counter() - t0})

    bounds = _largest_fit_bounds(result)
    if bounds is None:
        ok = [p.batch_size for p in result.points if p.ok]
        result.largest_batch_that_fits = None
        result.largest_batch_limited = bool(ok)
        result.largest_batch_reason = (f"no out-of-memory up to batch {max(ok)}, the largest tried: the limit lies beyond"
                                       if ok else "no batch size ran")
    elif config.find_largest and ranks is None:
        _find_and_confirm_largest(workload, config, device, result, run, bounds, notify)
    else:
        lo, hi = bounds
        result.largest_batch_that_fits = lo if lo > 0 else None
        why = ("no search in a data-parallel run (bench sweep without torchrun makes one)"
               if ranks is not None and config.find_largest else "search turned off")
        result.largest_batch_reason = f"{why}: batch {lo} fits and {hi} does not"

    from bench.analysis.steptime import analyse_sweep

    result.analysis = analyse_sweep(result, eps=config.eps, noise_target=config.ci_target).to_dict()
    if result.distributed is not None:
        from bench.analysis.distributed import analyse_distributed

        result.distributed.analysis = analyse_distributed(result)
    run.finish()
    notify("finish", {"result": result})
    return result
