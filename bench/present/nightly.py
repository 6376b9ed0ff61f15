"""Nightly results in words and terminal tables: the change points of the history, the runs in the
store, and the pieces bench.present.compare (a comparison's verdicts) shares. Measures and decides nothing (bench.analysis does)."""

from __future__ import annotations

from typing import Sequence

import bench.present.fmt as fmt
from bench.analysis.compare import Comparison
from bench.core.text import shown_name, terminal_safe


def value(v: float | None, unit: str) -> str:
    if unit == "s":
        return fmt.duration(v)
    if unit == "bytes":
        return fmt.nbytes(v)
    if v is None:
        return "—"
    return fmt.rate(v, unit) if unit == "samples/s" else f"{v:.4g} {unit}"


def signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1%}"


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    rows = [[terminal_safe(c, None) for c in r] for r in rows]  # names from files: no escape codes reach the terminal
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def common_shift_sentence(c: Comparison) -> str | None:
    """The warning that the benchmarks moved together, or None."""
    cs = c.common_shift
    if cs is None:
        return None
    most, way = (cs.better, "better") if cs.better > cs.worse else (cs.worse, "worse")
    return (f"the benchmarks moved together: {most} of {cs.n} got {way} (median change {cs.median_change:+.1%}; "
            f"two-sided sign test p = {cs.p_value:.2g}). A shift shared by every workload is what other clocks, "
            "a busy or different host, or a change in code they all run gives: compare the two runs' conditions "
            "before reading it as a change in any one benchmark.")


def changes_lines(changes: Sequence) -> list[str]:
    """One row per change: a benchmark's step or excursion, or one machine-wide event (how many of the
    machine's series stepped together, their median change); provisional ones marked."""
    if not changes:
        return ["No change points: no benchmark's nights stepped."]
    rows = []
    for c in changes:
        if c.scope == "machine":
            what = f"machine-wide {c.kind}"
            level = f"{c.count} of {c.series} series"
        else:
            what = c.kind
            level = f"{value(c.before, c.unit)} → {value(c.after, c.unit)}"
            if c.kind == "excursion":
                level += f" (away {len(c.runs or [])} run(s))"
        rows.append([what + (" (provisional)" if c.status == "provisional" else ""), shown_name(c.benchmark),
                     c.metric, shown_name(c.hardware_label), c.at, level, signed(c.change),
                     f"{(c.commit_before or '?')[:12]}..{(c.commit_after or '?')[:12]}",
                     f"{c.nights_before}/{c.nights_after}", f"{c.p_value:.2g}"])
    n_machine = sum(1 for c in changes if c.scope == "machine")
    head = f"{len(changes)} change(s)" + (f", {n_machine} of them machine-wide (one row for the series that stepped "
                                          "together; their median change)" if n_machine else "") + ":"
    out = [head, *_table(rows, ["kind", "benchmark", "metric", "machine", "from (first run after)", "before → after",
                                "change", "commits", "nights", "p"])]
    for c in changes:
        if c.scope == "machine":
            out.append(f"machine-wide at {c.at} on {shown_name(c.hardware_label)}: " + ", ".join(c.benchmarks or []))
    if any(c.status == "provisional" for c in changes):
        out.append("provisional: too few runs after it yet to tell a lasting change from an excursion")
    return out


def runs_lines(runs: Sequence) -> list[str]:
    if not runs:
        return ["The history store holds no runs."]
    rows = [[str(r.id), r.time_text, r.kind, (r.commit or "—")[:12] + ("+dirty" if r.dirty else ""), shown_name(r.hardware_label),
             str(r.n_results), r.verdict or "—", shown_name(r.path)] for r in runs]
    return _table(rows, ["run", "time", "kind", "commit", "machine", "results", "verdict", "file"])
