"""Sentences about a data-parallel sweep (torchrun): the job, the ranks' spread and the slowest rank,
the share of a step spent on gradient all-reduce, and weak-scaling efficiency; and the all-reduce
bandwidth table of `bench allreduce`. Made from bench.analysis.distributed's records; never more
certain than their intervals.
"""

from __future__ import annotations

import bench.present.fmt as fmt
from bench.analysis.distributed import analyse_distributed
from bench.core.numbers import is_number
from bench.records.distributed import (
    DistributedAnalysis,
    DistributedPointAnalysis,
    Interval,
)

MAX_LISTED = 4  # points named one by one in a sentence; more: the first and the last


def _analysis(result) -> DistributedAnalysis | None:
    run = getattr(result, "distributed", None)
    if run is None:
        return None
    return run.analysis if run.analysis is not None else analyse_distributed(result)


def _batch(p: DistributedPointAnalysis) -> str:
    return f"{p.per_rank_batch_size:,} per rank ({p.global_batch_size:,} in all)"


def _interval(i: Interval, show) -> str:
    if i.low is None or i.high is None:
        return f"{show(i.value)} (no interval: too few samples for a CI)"
    return f"{show(i.value)} ({show(i.low)}–{show(i.high)})"


def _pick(points: list) -> list:
    return points if len(points) <= MAX_LISTED else [points[0], points[-1]]


def comm_share_sentence(points: list[DistributedPointAnalysis]) -> str | None:
    rows = [p for p in points if p.comm_share is not None]
    if not rows:
        return None
    parts = [f"{_interval(p.comm_share, fmt.percent)} at batch {_batch(p)}" for p in _pick(rows)]
    zero = [p.per_rank_batch_size for p in rows if p.comm_share.low is not None and p.comm_share.low <= 0
            <= p.comm_share.high]
    out = ("Gradient all-reduce share of a step (1 − step time without all-reduce, DDP no_sync, / step time "
           f"with it): {fmt.and_list(parts)}.")
    if zero:
        out += (f" At batch {fmt.batch_list(zero)} per rank the two step times are not told apart by their CIs: "
                "the share there is not distinguishable from zero.")
    return out


def efficiency_sentence(points: list[DistributedPointAnalysis], world_size: int) -> str | None:
    rows = [p for p in points if p.efficiency is not None]
    if not rows:
        return None
    parts = [f"{_interval(p.efficiency, lambda v: f'{v:.2f}')} at batch {_batch(p)}" for p in _pick(rows)]
    perfect = [p.per_rank_batch_size for p in rows if p.efficiency.low is not None and p.efficiency.low <= 1
               <= p.efficiency.high]
    out = (f"Weak-scaling efficiency (rank 0 alone, plain step, over {world_size} ranks, at the same per-rank "
           f"batch; 1 = {world_size} ranks take one rank's time for {world_size}× the samples): "
           f"{fmt.and_list(parts)}.")
    if perfect:
        out += f" At batch {fmt.batch_list(perfect)} per rank it is not distinguishable from 1."
    return out


def spread_sentence(points: list[DistributedPointAnalysis]) -> str | None:
    rows = [p for p in points if p.spread is not None]
    if not rows:
        return None
    worst = max(rows, key=lambda p: p.spread.spread_rel)
    if worst.spread.spread_rel == 0:
        return "A step's time is the slowest rank's. The ranks' own median step times agree at every point."
    return (f"A step's time is the slowest rank's. The ranks' own median step times lie up to "
            f"{fmt.percent(worst.spread.spread_rel)} apart, at batch {_batch(worst)}, where rank "
            f"{worst.spread.slowest_rank} was the slowest (the slowest of all in "
            f"{fmt.percent(worst.spread.slowest_share, 0)} of its steps).")


def distributed_verdict(result) -> list[str]:
    """The sentences of a sweep measured under torchrun; [] for a single-process sweep."""
    run = getattr(result, "distributed", None)
    a = _analysis(result)
    if run is None or a is None:
        return []
    devices = sorted({r.device.split(":")[0] for r in run.ranks if r.device}) or ["?"]
    hosts = sorted({r.host for r in run.ranks if r.host})
    out = [f"Data parallel: {run.world_size} ranks (DDP over {run.backend or '?'}, {'/'.join(devices)}"
           + (f", {fmt.plural(len(hosts), 'host')}" if len(hosts) > 1 else "")
           + f"); batch sizes are per rank, the job's batch is {run.world_size}× larger."]
    for sentence in (spread_sentence(a.points), comm_share_sentence(a.points), efficiency_sentence(a.points,
                                                                                                   run.world_size)):
        if sentence:
            out.append(sentence)
    links = sorted({(r.interconnect or {}).get("link") for r in run.ranks} - {None})
    if links:
        out.append(f"GPU interconnect as NVML reports it: {', '.join(links)}.")
    if run.failure:
        out.append(f"The job ended early: {run.failure}.")
    return out


def rank_line(r) -> str:
    """Where one rank (a RankInfo) ran: 'rank 1: host cuda:1 (GPU name, its UUID), NVLink'."""
    return (f"rank {r.rank}: {r.host or '?'} {r.device or '?'}" + (f" ({r.gpu_name}, {r.gpu_uuid})" if r.gpu_uuid else "")
            + (f", {r.interconnect['link']}" if (r.interconnect or {}).get("link") else ""))


def allreduce_table(result) -> list[str]:
    """`bench allreduce`'s results as text lines: size, time, algbw, busbw (nccl-tests' definitions)."""
    lines = [f"{'size':>10}  {'time (median)':>14}  {'± CI':>7}  {'algbw':>11}  {'busbw':>11}  status"]
    for p in result.points:
        s = p.stats
        lines.append(f"{fmt.nbytes(p.size_bytes):>10}  {fmt.duration(s.median_s if s else None):>14}  "
                     f"{fmt.percent(s.ci_rel_halfwidth) if s else '—':>7}  {_gbps(p.algbw_bytes_per_s):>11}  "
                     f"{_gbps(p.busbw_bytes_per_s):>11}  {p.status}{': ' + p.error if p.error else ''}")
    return lines


def allreduce_verdict(result) -> list[str]:
    ok = [p for p in result.points if p.busbw_bytes_per_s is not None]
    head = (f"All-reduce of {result.config.get('dtype')} tensors over {result.world_size} ranks "
            f"({result.config.get('backend')}, {result.config.get('device')}); a collective's time is the slowest "
            "rank's; algbw = bytes / time, busbw = algbw · 2(n−1)/n (nccl-tests).")
    if not ok:
        return [head, "No size was measured."]
    best = max(ok, key=lambda p: p.busbw_bytes_per_s)
    return [head, f"Highest bus bandwidth: {_gbps(best.busbw_bytes_per_s)} at {fmt.nbytes(best.size_bytes)}."]


def _gbps(v: float | None) -> str:
    return f"{v / 1e9:.3g} GB/s" if is_number(v) else "—"
