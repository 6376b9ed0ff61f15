"""What every report figure shares: the style, colours, SVG output, axes, units and the legend.

Figures are drawn with matplotlib (seaborn style) off-screen and returned as inline SVG. Text is kept as
SVG <text> (escaped by matplotlib's XML writer), so names taken from results files cannot inject markup.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from bench.core.numbers import is_number
from bench.present.fmt import compact, si
from bench.present.fmt import time_unit as fmt_time_unit

WIDTH_IN = 8.0
HEIGHT_IN = 4.9
MAX_BATCH_TICKS = 12
# More points than this in one history line are decimated (min/max per bucket) before drawing.
MAX_TREND_POINTS = 400

OOM_COLOR = "#c0392b"
GUIDE_COLOR = "#7f8c8d"
REGRESSION_COLOR = "#d62728"

# ------------------------------------------------------------------------------------------ style


def style() -> dict:
    """matplotlib settings for every figure (use with `rc_context`)."""
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


def new_figure(n_cols: int = 1, height: float = HEIGHT_IN, width: float = WIDTH_IN):
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
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context(style()):  # the SVG settings (text as <text>, stable ids) apply when saving
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


def svg_document(fig: Figure) -> str:
    """The figure as a standalone SVG file (namespaces kept, no date), for `--plot out.svg`."""
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context(style()):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- axes


def batch_axis(ax, batches: Iterable[float], label: str = "batch size (samples per step)",
               extra: Iterable[float] = (), max_ticks: int = MAX_BATCH_TICKS) -> None:
    """Log₂ x axis labelled with the batch sizes measured (every k-th of them, or powers of two, when there
    are more than `max_ticks`); `extra` positions (e.g. the largest batch that fits) widen the range
    without a tick of their own."""
    b = sorted({float(x) for x in batches if x and x > 0})
    span = sorted(set(b) | {float(x) for x in extra if x and x > 0})
    ax.set_xscale("log", base=2)
    if b and len(b) <= max_ticks:
        ax.xaxis.set_major_locator(ticker.FixedLocator(b))
    elif b and len(b) <= MAX_BATCH_TICKS:
        step = -(-len(b) // max_ticks)
        ax.xaxis.set_major_locator(ticker.FixedLocator(b[::step]))
    else:
        ax.xaxis.set_major_locator(ticker.LogLocator(base=2, numticks=max_ticks))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel(label)
    if span:
        lo, hi = span[0], span[-1]
        pad = 2 ** 0.35
        ax.set_xlim(lo / pad, hi * pad)


# Tick label formats for a time axis, coarsest first: date_axis takes the first that names every tick once.
DATE_FORMATS = ("%Y-%m", "%Y-%m-%d", "%m-%d %H:%M", "%m-%d %H:%M:%S")


def date_axis(ax, max_ticks: int = 8) -> str:
    """Times on the x axis, each tick with a label of its own: the coarsest of DATE_FORMATS under which no
    two ticks read the same (runs minutes apart are not all labelled '01-02 03:04'; nights 12 hours apart not
    each date twice). Call once the data is drawn; returns the format chosen."""
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=max_ticks))
    ticks = [mdates.num2date(t) for t in ax.xaxis.get_majorticklocs()]
    fmt = next((f for f in DATE_FORMATS if len({t.strftime(f) for t in ticks}) == len(ticks)), DATE_FORMATS[-1])
    # Plain formats: matplotlib's concise date formatter costs a sixth of a trend figure's drawing time.
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt))
    return fmt


class TickFormatter(ticker.Formatter):
    """Tick labels in one style per axis: whole numbers with separators, or, once a tick reaches a
    million, SI suffixes on every tick from a thousand up ('500k', '1M', '2M'), never '1e+06' beside
    '500,000'. Values are divided by `scale` (an axis in ms shows seconds / 1e-3)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.ticks: list[float] = []

    def set_locs(self, locs) -> None:
        self.ticks = [float(t) for t in locs]

    def __call__(self, v, pos=None) -> str:
        x = v / self.scale
        top = max((abs(t) / self.scale for t in self.ticks), default=abs(x))
        if top >= 1e6 and abs(x) >= 1e3:
            return si(x)
        if 0 < abs(x) < 1e-3:
            return f"{x:.3g}"
        return compact(x) if abs(x) < 1e6 else f"{x:,.0f}"


def log_y(ax, scale: float = 1.0) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.yaxis.set_major_formatter(TickFormatter(scale))
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0, numticks=12))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def time_unit(values: Iterable[float | None]) -> tuple[float, str]:
    """(scale, unit) the typical value reads best in (fmt.time_unit: ns up to days)."""
    v = [abs(x) for x in values if ok(x) and x != 0]
    if not v:
        return 1.0, "s"
    return fmt_time_unit(float(np.median(v)))


def bytes_unit(values: Iterable[float | None]) -> tuple[float, str]:
    v = [abs(x) for x in values if ok(x) and x != 0]
    top = max(v) if v else 1.0
    for scale, unit in ((2 ** 40, "TiB"), (2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if top >= scale:
            return float(scale), unit
    return 1.0, "B"


ok = is_number  # a finite number (not a bool, not None)


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


def legend(ax, *, inside: bool = False, ncols: int | None = None, **kw) -> None:
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


def errs(center: Sequence[float | None], low: Sequence[float | None], high: Sequence[float | None]) -> np.ndarray:
    lo = [c - l if ok(l) and ok(c) else 0.0 for c, l in zip(center, low)]
    hi = [h - c if ok(h) and ok(c) else 0.0 for c, h in zip(center, high)]
    return np.array([np.maximum(lo, 0), np.maximum(hi, 0)], dtype=float)


def short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]
