"""Sweep figures: step time, throughput, peak memory and GPU telemetry against batch size, one or
several sweeps per figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from bench.analysis.steptime import FIT_HINGE, FIT_LINEAR, StepTimeAnalysis
from bench.present.fmt import batch_estimate, compact, nbytes, number
from bench.present.report.figures.common import (
    GUIDE_COLOR,
    MAX_BATCH_TICKS,
    OOM_COLOR,
    REGRESSION_COLOR,
    WIDTH_IN,
    batch_axis,
    bytes_unit,
    errs,
    legend,
    log_y,
    new_figure,
    ok,
    palette,
    style,
    time_unit,
    to_svg,
)
from bench.present.steptime import named_knee


@dataclass
class SweepSeries:
    """What the sweep figures draw for one sweep, already pulled out of its results file."""

    label: str
    color: Any
    batch: list[int] = field(default_factory=list)  # ok points, ascending
    median_s: list[float] = field(default_factory=list)
    ci_low_s: list[float | None] = field(default_factory=list)
    ci_high_s: list[float | None] = field(default_factory=list)
    throughput: list[float | None] = field(default_factory=list)
    throughput_low: list[float | None] = field(default_factory=list)
    throughput_high: list[float | None] = field(default_factory=list)
    throughput_basis: str = "mean"  # what the throughput is from: the "mean" step time, or the "median"
    peak_allocated_bytes: list[float | None] = field(default_factory=list)
    peak_reserved_bytes: list[float | None] = field(default_factory=list)
    telemetry: list[dict] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (batch, "oom" | "error")
    largest_batch_that_fits: int | None = None
    analysis: StepTimeAnalysis | None = None
    memory_total_bytes: float | None = None
    power_limit_w: float | None = None

    @property
    def first_oom(self) -> int | None:
        ooms = [b for b, s in self.failed if s == "oom"]
        return min(ooms) if ooms else None


def fit_curve(analysis: StepTimeAnalysis | None, batches: np.ndarray) -> np.ndarray | None:
    """The analysis's best fit evaluated at `batches` (None without one)."""
    if analysis is None or analysis.fit() is None:
        return None
    return np.array([analysis.fitted_step_time_s(b) for b in batches], dtype=float)


def _guides(analysis: StepTimeAnalysis | None) -> tuple[float | None, float | None]:
    """(flat part in s, per-sample slope in s) of the best fit: the two asymptotes of t(B)."""
    if analysis is None:
        return None, None
    h, f = analysis.hinge_fit, analysis.linear_fit
    if analysis.best_fit == FIT_HINGE and h is not None:
        return h.plateau_s, h.slope_s_per_sample if h.knee_batch is not None else None
    if f is None:
        return None, None
    a, b = f.intercept_s, f.slope_s_per_sample
    return (a if ok(a) and a > 0 else None), (b if ok(b) and b > 0 else None)


def _all_batches(series: Sequence[SweepSeries]) -> list[int]:
    out = set()
    for s in series:
        out.update(s.batch)
        out.update(b for b, _ in s.failed)
    return sorted(out)


def _mark_failures(ax, series: Sequence[SweepSeries], single: bool) -> bool:
    """An ✕ at the top edge for each out-of-memory or failed point, and a line at the OOM boundary."""
    drew = False
    texts: set[int] = set()
    tr = ax.get_xaxis_transform()
    for s in series:
        if not s.failed:
            continue
        xs = [b for b, _ in s.failed]
        ax.scatter(xs, [0.96] * len(xs), transform=tr, marker="x", s=36, color=OOM_COLOR if single else s.color,
                   linewidths=1.8, zorder=5, clip_on=False,
                   label="out of memory / failed" if not drew else None)
        if s.first_oom is not None:
            ax.axvline(s.first_oom, color=OOM_COLOR if single else s.color, ls=":", lw=1.2)
            if single and s.first_oom not in texts:  # with several sweeps the text would sit on their lines
                texts.add(s.first_oom)
                ax.text(s.first_oom, 0.90, f"OOM from {s.first_oom:,} ", transform=tr, color=OOM_COLOR,
                        fontsize=7.5, ha="right", va="top")
        drew = True
    return drew


def step_time_fig(series: Sequence[SweepSeries]) -> Figure | None:
    """Median step time against batch size (log–log) with 95% CIs, the best fit, its flat and linear
    guides, the equal-time range, the knee the verdict names and the out-of-memory boundary. With
    several sweeps the guides and the equal-time ranges are left to each sweep's card, and a knee is a
    marker on its own curve: lines and bands of four sweeps would bury the data."""
    series = [s for s in series if s.batch]
    if not series:
        return None
    single = len(series) == 1
    scale, unit = time_unit(v for s in series for v in s.median_s)
    with rc_context(style()):
        fig, (ax,) = new_figure()
        ys_all: list[float] = []
        knee_marked = False
        for i, s in enumerate(series):
            b = np.array(s.batch, dtype=float)
            y = np.array(s.median_s, dtype=float)
            ys_all.extend(y)
            # The whiskers set the range too: a wide CI must not run off the axes.
            ys_all.extend(v for v in s.ci_low_s + s.ci_high_s if ok(v) and v > 0)
            has_ci = np.array([ok(l) and ok(h) for l, h in zip(s.ci_low_s, s.ci_high_s)])
            ax.errorbar(b, y, yerr=errs(s.median_s, s.ci_low_s, s.ci_high_s), fmt="-", color=s.color,
                        lw=1.4, elinewidth=1.1, alpha=0.95, label=f"{s.label}: median, 95% CI" if not single else
                        "median step time, 95% CI of the median", zorder=3)
            ax.plot(b[has_ci], y[has_ci], "o", color=s.color, zorder=4)
            if (~has_ci).any():
                ax.plot(b[~has_ci], y[~has_ci], "o", mfc="white", mec=s.color, mew=1.4, zorder=4,
                        label="no CI (too few samples)" if single else None)
            grid = np.geomspace(b.min(), b.max(), 200) if b.size > 1 else b
            fitted = fit_curve(s.analysis, grid)
            a = s.analysis
            if fitted is not None and b.size > 1:
                name = {FIT_HINGE: "plateau + line", FIT_LINEAR: "a + b·B"}.get(a.best_fit, "fit")
                ax.plot(grid, fitted, "--", color=s.color, lw=1.1, alpha=0.8,
                        label=f"best fit ({name})" if single else None, zorder=2)
            if single:
                flat, slope = _guides(a)
                if flat is not None:
                    ax.axhline(flat, color=GUIDE_COLOR, ls=(0, (1, 2)), lw=1.0,
                               label=f"flat guide: {compact(flat / scale)} {unit}")
                if slope is not None:
                    ax.plot(grid, slope * grid, color=GUIDE_COLOR, ls=(0, (5, 2, 1, 2)), lw=1.0,
                            label=f"linear guide: {compact(slope / scale)} {unit} per sample")
                _equal_time_marks(ax, s)
            knee = named_knee(a) if a is not None else None
            if ok(knee) and b.size > 1 and b.min() <= knee <= b.max():
                if single:
                    ax.axvline(knee, color=s.color, ls="--", lw=0.9, alpha=0.7)
                    ax.text(knee, 0.02, f" knee ≈ {batch_estimate(knee)}", transform=ax.get_xaxis_transform(),
                            color=s.color, fontsize=7.5, ha="left", va="bottom", rotation=90)
                else:
                    ax.plot([knee], [a.fitted_step_time_s(knee)], "D", ms=6, mfc="white", mec=s.color, mew=1.5,
                            zorder=5, label=None if knee_marked else "knee (where its verdict names one)")
                    knee_marked = True
        batch_axis(ax, _all_batches(series))
        log_y(ax, scale)
        lo, hi = min(ys_all), max(ys_all)
        ax.set_ylim(lo / 1.6, hi * 1.8)
        _mark_failures(ax, series, single)
        ax.set_ylabel(f"step time ({unit})")
        ax.set_title("Step time against batch size")
        legend(ax)
        return fig


def step_time_figure(series: Sequence[SweepSeries]) -> str | None:
    fig = step_time_fig(series)
    return to_svg(fig, "step time against batch size") if fig is not None else None


def _equal_time_marks(ax, s: SweepSeries) -> None:
    a = s.analysis
    if a is None or a.reference_batch is None or a.equal_time_max_batch is None:
        return
    ref, top, possible, eps = a.reference_batch, a.equal_time_max_batch, a.equal_time_max_batch_possible, a.eps
    lo_x = ref / 2 ** 0.3
    ax.axvspan(lo_x, top * 2 ** 0.3 if top > ref else ref * 2 ** 0.3, color="#2ca02c", alpha=0.09, lw=0,
               label=f"equal time (within {eps:.0%} of batch {ref})" if ok(eps) else "equal time")
    if possible is not None and possible > top:
        ax.axvspan(top * 2 ** 0.3, possible * 2 ** 0.3, color="#2ca02c", alpha=0.04, lw=0, hatch="///",
                   label="possibly equal time (CIs too wide)")
    t_ref = a.reference_median_s
    if ok(t_ref) and ok(eps):
        ax.axhline(t_ref * (1 + eps), color="#2ca02c", ls="--", lw=0.8, alpha=0.7,
                   label=f"tolerance: batch {ref}'s time + {eps:.0%}")


def throughput_fig(series: Sequence[SweepSeries]) -> Figure | None:
    """Samples per second (batch / mean step time, n·B / Σt; the median in analyses made before that)
    against batch size with the peak and the batch that reaches 95% of it."""
    series = [s for s in series if s.batch and any(ok(v) for v in s.throughput)]
    if not series:
        return None
    single = len(series) == 1
    with rc_context(style()):
        fig, (ax,) = new_figure()
        star_marked = False
        for s in series:
            b = np.array(s.batch, dtype=float)
            y = np.array([v if ok(v) else np.nan for v in s.throughput], dtype=float)
            ax.errorbar(b, y, yerr=errs(s.throughput, s.throughput_low, s.throughput_high), fmt="-o",
                        color=s.color, elinewidth=1.0, label=s.label if not single else f"samples/s from the {s.throughput_basis} step time, 95% CI")
            a = s.analysis
            peak = a.peak_throughput_samples_per_s if a is not None else None
            sat = a.throughput_saturation_batch if a is not None else None
            frac = a.saturation_fraction if a is not None else 0.95
            if ok(peak) and single:
                # The line is drawn at frac x peak: its label quotes that value, and the peak beside it.
                ax.axhline(peak * frac, color=s.color, ls=":", lw=0.9, alpha=0.8,
                           label=f"{frac:.0%} of peak: {number(peak * frac)} samples/s (peak {number(peak)})")
            if sat is not None and sat in s.batch:
                ys = y[s.batch.index(sat)]
                ax.plot([sat], [ys], marker="*", ms=15 if single else 12, color=s.color, mec="black", mew=0.6,
                        zorder=6, label=(f"saturation: batch {sat:,}" if single else
                                         None if star_marked else f"saturation ({frac:.0%} of its own peak)"))
                star_marked = True
                if single:
                    ax.annotate(f"saturates at {sat:,}", (sat, ys), textcoords="offset points", xytext=(-6, 10),
                                ha="right", fontsize=7.5, color=s.color)
        batch_axis(ax, _all_batches(series))
        log_y(ax)
        finite = [v for s in series for v in s.throughput_low + s.throughput + s.throughput_high if ok(v) and v > 0]
        ax.set_ylim(min(finite) / 1.6, max(finite) * 2.0)
        _mark_failures(ax, series, single)
        ax.set_ylabel("throughput (samples/s)")
        ax.set_title("Throughput against batch size")
        legend(ax)
        return fig


def throughput_figure(series: Sequence[SweepSeries]) -> str | None:
    fig = throughput_fig(series)
    return to_svg(fig, "throughput against batch size") if fig is not None else None


def memory_figure(series: Sequence[SweepSeries]) -> str | None:
    """Peak allocator memory against batch size, the card's memory and the out-of-memory boundary."""
    series = [s for s in series if any(ok(v) for v in s.peak_allocated_bytes)]
    if not series:
        return None
    single = len(series) == 1
    values = [v for s in series for v in s.peak_reserved_bytes + s.peak_allocated_bytes if ok(v)]
    data_top = max(values)
    near = [s.memory_total_bytes for s in series if ok(s.memory_total_bytes) and s.memory_total_bytes <= 3 * data_top]
    scale, unit = bytes_unit(values + near)
    with rc_context(style()):
        fig, (ax,) = new_figure()
        for s in series:
            b = np.array(s.batch, dtype=float)
            alloc = np.array([v if ok(v) else np.nan for v in s.peak_allocated_bytes], dtype=float) / scale
            ax.plot(b, alloc, "-o", color=s.color, label="peak allocated" if single else f"{s.label}: allocated")
            if any(ok(v) for v in s.peak_reserved_bytes):
                res = np.array([v if ok(v) else np.nan for v in s.peak_reserved_bytes], dtype=float) / scale
                ax.plot(b, res, "--", color=s.color, alpha=0.7, lw=1.1,
                        label="peak reserved (caching allocator)" if single else None)
            if ok(s.memory_total_bytes) and s.memory_total_bytes <= 3 * data_top:
                ax.axhline(s.memory_total_bytes / scale, color=s.color if not single else "black", ls="-.", lw=0.9,
                           label=f"card memory ({compact(s.memory_total_bytes / scale)} {unit})" if single else None)
            elif ok(s.memory_total_bytes) and single:
                ax.plot([], [], " ", label=f"card memory: {nbytes(s.memory_total_bytes)} (above the plot)")
            if s.largest_batch_that_fits is not None:
                ax.axvline(s.largest_batch_that_fits, color="#2ca02c" if single else s.color, ls="--", lw=1.0,
                           label=f"largest batch that fits: {s.largest_batch_that_fits:,}" if single else None)
            if s.first_oom is not None:
                ax.axvspan(s.first_oom, s.first_oom * 4, color=OOM_COLOR, alpha=0.07, lw=0,
                           label="out of memory" if single or s is series[0] else None)
        batch_axis(ax, _all_batches(series), extra=[s.largest_batch_that_fits for s in series
                                                     if s.largest_batch_that_fits])
        top = max(values + near) / scale * 1.12
        ax.set_ylim(-0.04 * top, top)  # a margin under 0, so a point near zero shows whole
        ax.set_ylabel(f"peak memory ({unit})")
        ax.set_title("Peak GPU memory against batch size")
        legend(ax)
        return to_svg(fig, "peak memory against batch size")


ACTIVITY_FIELDS = (
    ("kernel_active_pct_mean", "kernel active (any kernel running)", "o", "-"),
    ("sm_activity_pct_mean", "SM activity (GPM)", "s", "--"),
    ("tensor_activity_pct_mean", "tensor activity (GPM)", "^", "-."),
    ("dram_bw_pct_mean", "DRAM bandwidth (GPM)", "D", ":"),
)


# Mean power over the timed blocks (energy counter / time; docs/telemetry.md), not NVML's 1 s trailing
# average, which mixes in the idle time before a short block.
POWER_FIELD = "power_w_energy_mean"


def has_telemetry(series: Sequence[SweepSeries]) -> bool:
    keys = [f[0] for f in ACTIVITY_FIELDS] + [POWER_FIELD, "energy_per_sample_j"]
    return any(ok(t.get(k)) for s in series for t in s.telemetry for k in keys)


def telemetry_figure(series: Sequence[SweepSeries]) -> str | None:
    """GPU activity (%), power (W) and energy per sample (J) against batch size, throttled points ringed."""
    series = [s for s in series if s.batch]
    present = [f for f in ACTIVITY_FIELDS if any(ok(t.get(f[0])) for s in series for t in s.telemetry)]
    has_power = any(ok(t.get(POWER_FIELD)) for s in series for t in s.telemetry)
    has_energy = any(ok(t.get("energy_per_sample_j")) for s in series for t in s.telemetry)
    panels = [p for p, on in (("activity", bool(present)), ("power", has_power), ("energy", has_energy)) if on]
    if not panels:
        return None
    single = len(series) == 1
    metric_colors = palette(len(ACTIVITY_FIELDS))
    with rc_context(style()):
        # Activity gets the full width (it has up to four lines); power and energy share a row below it.
        top = ["activity"] if "activity" in panels else []
        below = [p for p in panels if p != "activity"]
        fig = Figure(figsize=(WIDTH_IN, 3.3 * (bool(top) + bool(below)) + 0.9), layout="constrained")
        layout = ([top * max(1, len(below))] if top else []) + ([below] if below else [])
        if len(layout) == 2 and len(layout[1]) == 1:
            layout = [["activity"], below]
        mosaic = fig.subplot_mosaic(layout)
        axes = [mosaic[p] for p in panels]
        for ax, panel in zip(axes, panels):
            for s in series:
                b = np.array(s.batch, dtype=float)
                throttled = np.array([bool(t.get("throttled")) for t in s.telemetry])

                def col(key):
                    return np.array([t.get(key) if ok(t.get(key)) else np.nan for t in s.telemetry], dtype=float)

                if panel == "activity":
                    for i, (key, name, marker, ls) in enumerate(ACTIVITY_FIELDS):
                        if (key, name, marker, ls) not in present:
                            continue
                        y = col(key)
                        color = metric_colors[i] if single else s.color
                        ax.plot(b, y, ls=ls, marker=marker, color=color, ms=4.5,
                                label=name if single or s is series[0] else None)
                        if throttled.any():
                            ax.plot(b[throttled], y[throttled], "o", ms=11, mfc="none", mec=REGRESSION_COLOR, mew=1.4)
                    ax.set_ylim(-4, 105)
                    ax.set_ylabel("% of time / of peak")
                    ax.set_title("GPU activity")
                elif panel == "power":
                    y = col(POWER_FIELD)
                    ax.plot(b, y, "-o", color=s.color,
                            label="mean board power (energy / timed time)" if single else s.label)
                    if ok(s.power_limit_w):
                        ax.axhline(s.power_limit_w, color=s.color if not single else "black", ls="-.", lw=0.9,
                                   label=f"power limit {s.power_limit_w:.0f} W" if single else None)
                    if throttled.any():
                        ax.plot(b[throttled], y[throttled], "o", ms=11, mfc="none", mec=REGRESSION_COLOR, mew=1.4,
                                label="clocks held down (throttled)" if s is series[0] else None)
                    ax.set_ylim(bottom=-0.04 * ax.get_ylim()[1])
                    ax.set_ylabel("power (W)")
                    ax.set_title("Power")
                else:
                    y = col("energy_per_sample_j")
                    ax.plot(b, y, "-o", color=s.color, label="energy per sample" if single else s.label)
                    log_y(ax)
                    ax.set_ylabel("energy per sample (J)")
                    ax.set_title("Energy")
            # Panels sharing a row are half as wide: half as many labelled batch sizes, or they collide.
            batch_axis(ax, _all_batches(series), label="batch size",
                       max_ticks=MAX_BATCH_TICKS if panel == "activity" or len(below) == 1 else MAX_BATCH_TICKS // 2)
        legend(axes)
        return to_svg(fig, "GPU telemetry against batch size")
