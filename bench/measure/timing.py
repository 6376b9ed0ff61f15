"""Timing one training step: device-event and host timers, warm-up detection, limits and stopping rules.

The timers return raw per-step seconds for a block of steps. On CUDA a pair of events brackets each
step and the host synchronises once per block, never inside the timed window; on the CPU a host clock
brackets each step. `MeasureLimits` holds the per-point budget, the floors and the block sizing, with
their defaults in one table (MEASURE_DEFAULTS); stopping rules are small pluggable objects (after
NVBench's stopping criteria) that the loop in `measure` asks after every block whether to stop.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ContextManager, Mapping, Protocol, Sequence

from bench.core.errors import BenchError
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
from bench.measure.stats import MIN_BLOCKS_FOR_CI, summarize

Step = Callable[[], object]


# --------------------------------------------------------------------------- timers


class Timer(Protocol):
    name: str

    def time_block(self, step: Step, n: int) -> list[float]:
        """Run `step` n times; return each step's duration in seconds."""


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

    def time_block(self, step: Step, n: int) -> list[float]:
        clock, sync = self._clock, self._sync
        out = []
        for _ in range(n):
            t0 = clock()
            step()
            if sync is not None:
                sync()
            out.append(clock() - t0)
        return out


class CudaEventTimer:
    """A pair of CUDA events around each step; one host synchronisation at the end of the block."""

    name = TIMER_CUDA_EVENT

    def __init__(self, device=None):
        import torch

        self._torch = torch
        self._device = device

    def time_block(self, step: Step, n: int) -> list[float]:
        torch = self._torch
        with torch.cuda.device(self._device):
            # Events are made before the timed window so creating them costs the step nothing.
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
            for i in range(n):
                starts[i].record()
                step()
                ends[i].record()
            ends[-1].synchronize()
            return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]


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

# The one table of measuring defaults. Timing, SweepConfig, `bench sweep`, the pytest suites and the TTA
# study's step timing all read their defaults here (README, "How a point is measured").
MEASURE_DEFAULTS: Mapping[str, float] = MappingProxyType({
    "budget_s": 2.0,  # wall time spent measuring one point, at most
    "min_time_s": 0.5,  # measured step time before a rule may stop a point (lowered to a smaller budget)
    "min_samples": 10,  # samples before a rule may stop a point
    "max_samples": 100_000,  # samples per point, at most
    "ci_target": 0.01,  # the CI rule: stop once the 95% CI of the median is within ±1% of it
    "warmup_max_s": 30.0,  # warm-up time, at most (after the first step)
})

BLOCKS_PER_MIN_TIME = MIN_BLOCKS_FOR_CI  # enough blocks within the minimum time for a CI across blocks
MIN_BLOCK = 3
MAX_BLOCK = 200


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class MeasureLimits:
    """How long one point may be measured, and how much must be measured before any rule may stop it.

    The loop in `measure` applies these to every stopping rule: it stops a point when `budget_s` of
    wall time or `max_samples` samples are spent, and asks the rule whether to stop only once
    `min_samples` samples and the minimum time of measured steps are in (or once the rule says it
    wants no more samples, as a fixed count does). Blocks of steps between host synchronisations
    last about `block_target_s`.

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
                    block_medians: Sequence[float] | None = None) -> str | None:
        """Why to stop measuring now, or None: the sample cap; else the rule, once the floors are met
        (or once it wants no more samples); else the budget."""
        n = len(samples)
        if n >= self.max_samples:
            return STOP_MAX_SAMPLES
        if self.floors_met(samples) or rule_max_more_samples(rule, n) == 0:
            reason = rule.should_stop(samples, elapsed_s, block_medians)
            if reason:
                return str(reason)
        if elapsed_s >= self.budget_s:
            return STOP_BUDGET
        return None

    def to_dict(self) -> dict:
        """The limits as used (the minimum time in force, not None)."""
        d = {"min_samples": self.min_samples, "min_time_s": self.effective_min_time_s, "budget_s": self.budget_s,
             "max_samples": self.max_samples}
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


@dataclass(frozen=True)
class WarmupRule:
    """Warm-up ends when step times stop trending down: after `min_steps` discarded steps, the
    median of the last `window` steps is no more than `tolerance` below the median of the window
    before it. Caps: `max_steps`, and `max_time_s` of step time after the first step (then the
    reason says warm-up was cut short)."""

    min_steps: int = 2
    window: int = 3
    tolerance: float = 0.05
    max_steps: int = 200
    max_time_s: float = MEASURE_DEFAULTS["warmup_max_s"]

    def __post_init__(self):
        if not _positive_number(self.max_time_s):
            raise BenchError(f"warm-up time limit must be a positive number of seconds, got {self.max_time_s!r}")

    def is_warm(self, samples: Sequence[float], elapsed_s: float) -> str | None:
        post = samples[self.min_steps:]
        if len(post) >= 2 * self.window:
            last = statistics.median(post[-self.window:])
            prev = statistics.median(post[-2 * self.window:-self.window])
            if last >= prev * (1.0 - self.tolerance):
                return WARM_STABLE
        if len(samples) >= self.max_steps:
            return WARM_MAX_STEPS
        if elapsed_s >= self.max_time_s:
            return WARM_MAX_TIME
        return None

    def to_dict(self) -> dict:
        return {"min_steps": self.min_steps, "window": self.window, "tolerance": self.tolerance,
                "max_steps": self.max_steps, "max_time_s": self.max_time_s}


# --------------------------------------------------------------------------- the loop


@dataclass
class TimingResult:
    """Raw output of `measure`: every timed step, the warm-up that was discarded, and why it stopped."""

    timer: str
    samples_s: list[float] = field(default_factory=list)
    warmup_samples_s: list[float] = field(default_factory=list)
    warmup_reason: str | None = None
    block_medians_s: list[float] = field(default_factory=list)
    block_sizes: list[int] = field(default_factory=list)
    stop_reason: str | None = None
    wall_time_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _block_size(median_s: float, target_block_s: float) -> int:
    if median_s <= 0:
        return MAX_BLOCK
    return max(MIN_BLOCK, min(MAX_BLOCK, int(round(target_block_s / median_s))))


def measure(
    step: Step,
    *,
    timer: Timer,
    rule: StoppingRule | None = None,
    limits: MeasureLimits | None = None,
    warmup: WarmupRule | None = None,
    around_block: Callable[[], ContextManager] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingResult:
    """Warm `step` up, then time it in blocks until `limits` or `rule` say stop.

    `rule` defaults to CIStoppingRule(), `limits` to MeasureLimits(): the defaults of
    MEASURE_DEFAULTS. `around_block` (e.g. a telemetry sampler) is entered around each timed block,
    outside the per-step timing. Warm-up samples are kept in the result but never mixed into the
    statistics.
    """
    rule = check_stopping_rule(rule if rule is not None else CIStoppingRule())
    limits = limits if limits is not None else MeasureLimits()
    warmup = warmup or WarmupRule()
    res = TimingResult(timer=timer.name)
    t_start = clock()
    while True:
        res.warmup_samples_s += timer.time_block(step, warmup.window)
        # The time cap counts from the second step: a first step that compiles or autotunes for
        # longer than the cap must not end warm-up before the times could settle.
        reason = warmup.is_warm(res.warmup_samples_s, sum(res.warmup_samples_s[1:]))
        if reason:
            res.warmup_reason = reason
            break
    if res.warmup_reason != WARM_STABLE:
        res.warnings.append(f"warm-up ended by {res.warmup_reason} before step times stopped trending")

    typical = statistics.median(res.warmup_samples_s[-warmup.window:])
    t_measure = clock()
    while True:
        taken = len(res.samples_s)
        n = _block_size(typical, limits.block_target_s)
        if typical > 0:
            n = min(n, int((limits.budget_s - (clock() - t_measure)) / typical))
        wanted = rule_max_more_samples(rule, taken)
        if wanted is not None:
            n = min(n, wanted)
        n = max(1, min(n, limits.max_samples - taken))
        with (around_block() if around_block else nullcontext()):
            block = timer.time_block(step, n)
        res.samples_s += block
        res.block_sizes.append(len(block))
        if len(block) >= MIN_BLOCK:  # a block cut short by the budget says little about agreement
            res.block_medians_s.append(statistics.median(block))
        typical = statistics.median(res.samples_s[-min(len(res.samples_s), 3 * MAX_BLOCK):])
        reason = limits.stop_reason(rule, res.samples_s, clock() - t_measure, res.block_medians_s)
        if reason:
            res.stop_reason = reason
            break
    res.wall_time_s = clock() - t_start
    if res.stop_reason in (STOP_BUDGET, STOP_MAX_SAMPLES) and len(res.samples_s) < limits.min_samples:
        res.warnings.append(f"only {len(res.samples_s)} samples (fewer than the minimum {limits.min_samples}) "
                            "within the time budget")
    if res.stop_reason == STOP_BUDGET:
        what = rule_waiting_for(rule, res.samples_s, res.block_medians_s)
        if what:
            res.warnings.append(f"time budget ran out before {what}")
    return res
