"""Formatting numbers for people: durations, rates, byte counts, percentages and lists of batch sizes,
with units and sensible figures. The one set of formatters the sentences, tables and the report share."""

from __future__ import annotations

import math
from typing import Sequence

from bench.core.numbers import is_number

TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
# Long durations (a time to target) read best in the largest unit they fill: days from 2 days, hours
# from 1 hour, minutes from 2 minutes (90 s stays "90 s", 1.5 h is "1.5 h", not "5,400 s").
LONG_TIME_UNITS = ((86400.0, "d", 2.0), (3600.0, "h", 1.0), (60.0, "min", 2.0))
# Past this many, a list of batch sizes shows its first three, an ellipsis and the last.
MAX_LISTED_BATCHES = 8


def time_unit(seconds: float, digits: int = 3) -> tuple[float, str]:
    """(scale, name) of the unit a duration reads best in: ns up to days (see LONG_TIME_UNITS)."""
    # Round first, so 0.0009996 s is "1 ms", not "1e+03 µs".
    v = float(f"{abs(seconds):.{digits}g}")
    for scale, name, at_least in LONG_TIME_UNITS:
        if v >= scale * at_least:
            return scale, name
    for scale, name in TIME_UNITS:
        if v >= scale:
            return scale, name
    return TIME_UNITS[-1]



def duration(seconds: float | None, digits: int = 3) -> str:
    """Seconds with `digits` significant figures in the unit that reads best: 0.00123 -> '1.23 ms', 456e-6
    -> '456 µs', 2.5 -> '2.5 s', 150 -> '2.5 min', 7200 -> '2 h', 3 days -> '3 d'; '—' when not measured."""
    if not is_number(seconds):
        return "—"
    if abs(seconds) < 1e-12:
        return "0 s"
    scale, unit = time_unit(seconds, digits)
    return f"{figures(seconds / scale, digits)} {unit}"


def slope(s_per_sample: float, reference_s: float) -> str:
    """A per-sample time in the unit of the step time it is quoted beside, unless that makes it
    unreadably small: (1e-5, 0.002) -> '+0.01 ms per sample'."""
    scale, unit = time_unit(reference_s)
    if s_per_sample / scale < 1e-3:
        scale, unit = time_unit(s_per_sample)
    return f"+{s_per_sample / scale:.3g} {unit} per sample"


def rate(per_s: float | None, unit: str = "samples/s") -> str:
    """A measured rate for a table: whole numbers from 100 up ('51,235 samples/s'), else 3 figures."""
    if not is_number(per_s):
        return "—"
    if per_s >= 100:
        return f"{per_s:,.0f} {unit}"
    return f"{per_s:.3g} {unit}"


def number(value: float) -> str:
    """A value quoted in a sentence, 3 significant figures with thousands separators: 51234.5 ->
    '51,200', 12.345 -> '12.3'."""
    v = float(f"{value:.3g}")
    return f"{int(round(v)):,}" if v >= 1000 else f"{v:g}"


def quantity(v: float | None, digits: int = 3) -> str:
    """A table value: whole with thousands separators from 1,000 up, else `digits` figures; '—' if missing."""
    if not is_number(v):
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"


def compact(v: float) -> str:
    """An axis tick or legend number: 3 figures, whole with separators from 1,000, e-notation past a million."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.3g}"
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def si(v: float) -> str:
    """A large count with an SI suffix, 3 figures: 500000 -> '500k', 2500000 -> '2.5M', 3e9 -> '3G'."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def batch_estimate(value: float) -> str:
    """A fitted batch size (a knee, a/b) to 2 significant figures: 96.4 -> '96', 1536.2 -> '1500'."""
    if value >= 10:
        digits = int(math.floor(math.log10(value))) - 1
        return str(int(round(value, -digits)))
    return f"{value:.2g}"


def nbytes(n: float | None) -> str:
    if not is_number(n):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"


def percent(x: float | None, digits: int = 1) -> str:
    """A measured fraction (0.013) as a percentage with fixed decimals ('1.3%')."""
    if not is_number(x):
        return "—"
    return f"{100 * x:.{digits}f}%"


def figures(v: float, digits: int = 2) -> str:
    """`v` to `digits` significant figures, without e-notation below a million: 335.7 -> '340', 0.1234 -> '0.12'."""
    return f"{float(f'{v:.{digits}g}'):g}"


def ci_percent(rel_halfwidth: float | None) -> str:
    """A 95% CI's half-width relative to its value, to the two figures such a width is known to: 3.357 ->
    '340%', 0.809 -> '81%', 0.0137 -> '1.4%' (never '335.7%' or '518.441%')."""
    if not is_number(rel_halfwidth):
        return "—"
    return f"{figures(100 * rel_halfwidth)}%"


def supported_digits(value: float | None, low: float | None, high: float | None, most: int = 3) -> int:
    """Significant figures of `value` its interval [low, high] supports: down to the second figure of the
    interval's half-width, at least 2 and at most `most`; 2 where there is no interval (15.2 ms with a
    ±12 ms CI -> 2: '15 ms'; 15.23 ms with a ±0.05 ms CI -> 3: '15.2 ms')."""
    if not (is_number(value) and value and is_number(low) and is_number(high) and high > low):
        return 2
    half = (high - low) / 2
    return max(2, min(most, int(math.floor(math.log10(abs(value))) - math.floor(math.log10(half))) + 2))


def duration_ci(value: float | None, low: float | None, high: float | None) -> str:
    """A measured duration to the figures its 95% CI supports ('—' when not measured)."""
    return duration(value, supported_digits(value, low, high))


def interval(low: float | None, high: float | None, value: float | None = None) -> str | None:
    """'6 ms – 31 ms': a CI's bounds to the figures its width supports, rounded outward (the interval
    shown never claims more than the one computed); None without one."""
    if not (is_number(low) and is_number(high)):
        return None
    d = supported_digits(value if is_number(value) else (low + high) / 2, low, high)
    return f"{duration(outward(low, d, up=False), d)} – {duration(outward(high, d, up=True), d)}"


def outward(x: float, digits: int, *, up: bool) -> float:
    """`x` rounded to `digits` significant figures away from the inside of an interval: up for its upper
    bound, down for its lower (6.08 -> 6.0, 30.7 -> 31 at two figures)."""
    if x == 0:
        return 0.0
    q = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    steps = round(x / q, 6)  # 60.9999999 is 61, not 60
    return (math.ceil(steps) if up else math.floor(steps)) * q


def signed_percent(x: float | None, digits: int = 0) -> str:
    """A relative difference with its sign: 0.12 -> '+12%', -0.33 -> '−33%' (a minus sign, not a hyphen),
    and '0%' where it rounds to nothing ('-0%' says nothing)."""
    if not is_number(x):
        return "—"
    shown = f"{abs(100 * x):.{digits}f}"
    if float(shown) == 0:
        return f"{shown}%"
    return f"{'+' if x > 0 else '−'}{shown}%"


def pct(fraction: float | None, missing: str = "?") -> str:
    """A setting given as a fraction, as a percentage without needless digits: 0.05 -> '5%',
    0.0333 -> '3.33%' (a tolerance, a CI target)."""
    if not is_number(fraction):
        return missing
    return f"{round(float(fraction) * 100, 6):g}%"


def batch_list(batches: Sequence[int], limit: int = MAX_LISTED_BATCHES, thousands: bool = False) -> str:
    """'1, 2, 4'; past `limit` values '1, 2, 4, …, 1024 (11 points)'."""
    b = [f"{v:,}" if thousands else str(v) for v in batches]
    if len(b) > limit:
        return f"{', '.join(b[:3])}, …, {b[-1]} ({len(b)} points)"
    return ", ".join(b)


def and_list(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 run', '2 runs'."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def slug(text: str) -> str:
    """A file-name-safe version of a workload name ('pkg.mod:fn' -> 'pkg.mod-fn')."""
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
    return out.strip("-.") or "workload"


# Per-point telemetry worth a table column where measured: (heading, telemetry key, formatter).
# Shared by the terminal table and the HTML report so both show the same fields the same way.
TELEMETRY_COLUMNS = (
    ("kernel active", "kernel_active_pct_mean", lambda v: f"{v:.0f}%"),
    ("SM active", "sm_activity_pct_mean", lambda v: f"{v:.0f}%"),
    ("tensor active", "tensor_activity_pct_mean", lambda v: f"{v:.0f}%"),
    # Energy over the timed blocks / their time: NVML's power reading is a 1 s trailing average.
    ("power", "power_w_energy_mean", lambda v: f"{v:.0f} W"),
    ("SM clock", "sm_clock_mhz_median", lambda v: f"{v:.0f} MHz"),
    ("J/sample", "energy_per_sample_j", lambda v: f"{v:.3g} J"),
    ("TFLOP/s", "achieved_tflops", lambda v: f"{v:.3g}"),
    ("MFU", "mfu", percent),
)
