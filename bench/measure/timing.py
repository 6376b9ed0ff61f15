"""Timing one training step: device-event and host timers, warm-up detection, limits and stopping rules.

The timers return raw per-step seconds for a block of steps. On CUDA a pair of events brackets each
step and the host synchronises once per block, never inside the timed window; on the CPU a host clock
brackets each step. `MeasureLimits` holds the per-point budget of timed steps, the floors and the block
sizing, with their defaults in one table (MEASURE_DEFAULTS); `WarmupRule`, with limits of its own,
says when warm-up is over; stopping rules are small pluggable objects (after NVBench's stopping
criteria) that the loop in `measure` asks after every block whether to stop. A timer may take
`stop`, a function it asks after each step whether to end the block early: that is how a budget
holds when the step time jumps inside a block.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
import warnings
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePath
from typing import Any, Callable, ContextManager, Protocol, Sequence

from bench.core.budget import MEASURE_DEFAULTS, BlockShortfall
from bench.core.errors import BenchError
from bench.core.stats import MIN_BLOCKS_FOR_CI, median_ci_indices, summarize
from bench.core.vocabulary import (
    STOP_BUDGET,
    STOP_CI,
    STOP_COUNT,
    STOP_MAX_SAMPLES,
    TIMER_CUDA_EVENT,
    TIMER_HOST,
    WARM_MAX_STEPS,
    WARM_MAX_TIME,
    WARM_STABLE,
)

Step = Callable[[], object]
StopBlock = Callable[[], bool]  # asked after each step: end the block now?


# --------------------------------------------------------------------------- timers


class Timer(Protocol):
    name: str

    def time_block(self, step: Step, n: int) -> list[float]:
        """Run `step` n times; return each step's duration in seconds. A timer may also take
        `stop=None`: a function asked after each step, outside its timed window, that ends the
        block early (after at least one step) when it returns True."""


def _takes_stop(timer: Timer) -> bool:
    try:
        return "stop" in inspect.signature(timer.time_block).parameters
    except (TypeError, ValueError):
        return False


class HostTimer:
    """`time.perf_counter` around each step.

    `synchronize`, if given, runs inside the timed window after every step so that asynchronous
    device work is included (a host clock around a synchronised step). On the CPU nothing is
    asynchronous and no synchronisation is needed.
    """

    name = TIMER_HOST

    def __init__(self, synchronize: Callable[[], object] | None = None, clock: Callable[[], float] = time.perf_counter):
        self._sync = synchronize
        self._clock = clock

    def time_block(self, step: Step, n: int, stop: StopBlock | None = None) -> list[float]:
        clock, sync = self._clock, self._sync
        out = []
        for _ in range(n):
            t0 = clock()
            step()
            if sync is not None:
                sync()
            out.append(clock() - t0)
            if stop is not None and stop():
                break
        return out


class CudaEventTimer:
    """A pair of CUDA events around each step; one host synchronisation at the end of the block.

    `torch.cuda.Event` creates its CUDA event lazily, on its first `record()`: fresh events per block
    would create (and later destroy) 2n CUDA events inside the step windows. So the timer keeps one
    pool of events, made and recorded once before its first block (during warm-up, since a point's
    first block is warm-up) and reused by every block after. `cuda` is the torch.cuda namespace
    (tests pass a fake one).
    """

    name = TIMER_CUDA_EVENT

    def __init__(self, device=None, *, cuda: Any = None, pool_size: int | None = None):
        if cuda is None:
            import torch

            cuda = torch.cuda
        self._cuda = cuda
        self._device = device
        self._pool_size = pool_size or MAX_BLOCK
        self._starts: list = []
        self._ends: list = []

    @property
    def pool_size(self) -> int:
        """Pairs of events made so far."""
        return len(self._starts)

    def _grow_pool(self, n: int) -> None:
        """At least `n` pairs of events, each already recorded once (so its CUDA event exists)."""
        if n <= len(self._starts):
            return
        more = max(n, self._pool_size) - len(self._starts)
        starts = [self._cuda.Event(enable_timing=True) for _ in range(more)]
        ends = [self._cuda.Event(enable_timing=True) for _ in range(more)]
        for e in (*starts, *ends):
            e.record()
        ends[-1].synchronize()
        self._starts += starts
        self._ends += ends

    def time_block(self, step: Step, n: int, stop: StopBlock | None = None) -> list[float]:
        with self._cuda.device(self._device):
            # Outside the timed window: a no-op once the pool holds n pairs (MAX_BLOCK by default).
            self._grow_pool(n)
            starts, ends = self._starts, self._ends
            done = n
            for i in range(n):
                starts[i].record()
                step()
                ends[i].record()
                # Between two steps' events, so outside both windows. The host runs ahead of the device
                # by the launch queue at most, so a host-clock deadline ends the block about on time.
                if stop is not None and stop():
                    done = i + 1
                    break
            ends[done - 1].synchronize()
            return [starts[i].elapsed_time(ends[i]) / 1e3 for i in range(done)]


# --------------------------------------------------------------------------- hidden host synchronisation

SYNC_WARNING = "synchronizing CUDA operation"  # what torch warns under set_sync_debug_mode("warn")
CheckStep = Callable[[Step], list]


def _where(filename: str, lineno: int) -> str:
    parts = PurePath(filename).parts
    return f"{'/'.join(parts[-2:])}:{lineno}"


SYNC_CHECK_STEPS = 5  # steps checked: a sync every few steps (a logged loss, a scaler's check) shows up
SYNC_CHECK_MAX_S = 1.0  # but no more steps once this much host time has gone (slow steps, small budgets)


def find_host_syncs(step: Step, cuda: Any = None, *, steps: int = 1, skip: int = 0, max_s: float | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> list[str]:
    """Run `step` `steps` times under `torch.cuda.set_sync_debug_mode("warn")` (after `skip` plain
    runs: a data-parallel step's bucket rebuild synchronises once, and is not the step's habit; and
    no further step once `max_s` seconds have gone); one line per place in Python code that made the
    host wait for the device (e.g. `.item()`, a GradScaler without a fused optimizer), with how often
    it did in the steps checked. Empty: no synchronising operation torch knows of in them (a sync
    every more than that many steps can still hide).

    The previous debug mode is put back even if the step raises; warnings other than torch's sync
    warning are passed on. `cuda` is the torch.cuda namespace (tests pass a fake one).
    """
    if cuda is None:
        import torch

        cuda = torch.cuda
    for _ in range(skip):
        step()
    before = cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cuda.set_sync_debug_mode("warn")
        checked = 0
        t0 = clock()
        try:
            while checked < steps:
                step()
                checked += 1
                if max_s is not None and clock() - t0 >= max_s:
                    break
        finally:
            cuda.set_sync_debug_mode(before)
    places: Counter = Counter()
    others = []
    for w in caught:
        if SYNC_WARNING in str(w.message):
            places[_where(w.filename, w.lineno)] += 1
        else:
            others.append(w)
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    span = "one step" if checked == 1 else f"{checked} steps"
    return [f"{where} ({k}x in {span})" for where, k in places.items()]


def sync_check_for(device, *, skip: int = 0, steps: int = SYNC_CHECK_STEPS,
                   max_s: float | None = SYNC_CHECK_MAX_S) -> CheckStep | None:
    """The host-sync check for a device: `find_host_syncs` over up to `steps` steps (within `max_s`)
    after `skip` plain ones on CUDA; None elsewhere (nothing to find)."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    return partial(find_host_syncs, steps=steps, skip=skip, max_s=max_s) if kind == "cuda" else None


def timer_for(device) -> Timer:
    """The right timer for a torch device (or device string)."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if kind == "cuda":
        return CudaEventTimer(device)
    if kind == "cpu":
        return HostTimer()
    if kind == "mps":
        import torch

        return HostTimer(synchronize=torch.mps.synchronize)
    raise BenchError(f"no timer for device type {kind!r} (supported: cpu, cuda, mps)")


# --------------------------------------------------------------------------- limits and their defaults


BLOCKS_PER_MIN_TIME = MIN_BLOCKS_FOR_CI  # enough blocks within the minimum time for a CI across blocks
MIN_BLOCK = 3  # a block cut short (by the budget or a count) below this and below its planned size is not a block median
MAX_BLOCK = 200
WARMUP_BLOCKS_PER_MIN_TIME = 4  # warm-up blocks last at least a quarter of the warm-up's minimum time
WARMUP_LAG_OF_MIN_TIME = 1.0  # the blocks compared start at least this many minimum times apart
WARMUP_MIN_BLOCK = 3  # steps per warm-up block, at least: a block's spread is what tells drift from noise


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class MeasureLimits:
    """How long one point may be measured, and how much must be measured before any rule may stop it.

    The loop in `measure` applies these to every stopping rule: it stops a point when `budget_s` of
    wall time or `max_samples` samples are spent, and asks the rule whether to stop only once
    `min_samples` samples and the minimum time of measured steps are in (or once the rule says it
    wants no more samples, as a fixed count does). Blocks of steps between host synchronisations
    last about `block_target_s` (one step, when a step is longer).

    The budget is the timed steps': it counts from the end of warm-up, which has limits of its own
    (`WarmupRule`), so a small budget neither starves warm-up nor is spent by it. It is a ceiling
    to within a step: the timer ends a block when the budget is spent (when it takes `stop`; a
    timer that does not has its blocks sized by the slowest recent step instead), and at least one
    timed step runs.

    `min_time_s=None` (the default) is MEASURE_DEFAULTS' minimum time, lowered to the budget when the
    budget is smaller: a small budget alone asks for a quick measurement, not a contradiction. A
    minimum time given explicitly above the budget is rejected, since no point could then stop on
    its rule.
    """

    budget_s: float = MEASURE_DEFAULTS["budget_s"]
    min_time_s: float | None = None
    min_samples: int = MEASURE_DEFAULTS["min_samples"]
    max_samples: int = MEASURE_DEFAULTS["max_samples"]
    target_block_s: float | None = None  # None: the minimum time over BLOCKS_PER_MIN_TIME

    def __post_init__(self):
        if not _positive_number(self.budget_s):
            raise BenchError(f"time budget must be a positive number of seconds, got {self.budget_s!r}")
        if self.min_time_s is not None:
            if not (isinstance(self.min_time_s, (int, float)) and math.isfinite(self.min_time_s) and self.min_time_s >= 0):
                raise BenchError(f"minimum time must be a number of seconds >= 0, got {self.min_time_s!r}")
            if self.min_time_s > self.budget_s:
                raise BenchError(f"minimum time {self.min_time_s:g} s exceeds the time budget {self.budget_s:g} s: "
                                 "no point could stop on its rule")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise BenchError(f"minimum samples must be an integer >= 1, got {self.min_samples!r}")
        if not isinstance(self.max_samples, int) or self.max_samples < self.min_samples:
            raise BenchError(f"maximum samples must be an integer >= the minimum samples ({self.min_samples}), "
                             f"got {self.max_samples!r}")
        if self.target_block_s is not None and not _positive_number(self.target_block_s):
            raise BenchError(f"block duration must be a positive number of seconds, got {self.target_block_s!r}")

    @property
    def effective_min_time_s(self) -> float:
        """The minimum time in force: as given, or the default lowered to the budget."""
        if self.min_time_s is not None:
            return float(self.min_time_s)
        return min(MEASURE_DEFAULTS["min_time_s"], self.budget_s)

    @property
    def block_target_s(self) -> float:
        """How long one timed block should last: enough blocks within the minimum time for a CI across
        blocks (with no minimum time, the default one, capped by the budget)."""
        if self.target_block_s is not None:
            return float(self.target_block_s)
        basis = self.effective_min_time_s or min(MEASURE_DEFAULTS["min_time_s"], self.budget_s)
        return basis / BLOCKS_PER_MIN_TIME

    def floors_met(self, samples: Sequence[float]) -> bool:
        """Enough samples and enough measured time for a rule to be asked."""
        return len(samples) >= self.min_samples and sum(samples) >= self.effective_min_time_s

    def stop_reason(self, rule: "StoppingRule", samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None, *, spent_s: float | None = None) -> str | None:
        """Why to stop measuring now, or None: the sample cap; else the rule, once the floors are met
        (or once it wants no more samples); else the budget. `elapsed_s` is the time spent measuring
        (what the rule is told); `spent_s` what counts against the budget (default `elapsed_s`)."""
        n = len(samples)
        spent_s = elapsed_s if spent_s is None else spent_s
        if n >= self.max_samples:
            return STOP_MAX_SAMPLES
        if self.floors_met(samples) or rule_max_more_samples(rule, n) == 0:
            reason = rule.should_stop(samples, elapsed_s, block_medians)
            if reason:
                return str(reason)
        if spent_s >= self.budget_s:
            return STOP_BUDGET
        return None

    def to_dict(self) -> dict:
        """The limits as used (the minimum time in force, not None)."""
        d = {"min_samples": self.min_samples, "min_time_s": self.effective_min_time_s, "budget_s": self.budget_s,
             "max_samples": self.max_samples, "budget_of": "timed steps"}  # files before: the point, warm-up included
        if self.target_block_s is not None:
            d["target_block_s"] = self.target_block_s
        return d


# --------------------------------------------------------------------------- stopping rules


class StoppingRule(Protocol):
    """When a point has samples enough (after NVBench's stopping criteria): a small object the loop in
    `measure` asks after every timed block. The budget, the floors and the sample cap are the loop's
    (`MeasureLimits`), not the rule's: a rule only says when it is satisfied.

    Required: `name` and `should_stop`. Optional, each with a default when a rule lacks it:

    - `max_more_samples(n_taken) -> int | None`: at most how many more samples the rule wants after
      `n_taken` (the loop sizes blocks by it; 0: it wants no more and is asked at once, even below
      the floors). Default: None, no cap.
    - `waiting_for(samples, block_medians) -> str | None`: what the rule still waited for, for the
      warning when the budget runs out first ("time budget ran out before ..."); None: nothing (a
      rule meant to run to the budget), no warning. Default: the rule's name.
    - `to_dict() -> dict`: the rule's name and parameters, recorded with the results. Default:
      `{"name": name}`.

    A new rule goes in this module and in STOPPING_RULES (to be chosen by name); any object with
    these members works where a rule is taken (`measure`, `SweepConfig(stopping_rule=...)`).
    """

    name: str

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        """Return why to stop now (a STOP_* reason), or None to take more samples.

        `samples` are all measured step times so far (seconds); `elapsed_s` is the wall time spent
        measuring this point so far; `block_medians`, when the caller times in blocks, the median
        of each block so far.
        """


def check_stopping_rule(rule: Any) -> StoppingRule:
    """`rule` if it has the protocol's required members, else a one-line BenchError."""
    name = getattr(rule, "name", None)
    if not isinstance(name, str) or not name or not callable(getattr(rule, "should_stop", None)):
        raise BenchError(f"a stopping rule needs a `name` and a should_stop(samples, elapsed_s, block_medians) "
                         f"method; got {type(rule).__name__}")
    return rule


def rule_max_more_samples(rule: StoppingRule, n_taken: int) -> int | None:
    """At most how many more samples `rule` wants (None: no cap), by its optional `max_more_samples`."""
    method = getattr(rule, "max_more_samples", None)
    if method is None:
        return None
    wanted = method(n_taken)
    return None if wanted is None else max(0, int(wanted))


def rule_waiting_for(rule: StoppingRule, samples: Sequence[float],
                     block_medians: Sequence[float] | None) -> str | None:
    """What `rule` still waited for when the budget ran out, by its optional `waiting_for` (None: nothing)."""
    method = getattr(rule, "waiting_for", None)
    if method is None:
        return f"the {rule.name!r} stopping rule was met"
    what = method(samples, block_medians)
    return None if what is None else str(what)


def describe_rule(rule: StoppingRule) -> dict:
    """The rule's name and parameters, by its optional `to_dict`."""
    method = getattr(rule, "to_dict", None)
    d = dict(method()) if method is not None else {}
    return {"name": rule.name, **d}


@dataclass(frozen=True)
class CIStoppingRule:
    """Stop once the 95% CI of the median is within ±`ci_target` (relative).

    When the caller passes block medians, the CI must also hold across blocks (see
    `stats.summarize`): at least MIN_BLOCKS_FOR_CI blocks, and the CI widened by theirs. Repeated
    blocks at different levels (the launch-bound case) then run to the budget instead of claiming
    a precision the data does not have."""

    ci_target: float = MEASURE_DEFAULTS["ci_target"]
    name: str = "ci"

    def __post_init__(self):
        if not _positive_number(self.ci_target):
            raise BenchError(f"CI target must be a positive number, got {self.ci_target!r}")

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        if block_medians is not None and len(block_medians) < MIN_BLOCKS_FOR_CI:
            return None
        rel = summarize(samples, block_medians=block_medians).ci_rel_halfwidth
        return STOP_CI if rel is not None and rel <= self.ci_target else None

    def waiting_for(self, samples: Sequence[float], block_medians: Sequence[float] | None) -> str:
        rel = summarize(samples, block_medians=block_medians).ci_rel_halfwidth if samples else None
        shown = "n/a" if rel is None else f"±{rel:.1%}"
        return f"the 95% CI of the median reached ±{self.ci_target:.1%} (it is {shown})"

    def to_dict(self) -> dict:
        return {"name": self.name, "ci_target": self.ci_target}


@dataclass(frozen=True)
class FixedCountRule:
    """Take exactly `count` samples (for comparisons that need equal sample counts), unless the
    budget runs out first."""

    count: int = 20
    name: str = "count"

    def __post_init__(self):
        if not isinstance(self.count, int) or self.count < 1:
            raise BenchError(f"sample count must be an integer >= 1, got {self.count!r}")

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        return STOP_COUNT if len(samples) >= self.count else None

    def max_more_samples(self, n_taken: int) -> int:
        return max(0, self.count - n_taken)

    def waiting_for(self, samples: Sequence[float], block_medians: Sequence[float] | None) -> str:
        return f"{self.count} samples were taken (it took {len(samples)})"

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count}


STOPPING_RULES: dict[str, type] = {"ci": CIStoppingRule, "count": FixedCountRule}


def make_stopping_rule(name: str, **params) -> StoppingRule:
    try:
        cls = STOPPING_RULES[name]
    except KeyError:
        raise BenchError(f"unknown stopping rule {name!r} (known: {', '.join(STOPPING_RULES)})") from None
    try:
        return cls(**params)
    except TypeError as e:
        raise BenchError(f"stopping rule {name!r}: {e}") from None


def noise_band(block: Sequence[float]) -> tuple[float, float]:
    """Where a block's median lies, as far as its own spread tells: the distribution-free 95% CI of
    its median with enough steps for one (6), else the range of its steps."""
    x = sorted(block)
    idx = median_ci_indices(len(x))
    return (x[idx[0]], x[idx[1]]) if idx else (x[0], x[-1])


@dataclass(frozen=True)
class Drift:
    """How the median of one warm-up block moved against an earlier one's: `rel` (later / earlier - 1)
    over `over_s` seconds of steps; `beyond_noise` when the blocks' noise bands do not overlap."""

    rel: float
    over_s: float
    beyond_noise: bool

    def drifting(self, tolerance: float) -> bool:
        """A trend either way: beyond the tolerance and beyond the blocks' own noise."""
        return abs(self.rel) > tolerance and self.beyond_noise

    @property
    def direction(self) -> str:
        return "rising" if self.rel > 0 else "falling"


@dataclass(frozen=True)
class WarmupRule:
    """When warm-up is over. Its limits are its own, independent of the point's budget.

    The point's first step (compilation, cuDNN autotuning, lazy allocation) is always warm-up and
    counts toward no limit. After it, steps run in blocks of about `block_s` (at least
    WARMUP_MIN_BLOCK steps), and warm-up ends once `min_time_s` of step time has passed and the
    median of the last block has not moved, either way, by more than `tolerance` (None: the
    stopping rule's CI target) from that of a block begun at least `min_time_s` earlier, unless the
    two blocks' noise bands overlap (`noise_band`). Falling times (caches, clocks ramping up) and
    rising ones (a power cap or heat throttling the clocks) both hold it; noise does not.

    Caps (then the reason says warm-up was cut short, and the point carries a warning that says
    which way the times were still moving): `max_steps` steps and `max_time_s` of wall time after
    the first step. The minimum time is lowered to `max_time_s` when that is smaller.
    """

    min_time_s: float = MEASURE_DEFAULTS["warmup_min_s"]
    tolerance: float | None = None
    max_steps: int = 100_000
    max_time_s: float = MEASURE_DEFAULTS["warmup_max_s"]
    block_s: float | None = None  # None: the limits' block target, at least min_time_s / WARMUP_BLOCKS_PER_MIN_TIME

    def __post_init__(self):
        if not _positive_number(self.max_time_s):
            raise BenchError(f"warm-up time limit must be a positive number of seconds, got {self.max_time_s!r}")
        if not (isinstance(self.min_time_s, (int, float)) and math.isfinite(self.min_time_s) and self.min_time_s >= 0):
            raise BenchError(f"warm-up minimum time must be a number of seconds >= 0, got {self.min_time_s!r}")
        if self.tolerance is not None and not _positive_number(self.tolerance):
            raise BenchError(f"warm-up tolerance must be a positive number, got {self.tolerance!r}")
        if not isinstance(self.max_steps, int) or self.max_steps < 2:
            raise BenchError(f"warm-up step limit must be an integer >= 2, got {self.max_steps!r}")
        if self.block_s is not None and not _positive_number(self.block_s):
            raise BenchError(f"warm-up block duration must be a positive number of seconds, got {self.block_s!r}")

    def in_force(self, limits: MeasureLimits | None = None, rule: StoppingRule | None = None) -> "WarmupRule":
        """This rule with every value as a point under `limits` and `rule` uses it: the tolerance (the
        rule's CI target, or the default one), the minimum time (lowered to the time limit, never to
        the budget) and the block duration."""
        limits = limits if limits is not None else MeasureLimits()
        tolerance = self.tolerance
        if tolerance is None:
            target = getattr(rule, "ci_target", None)
            tolerance = float(target) if _positive_number(target) else MEASURE_DEFAULTS["ci_target"]
        min_time = min(float(self.min_time_s), float(self.max_time_s))
        block_s = self.block_s if self.block_s is not None else max(
            limits.block_target_s, min_time / WARMUP_BLOCKS_PER_MIN_TIME)
        return WarmupRule(min_time_s=min_time, tolerance=tolerance, max_steps=self.max_steps,
                          max_time_s=self.max_time_s, block_s=block_s)

    def drift(self, block_medians: Sequence[float], block_starts_s: Sequence[float],
              block_bands: Sequence[tuple[float, float]] | None = None) -> Drift | None:
        """How the last block's median moved against the latest block begun at least `lag_s` before
        it; None while there is no such block. `block_bands[i]`: block i's noise band (None: none)."""
        if len(block_medians) < 2:
            return None
        last_start = block_starts_s[-1]
        earlier = [i for i, start in enumerate(block_starts_s[:-1]) if start <= last_start - self.lag_s]
        if not earlier:
            return None
        i = earlier[-1]
        rel = block_medians[-1] / block_medians[i] - 1.0 if block_medians[i] > 0 else 0.0
        beyond = True
        if block_bands is not None:
            (lo_a, hi_a), (lo_b, hi_b) = block_bands[i], block_bands[-1]
            beyond = hi_b < lo_a or lo_b > hi_a
        return Drift(rel=rel, over_s=last_start - block_starts_s[i], beyond_noise=beyond)

    def is_warm(self, block_medians: Sequence[float], block_starts_s: Sequence[float], step_time_s: float,
                steps: int, elapsed_s: float | None = None,
                block_bands: Sequence[tuple[float, float]] | None = None) -> str | None:
        """Why warm-up is over, or None.

        `block_medians[i]` is the median of warm-up block i after the first step and `block_starts_s[i]`
        the step time (after the first step) at which it began; `step_time_s` the step time so far;
        `steps` the warm-up steps so far, the first included; `elapsed_s` the wall time after the first
        step (default `step_time_s`); `block_bands` each block's noise band (None: every move beyond
        the tolerance counts). Stable: see the class.
        """
        elapsed_s = step_time_s if elapsed_s is None else elapsed_s
        tolerance = self.tolerance if self.tolerance is not None else MEASURE_DEFAULTS["ci_target"]
        if step_time_s >= self.min_time_s:
            moved = self.drift(block_medians, block_starts_s, block_bands)
            if moved is not None and not moved.drifting(tolerance):
                return WARM_STABLE
        if steps >= self.max_steps:
            return WARM_MAX_STEPS
        if block_medians and elapsed_s >= self.max_time_s:
            return WARM_MAX_TIME
        return None

    @property
    def lag_s(self) -> float:
        """How far apart (in step time) the starts of the two blocks whose medians must agree are, at least."""
        return self.min_time_s * WARMUP_LAG_OF_MIN_TIME

    def to_dict(self) -> dict:
        # `either_way`: drift both ways holds warm-up, noise does not, and its limits are its own (files
        # written before it only held falling times, and warm-up had a share of the budget).
        return {"min_time_s": self.min_time_s, "tolerance": self.tolerance, "max_steps": self.max_steps,
                "max_time_s": self.max_time_s, "block_s": self.block_s, "either_way": True}


# --------------------------------------------------------------------------- the loop



@dataclass
class TimingResult:
    """Raw output of `measure`: every timed step, the warm-up that was discarded, and why it stopped.

    `host_syncs` lists the places a warm-up step under the sync debug mode found the host waiting for
    the device (None: not checked, e.g. on the CPU); `block_shortfall` is set when fewer blocks than a
    CI across blocks needs fitted the budget.
    """

    timer: str
    samples_s: list[float] = field(default_factory=list)
    warmup_samples_s: list[float] = field(default_factory=list)
    warmup_reason: str | None = None
    warmup_block_medians_s: list[float] = field(default_factory=list)
    block_medians_s: list[float] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)
    stop_reason: str | None = None
    wall_time_s: float = 0.0
    warmup_wall_time_s: float = 0.0
    host_syncs: list[str] | None = None
    block_shortfall: BlockShortfall | None = None
    warnings: list[str] = field(default_factory=list)


def _block_size(median_s: float, target_block_s: float) -> int:
    """Steps per block: about `target_block_s` of steps; one step when a step is longer."""
    if median_s <= 0:
        return MAX_BLOCK
    return max(1, min(MAX_BLOCK, int(round(target_block_s / median_s))))


def _time_block(timer: Timer, step: Step, n: int, stop: StopBlock, takes_stop: bool) -> list[float]:
    return timer.time_block(step, n, stop=stop) if takes_stop else timer.time_block(step, n)


def _warm_up(step: Step, timer: Timer, warm: WarmupRule, res: TimingResult, clock: Callable[[], float],
             t_first: float, check_step: CheckStep | None) -> Drift | None:
    """The warm-up after the first step, in blocks, until `warm` says it is over or its own limits are
    spent (see WarmupRule); returns the last drift it measured (None: none yet)."""
    medians = res.warmup_block_medians_s
    starts: list[float] = []
    bands: list[tuple[float, float]] = []
    takes_stop = _takes_stop(timer)
    deadline = t_first + warm.max_time_s

    def past_limit() -> bool:
        return clock() >= deadline

    typical = res.warmup_samples_s[-1]  # the first step's time, until warm-up blocks tell better
    if check_step is not None:
        found: list[str] = []
        block = timer.time_block(lambda: found.extend(check_step(step)), 1)
        # One sample spanning the check's several steps under sync-debug mode: time spent warming up,
        # but no step time, so it sizes no block and enters no drift comparison.
        res.warmup_samples_s += block
        res.host_syncs = found
    while True:
        elapsed = clock() - t_first
        reason = warm.is_warm(medians, starts, sum(res.warmup_samples_s[1:]), len(res.warmup_samples_s), elapsed,
                              block_bands=bands)
        if reason:
            res.warmup_reason = reason
            return warm.drift(medians, starts, bands)
        n = max(WARMUP_MIN_BLOCK, _block_size(typical, warm.block_s))
        n = max(1, min(n, warm.max_steps - len(res.warmup_samples_s)))
        starts.append(sum(res.warmup_samples_s[1:]))
        block = _time_block(timer, step, n, past_limit, takes_stop)
        res.warmup_samples_s += block
        medians.append(statistics.median(block))
        bands.append(noise_band(block))
        # Sized by the recent steps (at least 3), so that one slow step does not shrink the next block.
        typical = statistics.median(block if len(block) >= 3 else res.warmup_samples_s[1:][-3:])


def measure(
    step: Step,
    *,
    timer: Timer,
    rule: StoppingRule | None = None,
    limits: MeasureLimits | None = None,
    warmup: WarmupRule | None = None,
    around_block: Callable[[], ContextManager] | None = None,
    after_warmup: Callable[[], object] | None = None,
    check_step: CheckStep | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingResult:
    """Warm `step` up, then time it in blocks until `limits` or `rule` say stop.

    `rule` defaults to CIStoppingRule(), `limits` to MeasureLimits(), `warmup` to WarmupRule(): the
    defaults of MEASURE_DEFAULTS. Warm-up has its own limits (`warmup`); the budget counts from its
    end and bounds the timed steps to within a step; at least one timed step runs. `around_block` (e.g. a telemetry sampler's block marker)
    is entered around each timed block, outside the per-step timing. `after_warmup` runs once between
    warm-up and the first timed block (e.g. to reset peak-memory statistics). `check_step(step)`,
    if given, runs the second warm-up step and returns the host synchronisations it found
    (`find_host_syncs`); they become a warning. Warm-up samples are kept in the result but never
    mixed into the statistics.
    """
    rule = check_stopping_rule(rule if rule is not None else CIStoppingRule())
    limits = limits if limits is not None else MeasureLimits()
    warm = (warmup or WarmupRule()).in_force(limits, rule)
    res = TimingResult(timer=timer.name)
    t_start = clock()
    res.warmup_samples_s += timer.time_block(step, 1)
    t_first = clock()  # warm-up's limits count from here: the first step is bounded by nothing
    drift = _warm_up(step, timer, warm, res, clock, t_first, check_step)
    res.warmup_wall_time_s = clock() - t_start
    if res.host_syncs:
        res.warnings.append("the step makes the host wait for the device (found by warm-up steps under "
                            "torch.cuda.set_sync_debug_mode('warn')): " + "; ".join(res.host_syncs)
                            + ": every timed step includes that wait")
    if res.warmup_reason != WARM_STABLE:
        cap = {WARM_MAX_TIME: f"its time limit ({warm.max_time_s:g} s)",
               WARM_MAX_STEPS: f"its step limit ({warm.max_steps})"}.get(res.warmup_reason, res.warmup_reason)
        if drift is not None and drift.drifting(warm.tolerance):
            state = (f"with block medians still {drift.direction} ({drift.rel:+.1%} over {drift.over_s:.2g} s, beyond "
                     f"their noise and the {warm.tolerance:.1%} tolerance)")
        else:
            state = f"before two blocks {warm.lag_s:.2g} s apart could be compared"
        res.warnings.append(f"warm-up ended by {cap} after {len(res.warmup_samples_s)} steps, {state}: the timed "
                            "steps may still be drifting (a longer warm-up limit may reach stability; a trend that "
                            "persists is the machine's, e.g. throttling)")
    if after_warmup is not None:
        after_warmup()

    takes_stop = _takes_stop(timer)
    typical = statistics.median(res.warmup_samples_s[1:][-3:])  # warm-up ran at least one step after the first
    slowest = max(res.warmup_samples_s[1:][-3:])
    t_measure = clock()  # the budget counts from here: warm-up had its own limits
    deadline = t_measure + limits.budget_s

    def budget_spent() -> bool:
        return clock() >= deadline

    while True:
        taken = len(res.samples_s)
        planned = _block_size(typical, limits.block_target_s)
        n = planned
        if slowest > 0:  # the slowest recent step sizes what is left, for a timer that cannot stop early
            n = min(n, int((deadline - clock()) / slowest))
        wanted = rule_max_more_samples(rule, taken)
        if wanted is not None:
            n = min(n, wanted)
        n = max(1, min(n, limits.max_samples - taken))
        with (around_block() if around_block else nullcontext()):
            block = _time_block(timer, step, n, budget_spent, takes_stop)
        res.samples_s += block
        res.block_sizes.append(len(block))
        # A block cut short (by the budget or a count) says little about agreement, unless its
        # planned size was that small anyway (a slow step: one-step blocks).
        if len(block) >= min(MIN_BLOCK, planned):
            res.block_medians_s.append(statistics.median(block))
        recent = res.samples_s[-min(len(res.samples_s), 3 * MAX_BLOCK):]
        typical = statistics.median(recent)
        slowest = max(res.samples_s[-min(len(res.samples_s), max(3, len(block))):])
        now = clock()
        reason = limits.stop_reason(rule, res.samples_s, now - t_measure, res.block_medians_s)
        if reason:
            res.stop_reason = reason
            break
    t_end = clock()
    res.wall_time_s = t_end - t_start
    if res.stop_reason in (STOP_BUDGET, STOP_MAX_SAMPLES) and len(res.samples_s) < limits.min_samples:
        res.warnings.append(f"only {len(res.samples_s)} samples (fewer than the minimum {limits.min_samples}) "
                            "within the time budget")
    if res.stop_reason == STOP_BUDGET:
        what = rule_waiting_for(rule, res.samples_s, res.block_medians_s)
        if what:
            res.warnings.append(f"time budget ran out before {what}")
        if len(res.block_medians_s) < MIN_BLOCKS_FOR_CI:
            step_s = statistics.median(res.samples_s)
            # From the median step, and from the wall time the blocks really took (slow steps, the loop's
            # own time): the larger, so that the budget named is never one that was just too small.
            per_block_s = (t_end - t_measure) / max(1, len(res.block_medians_s))
            needed_s = max(MIN_BLOCKS_FOR_CI * max(step_s, limits.block_target_s, per_block_s),
                           limits.effective_min_time_s)
            res.block_shortfall = BlockShortfall(blocks=len(res.block_medians_s), needed=MIN_BLOCKS_FOR_CI,
                                                 budget_s=limits.budget_s, step_s=step_s,
                                                 budget_needed_s=needed_s, samples=len(res.samples_s))
            res.warnings.append(res.block_shortfall.message)
    return res
