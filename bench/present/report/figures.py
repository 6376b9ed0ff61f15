"""Figures for the HTML report: matplotlib (seaborn style) drawn off-screen and returned as inline SVG.

Each function takes already-loaded results and returns an SVG string, or None when it has nothing to
draw. Nothing here measures or reads files. Text is kept as SVG <text> (escaped by matplotlib's XML
writer), so names taken from results files cannot inject markup.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib import rc_context, ticker
from matplotlib.figure import Figure

from bench.present.fmt import nbytes

WIDTH_IN = 8.0
HEIGHT_IN = 4.9
MAX_BATCH_TICKS = 12
# More points than this in one history line are decimated (min/max per bucket) before drawing.
MAX_TREND_POINTS = 400

OOM_COLOR = "#c0392b"
GUIDE_COLOR = "#7f8c8d"
REGRESSION_COLOR = "#d62728"

# ------------------------------------------------------------------------------------------ style


def _rc() -> dict:
    import seaborn as sns

    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("notebook", font_scale=0.82))
    rc.update({
        "svg.fonttype": "none",  # real <text>: small, selectable, and escaped by the XML writer
        "svg.hashsalt": "bench-report",  # stable ids: the same input gives the same page
        # Names from results files are text, never mathtext: "$^$" would not parse, and "$x$" would render wrongly.
        "text.parse_math": False,
        "font.family": "sans-serif",
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "legend.frameon": True,
        "legend.framealpha": 0.85,
        "legend.fontsize": 8,
        "grid.color": "#e3e6ea",
        "axes.edgecolor": "#b8bec6",
        "lines.linewidth": 1.6,
        "lines.markersize": 5.5,
        "errorbar.capsize": 2.5,
    })
    return rc


def palette(n: int) -> list:
    """Colour-blind-safe colours, one per series."""
    import seaborn as sns

    return list(sns.color_palette("colorblind", max(n, 1)))


def sequential(n: int) -> list:
    """Ordered colours (small to large batch), dark enough to read on white."""
    import seaborn as sns

    return list(sns.color_palette("viridis", max(n, 1)))[::-1] if n > 1 else [palette(1)[0]]


def _figure(n_cols: int = 1, height: float = HEIGHT_IN, width: float = WIDTH_IN):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, n_cols, squeeze=False)[0]
    return fig, list(axes)


_ID_ATTR = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r'url\(#([^)]+)\)')
_HREF_REF = re.compile(r'href="#([^"]+)"')


def to_svg(fig: Figure, label: str = "figure") -> str:
    """The figure as an SVG element ready to inline in HTML.

    Ids are prefixed per figure because many SVGs share one HTML document's id space; the XML
    prologue, metadata and namespace declarations (not needed inline, and full of http:// URIs)
    are dropped so the page holds no external references at all.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\s+version="1\.1"', "", svg, count=1)
    # A prefix from the content: unique per figure, and the same input gives the same page.
    prefix = "f" + hashlib.sha1(svg.encode("utf-8")).hexdigest()[:10] + "-"
    svg = _ID_ATTR.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _URL_REF.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)
    svg = _HREF_REF.sub(lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    from markupsafe import escape

    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)


# ------------------------------------------------------------------------------------------- axes


def _fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.3g}"
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def batch_axis(ax, batches: Iterable[float], label: str = "batch size (samples per step)",
               extra: Iterable[float] = ()) -> None:
    """Log₂ x axis labelled with the batch sizes measured (or powers of two when there are many);
    `extra` positions (e.g. the largest batch that fits) widen the range without a tick of their own."""
    b = sorted({float(x) for x in batches if x and x > 0})
    span = sorted(set(b) | {float(x) for x in extra if x and x > 0})
    ax.set_xscale("log", base=2)
    if b and len(b) <= MAX_BATCH_TICKS:
        ax.xaxis.set_major_locator(ticker.FixedLocator(b))
    else:
        ax.xaxis.set_major_locator(ticker.LogLocator(base=2, numticks=MAX_BATCH_TICKS))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel(label)
    if span:
        lo, hi = span[0], span[-1]
        pad = 2 ** 0.35
        ax.set_xlim(lo / pad, hi * pad)


def log_y(ax, scale: float = 1.0) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_num(v / scale)))
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0, numticks=12))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def time_unit(values: Iterable[float | None]) -> tuple[float, str]:
    """(scale, unit) that shows the typical value between 1 and 1000."""
    v = [abs(x) for x in values if _ok(x) and x != 0]
    if not v:
        return 1.0, "s"
    typical = float(np.median(v))
    for scale, unit in _TIME_UNITS:
        if typical >= scale:
            return scale, unit
    return _TIME_UNITS[-1]


def bytes_unit(values: Iterable[float | None]) -> tuple[float, str]:
    v = [abs(x) for x in values if _ok(x) and x != 0]
    top = max(v) if v else 1.0
    for scale, unit in ((2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if top >= scale:
            return float(scale), unit
    return 1.0, "B"


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Labels matplotlib gives unlabelled artists. Its own legend also hides every label starting with "_",
# which would drop a benchmark or machine named "_…" taken from a results file.
_AUTO_LABEL = re.compile(r"_child\d+|_container\d+|_nolegend_")


def _legend_entries(ax) -> list[tuple[Any, str]]:
    """(handle, label) pairs as `ax.get_legend_handles_labels()` gives them, but keeping labels that
    start with "_"; only matplotlib's placeholder labels are left out."""
    from matplotlib.legend import Legend

    handlers = Legend.get_default_handler_map()
    out = []
    for artist in [*ax.get_children(), *ax.containers]:
        label = artist.get_label()
        if (isinstance(label, str) and label and not _AUTO_LABEL.fullmatch(label)
                and Legend.get_legend_handler(handlers, artist) is not None):
            out.append((artist, label))
    return out


def _legend(ax, *, inside: bool = False, ncols: int | None = None, **kw) -> None:
    """The legend below the axes (it never hides data), or inside for small figures."""
    axes = ax if isinstance(ax, (list, tuple)) else [ax]
    seen: dict[str, Any] = {}
    for a in axes:
        for h, lab in _legend_entries(a):
            seen.setdefault(lab, h)
    if not seen:
        return
    from matplotlib.container import Container

    # The measured data first (error-bar containers come last from matplotlib), then fits and marks.
    seen = dict(sorted(seen.items(), key=lambda kv: not isinstance(kv[1], Container)))
    if inside:
        axes[0].legend(list(seen.values()), list(seen), **{"loc": "best", **kw})
        return
    n = len(seen)
    longest = max(len(lab) for lab in seen)
    if ncols is None:
        ncols = 1 if n == 1 or longest > 70 else 2 if n <= 4 or longest > 42 else 3
    axes[0].figure.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, **kw)


# ------------------------------------------------------------------------------ sweep figures


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
    peak_allocated_bytes: list[float | None] = field(default_factory=list)
    peak_reserved_bytes: list[float | None] = field(default_factory=list)
    telemetry: list[dict] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (batch, "oom" | "error")
    largest_batch_that_fits: int | None = None
    analysis: dict | None = None
    memory_total_bytes: float | None = None
    power_limit_w: float | None = None

    @property
    def first_oom(self) -> int | None:
        ooms = [b for b, s in self.failed if s == "oom"]
        return min(ooms) if ooms else None


def fit_curve(analysis: dict | None, batches: np.ndarray) -> np.ndarray | None:
    """The analysis's best fit evaluated at `batches` (None without one)."""
    if not analysis:
        return None
    best = analysis.get("best_fit")
    if best == "hinge" and analysis.get("hinge_fit"):
        h = analysis["hinge_fit"]
        if not _ok(h.get("plateau_s")):
            return None
        knee, slope = h.get("knee_batch"), h.get("slope_s_per_sample") or 0.0
        if not _ok(knee):
            return np.full_like(batches, float(h["plateau_s"]), dtype=float)
        return h["plateau_s"] + slope * np.maximum(0.0, batches - knee)
    if best == "linear" and analysis.get("linear_fit"):
        f = analysis["linear_fit"]
        if not (_ok(f.get("intercept_s")) and _ok(f.get("slope_s_per_sample"))):
            return None
        return f["intercept_s"] + f["slope_s_per_sample"] * batches
    return None


def _guides(analysis: dict | None) -> tuple[float | None, float | None]:
    """(flat part in s, per-sample slope in s) of the best fit: the two asymptotes of t(B)."""
    if not analysis:
        return None, None
    if analysis.get("best_fit") == "hinge" and analysis.get("hinge_fit"):
        h = analysis["hinge_fit"]
        return h.get("plateau_s"), h.get("slope_s_per_sample") if h.get("knee_batch") is not None else None
    f = analysis.get("linear_fit") or {}
    a, b = f.get("intercept_s"), f.get("slope_s_per_sample")
    return (a if _ok(a) and a > 0 else None), (b if _ok(b) and b > 0 else None)


def _errs(center: Sequence[float | None], low: Sequence[float | None], high: Sequence[float | None]) -> np.ndarray:
    lo = [c - l if _ok(l) and _ok(c) else 0.0 for c, l in zip(center, low)]
    hi = [h - c if _ok(h) and _ok(c) else 0.0 for c, h in zip(center, high)]
    return np.array([np.maximum(lo, 0), np.maximum(hi, 0)], dtype=float)


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
            if s.first_oom not in texts:
                texts.add(s.first_oom)
                ax.text(s.first_oom, 0.90, f"OOM from {s.first_oom:,} ", transform=tr, color=OOM_COLOR,
                        fontsize=7.5, ha="right", va="top")
        drew = True
    return drew


def step_time_figure(series: Sequence[SweepSeries]) -> str | None:
    """Median step time against batch size (log–log) with 95% CIs, the best fit, its flat and linear
    guides, the equal-time range, the knee and the out-of-memory boundary."""
    series = [s for s in series if s.batch]
    if not series:
        return None
    single = len(series) == 1
    scale, unit = time_unit(v for s in series for v in s.median_s)
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        ys_all: list[float] = []
        for i, s in enumerate(series):
            b = np.array(s.batch, dtype=float)
            y = np.array(s.median_s, dtype=float)
            ys_all.extend(y)
            has_ci = np.array([_ok(l) and _ok(h) for l, h in zip(s.ci_low_s, s.ci_high_s)])
            ax.errorbar(b, y, yerr=_errs(s.median_s, s.ci_low_s, s.ci_high_s), fmt="-", color=s.color,
                        lw=1.4, elinewidth=1.1, alpha=0.95, label=f"{s.label}: median, 95% CI" if not single else
                        "median step time, 95% CI of the median", zorder=3)
            ax.plot(b[has_ci], y[has_ci], "o", color=s.color, zorder=4)
            if (~has_ci).any():
                ax.plot(b[~has_ci], y[~has_ci], "o", mfc="white", mec=s.color, mew=1.4, zorder=4,
                        label="no CI (too few samples)" if single else None)
            grid = np.geomspace(b.min(), b.max(), 200) if b.size > 1 else b
            fitted = fit_curve(s.analysis, grid)
            a = s.analysis or {}
            if fitted is not None and b.size > 1:
                name = {"hinge": "plateau + line", "linear": "a + b·B"}.get(a.get("best_fit"), "fit")
                ax.plot(grid, fitted, "--", color=s.color, lw=1.1, alpha=0.8,
                        label=f"best fit ({name})" if single else None, zorder=2)
            if single:
                flat, slope = _guides(a)
                if flat is not None:
                    ax.axhline(flat, color=GUIDE_COLOR, ls=(0, (1, 2)), lw=1.0,
                               label=f"flat guide: {_fmt_num(flat / scale)} {unit}")
                if slope is not None:
                    ax.plot(grid, slope * grid, color=GUIDE_COLOR, ls=(0, (5, 2, 1, 2)), lw=1.0,
                            label=f"linear guide: {_fmt_num(slope / scale)} {unit} per sample")
            _equal_time_marks(ax, s, single, i)
            knee = a.get("knee_batch")
            if _ok(knee) and b.size > 1 and b.min() <= knee <= b.max() * 2:
                ax.axvline(knee, color=s.color, ls="--", lw=0.9, alpha=0.7)
                ax.text(knee, 0.02, f" knee ≈ {_fmt_num(knee)}", transform=ax.get_xaxis_transform(),
                        color=s.color, fontsize=7.5, ha="left", va="bottom", rotation=90)
        batch_axis(ax, _all_batches(series))
        log_y(ax, scale)
        lo, hi = min(ys_all), max(ys_all)
        ax.set_ylim(lo / 1.6, hi * 1.8)
        _mark_failures(ax, series, single)
        ax.set_ylabel(f"step time ({unit})")
        ax.set_title("Step time against batch size")
        _legend(ax)
        return to_svg(fig, "step time against batch size")


def _equal_time_marks(ax, s: SweepSeries, single: bool, index: int) -> None:
    a = s.analysis or {}
    ref = a.get("reference_batch")
    top = a.get("equal_time_max_batch")
    possible = a.get("equal_time_max_batch_possible")
    eps = (a.get("parameters") or {}).get("eps")
    if ref is None or top is None:
        return
    if single:
        lo_x = ref / 2 ** 0.3
        ax.axvspan(lo_x, top * 2 ** 0.3 if top > ref else ref * 2 ** 0.3, color="#2ca02c", alpha=0.09, lw=0,
                   label=f"equal time (within {eps:.0%} of batch {ref})" if _ok(eps) else "equal time")
        if possible is not None and possible > top:
            ax.axvspan(top * 2 ** 0.3, possible * 2 ** 0.3, color="#2ca02c", alpha=0.04, lw=0, hatch="///",
                       label="possibly equal time (CIs too wide)")
        t_ref = a.get("reference_median_s")
        if _ok(t_ref) and _ok(eps):
            ax.axhline(t_ref * (1 + eps), color="#2ca02c", ls="--", lw=0.8, alpha=0.7,
                       label=f"tolerance: batch {ref}'s time + {eps:.0%}")
    else:
        tr = ax.get_xaxis_transform()
        y = 0.03 + 0.03 * index
        ax.plot([ref, top], [y, y], transform=tr, color=s.color, lw=4, alpha=0.55, solid_capstyle="butt")
        if possible is not None and possible > top:
            ax.plot([top, possible], [y, y], transform=tr, color=s.color, lw=1.5, alpha=0.55)


def throughput_figure(series: Sequence[SweepSeries]) -> str | None:
    """Samples per second against batch size with the peak and the batch that reaches 95% of it."""
    series = [s for s in series if s.batch and any(_ok(v) for v in s.throughput)]
    if not series:
        return None
    single = len(series) == 1
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        for s in series:
            b = np.array(s.batch, dtype=float)
            y = np.array([v if _ok(v) else np.nan for v in s.throughput], dtype=float)
            ax.errorbar(b, y, yerr=_errs(s.throughput, s.throughput_low, s.throughput_high), fmt="-o",
                        color=s.color, elinewidth=1.0, label=s.label if not single else "samples/s at the median step time, 95% CI")
            a = s.analysis or {}
            peak, sat = a.get("peak_throughput_samples_per_s"), a.get("throughput_saturation_batch")
            frac = (a.get("parameters") or {}).get("saturation_fraction", 0.95)
            if _ok(peak):
                ax.axhline(peak * frac, color=s.color, ls=":", lw=0.9, alpha=0.8,
                           label=f"{frac:.0%} of peak ({_fmt_num(peak)} samples/s)" if single else None)
            if sat is not None and sat in s.batch:
                ys = y[s.batch.index(sat)]
                ax.plot([sat], [ys], marker="*", ms=15, color=s.color, mec="black", mew=0.6, zorder=6,
                        label=f"saturation: batch {sat:,}" if single else None)
                ax.annotate(f"saturates at {sat:,}", (sat, ys), textcoords="offset points", xytext=(-6, 10),
                            ha="right", fontsize=7.5, color=s.color)
        batch_axis(ax, _all_batches(series))
        log_y(ax)
        finite = [v for s in series for v in s.throughput_low + s.throughput + s.throughput_high if _ok(v) and v > 0]
        ax.set_ylim(min(finite) / 1.6, max(finite) * 2.0)
        _mark_failures(ax, series, single)
        ax.set_ylabel("throughput (samples/s)")
        ax.set_title("Throughput against batch size")
        _legend(ax)
        return to_svg(fig, "throughput against batch size")


def memory_figure(series: Sequence[SweepSeries]) -> str | None:
    """Peak allocator memory against batch size, the card's memory and the out-of-memory boundary."""
    series = [s for s in series if any(_ok(v) for v in s.peak_allocated_bytes)]
    if not series:
        return None
    single = len(series) == 1
    values = [v for s in series for v in s.peak_reserved_bytes + s.peak_allocated_bytes if _ok(v)]
    data_top = max(values)
    near = [s.memory_total_bytes for s in series if _ok(s.memory_total_bytes) and s.memory_total_bytes <= 3 * data_top]
    scale, unit = bytes_unit(values + near)
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        for s in series:
            b = np.array(s.batch, dtype=float)
            alloc = np.array([v if _ok(v) else np.nan for v in s.peak_allocated_bytes], dtype=float) / scale
            ax.plot(b, alloc, "-o", color=s.color, label="peak allocated" if single else f"{s.label}: allocated")
            if any(_ok(v) for v in s.peak_reserved_bytes):
                res = np.array([v if _ok(v) else np.nan for v in s.peak_reserved_bytes], dtype=float) / scale
                ax.plot(b, res, "--", color=s.color, alpha=0.7, lw=1.1,
                        label="peak reserved (caching allocator)" if single else None)
            if _ok(s.memory_total_bytes) and s.memory_total_bytes <= 3 * data_top:
                ax.axhline(s.memory_total_bytes / scale, color=s.color if not single else "black", ls="-.", lw=0.9,
                           label=f"card memory ({_fmt_num(s.memory_total_bytes / scale)} {unit})" if single else None)
            elif _ok(s.memory_total_bytes) and single:
                ax.plot([], [], " ", label=f"card memory: {nbytes(s.memory_total_bytes)} (above the plot)")
            if s.largest_batch_that_fits is not None:
                ax.axvline(s.largest_batch_that_fits, color="#2ca02c" if single else s.color, ls="--", lw=1.0,
                           label=f"largest batch that fits: {s.largest_batch_that_fits:,}" if single else None)
            if s.first_oom is not None:
                ax.axvspan(s.first_oom, s.first_oom * 4, color=OOM_COLOR, alpha=0.07, lw=0,
                           label="out of memory" if single or s is series[0] else None)
        batch_axis(ax, _all_batches(series), extra=[s.largest_batch_that_fits for s in series
                                                     if s.largest_batch_that_fits])
        ax.set_ylim(0, max(values + near) / scale * 1.12)
        ax.set_ylabel(f"peak memory ({unit})")
        ax.set_title("Peak GPU memory against batch size")
        _legend(ax)
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
    return any(_ok(t.get(k)) for s in series for t in s.telemetry for k in keys)


def telemetry_figure(series: Sequence[SweepSeries]) -> str | None:
    """GPU activity (%), power (W) and energy per sample (J) against batch size, throttled points ringed."""
    series = [s for s in series if s.batch]
    present = [f for f in ACTIVITY_FIELDS if any(_ok(t.get(f[0])) for s in series for t in s.telemetry)]
    has_power = any(_ok(t.get(POWER_FIELD)) for s in series for t in s.telemetry)
    has_energy = any(_ok(t.get("energy_per_sample_j")) for s in series for t in s.telemetry)
    panels = [p for p, on in (("activity", bool(present)), ("power", has_power), ("energy", has_energy)) if on]
    if not panels:
        return None
    single = len(series) == 1
    metric_colors = palette(len(ACTIVITY_FIELDS))
    with rc_context(_rc()):
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
                    return np.array([t.get(key) if _ok(t.get(key)) else np.nan for t in s.telemetry], dtype=float)

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
                    ax.set_ylim(0, 105)
                    ax.set_ylabel("% of time / of peak")
                    ax.set_title("GPU activity")
                elif panel == "power":
                    y = col(POWER_FIELD)
                    ax.plot(b, y, "-o", color=s.color,
                            label="mean board power (energy / timed time)" if single else s.label)
                    if _ok(s.power_limit_w):
                        ax.axhline(s.power_limit_w, color=s.color if not single else "black", ls="-.", lw=0.9,
                                   label=f"power limit {s.power_limit_w:.0f} W" if single else None)
                    if throttled.any():
                        ax.plot(b[throttled], y[throttled], "o", ms=11, mfc="none", mec=REGRESSION_COLOR, mew=1.4,
                                label="clocks held down (throttled)" if s is series[0] else None)
                    ax.set_ylim(bottom=0)
                    ax.set_ylabel("power (W)")
                    ax.set_title("Power")
                else:
                    y = col("energy_per_sample_j")
                    ax.plot(b, y, "-o", color=s.color, label="energy per sample" if single else s.label)
                    log_y(ax)
                    ax.set_ylabel("energy per sample (J)")
                    ax.set_title("Energy")
            batch_axis(ax, _all_batches(series), label="batch size")
        _legend(axes)
        return to_svg(fig, "GPU telemetry against batch size")


# -------------------------------------------------------------------------------- time to accuracy


def convergence_figure(curves: Sequence[Any], target: float | None, metric: str,
                       best_lr: dict[int, float | None] | None = None) -> str | None:
    """Evaluation metric against training steps, one colour per batch size (runs at the best learning
    rate drawn solid, the other learning rates faint), with the target."""
    curves = [c for c in curves if any(p.eval_metric is not None for p in c.points)]
    if not curves:
        return None
    sizes = sorted({c.batch_size for c in curves})
    colors = dict(zip(sizes, sequential(len(sizes))))
    best_lr = best_lr or {}
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        labelled = set()
        shown: list[float] = []  # values of the best-LR runs set the y range: a diverged run cannot swamp it
        n_diverged = 0
        for c in sorted(curves, key=lambda c: (c.batch_size, c.lr or 0.0, c.seed or 0)):
            pts = [(p.step, p.eval_metric) for p in c.points if p.eval_metric is not None and p.step > 0]
            if not pts:
                continue
            x, y = zip(*pts)
            chosen = c.batch_size not in best_lr or best_lr[c.batch_size] is None or \
                (c.lr is not None and math.isclose(c.lr, best_lr[c.batch_size], rel_tol=1e-9))
            diverged = (c.stop_reason or "").startswith("diverged")
            if diverged:
                n_diverged += 1
                chosen = False  # drawn faint and left out of the y range, which it would swamp
                ax.plot([x[-1]], [y[-1]], "x", color=colors[c.batch_size], ms=5, alpha=0.6,
                        label="diverged (run stopped)" if n_diverged == 1 else None, clip_on=True)
            if chosen:
                shown.extend(v for v in y if _ok(v))
            label = None
            if chosen and c.batch_size not in labelled:
                label = f"batch {c.batch_size:,}"
                labelled.add(c.batch_size)
            ax.plot(x, y, color=colors[c.batch_size], lw=1.4 if chosen else 0.8, alpha=0.95 if chosen else 0.22,
                    label=label)
        for b in sizes:
            if b not in labelled:  # every run at this batch diverged: still say so in the legend
                ax.plot([], [], color=colors[b], alpha=0.4, label=f"batch {b:,} (every run diverged)")
        if _ok(target):
            ax.axhline(target, color="black", ls="--", lw=1.0, label=f"target {metric} = {target:.4g}")
            shown.append(target)
        if len(shown) > (1 if _ok(target) else 0):
            lo, hi = min(shown), max(shown)
            if lo > 0 and hi / lo > 30:  # losses and risks fall over decades
                log_y(ax)
                ax.set_ylim(lo / 1.5, hi * 1.5)
            else:
                pad = 0.05 * (hi - lo or abs(hi) or 1.0)
                ax.set_ylim(lo - pad, hi + pad)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_num(v)))
        ax.set_xlabel("training steps (optimizer updates)")
        ax.set_ylabel(metric)
        ax.set_title("Convergence per batch size (solid: best learning rate; faint: others)")
        _legend(ax, ncols=min(6, len(sizes) + 1))
        return to_svg(fig, "convergence curves per batch size")


def steps_to_target_figure(analysis: Any) -> str | None:
    """Steps to target against batch size with the fitted S(B) = S_min(1 + B_crit/B), B_crit and its CI."""
    rows = [b for b in analysis.batches if _ok(b.steps_to_target)]
    if not rows:
        return None
    fit = analysis.scaling_fit
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        b = np.array([r.batch_size for r in rows], dtype=float)
        s = np.array([r.steps_to_target for r in rows], dtype=float)
        err = _errs(list(s), [r.steps_low for r in rows], [r.steps_high for r in rows])
        ax.errorbar(b, s, yerr=err, fmt="o", color=palette(1)[0], label="steps to target (best LR; bars: seed range)",
                    zorder=4)
        all_b = [r.batch_size for r in analysis.batches]
        lo, hi = min(all_b), max(all_b)
        if fit is not None and _ok(fit.s_min) and _ok(fit.b_crit):
            grid = np.geomspace(lo / 1.3, hi * 1.3, 200)
            ax.plot(grid, fit.s_min * (1 + fit.b_crit / grid), "-", color="black", lw=1.2,
                    label=f"fit S(B) = S_min·(1 + B_crit/B), S_min = {_fmt_num(fit.s_min)}")
            ax.plot(grid, fit.s_min * fit.b_crit / grid, ls=(0, (5, 2, 1, 2)), color=GUIDE_COLOR, lw=1.0,
                    label="perfect scaling (steps ∝ 1/B)")
            ax.axhline(fit.s_min, color=GUIDE_COLOR, ls=(0, (1, 2)), lw=1.0, label="S_min (no fewer steps at any batch)")
            ax.axvline(fit.b_crit, color="#9467bd", ls="--", lw=1.2, label=f"B_crit ≈ {_fmt_num(fit.b_crit)}")
            if fit.b_crit_ci and all(_ok(v) for v in fit.b_crit_ci):
                ax.axvspan(fit.b_crit_ci[0], fit.b_crit_ci[1], color="#9467bd", alpha=0.08, lw=0,
                           label=f"B_crit {fit.confidence:.0%} CI ({_fmt_num(fit.b_crit_ci[0])}–{_fmt_num(fit.b_crit_ci[1])})")
        missed = [r.batch_size for r in analysis.batches if not _ok(r.steps_to_target)]
        if missed:
            ax.scatter(missed, [0.96] * len(missed), transform=ax.get_xaxis_transform(), marker="x", s=36,
                       color=OOM_COLOR, clip_on=False, label="did not reach the target")
        batch_axis(ax, all_b)
        log_y(ax)
        ymin, ymax = float(np.min(s - err[0])), float(np.max(s + err[1]))
        if fit is not None and _ok(fit.s_min):
            ymin = min(ymin, fit.s_min)
        ax.set_ylim(max(ymin, 1e-9) / 1.6, ymax * 1.8)
        ax.set_ylabel("steps to target")
        ax.set_title("Steps to target against batch size")
        _legend(ax)
        return to_svg(fig, "steps to target against batch size")


def tta_figure(analysis: Any) -> str | None:
    """Time to target against batch size: measured (steps × step time) with its interval, the
    equal-step-time estimate beside it, the best batch, and B* from the two fits."""
    rows = [b for b in analysis.batches if _ok(b.time_to_target_s)]
    if not rows:
        return None
    c0, c1 = palette(2)
    scale, unit = time_unit(r.time_to_target_s for r in rows)
    with rc_context(_rc()):
        fig, (ax,) = _figure()
        b = np.array([r.batch_size for r in rows], dtype=float)
        t = np.array([r.time_to_target_s for r in rows], dtype=float)
        err = _errs(list(t), [r.time_to_target_low_s for r in rows], [r.time_to_target_high_s for r in rows])
        ax.errorbar(b, t, yerr=err, fmt="-o", color=c0, label="measured: steps × step time (interval: seeds × CI)",
                    zorder=4)
        naive = [(r.batch_size, r.naive_time_to_target_s) for r in rows if _ok(r.naive_time_to_target_s)]
        if naive:
            nb, nt = zip(*naive)
            ref = (analysis.naive or {}).get("reference_batch")
            ax.plot(nb, nt, "--s", color=c1, mfc="white", ms=5,
                    label=f"naive: every batch at batch {ref}'s step time" if ref is not None else "naive estimate")
            nbest = (analysis.naive or {}).get("naive_best_batch")
            if nbest in nb:
                ax.plot([nbest], [nt[nb.index(nbest)]], marker="*", ms=12, mfc="white", mec=c1, mew=1.3, zorder=6,
                        label=f"naive pick: batch {nbest:,}")
        sf, fit = analysis.step_time_fit, analysis.scaling_fit
        all_t = list(t) + [v for _, v in naive]
        if sf is not None and fit is not None and _ok(fit.s_min) and _ok(fit.b_crit):
            grid = np.geomspace(b.min() / 1.3, b.max() * 1.3, 200)
            step_time = np.array([sf.predict_s(g) for g in grid]) if hasattr(sf, "predict_s") \
                else sf.a_s + sf.b_s_per_example * grid
            model = fit.s_min * (1 + fit.b_crit / grid) * step_time
            if np.all(np.isfinite(model)) and np.all(model > 0):
                shape = "max(t0, a + b·B)" if getattr(sf, "model", None) == "hinge" else "(a + b·B)"
                ax.plot(grid, model, ":", color="black", lw=1.0, label=f"model S(B)·{shape}")
        if analysis.best_time_batch is not None and _ok(analysis.best_time_s):
            ax.plot([analysis.best_time_batch], [analysis.best_time_s], marker="*", ms=16, color=c0, mec="black",
                    mew=0.7, zorder=7,
                    label=f"fastest measured: batch {analysis.best_time_batch:,} "
                          f"({_fmt_num(analysis.best_time_s / scale)} {unit})")
        if _ok(analysis.b_star):
            ax.axvline(analysis.b_star, color="#9467bd", ls="--", lw=1.1,
                       label=(f"B* ≈ {_fmt_num(analysis.b_star)} (hinge fit, ≥ knee)"
                              if getattr(sf, "model", None) == "hinge"
                              else f"B* = √(B_crit·a/b) ≈ {_fmt_num(analysis.b_star)}"))
        batch_axis(ax, [r.batch_size for r in analysis.batches])
        log_y(ax, scale)
        ax.set_ylim(min(all_t) / 1.8, max(all_t) * 2.2)
        ax.set_ylabel(f"time to target ({unit})")
        ax.set_title("Time to accuracy against batch size")
        _legend(ax)
        return to_svg(fig, "time to accuracy against batch size")


# ----------------------------------------------------------------------------------------- suites


def suite_figure(names: Sequence[str], median_s: Sequence[float], q1_s: Sequence[float | None],
                 q3_s: Sequence[float | None]) -> str | None:
    """One row per benchmark: median with its interquartile range (log time axis)."""
    rows = [(n, m, a, b) for n, m, a, b in zip(names, median_s, q1_s, q3_s) if _ok(m) and m > 0]
    if not rows:
        return None
    scale, unit = time_unit(r[1] for r in rows)
    height = min(max(1.6, 0.26 * len(rows) + 1.0), 40)
    with rc_context(_rc()):
        fig, (ax,) = _figure(height=height)
        y = np.arange(len(rows))[::-1]
        med = np.array([r[1] for r in rows])
        err = _errs(list(med), [r[2] for r in rows], [r[3] for r in rows])
        ax.errorbar(med, y, xerr=err, fmt="o", color=palette(1)[0], elinewidth=2.2, capsize=0,
                    label="median; bar: interquartile range")
        ax.set_yticks(y)
        ax.set_yticklabels([_short(r[0], 60) for r in rows], fontsize=7.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_num(v / scale)))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        lo = float(np.min(med - err[0]))
        hi = float(np.max(med + err[1]))
        if hi / lo < 4:  # a narrow range would show no labelled decade: widen it around the data
            mid = math.sqrt(lo * hi)
            lo, hi = mid / 2.2, mid * 2.2
        ax.set_xlim(lo / 1.15, hi * 1.15)
        ax.set_xlabel(f"time per call ({unit})")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_title("Latest run of each benchmark")
        _legend(ax, inside=True, loc="lower right")
        return to_svg(fig, "benchmark medians")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


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


def trend_figure(title: str, series: Sequence[TrendSeries], max_points: int = MAX_TREND_POINTS) -> tuple[str | None, bool]:
    """Median per run over time with the interquartile band, regressions and environment changes
    marked; returns (svg, decimated)."""
    series = [s for s in series if s.median_s]
    if not series:
        return None, False
    scale, unit = time_unit(v for s in series for v in s.median_s)
    colors = palette(len(series))
    decimated = False
    marked = env_marked = False
    with rc_context(_rc()):
        # Fixed margins: constrained layout would double the cost of each of possibly many trend figures.
        fig = Figure(figsize=(WIDTH_IN, 2.7))
        fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.2)
        ax = fig.add_subplot()
        for s, color in zip(series, colors):
            idx = decimate(len(s.median_s), s.median_s, max_points)
            decimated |= len(idx) < len(s.median_s)
            t = [s.times[i] for i in idx]
            m = np.array([s.median_s[i] for i in idx], dtype=float)
            q1 = np.array([s.q1_s[i] if _ok(s.q1_s[i]) else s.median_s[i] for i in idx], dtype=float)
            q3 = np.array([s.q3_s[i] if _ok(s.q3_s[i]) else s.median_s[i] for i in idx], dtype=float)
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
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_num(v / scale)))
        ax.set_ylabel(f"time per call ({unit})")
        ax.set_xlabel("run date (UTC)")
        import matplotlib.dates as mdates

        loc = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.set_title(_short(title, 90), fontsize=9.5)
        _legend(ax, inside=True, loc="upper left", fontsize=7)
        return to_svg(fig, f"history of {title}"), decimated
