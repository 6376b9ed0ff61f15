"""Suite and history figures: the latest run of each benchmark, and one benchmark's nightly history from
the history store's trend summaries (median with its 95% CI, change points, unreliable nights)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context, ticker
from matplotlib.figure import Figure

from bench.present.fmt import compact
from bench.present.report.figures.common import (
    MAX_TREND_POINTS,
    REGRESSION_COLOR,
    WIDTH_IN,
    date_axis,
    errs,
    legend,
    log_y,
    new_figure,
    ok,
    palette,
    short,
    style,
    time_unit,
    to_svg,
)


def suite_figure(names: Sequence[str], median_s: Sequence[float], q1_s: Sequence[float | None],
                 q3_s: Sequence[float | None], x_label: str = "time per call") -> str | None:
    fig = suite_fig(names, median_s, q1_s, q3_s, x_label)
    return to_svg(fig, "benchmark medians") if fig is not None else None


def suite_fig(names: Sequence[str], median_s: Sequence[float], q1_s: Sequence[float | None],
              q3_s: Sequence[float | None], x_label: str = "time per call"):
    """One row per benchmark: median with its interquartile range (log time axis); `x_label` names the number.
    The legend sits below the axes: inside, with a benchmark in every row, it always covers one."""
    rows = [(n, m, a, b) for n, m, a, b in zip(names, median_s, q1_s, q3_s) if ok(m) and m > 0]
    if not rows:
        return None
    scale, unit = time_unit(r[1] for r in rows)
    height = min(max(1.6, 0.26 * len(rows) + 1.0), 40)
    with rc_context(style()):
        fig, (ax,) = new_figure(height=height)
        y = np.arange(len(rows))[::-1]
        med = np.array([r[1] for r in rows])
        err = errs(list(med), [r[2] for r in rows], [r[3] for r in rows])
        ax.errorbar(med, y, xerr=err, fmt="o", color=palette(1)[0], elinewidth=2.2, capsize=0,
                    label="median; bar: interquartile range")
        ax.set_yticks(y)
        ax.set_yticklabels([short(r[0], 60) for r in rows], fontsize=7.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: compact(v / scale)))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        lo = float(np.min(med - err[0]))
        hi = float(np.max(med + err[1]))
        if hi / lo < 4:  # a narrow range would show no labelled decade: widen it around the data
            mid = math.sqrt(lo * hi)
            lo, hi = mid / 2.2, mid * 2.2
        ax.set_xlim(lo / 1.15, hi * 1.15)
        ax.set_xlabel(f"{x_label} ({unit})")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_title("Latest run of each benchmark")
        legend(ax)
        return fig


# ---------------------------------------------------------------------------------------- history


def decimate(n: int, values: Sequence[float], max_points: int = MAX_TREND_POINTS) -> list[int]:
    """Indices to draw: all of them up to max_points, else the min and max of each bucket (so spikes
    and dips survive; the first of equal values; NaN ignored), plus the first and last."""
    if n <= max_points:
        return list(range(n))
    v = np.asarray(values, dtype=float)
    edges = np.linspace(0, n, max_points // 2 + 1).astype(int)
    starts = np.unique(edges[:-1][edges[1:] > edges[:-1]])  # the non-empty buckets, contiguous
    bucket = np.searchsorted(starts, np.arange(n), side="right") - 1
    keep = {0, n - 1}
    for extreme in (np.fmin.reduceat(v, starts), np.fmax.reduceat(v, starts)):
        hits = np.flatnonzero(v == extreme[bucket])
        _, first = np.unique(bucket[hits], return_index=True)
        keep.update(int(i) for i in hits[first])
    return sorted(keep)


# How each kind of unreliable night is drawn: (flag bit, marker, colour, legend text). A night with several
# bits is drawn as the first that applies; a failed night has no value and sits on the bottom edge.
FLAG_FAILED, FLAG_THROTTLED, FLAG_NOISY = 4, 1, 2  # bench.analysis.trends' bits
UNRELIABLE_MARKS = (
    (FLAG_FAILED, "x", "#8e1b10", "failed or no value (left out)"),
    (FLAG_THROTTLED, "v", "#d35400", "throttled (left out)"),
    (FLAG_NOISY, "o", "#6c757d", "noisier than the noise target (in the change points, weighed less)"),
)
IMPROVEMENT_COLOR = "#1e8449"
EXCURSION_COLOR = "#b9770e"
MACHINE_COLOR = "#34495e"
SOFTWARE_COLOR = "#8e44ad"
MAX_LABELLED_CHANGES = 8  # the newest change points get their size written beside them
EDGE_NOTE = " (beyond the axis: on its edge)"


@dataclass
class TrendSeries:
    """One benchmark's nightly history on one machine, nights in time order (bench.analysis.trends' summaries).

    `flags`: the night's bit mask (0 reliable; 1 throttled, 2 noisy, 4 failed); `changes`: (index of the
    first night after the step, level before, level after, "regression", "improvement" or "excursion",
    optionally "provisional"); `machine_events`: the nights where a machine-wide event (many series at once) began;
    `latest_verdict`: what bench compare said of the newest night (None: not compared)."""

    label: str
    times: list[Any]  # datetime, UTC
    median: list[float | None]
    low: list[float | None]
    high: list[float | None]
    flags: list[int]
    changes: list[tuple] = field(default_factory=list)
    environment_changes: list[int] = field(default_factory=list)  # nights whose software differs from the one before
    latest_verdict: str | None = None
    machine_events: list[int] = field(default_factory=list)


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def mark_kind(flags: int) -> int | None:
    for bit, *_ in UNRELIABLE_MARKS:
        if flags & bit:
            return bit
    return None


def trend_figure(title: str, series: Sequence[TrendSeries], *, unit: str = "s", y_label: str = "step time",
                 max_points: int = MAX_TREND_POINTS, marks: set[str] | None = None) -> tuple[str | None, bool]:
    """Each machine's reliable nightly medians with their 95% CI band; the level between change points
    (dashed) and each change point (a vertical line, red for a regression, green for an improvement,
    its size written beside the newest); unreliable nights as hollow marks off the line; the latest
    night ringed when bench compare called it a regression or an improvement; software changes dotted.
    Returns (svg, decimated): reliable nights past `max_points` are thinned to each bucket's extremes.

    With `marks` (a set), the figure has no legend of its own (only the machines' colours when there are
    several): the names of the marks it drew are added to `marks`, for one key to all the trend figures
    (`trend_key`); a legend takes a third of a figure's drawing time and many figures share one key."""
    series = [s for s in series if s.times]
    if not series:
        return None, False
    # Each series as arrays (NaN for a missing value): the lists hold up to thousands of nights.
    arrays = [(_floats(s.median), _floats(s.low), _floats(s.high), np.asarray(s.flags, dtype=int)) for s in series]
    values = [float(v) for med, *_ in arrays for v in med[np.isfinite(med)]]
    scale, shown_unit = time_unit(values) if unit == "s" else (1.0, unit)
    colors = palette(len(series))
    decimated = False
    drawn_marks: set[str] = set()

    def once(label: str) -> str | None:
        if label in drawn_marks:
            return None
        drawn_marks.add(label)
        return label


    with rc_context(style()):
        # Fixed margins: constrained layout would double the cost of each of possibly many trend figures.
        with_legend = marks is None or len(series) > 1
        fig = Figure(figsize=(WIDTH_IN, 3.4 if with_legend else 2.6))
        fig.subplots_adjust(left=0.1, right=0.98, top=0.9 if with_legend else 0.88,
                            bottom=0.32 if with_legend else 0.17)
        ax = fig.add_subplot()
        positive = [v for v in values if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 5 and len(series) > 1
        # The axis spans the reliable nights (with their CIs): an unreliable night far off (a throttled night
        # 30% slower) would flatten the trend, so one beyond the axis is drawn on its edge instead.
        span = [float(x) for med, low, high, flags in arrays for a in (med, low, high)
                for x in a[(flags == 0) & np.isfinite(a)]] or values
        lo_y, hi_y = (min(span), max(span)) if span else (0.0, 1.0)
        if log and lo_y > 0:
            pad = (hi_y / lo_y) ** 0.08
            y_lim = (lo_y / pad, hi_y * pad)
        else:
            pad = (hi_y - lo_y) * 0.12 or abs(hi_y) * 0.05 or 1.0
            y_lim = (lo_y - pad, hi_y + pad)
        unreliable_points = []  # (marker, colour, legend, times, values), drawn once the axis range is known
        for s, color, (med, low, high, flags) in zip(series, colors, arrays):
            reliable = np.flatnonzero((flags == 0) & np.isfinite(med))
            keep = reliable[decimate(len(reliable), med[reliable], max_points)]
            decimated |= len(keep) < len(reliable)
            if len(keep):
                t = [s.times[i] for i in keep]
                m = med[keep]
                lo = np.where(np.isfinite(low[keep]), low[keep], m)
                hi = np.where(np.isfinite(high[keep]), high[keep], m)
                ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)
                name = f"{s.label}: " if len(series) > 1 else ""
                ax.plot(t, m, "-", color=color, lw=1.0, marker="o" if len(keep) <= 60 else None, ms=2.5,
                        label=f"{name}median per reliable night (band: its 95% CI)")
                drawn_marks.add("median per reliable night")
            # the level between change points, from the change points' own before/after medians
            if s.changes and len(reliable):
                bounds = [reliable[0], *[c[0] for c in s.changes], reliable[-1]]
                levels = [s.changes[0][1], *[c[2] for c in s.changes]]
                for (a, b), level in zip(zip(bounds[:-1], bounds[1:]), levels):
                    ax.plot([s.times[a], s.times[b]], [level, level], "--", color="black", lw=1.1, alpha=0.75,
                            label=once("level between change points"))
            for n, (i, before, after, kind, *status) in enumerate(s.changes):
                c = {"regression": REGRESSION_COLOR, "excursion": EXCURSION_COLOR}.get(kind, IMPROVEMENT_COLOR)
                provisional = bool(status) and status[0] == "provisional"
                ax.axvline(s.times[i], color=c, lw=1.3, alpha=0.35 if provisional else 0.85, zorder=4,
                           label=once(f"change point: {kind}" + (" (provisional)" if provisional else "")))
                if n >= len(s.changes) - MAX_LABELLED_CHANGES:
                    ax.annotate(f"{after / before - 1:+.1%}", (s.times[i], 1.0), xycoords=("data", "axes fraction"),
                                xytext=(2, -9), textcoords="offset points", fontsize=7, color=c)
            for bit, marker, mcolor, text in UNRELIABLE_MARKS:
                # drawn as the first kind that applies (UNRELIABLE_MARKS' order)
                earlier = sum(b for b, *_ in UNRELIABLE_MARKS[:[b for b, *_ in UNRELIABLE_MARKS].index(bit)])
                idx = np.flatnonzero(((flags & bit) != 0) & ((flags & earlier) == 0))
                if bit != FLAG_FAILED:
                    idx = idx[np.isfinite(med[idx])]
                if not len(idx):
                    continue
                if len(idx) > max_points:
                    idx = [idx[j] for j in np.linspace(0, len(idx) - 1, max_points).astype(int)]
                    decimated = True
                t = [s.times[i] for i in idx]
                if bit == FLAG_FAILED:
                    ax.plot(t, [0.02] * len(t), marker, color=mcolor, ms=5, mew=1.2, ls="none", zorder=5,
                            transform=ax.get_xaxis_transform(), label=once(text))
                else:
                    unreliable_points.append((marker, mcolor, text, t, med[idx]))
            for i in s.machine_events:
                ax.axvline(s.times[i], color=MACHINE_COLOR, ls="-.", lw=1.4, zorder=3,
                           label=once("machine-wide change (many series at once)"))
            for i in s.environment_changes:
                ax.axvline(s.times[i], color=SOFTWARE_COLOR, ls=":", lw=1.1, zorder=2,
                           label=once("software changed from the night before"))
            if s.latest_verdict in ("regression", "improvement") and np.isfinite(med[-1]) and flags[-1] == 0:
                c = REGRESSION_COLOR if s.latest_verdict == "regression" else IMPROVEMENT_COLOR
                ax.plot([s.times[-1]], [s.median[-1]], "o", mfc="none", mec=c, ms=10, mew=1.8, zorder=6,
                        label=once(f"latest night: {s.latest_verdict} (bench compare)"))
        clipped = {text for _, _, text, _, v in unreliable_points if np.any((v < y_lim[0]) | (v > y_lim[1]))}
        for marker, mcolor, text, t, v in unreliable_points:
            inside = np.clip(v, y_lim[0], y_lim[1])
            ax.plot(t, inside, marker, mfc="none", mec=mcolor, ms=5, mew=1.0, ls="none", zorder=5, clip_on=False,
                    label=once(text + (EDGE_NOTE if text in clipped else "")))
        if log:
            log_y(ax, scale)
        else:
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: compact(v / scale)))
        if span:
            ax.set_ylim(*y_lim)
        ax.set_ylabel(f"{y_label} ({shown_unit})")
        ax.set_xlabel("night (UTC)")
        date_axis(ax)
        # An explicit title height and legend corner: matplotlib's automatic ones measure every tick label and
        # data point, which is most of the cost of each of possibly many trend figures.
        ax.set_title(short(title, 90), fontsize=9.5, y=1.0)
        if marks is None:
            legend(ax, inside=True, loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, ncol=2,
                   frameon=False)
        else:
            marks |= drawn_marks
            if len(series) > 1:
                from matplotlib.lines import Line2D

                ax.legend([Line2D([], [], color=c, lw=2) for c in colors], [s.label for s in series],
                          loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, ncol=2, frameon=False)
        return to_svg(fig, f"history of {title}"), decimated


def trend_key(marks: set[str]) -> str | None:
    """One legend for every trend figure: the marks in `marks` (as trend_figure names them)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not marks:
        return None
    line = palette(1)[0]
    proto = {"median per reliable night": Line2D([], [], color=line, lw=1.2),
             "95% CI of each night's median": Patch(color=line, alpha=0.2, lw=0),
             "level between change points": Line2D([], [], color="black", ls="--", lw=1.1, alpha=0.75),
             "change point: regression": Line2D([], [], color=REGRESSION_COLOR, lw=1.3),
             "change point: improvement": Line2D([], [], color=IMPROVEMENT_COLOR, lw=1.3),
             "change point: excursion": Line2D([], [], color=EXCURSION_COLOR, lw=1.3),
             "change point: regression (provisional)": Line2D([], [], color=REGRESSION_COLOR, lw=1.3, alpha=0.35),
             "change point: improvement (provisional)": Line2D([], [], color=IMPROVEMENT_COLOR, lw=1.3, alpha=0.35),
             "machine-wide change (many series at once)": Line2D([], [], color=MACHINE_COLOR, ls="-.", lw=1.4),
             "software changed from the night before": Line2D([], [], color=SOFTWARE_COLOR, ls=":", lw=1.1),
             "latest night: regression (bench compare)": Line2D([], [], marker="o", mfc="none", mec=REGRESSION_COLOR,
                                                                ms=9, mew=1.8, ls="none"),
             "latest night: improvement (bench compare)": Line2D([], [], marker="o", mfc="none",
                                                                 mec=IMPROVEMENT_COLOR, ms=9, mew=1.8, ls="none")}
    for bit, marker, color, text in UNRELIABLE_MARKS:
        style_ = {"color": color} if bit == FLAG_FAILED else {"mfc": "none", "mec": color}
        for label in (text, text + EDGE_NOTE):
            proto[label] = Line2D([], [], marker=marker, ms=6, mew=1.1, ls="none", **style_)
    shown = ["median per reliable night", "95% CI of each night's median",
             *[k for k in proto if k in marks and not k.startswith(("median", "95%"))]]
    with rc_context(style()):
        fig = Figure(figsize=(WIDTH_IN, 0.3 + 0.22 * math.ceil(len(shown) / 2)))
        fig.legend([proto[k] for k in shown], shown, loc="center", ncol=2, fontsize=7.5, frameon=False)
        return to_svg(fig, "key to the trend figures")
