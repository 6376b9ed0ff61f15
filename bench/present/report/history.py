"""The nightly-trends section of the report: each benchmark's median over pytest-benchmark runs per
machine, with regressions (bench.analysis.regression's rule) and environment changes marked, and a
statement of which numbers these are (the library's step times where recorded)."""

from __future__ import annotations

from collections import OrderedDict

import bench.present.fmt as fmt
from bench.analysis.regression import (
    REGRESSION_RULE,
    SOURCE_LIBRARY,
    SOURCE_PYTEST,
    BenchmarkHistory,
    RunStats,
)
from bench.core.vocabulary import TIMER_CUDA_EVENT, TIMER_HOST
from bench.present.report.common import TIMER_WORDS, cell, markup
from bench.present.report.figures import trends as F

TIMER_SHORT = {TIMER_CUDA_EVENT: "CUDA events", TIMER_HOST: "host clock"}


def timed_by(run: RunStats) -> str:
    """'bench · CUDA events', 'pytest-benchmark rounds': whose numbers a run's are, in a table cell."""
    if run.source == SOURCE_LIBRARY:
        return f"bench · {TIMER_SHORT.get(run.timer, run.timer or '?')}"
    return "pytest-benchmark rounds"


def numbers_sentences(histories: list[BenchmarkHistory]) -> list[str]:
    """Which numbers the trends and the regression rule use: the library's step times from extra_info,
    pytest-benchmark's round statistics for runs without it, and what happens where the two meet."""
    runs = [r for h in histories for r in h.runs]
    lib = [r for r in runs if r.source == SOURCE_LIBRARY]
    out = []
    if lib:
        clocks = fmt.and_list([TIMER_WORDS.get(t, t) for t in sorted({r.timer for r in lib if r.timer})]) \
            or "the library's timer"
        out.append("Medians and interquartile ranges are the library's step times: the raw per-step samples that "
                   f"bench recorded in each benchmark's extra_info (timed with {clocks}; warm-up discarded), not "
                   "pytest-benchmark's host-clock round statistics.")
    why = "(a test not measured through bench's suite helpers)"
    if not lib:
        out.append(f"No benchmark run here carries bench's extra_info {why}: the medians and interquartile ranges "
                   "are pytest-benchmark's round statistics, timed with the host clock.")
    elif len(lib) < len(runs):
        out.append(f"{len(runs) - len(lib)} of the {len(runs)} benchmark runs carry no bench extra_info {why}: for "
                   "those the numbers are pytest-benchmark's round statistics, timed with the host clock.")
    if any(r.source != q.source or r.timer != q.timer for h in histories for q, r in zip(h.runs, h.runs[1:])):
        out.append("A run timed differently from the run before it is marked as an environment change and not "
                   "compared with it.")
    return out


def _env_cell(h: BenchmarkHistory) -> dict:
    """When the software last changed between two runs, and what changed (in the tooltip)."""
    if not h.environment_changes:
        return cell(None, "")
    i = max(h.environment_changes)
    when = h.runs[i].time
    latest = i == len(h.runs) - 1
    return cell(when.strftime("%Y-%m-%d %H:%M") + (" (latest run)" if latest else ""), when.isoformat(),
                title=f"environment changed: {h.environment_changes[i]}", cls="warn" if latest else None)


def history_context(histories: list[BenchmarkHistory], n_runs: int) -> dict | None:
    """Trends per benchmark, with every regression listed; None unless some benchmark has 2+ runs."""
    multi = [h for h in histories if len(h.runs) >= 2]
    if not multi:
        return None
    machines = {h.machine for h in multi}
    by_name: OrderedDict[str, list[BenchmarkHistory]] = OrderedDict()
    for h in multi:
        by_name.setdefault(h.fullname, []).append(h)
    entries, any_decimated = [], False
    rows, regressions = [], []
    for name, hs in by_name.items():
        series = [F.TrendSeries(h.machine, [r.time for r in h.runs], [r.median_s for r in h.runs],
                                [r.q1_s for r in h.runs], [r.q3_s for r in h.runs], list(h.regressions),
                                sorted(h.environment_changes)) for h in hs]
        sources = {r.source for h in hs for r in h.runs}
        y_label = {frozenset({SOURCE_LIBRARY}): "step time", frozenset({SOURCE_PYTEST}): "time per call"}.get(
            frozenset(sources), "step time or time per call")
        svg, decimated = F.trend_figure(name, series, y_label=y_label)
        any_decimated |= decimated
        entries.append({"name": name, "svg": markup(svg), "open": any(h.latest_regressed for h in hs),
                        "n_regressions": sum(len(h.regressions) for h in hs)})
        for h in hs:
            last, prev = h.runs[-1], h.runs[-2]
            change = last.median_s / prev.median_s - 1 if prev.median_s > 0 else None
            rows.append([
                cell(name, name),
                *([cell(h.machine, h.machine)] if len(machines) > 1 else []),
                cell(len(h.runs), len(h.runs)),
                cell(fmt.duration(last.median_s), last.median_s),
                cell(timed_by(last), timed_by(last), title=TIMER_WORDS.get(last.timer)),
                cell(f"{change:+.1%}" if change is not None else None, change,
                     cls="warn" if h.latest_regressed else None),
                cell(len(h.regressions), len(h.regressions), cls="warn" if h.regressions else None),
                cell(h.runs[h.regressions[-1]].time.strftime("%Y-%m-%d %H:%M") if h.regressions else None,
                     h.runs[h.regressions[-1]].time.isoformat() if h.regressions else ""),
                _env_cell(h),
            ])
            for i in h.regressions:
                cur, pr = h.runs[i], h.runs[i - 1]
                env = h.environment_changes.get(i)
                regressions.append({"name": name, "machine": h.machine if len(machines) > 1 else None, "time": cur.time, "latest": i == len(h.runs) - 1,
                                    "text": f"{fmt.duration(pr.median_s)} → {fmt.duration(cur.median_s)} "
                                            f"({cur.median_s / pr.median_s - 1:+.0%}; IQR {fmt.duration(pr.q1_s)}–"
                                            f"{fmt.duration(pr.q3_s)} → {fmt.duration(cur.q1_s)}–{fmt.duration(cur.q3_s)})"
                                            + (f"; environment changed: {env}" if env else "")})
    regressions.sort(key=lambda r: r["time"], reverse=True)
    cols = ["benchmark", *(["machine"] if len(machines) > 1 else []), "runs", "latest median", "timed by", "vs previous run",
            "regressions", "last regression", "last environment change"]
    times = [r.time for h in multi for r in h.runs]
    latest = [r for r in regressions if r["latest"]]
    return {
        "rule": REGRESSION_RULE,
        "numbers": numbers_sentences(multi),
        "n_runs": n_runs,
        "n_benchmarks": len(by_name),
        "first": min(times), "last": max(times),
        "entries": entries,
        "table": {"columns": cols, "rows": rows},
        "regressions": [{**r, "time": r["time"].strftime("%Y-%m-%d %H:%M")} for r in regressions[:200]],
        "n_regressions": len(regressions),
        "latest_regressions": len(latest),
        "decimated": any_decimated,
        "max_points": F.MAX_TREND_POINTS,
    }
