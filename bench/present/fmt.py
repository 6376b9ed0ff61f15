"""Formatting numbers for people: durations, rates, byte counts, with units and sensible figures."""

from __future__ import annotations

import math


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def duration(seconds: float | None, digits: int = 3) -> str:
    """1.23 ms, 456 µs, 2.50 s; '—' for a value that was not measured."""
    if not _finite(seconds):
        return "—"
    a = abs(seconds)
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if a >= scale or unit == "ns":
            return f"{seconds / scale:.{digits}g} {unit}" if a >= 1e-12 else "0 s"
    return f"{seconds:.3g} s"


def rate(per_s: float | None, unit: str = "samples/s") -> str:
    if not _finite(per_s):
        return "—"
    if per_s >= 100:
        return f"{per_s:,.0f} {unit}"
    return f"{per_s:.3g} {unit}"


def nbytes(n: float | None) -> str:
    if not _finite(n):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"


def percent(x: float | None, digits: int = 1) -> str:
    """A fraction (0.013) as a percentage ('1.3%')."""
    if not _finite(x):
        return "—"
    return f"{100 * x:.{digits}f}%"


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
