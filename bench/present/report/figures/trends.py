"""Suite and history figures: the latest run of each benchmark, and one benchmark's median over nightly
runs with its interquartile band, regressions and environment changes marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context, ticker
from matplotlib.figure import Figure

from bench.present.fmt import compact
from bench.present.report.figures.common import (
    GUIDE_COLOR,
    MAX_TREND_POINTS,
    REGRESSION_COLOR,
    WIDTH_IN,
    errs,
    legend,
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
    and dips survive), plus the first and last."""
    if n <= max_points:
        return list(range(n))
    v = np.asarray(values, dtype=float)
    edges = np.linspace(0, n, max_points // 2 + 1).astype(int)
    keep = {0, n - 1}
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        chunk = v[lo:hi]
        keep.add(lo + int(np.nanargmin(chunk)))
        keep.add(lo + int(np.nanargmax(chunk)))
    return sorted(keep)


@dataclass
class TrendSeries:
    """One benchmark's history on one machine: runs in time order."""

    label: str
    times: list[Any]  # datetime
    median_s: list[float]
    q1_s: list[float | None]
    q3_s: list[float | None]
    regressions: list[int] = field(default_factory=list)  # indices into the runs
    environment_changes: list[int] = field(default_factory=list)  # runs whose software differs from the previous


def trend_figure(title: str, series: Sequence[TrendSeries], max_points: int = MAX_TREND_POINTS,
                 y_label: str = "time per call") -> tuple[str | None, bool]:
    """Median per run over time with the interquartile band, regressions and environment changes
    marked; returns (svg, decimated). `y_label` names the number drawn ("step time", "time per call")."""
    series = [s for s in series if s.median_s]
    if not series:
        return None, False
    scale, unit = time_unit(v for s in series for v in s.median_s)
    colors = palette(len(series))
    decimated = False
    marked = env_marked = False
    with rc_context(style()):
        # Fixed margins: constrained layout would double the cost of each of possibly many trend figures.
        fig = Figure(figsize=(WIDTH_IN, 2.7))
        fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.2)
        ax = fig.add_subplot()
        for s, color in zip(series, colors):
            idx = decimate(len(s.median_s), s.median_s, max_points)
            decimated |= len(idx) < len(s.median_s)
            t = [s.times[i] for i in idx]
            m = np.array([s.median_s[i] for i in idx], dtype=float)
            q1 = np.array([s.q1_s[i] if ok(s.q1_s[i]) else s.median_s[i] for i in idx], dtype=float)
            q3 = np.array([s.q3_s[i] if ok(s.q3_s[i]) else s.median_s[i] for i in idx], dtype=float)
            ax.fill_between(t, q1, q3, color=color, alpha=0.18, lw=0, step=None)
            ax.plot(t, m, "-", color=color, lw=1.2, marker="o" if len(idx) <= 60 else None, ms=3,
                    label=f"{s.label}: median (band: IQR)" if len(series) > 1 else "median per run (band: IQR)")
            if s.regressions:
                rt = [s.times[i] for i in s.regressions]
                rm = [s.median_s[i] for i in s.regressions]
                ax.plot(rt, rm, "o", color=REGRESSION_COLOR, ms=7, mec="black", mew=0.6, zorder=5,
                        label=None if marked else "regression")
                marked = True
            for i in s.environment_changes:
                ax.axvline(s.times[i], color=GUIDE_COLOR, ls="--", lw=0.9, zorder=1,
                           label=None if env_marked else "environment changed (software differs from the run before)")
                env_marked = True
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: compact(v / scale)))
        ax.set_ylabel(f"{y_label} ({unit})")
        ax.set_xlabel("run date (UTC)")
        import matplotlib.dates as mdates

        loc = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.set_title(short(title, 90), fontsize=9.5)
        legend(ax, inside=True, loc="upper left", fontsize=7)
        return to_svg(fig, f"history of {title}"), decimated
