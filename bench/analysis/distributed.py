"""Combining the ranks of a data-parallel job: a step's time is the slowest rank's; how far the ranks
lie apart; the share of a step spent on gradient all-reduce; weak-scaling efficiency against one rank
at the same per-rank batch; and all-reduce bandwidth as NCCL's tests define it. Pure functions over
records; measures nothing, says nothing in words.

- Step time: for each block of steps, the steps of the rank whose block took longest in total
  (`bench.core.stats.slowest_rank_per_block`, the rule the measuring loop itself uses; the maximum
  over ranks of each step, `slowest_per_step`, is biased upward by per-rank jitter).
- Spread: (slowest rank's median − fastest rank's median) / median of the ranks' medians.
- Communication share: 1 − t(no_sync) / t(with all-reduce), at the same per-rank batch.
- Weak-scaling efficiency: t(one rank) / t(n ranks) at the same per-rank batch (1: the n ranks
  process n times the samples in the same time).
- Bandwidth (nccl-tests, doc/PERFORMANCE.md): algbw = bytes / time; for all-reduce
  busbw = algbw · 2(n−1)/n, the rate each link must sustain, comparable across n.

Intervals come from the two medians' 95% CIs, taken at their extremes (conservative, not a CI of
the ratio).
"""

from __future__ import annotations

import statistics
from typing import Sequence

from bench.core.errors import BenchError
from bench.core.stats import (
    SampleStats,
    slowest_per_step,
    slowest_rank_per_block,
    summarize,
)
from bench.records.distributed import (
    DistributedAnalysis,
    DistributedPointAnalysis,
    Interval,
    RankSpread,
)

__all__ = ["algorithm_bandwidth", "analyse_distributed", "bus_bandwidth", "bus_bandwidth_interval", "bus_factor",
           "comm_share",
           "rank_spread", "slowest_per_step", "slowest_rank_per_block", "weak_scaling_efficiency"]


def rank_spread(rank_samples: Sequence[Sequence[float]]) -> RankSpread | None:
    """The ranks' own median step times, their spread relative to the median of the medians, the
    slowest rank (largest median) and the fraction of steps in which it was the slowest. None with
    no samples."""
    samples = [list(s) for s in rank_samples]
    if not samples or any(not s for s in samples):
        return None
    medians = [statistics.median(s) for s in samples]
    middle = statistics.median(medians)
    slowest = max(range(len(medians)), key=lambda r: (medians[r], -r))
    steps = list(zip(*samples))
    share = sum(1 for step in steps if max(range(len(step)), key=lambda r: step[r]) == slowest) / len(steps) \
        if steps else 0.0
    spread = (max(medians) - min(medians)) / middle if middle > 0 else 0.0
    return RankSpread(medians, spread, slowest, share)


def _ratio(num: SampleStats, den: SampleStats) -> Interval:
    """num/den of the medians, with the interval from the CIs' extremes."""
    value = num.median_s / den.median_s
    low = high = None
    if None not in (num.ci_low_s, num.ci_high_s, den.ci_low_s, den.ci_high_s) and den.ci_low_s > 0:
        low, high = num.ci_low_s / den.ci_high_s, num.ci_high_s / den.ci_low_s
    return Interval(value, low, high)


def comm_share(with_allreduce: SampleStats, without: SampleStats) -> Interval:
    """1 − t(no_sync)/t(with all-reduce): the share of the step the gradient all-reduce adds, at the
    same per-rank batch. Negative when the step without all-reduce measured slower (noise)."""
    r = _ratio(without, with_allreduce)
    return Interval(1.0 - r.value, None if r.high is None else 1.0 - r.high, None if r.low is None else 1.0 - r.low)


def weak_scaling_efficiency(one_rank: SampleStats, n_ranks: SampleStats) -> Interval:
    """t(one rank)/t(n ranks) at the same per-rank batch: 1 is perfect weak scaling."""
    return _ratio(one_rank, n_ranks)


def algorithm_bandwidth(size_bytes: float, time_s: float) -> float | None:
    """Bytes of the message / time of the collective (nccl-tests' algbw); None for a time <= 0."""
    return float(size_bytes) / time_s if time_s and time_s > 0 else None


def bus_factor(world_size: int) -> float:
    """2(n−1)/n: all-reduce's bus bandwidth over its algorithm bandwidth (nccl-tests)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise BenchError(f"world size must be a positive integer, got {world_size!r}")
    return 2.0 * (world_size - 1) / world_size


def bus_bandwidth(algbw: float | None, world_size: int) -> float | None:
    """algbw · 2(n−1)/n (nccl-tests' busbw for all-reduce); 0 for one rank, which moves nothing."""
    return None if algbw is None else algbw * bus_factor(world_size)


def bus_bandwidth_interval(size_bytes: float, stats: SampleStats | None, world_size: int) -> Interval | None:
    """busbw from the median time, with the interval its 95% CI gives (the slow end of the time is the
    low end of the bandwidth; None bounds where the CI is missing); None without a positive median."""
    if stats is None or not stats.median_s or stats.median_s <= 0:
        return None
    factor = bus_factor(world_size)

    def bw(t):
        v = algorithm_bandwidth(size_bytes, t) if t is not None else None
        return None if v is None else v * factor

    return Interval(bw(stats.median_s), bw(stats.ci_high_s), bw(stats.ci_low_s))


def analyse_distributed(result) -> DistributedAnalysis | None:
    """The combined view of a SweepResult measured under torchrun, point by point; None for a
    single-process sweep. Every value that cannot be had is None with the reason."""
    run = result.distributed
    if run is None:
        return None
    out = DistributedAnalysis(world_size=run.world_size)
    for p in sorted(result.points, key=lambda p: p.batch_size):
        d = p.distributed
        if d is None:
            continue
        row = DistributedPointAnalysis(per_rank_batch_size=d.per_rank_batch_size,
                                       global_batch_size=d.global_batch_size)
        s = p.stats if p.ok else None
        if s is None:
            reason = f"the point did not run ({p.status}{': ' + p.error if p.error else ''})" if not p.ok \
                else "the point has no samples"
            for k in ("step_time_s", "spread", "comm_share", "efficiency"):
                row.null_reasons[k] = reason
            out.points.append(row)
            continue
        row.step_time_s = s.median_s
        row.spread = rank_spread(d.rank_samples_s)
        if row.spread is None:
            row.null_reasons["spread"] = "the ranks' own samples are not in the file"
        ns = d.no_sync
        if ns is not None and ns.ok:
            row.no_sync_step_time_s = ns.stats.median_s
            row.comm_share = comm_share(s, ns.stats)
        else:
            row.null_reasons["comm_share"] = d.null_reasons.get("no_sync") or (
                f"the step without all-reduce failed ({ns.error})" if ns is not None else
                "the step without all-reduce was not measured")
        base = d.baseline
        if base is not None and base.ok:
            row.baseline_step_time_s = base.stats.median_s
            row.efficiency = weak_scaling_efficiency(base.stats, s)
        else:
            row.null_reasons["efficiency"] = d.null_reasons.get("baseline") or (
                f"the one-rank baseline failed ({base.error})" if base is not None else
                "no one-rank baseline was measured")
        out.points.append(row)
    return out


def combined_stats(rank_samples: Sequence[Sequence[float]],
                   block_sizes: Sequence[int] | None = None) -> SampleStats | None:
    """Statistics of the job's step times from `rank_samples`, block by block the slowest rank's
    (`slowest_rank_per_block`; None with no samples)."""
    combined = slowest_rank_per_block(rank_samples, block_sizes)
    return summarize(combined) if combined else None
