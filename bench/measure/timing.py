"""Timing one training step: device-event and host timers, warm-up detection, adaptive stopping rules.

The timers return raw per-step seconds for a block of steps. On CUDA a pair of events brackets each
step and the host synchronises once per block, never inside the timed window; on the CPU a host clock
brackets each step. Stopping rules are small policy objects (after NVBench's stopping criteria): the
loop in `measure` asks a rule after every block whether to stop, and records the reason it gives.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Protocol, Sequence

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


# --------------------------------------------------------------------------- rules


class StoppingRule(Protocol):
    name: str

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        """Return why to stop now (a STOP_* reason), or None to take more samples.

        `samples` are all measured step times so far (seconds); `elapsed_s` is the wall time spent
        measuring this point so far; `block_medians`, when the caller times in blocks, the median
        of each block so far.
        """

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class CIStoppingRule:
    """Stop once the 95% CI of the median is within ±`ci_target` (relative), after at least
    `min_samples` samples and `min_time_s` of measured step time; or when `budget_s` of wall time
    or `max_samples` is spent, whichever comes first.

    When the caller passes block medians, the CI must also hold across blocks (see
    `stats.summarize`): at least MIN_BLOCKS_FOR_CI blocks, and the CI widened by theirs. Repeated
    blocks at different levels (the launch-bound case) then run to the budget instead of claiming
    a precision the data does not have."""

    ci_target: float = 0.01
    min_samples: int = 10
    min_time_s: float = 0.5
    budget_s: float = 5.0
    max_samples: int = 100_000
    name: str = "ci"

    def __post_init__(self):
        if not self.ci_target > 0:
            raise BenchError(f"CI target must be > 0, got {self.ci_target}")
        if self.min_samples < 1:
            raise BenchError(f"minimum samples must be >= 1, got {self.min_samples}")
        if not self.budget_s > 0:
            raise BenchError(f"time budget must be > 0 seconds, got {self.budget_s}")
        if self.min_time_s < 0:
            raise BenchError(f"minimum time must be >= 0 seconds, got {self.min_time_s}")
        if self.min_time_s > self.budget_s:
            raise BenchError(f"minimum time {self.min_time_s} s exceeds the time budget {self.budget_s} s: "
                             "no point could stop on its CI target")

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        n = len(samples)
        if n >= self.max_samples:
            return STOP_MAX_SAMPLES
        enough_blocks = block_medians is None or len(block_medians) >= MIN_BLOCKS_FOR_CI
        if n >= self.min_samples and sum(samples) >= self.min_time_s and enough_blocks:
            rel = summarize(samples, block_medians=block_medians).ci_rel_halfwidth
            if rel is not None and rel <= self.ci_target:
                return STOP_CI
        if elapsed_s >= self.budget_s:
            return STOP_BUDGET
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "ci_target": self.ci_target, "min_samples": self.min_samples,
                "min_time_s": self.min_time_s, "budget_s": self.budget_s, "max_samples": self.max_samples}


@dataclass(frozen=True)
class FixedCountRule:
    """Take exactly `count` samples (for comparisons that need equal sample counts)."""

    count: int = 20
    name: str = "count"

    def __post_init__(self):
        if self.count < 1:
            raise BenchError(f"sample count must be >= 1, got {self.count}")

    def should_stop(self, samples: Sequence[float], elapsed_s: float,
                    block_medians: Sequence[float] | None = None) -> str | None:
        return STOP_COUNT if len(samples) >= self.count else None

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count}


STOPPING_RULES: dict[str, type] = {"ci": CIStoppingRule, "count": FixedCountRule}


def make_stopping_rule(name: str, **params) -> StoppingRule:
    try:
        cls = STOPPING_RULES[name]
    except KeyError:
        raise BenchError(f"unknown stopping rule {name!r} (known: {', '.join(STOPPING_RULES)})") from None
    return cls(**params)


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
    max_time_s: float = 30.0

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


BLOCKS_PER_MIN_TIME = MIN_BLOCKS_FOR_CI  # enough blocks within the minimum time for a CI across blocks
MIN_BLOCK = 3
MAX_BLOCK = 200


def _block_size(median_s: float, target_block_s: float) -> int:
    if median_s <= 0:
        return MAX_BLOCK
    return max(MIN_BLOCK, min(MAX_BLOCK, int(round(target_block_s / median_s))))


def measure(
    step: Step,
    *,
    timer: Timer,
    rule: StoppingRule,
    warmup: WarmupRule | None = None,
    around_block: Callable[[], ContextManager] | None = None,
    target_block_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingResult:
    """Warm `step` up, then time it in blocks until `rule` says stop.

    `around_block` (e.g. a telemetry sampler) is entered around each timed block, outside the
    per-step timing. Warm-up samples are kept in the result but never mixed into the statistics.
    """
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

    budget = getattr(rule, "budget_s", None)
    min_time = getattr(rule, "min_time_s", 0.5) or 0.5
    target_block_s = target_block_s or min_time / BLOCKS_PER_MIN_TIME
    typical = statistics.median(res.warmup_samples_s[-warmup.window:])
    t_measure = clock()
    while True:
        n = _block_size(typical, target_block_s)
        if budget is not None and typical > 0:
            remaining = budget - (clock() - t_measure)
            n = max(1, min(n, int(remaining / typical)))
        count = getattr(rule, "count", None)
        if count is not None:
            n = max(1, min(n, count - len(res.samples_s)))
        with (around_block() if around_block else nullcontext()):
            block = timer.time_block(step, n)
        res.samples_s += block
        res.block_sizes.append(len(block))
        if len(block) >= MIN_BLOCK:  # a block cut short by the budget says little about agreement
            res.block_medians_s.append(statistics.median(block))
        typical = statistics.median(res.samples_s[-min(len(res.samples_s), 3 * MAX_BLOCK):])
        reason = rule.should_stop(res.samples_s, clock() - t_measure, res.block_medians_s)
        if reason:
            res.stop_reason = reason
            break
    res.wall_time_s = clock() - t_start
    min_samples = getattr(rule, "min_samples", None)
    if min_samples and len(res.samples_s) < min_samples:
        res.warnings.append(f"only {len(res.samples_s)} samples (fewer than the minimum {min_samples}) within the time budget")
    if res.stop_reason == STOP_BUDGET:
        rel = summarize(res.samples_s, block_medians=res.block_medians_s).ci_rel_halfwidth
        target = getattr(rule, "ci_target", None)
        shown = "n/a" if rel is None else f"±{rel:.1%}"
        res.warnings.append(f"time budget ran out before the 95% CI of the median reached ±{target:.1%} (it is {shown})")
    return res
