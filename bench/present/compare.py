"""`bench compare` in words: the verdict line first, the noise it assumed, a table that fits 100 columns
(every field in --wide and --json), and the rules used. Measures and decides nothing (bench.analysis.compare)."""

from __future__ import annotations

from typing import Sequence

from bench.analysis.compare import (
    COMPARE_RULES,
    EXIT_STATUSES,
    IMPROVEMENT,
    INCONCLUSIVE,
    REGRESSION,
    SLOWER,
    SOURCE_DEFAULT,
    SOURCE_HISTORY,
    SOURCE_SETTINGS,
    UNCHANGED,
    UNRELIABLE,
    Comparison,
)
from bench.core.text import shown_name, terminal_safe
from bench.present.nightly import _table, common_shift_sentence, signed, value

TABLE_WIDTH = 100


def verdict_line(c: Comparison) -> str:
    """The outcome in one sentence, with its exit status."""
    n = len(c.verdicts)
    counts = {v: c.count(v) for v in (REGRESSION, IMPROVEMENT, UNCHANGED, INCONCLUSIVE, UNRELIABLE)}
    threshold = c.settings["threshold"]
    code = EXIT_STATUSES[c.outcome]
    if c.outcome == SLOWER:
        worst = max((v for v in c.verdicts if v.verdict == REGRESSION), key=lambda v: abs(v.change or 0))
        return (f"SLOWER: {counts[REGRESSION]} of {n} benchmark metrics got worse beyond the {threshold:.0%} "
                f"threshold and the noise between runs (worst {signed(worst.change)}: {shown_name(worst.benchmark)}) "
                f"[exit {code}]")
    if c.outcome == INCONCLUSIVE:
        parts = []
        undecided = [v for v in c.verdicts if v.verdict == INCONCLUSIVE and v.detectable is not None]
        if undecided:
            most = max(v.detectable for v in undecided)
            parts.append(f"the runs cannot tell a change of up to {most:.0%} from noise in {len(undecided)} of "
                         f"{n} benchmark metrics")
        if counts[UNRELIABLE]:
            parts.append(f"{counts[UNRELIABLE]} could not be judged (throttled, failed or no spread)")
        return f"INCONCLUSIVE: {'; '.join(parts)}; not a green light: rerun to confirm (--rerun) [exit {code}]"
    return (f"Same or faster: none of {n} benchmark metrics is slower by {threshold:.0%} or more "
            f"({counts[IMPROVEMENT]} faster, {counts[UNCHANGED]} within the threshold) [exit {code}]")


def noise_sentence(c: Comparison) -> str:
    """What noise between runs the verdicts assumed, and where it came from."""
    b = c.between_runs or {}
    sources = b.get("sources") or {}
    d = b.get("default") or {}
    parts = []
    if sources.get(SOURCE_SETTINGS):
        parts.append(f"{sources[SOURCE_SETTINGS]} metric(s) from the settings (between_runs)")
    if sources.get(SOURCE_HISTORY):
        parts.append(f"{sources[SOURCE_HISTORY]} from each series' own night-to-night spread in the store")
    if sources.get("window"):
        parts.append(f"{sources['window']} from the window's nightly medians")
    if sources.get(SOURCE_DEFAULT):
        parts.append(f"{sources[SOURCE_DEFAULT]} metric(s) assuming ±{d.get('halfwidth_95', 0):.0%} between runs "
                     f"(A/A default for {d.get('machine_class')}); use --db for this series' own noise")
    return "  noise between runs: " + ("; ".join(parts) if parts else "none needed (single values)")


def _name(v, width: int) -> str:
    text = terminal_safe(f"{v.benchmark} ({v.metric})", None)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def comparison_lines(c: Comparison, *, show_unchanged: bool = True, wide: bool = False) -> list[str]:
    """The verdict line, the sides and the noise assumed, a table of verdicts, the rules that were used."""
    b, k = c.baseline, c.candidate
    out = [verdict_line(c)]
    if c.reruns:
        out.append(f"  pooled re-runs: {c.reruns['baseline_runs']} baseline run(s), "
                   f"{c.reruns['candidate_runs']} candidate run(s)")
    out += [f"  baseline:  {shown_name(b['name'])}" + (f", commit {b['commit'][:12]}" if b.get("commit") else "")
            + f", on {shown_name(b.get('hardware_label'))}",
            f"  candidate: {shown_name(k['name'])}" + (f", commit {k['commit'][:12]}" if k.get("commit") else "")
            + f", on {shown_name(k.get('hardware_label'))}"]
    if c.cross_hardware and b.get("hardware") != k.get("hardware"):
        out.append("  different hardware (--cross-hardware): the changes include the machines' difference")
    if c.software_changed:
        out.append("  the software (driver, CUDA, torch, Python, OS) differs between the runs")
    s = c.settings
    out.append(f"  slower: worse by more than {s['threshold']:.1%} and beyond the noise (family-wise alpha "
               f"{s['alpha']:g}); same: a {s['threshold']:.1%} slowdown ruled out"
               + (f"; settings from {s['source']}" if s.get("source") else ""))
    out.append(noise_sentence(c))
    shift = common_shift_sentence(c)
    if shift:
        out.append("  " + shift)
    shown = [v for v in c.verdicts if show_unchanged or v.verdict != UNCHANGED]
    if shown:
        out.append("")
        out += wide_table(shown) if wide else narrow_table(shown)
    if c.only_in_baseline:
        out.append(f"only in the baseline ({len(c.only_in_baseline)}): " + ", ".join(map(shown_name, c.only_in_baseline)))
    if c.only_in_candidate:
        out.append(f"only in the candidate ({len(c.only_in_candidate)}): " + ", ".join(map(shown_name, c.only_in_candidate)))
    for v in shown if not wide else ():
        if v.verdict == UNRELIABLE and v.reason:
            out.append(f"unreliable: {_name(v, 60)}: {terminal_safe(v.reason, None)}")
    for rule in sorted({v.rule for v in c.verdicts if v.rule}):
        out.append(f"rule {rule!r}: {COMPARE_RULES[rule]}")
    return out


def _values(v) -> str:
    """'1 ms → 800 µs'; a rate's unit once: '31,984 → 39,996 samples/s'."""
    if v.unit == "samples/s" and v.baseline is not None and v.candidate is not None:
        return f"{v.baseline:,.0f} → {v.candidate:,.0f}/s"
    return f"{value(v.baseline, v.unit)} → {value(v.candidate, v.unit)}"


def _interval(v) -> str:
    return "—" if v.change_low is None else f"[{v.change_low:+.0%}, {v.change_high:+.0%}]"


def _verdict(v) -> str:
    return v.verdict.upper() if v.verdict == REGRESSION else v.verdict


def narrow_table(verdicts: Sequence) -> list[str]:
    """verdict, change, 95% interval, the two medians, and the name cut from the left to fit TABLE_WIDTH."""
    rows = [[_verdict(v), signed(v.change), _interval(v), _values(v)] for v in verdicts]
    header = ["verdict", "change", "95% interval", "baseline → candidate"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    room = max(20, TABLE_WIDTH - sum(widths) - 2 * len(widths))
    for r, v in zip(rows, verdicts):
        r.append(_name(v, room))
    return _table(rows, [*header, "benchmark (metric)"])


def wide_table(verdicts: Sequence) -> list[str]:
    """Every column, names whole (--wide)."""
    rows = [[_verdict(v), v.benchmark, v.metric, f"{value(v.baseline, v.unit)} → {value(v.candidate, v.unit)}",
             signed(v.change), _interval(v), "—" if v.p_value is None else f"{v.p_value:.2g}",
             "—" if v.between_runs is None else f"±{v.between_runs:.1%}", v.noise_source or "—",
             "—" if v.detectable is None else f"{v.detectable:.0%}", f"{v.baseline_runs}/{v.candidate_runs}",
             v.rule or "—", v.reason or ""] for v in verdicts]
    return _table(rows, ["verdict", "benchmark", "metric", "baseline → candidate", "change", "95% interval", "p",
                         "between runs (sd)", "noise from", "detectable", "runs", "rule", "why"])


def nothing_compared(c: Comparison) -> str:
    """The one-line error when the two runs share no benchmark (exit 2)."""
    if not c.only_in_candidate:
        return "nothing compared: the candidate has no benchmark results"
    return (f"nothing compared: the two runs have no benchmark in common ({len(c.only_in_baseline)} only in the "
            f"baseline, {len(c.only_in_candidate)} only in the candidate)")

