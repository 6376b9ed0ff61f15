"""Nightly regression results in words and terminal tables: a comparison's verdicts, the change points
of the history, and the runs in the store. Measures and decides nothing (bench.analysis does)."""

from __future__ import annotations

from typing import Sequence

import bench.present.fmt as fmt
from bench.analysis.compare import (
    COMPARE_RULES,
    IMPROVEMENT,
    REGRESSION,
    UNCHANGED,
    UNRELIABLE,
    Comparison,
)
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


def comparison_lines(c: Comparison, *, show_unchanged: bool = True) -> list[str]:
    """The headline sentence, the sides, a table of verdicts, and the rules that were used."""
    b, k = c.baseline, c.candidate
    counts = {v: c.count(v) for v in (REGRESSION, IMPROVEMENT, UNCHANGED, UNRELIABLE)}
    if counts[REGRESSION]:
        head = f"REGRESSION: {counts[REGRESSION]} of {len(c.verdicts)} benchmark metrics got worse"
    else:
        head = f"No regression in {len(c.verdicts)} benchmark metrics"
    head += (f" ({counts[IMPROVEMENT]} improved, {counts[UNCHANGED]} unchanged, "
             f"{counts[UNRELIABLE]} unreliable, never judged)")
    out = [head,
           f"  baseline:  {shown_name(b['name'])}" + (f", commit {b['commit'][:12]}" if b.get("commit") else "")
           + f", on {shown_name(b.get('hardware_label'))}",
           f"  candidate: {shown_name(k['name'])}" + (f", commit {k['commit'][:12]}" if k.get("commit") else "")
           + f", on {shown_name(k.get('hardware_label'))}"]
    if c.cross_hardware and b.get("hardware") != k.get("hardware"):
        out.append("  different hardware (--cross-hardware): the changes include the machines' difference")
    if c.software_changed:
        out.append("  the software (driver, CUDA, torch, Python, OS) differs between the runs")
    s = c.settings
    out.append(f"  a change counts when it exceeds {s['threshold']:.1%} and is significant (alpha {s['alpha']:g}); "
               f"a run whose median's 95% CI is wider than ±{s['noise_target']:.1%} is unreliable"
               + (f"; settings from {s['source']}" if s.get("source") else ""))
    shift = common_shift_sentence(c)
    if shift:
        out.append("  " + shift)
    rows = []
    for v in c.verdicts:
        if v.verdict == UNCHANGED and not show_unchanged:
            continue
        interval = "—" if v.change_low is None else f"[{v.change_low:+.1%}, {v.change_high:+.1%}]"
        rows.append([v.verdict.upper() if v.verdict == REGRESSION else v.verdict, shown_name(v.benchmark), v.metric,
                     f"{value(v.baseline, v.unit)} → {value(v.candidate, v.unit)}", signed(v.change), interval,
                     "—" if v.p_value is None else f"{v.p_value:.2g}", v.rule or "—", v.reason or ""])
    if rows:
        out.append("")
        out += _table(rows, ["verdict", "benchmark", "metric", "baseline → candidate", "change", "95% interval",
                             "p", "rule", "why unreliable"])
    if c.only_in_baseline:
        out.append(f"only in the baseline ({len(c.only_in_baseline)}): " + ", ".join(map(shown_name, c.only_in_baseline)))
    if c.only_in_candidate:
        out.append(f"only in the candidate ({len(c.only_in_candidate)}): " + ", ".join(map(shown_name, c.only_in_candidate)))
    used = sorted({v.rule for v in c.verdicts if v.rule})
    for rule in used:
        out.append(f"rule {rule!r}: {COMPARE_RULES[rule]}")
    return out


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
