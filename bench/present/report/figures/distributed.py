"""The data-parallel figures: for a sweep measured under torchrun, each rank's median step time beside
the combined step time (the slowest rank's, per step), and the share of the step spent on gradient
all-reduce with the weak-scaling efficiency, against the batch per rank; for `bench allreduce`, the
time and bus bandwidth against the message size."""

from __future__ import annotations

import numpy as np
from matplotlib import rc_context, ticker

import bench.present.fmt as fmt
from bench.analysis.distributed import bus_bandwidth_interval
from bench.present.report.figures.common import (
    GUIDE_COLOR,
    batch_axis,
    errs,
    legend,
    log_y,
    new_figure,
    palette,
    style,
    time_unit,
    to_svg,
)
from bench.records.distributed import DistributedAnalysis


def _interval_series(rows, attr: str):
    xs, vs, lo, hi = [], [], [], []
    for p in rows:
        i = getattr(p, attr)
        if i is None:
            continue
        xs.append(p.per_rank_batch_size)
        vs.append(i.value)
        lo.append(i.low)
        hi.append(i.high)
    return xs, vs, lo, hi


def ranks_figure(a: DistributedAnalysis | None, color="#1f77b4") -> str | None:
    """Left: every rank's median step time and the combined one, against the batch per rank (log–log).
    Right: the communication share and the weak-scaling efficiency with their intervals. None with
    nothing measured."""
    rows = [p for p in (a.points if a else []) if p.step_time_s is not None]
    if not rows:
        return None
    ranks = max((len(p.spread.rank_medians_s) for p in rows if p.spread), default=0)
    values = [p.step_time_s for p in rows] + [v for p in rows if p.spread for v in p.spread.rank_medians_s]
    scale, unit = time_unit(values)
    batches = [p.per_rank_batch_size for p in rows]
    with rc_context(style()):
        fig, (left, right) = new_figure(2)
        colors = palette(max(ranks, 1))
        for r in range(ranks):
            xs = [p.per_rank_batch_size for p in rows if p.spread and r < len(p.spread.rank_medians_s)]
            ys = [p.spread.rank_medians_s[r] / scale for p in rows if p.spread and r < len(p.spread.rank_medians_s)]
            left.plot(xs, ys, ls="none", marker="o", ms=4, alpha=0.75, color=colors[r], label=f"rank {r}")
        left.plot(batches, [p.step_time_s / scale for p in rows], "-", color=color, lw=1.6,
                  label="step time (slowest rank, block by block)")
        nosync = [(p.per_rank_batch_size, p.no_sync_step_time_s / scale) for p in rows if p.no_sync_step_time_s]
        if nosync:
            left.plot(*zip(*nosync), "--", color=GUIDE_COLOR, lw=1.2, label="without all-reduce (no_sync)")
        base = [(p.per_rank_batch_size, p.baseline_step_time_s / scale) for p in rows if p.baseline_step_time_s]
        if base:
            left.plot(*zip(*base), ":", color="black", lw=1.2, label="rank 0 alone (plain step)")
        batch_axis(left, batches, label="batch size per rank")
        log_y(left)
        left.set_ylabel(f"median step time ({unit})")
        left.set_title("Step time per rank")
        drew = False
        for attr, label, marker, col in (("comm_share", "all-reduce share of the step", "s", color),
                                         ("efficiency", "weak-scaling efficiency", "D", "#2ca02c")):
            xs, vs, lo, hi = _interval_series(rows, attr)
            if xs:
                right.errorbar(xs, vs, yerr=errs(vs, lo, hi), fmt=f"-{marker}", ms=4, capsize=2.5, color=col,
                               label=label)
                drew = True
        if not drew:
            right.text(0.5, 0.5, "not measured", transform=right.transAxes, ha="center", va="center",
                       color=GUIDE_COLOR)
        right.axhline(1.0, color=GUIDE_COLOR, lw=0.8, ls=":")
        right.axhline(0.0, color=GUIDE_COLOR, lw=0.8)
        batch_axis(right, batches, label="batch size per rank")
        right.set_ylabel("fraction")
        right.set_title("Communication share and efficiency")
        top = max([1.05] + [v for p in rows for i in (p.comm_share, p.efficiency) if i is not None
                            for v in (i.value, i.high) if v is not None and np.isfinite(v)])
        bottom = min([-0.05] + [v for p in rows for i in (p.comm_share, p.efficiency) if i is not None
                                for v in (i.value, i.low) if v is not None and np.isfinite(v)])
        right.set_ylim(bottom, top * 1.05)
        legend([left, right])
        return to_svg(fig, "step time per rank, communication share and weak-scaling efficiency")


def allreduce_figure(result, color="#1f77b4") -> str | None:
    """`bench allreduce` against the message size (log–log). Left: the median time of one all-reduce
    (the slowest rank's per call) with its 95% CI. Right: bus bandwidth (nccl-tests' busbw) with the
    interval the time's CI gives. None with no size measured."""
    rows = [(p, p.stats) for p in sorted(result.points, key=lambda p: p.size_bytes) if p.stats is not None]
    if not rows:
        return None
    sizes = [p.size_bytes for p, _ in rows]
    scale, unit = time_unit([s.median_s for _, s in rows])
    bus = [bus_bandwidth_interval(p.size_bytes, s, result.world_size) for p, s in rows]
    with rc_context(style()):
        fig, (left, right) = new_figure(2)
        med = [s.median_s / scale for _, s in rows]
        lo = [s.ci_low_s / scale if s.ci_low_s is not None else None for _, s in rows]
        hi = [s.ci_high_s / scale if s.ci_high_s is not None else None for _, s in rows]
        left.errorbar(sizes, med, yerr=errs(med, lo, hi), fmt="-o", ms=4, capsize=2.5, color=color,
                      label="median time, 95% CI")
        log_y(left)
        left.set_ylabel(f"time of one all-reduce ({unit})")
        left.set_title("All-reduce time")
        pts = [(x, b) for x, b in zip(sizes, bus) if b is not None and b.value]
        if pts and result.world_size > 1:
            xs = [x for x, _ in pts]
            vs = [b.value / 1e9 for _, b in pts]
            right.errorbar(xs, vs, yerr=errs(vs, [b.low / 1e9 if b.low else None for _, b in pts],
                                             [b.high / 1e9 if b.high else None for _, b in pts]),
                           fmt="-s", ms=4, capsize=2.5, color=color, label="busbw = algbw · 2(n−1)/n, 95% CI")
            log_y(right)
        else:
            why = "one rank moves no data" if result.world_size <= 1 else "not measured"
            right.text(0.5, 0.5, why, transform=right.transAxes, ha="center", va="center", color=GUIDE_COLOR)
        right.set_ylabel("bus bandwidth (GB/s)")
        right.set_title("Bus bandwidth")
        for ax in (left, right):
            batch_axis(ax, sizes, label="message size", max_ticks=5)  # a half-width panel holds five size labels
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt.nbytes(v).replace(".0 ", " ")))
        legend([left, right])
        return to_svg(fig, "all-reduce time and bus bandwidth against the message size")
