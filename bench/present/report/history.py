"""The nightly-trends section of the report: each benchmark's median over pytest-benchmark runs per
machine, with regressions (bench.analysis.regression's rule) and environment changes marked."""

from __future__ import annotations

from collections import OrderedDict

import bench.present.fmt as fmt
from bench.analysis.regression import REGRESSION_RULE, BenchmarkHistory
from bench.present.report.common import cell, markup
from bench.present.report.figures import trends as F

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
        svg, decimated = F.trend_figure(name, series)
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
    cols = ["benchmark", *(["machine"] if len(machines) > 1 else []), "runs", "latest median", "vs previous run",
            "regressions", "last regression", "last environment change"]
    times = [r.time for h in multi for r in h.runs]
    latest = [r for r in regressions if r["latest"]]
    return {
        "rule": REGRESSION_RULE,
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
