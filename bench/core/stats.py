"""Raw samples -> robust summary: median, a distribution-free 95% CI of the median, spread, outliers."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from bench.core.errors import BenchError

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=4096)  # a pure function of (n, confidence); the binomial quantiles are slow
def median_ci_indices(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based order-statistic indices (lo, hi) bounding the median with at least `confidence`.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2), so
    [x_(lo), x_(hi)] covers it with probability P(lo < K <= hi). Returns None when n is too small
    for any interval to reach the confidence (n < 6 at 95%).
    """
    if n < 1:
        return None
    # Imported here, not at the top: scipy takes seconds to load on a busy machine (`bench CMD --help`).
    from scipy import stats as _sps

    alpha = 1.0 - confidence
    # Largest k with P(K <= k-1) <= alpha/2: then [x_(k), x_(n-k+1)] (1-based) has coverage >= 1-alpha.
    k = int(_sps.binom.ppf(alpha / 2.0, n, 0.5))
    while k > 0 and _sps.binom.cdf(k - 1, n, 0.5) > alpha / 2.0:
        k -= 1
    if k < 1:
        return None
    return k - 1, n - k


@dataclass(frozen=True)
class SampleStats:
    """Summary of one point's raw step times, in seconds."""

    n: int
    median_s: float
    mean_s: float
    stdev_s: float | None
    min_s: float
    max_s: float
    iqr_s: float
    ci_low_s: float | None
    ci_high_s: float | None
    ci_rel_halfwidth: float | None
    outliers: int
    ci_basis: str | None = None  # "samples", or "samples+blocks" when widened by the block medians' CI
    # 95% CI of the mean (Student t), widened by the block means' when blocks are known (`mean_ci`).
    mean_ci_low_s: float | None = None
    mean_ci_high_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SampleStats":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


MIN_BLOCKS_FOR_CI = 6  # the distribution-free 95% CI of a median needs at least 6 values


@functools.lru_cache(maxsize=1024)
def _t_quantile(q: float, df: int) -> float:
    """Student's t quantile, cached: scipy's ppf costs ~50 us a call, and an ingest summarises tens of thousands."""
    # Imported here: scipy is slow to load.
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(q, df))


def mean_ci(samples: Sequence[float], block_sizes: Sequence[int] | None = None,
            confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """A `confidence` interval of the mean of `samples`, or None with fewer than two samples.

    Student's t over the samples; with `block_sizes` (the samples' split into timed blocks, in order,
    summing to their count) and at least MIN_BLOCKS_FOR_CI blocks, the half-width is widened to the
    t interval over the block means when that is wider, since steps in one block share its
    conditions (the same reasoning as the median's CI in `summarize`). Centred on the mean.
    """
    x = np.asarray(samples, dtype=float)
    n = int(x.size)
    if n < 2:
        return None
    mean = float(x.mean())
    q = 0.5 + confidence / 2.0
    half = float(_t_quantile(q, n - 1) * x.std(ddof=1) / math.sqrt(n))
    sizes = [int(k) for k in (block_sizes or ())]
    if len(sizes) >= MIN_BLOCKS_FOR_CI and all(k > 0 for k in sizes) and sum(sizes) == n:
        ends = np.cumsum(sizes)
        means = np.array([x[e - k:e].mean() for k, e in zip(sizes, ends)])
        k = means.size
        half = max(half, float(_t_quantile(q, k - 1) * means.std(ddof=1) / math.sqrt(k)))
    return mean - half, mean + half


def summarize(samples: Sequence[float], confidence: float = CONFIDENCE,
              block_medians: Sequence[float] | None = None,
              block_sizes: Sequence[int] | None = None) -> SampleStats:
    """Summarise raw samples. Requires at least one sample.

    Steps timed in one block share its conditions (clocks, host load, what ran before), so they are
    not independent draws: when the levels of repeated blocks differ, a CI from the pooled samples
    is too narrow. With `block_medians` (at least MIN_BLOCKS_FOR_CI of them) the CI is widened to
    also cover the CI of the median of the block medians, whose effective sample size is honest.
    The mean's CI (`mean_ci`, with `block_sizes`) is widened the same way by the block means.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = int(x.size)
    if n == 0:
        raise ValueError("summarize() needs at least one sample")
    median = float(np.median(x))
    q1, q3 = (float(v) for v in np.percentile(x, [25, 75]))
    iqr = q3 - q1
    outliers = int(np.sum((x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)))
    idx = median_ci_indices(n, confidence)
    basis = None
    if idx is None:
        lo = hi = rel = None
    else:
        lo, hi = float(x[idx[0]]), float(x[idx[1]])
        basis = "samples"
        blocks = sorted(float(b) for b in (block_medians or ()))
        bidx = median_ci_indices(len(blocks), confidence) if len(blocks) >= MIN_BLOCKS_FOR_CI else None
        if bidx is not None:
            lo, hi = min(lo, blocks[bidx[0]]), max(hi, blocks[bidx[1]])
            basis = "samples+blocks"
        rel = (hi - lo) / 2.0 / median if median > 0 else None
    m_ci = mean_ci(samples, block_sizes, confidence)
    return SampleStats(
        n=n,
        median_s=median,
        mean_s=float(x.mean()),
        stdev_s=float(x.std(ddof=1)) if n > 1 else None,
        min_s=float(x[0]),
        max_s=float(x[-1]),
        iqr_s=iqr,
        ci_low_s=lo,
        ci_high_s=hi,
        ci_rel_halfwidth=rel,
        outliers=outliers,
        ci_basis=basis,
        mean_ci_low_s=m_ci[0] if m_ci else None,
        mean_ci_high_s=m_ci[1] if m_ci else None,
    )


def relative_spread(values: Sequence[float]) -> float | None:
    """Half the range of `values` relative to their median ((max - min) / 2 / median)."""
    v = [float(a) for a in values if a is not None and math.isfinite(a)]
    if len(v) < 2:
        return None
    med = float(np.median(v))
    return (max(v) - min(v)) / 2.0 / med if med > 0 else None

def slowest_rank_per_block(rank_samples: Sequence[Sequence[float]],
                           block_sizes: Sequence[int] | None = None) -> list[float]:
    """A data-parallel job's step times: for each block of steps (`block_sizes`; one block when
    None), the steps of the rank whose block took longest in total. Its mean is the maximum over
    ranks of the block's total / steps. Unlike the maximum over ranks of each step, it is not biased
    upward by per-rank jitter: the ranks meet in every step's all-reduce, so one rank's late step end
    is its next step's early start, and what differs step by step is mostly noise whose per-step
    maximum is always positive."""
    if not rank_samples:
        return []
    n = _steps_per_rank(rank_samples)
    sizes = list(block_sizes) if block_sizes else [n]
    if sum(sizes) != n:
        raise BenchError(f"block sizes add up to {sum(sizes)} steps, the ranks timed {n}")
    out: list[float] = []
    i = 0
    for size in sizes:
        blocks = [list(s[i:i + size]) for s in rank_samples]
        out += max(blocks, key=sum)  # ties: the lowest rank
        i += size
    return out


def slowest_per_step(rank_samples: Sequence[Sequence[float]]) -> list[float]:
    """A data-parallel step's time: for each step, the slowest rank's time (every rank waits for the
    slowest in the gradient all-reduce, so the job runs at its pace). The ranks must have timed the
    same number of steps."""
    if not rank_samples:
        return []
    _steps_per_rank(rank_samples)
    return [max(step) for step in zip(*rank_samples)]


def _steps_per_rank(rank_samples: Sequence[Sequence[float]]) -> int:
    """The number of steps every rank timed; BenchError when they differ (they cannot be combined)."""
    lengths = {len(s) for s in rank_samples}
    if len(lengths) != 1:
        raise BenchError(f"ranks timed different numbers of steps ({sorted(lengths)}): they cannot be combined")
    return lengths.pop()
