"""Nightly results in words and terminal tables: the change points of the history, the runs in the
store, and the pieces bench.present.compare (a comparison's verdicts) shares. Measures and decides nothing (bench.analysis does)."""

from __future__ import annotations

from typing import Sequence

import bench.present.fmt as fmt
from bench.analysis.compare import Comparison


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
    if not changes:
        return ["No change points: no benchmark's reliable nights stepped."]
    rows = [[c.kind, c.benchmark, c.metric, c.hardware_label, c.at, f"{value(c.before, c.unit)} → {value(c.after, c.unit)}",
             signed(c.change), f"{(c.commit_before or '?')[:12]}..{(c.commit_after or '?')[:12]}",
             f"{c.nights_before}/{c.nights_after}", f"{c.p_value:.2g}"] for c in changes]
    return [f"{len(changes)} change point(s):", *_table(rows, ["kind", "benchmark", "metric", "machine", "from (first run after)",
                                                             "before → after", "change", "commits", "nights", "p"])]


def runs_lines(runs: Sequence) -> list[str]:
    if not runs:
        return ["The history store holds no runs."]
    rows = [[str(r.id), r.time_text, r.kind, (r.commit or "—")[:12] + ("+dirty" if r.dirty else ""), r.hardware_label,
             str(r.n_results), r.verdict or "—", r.path] for r in runs]
    return _table(rows, ["run", "time", "kind", "commit", "machine", "results", "verdict", "file"])
