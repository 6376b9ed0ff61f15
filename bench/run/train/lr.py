"""Learning-rate rules for changing the batch size (constant, linear, square root) and linear warm-up.

lr(B) = base_lr * f(B / base_batch_size), with f(k) = 1, k or sqrt(k) (Goyal et al. 2017 use linear
scaling with a gradual warm-up; square-root scaling keeps the gradient-noise variance of SGD constant).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from bench.core.errors import BenchError

LR_RULES = ("constant", "linear", "sqrt")


def scaled_lr(base_lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """The learning rate the rule gives at `batch_size`, from `base_lr` tuned at `base_batch_size`."""
    if rule not in LR_RULES:
        raise BenchError(f"unknown LR rule {rule!r}; choose one of {', '.join(LR_RULES)}")
    if not (base_lr > 0 and math.isfinite(base_lr)):
        raise BenchError(f"base learning rate must be a positive number, got {base_lr!r}")
    if batch_size < 1 or base_batch_size < 1:
        raise BenchError(f"batch sizes must be >= 1 (batch {batch_size}, base batch {base_batch_size})")
    k = batch_size / base_batch_size
    if rule == "linear":
        return base_lr * k
    if rule == "sqrt":
        return base_lr * math.sqrt(k)
    return base_lr


def lr_grid(center_lr: float, factors: Sequence[float]) -> list[float]:
    """The LR grid tried at one batch size: the rule's value times each factor (e.g. 0.5, 1, 2)."""
    if not factors:
        raise BenchError("the LR grid needs at least one factor")
    bad = [f for f in factors if not (f > 0 and math.isfinite(f))]
    if bad:
        raise BenchError(f"LR grid factors must be positive numbers, got {bad[0]!r}")
    return [center_lr * float(f) for f in factors]


def log_spaced_factors(points: int, ratio: float = 2.0) -> list[float]:
    """`points` factors spaced by `ratio` and centred on 1: 3 points, ratio 2 -> [0.5, 1, 2]."""
    if points < 1:
        raise BenchError(f"the LR grid needs at least one point, got {points}")
    if not (ratio > 1 and math.isfinite(ratio)):
        raise BenchError(f"LR grid ratio must be a finite number > 1, got {ratio}")
    mid = (points - 1) / 2.0
    return [float(ratio ** (i - mid)) for i in range(points)]


def warmup_steps_from_epochs(epochs: float, train_size: int | None, batch_size: int) -> int:
    """Warm-up length in steps for `epochs` passes over `train_size` examples at `batch_size`."""
    if not (epochs >= 0 and math.isfinite(epochs)):
        raise BenchError(f"warm-up epochs must be a finite number >= 0, got {epochs}")
    if epochs == 0:
        return 0
    if not train_size:
        raise BenchError("warm-up in epochs needs a task with a finite training set; give warm-up in steps")
    return int(math.ceil(epochs * train_size / batch_size))


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up to `peak_lr` over `warmup_steps`, then constant.

    factor(t) = start + (1 - start) * min(1, (t + 1) / warmup_steps) for the 0-based step t, so the
    first step already moves (lr * (start + (1 - start)/W)) and step W-1 runs at the peak. With
    start = 1/k this is Goyal et al.'s gradual warm-up from the small-batch rate to k times it.
    """

    peak_lr: float
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0

    def __post_init__(self):
        if not (self.peak_lr >= 0 and math.isfinite(self.peak_lr)):
            raise BenchError(f"learning rate must be a finite number >= 0, got {self.peak_lr!r}")
        if self.warmup_steps < 0:
            raise BenchError(f"warm-up steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.warmup_start_factor <= 1.0:
            raise BenchError(f"warm-up start factor must be in [0, 1], got {self.warmup_start_factor}")

    def factor(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        s = self.warmup_start_factor
        return s + (1.0 - s) * min(1.0, (step + 1) / self.warmup_steps)

    def lr_at(self, step: int) -> float:
        """Learning rate for the 0-based optimizer step `step`."""
        return self.peak_lr * self.factor(step)

    def to_dict(self) -> dict:
        return asdict(self)
