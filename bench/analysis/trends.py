"""Nightly trends from the history store: change points per benchmark (`history_changes`, behind
`bench history changes`) and compact per-benchmark trend summaries for a report (`trend_summaries`).

A night counts toward the trend only when its result is reliable (bench.analysis.compare's rule:
not throttled, its median's CI within the noise target, measured); the others are kept in the summaries
with their flags, and never become a change point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from bench.analysis.changepoints import DEFAULT_ALPHA, DEFAULT_MIN_CHANGE, detect_steps
from bench.analysis.compare import CompareSettings, unreliable_reason
from bench.history import query
from bench.history.sources import HIGHER, PRIMARY_METRICS
from bench.history.store import Store

TRENDS_FORMAT = "bench.trends"
TRENDS_VERSION = 1
# Per-night flags in the summaries (a bit mask; any bit set: the night is unreliable and left out of the trend).
FLAG_THROTTLED, FLAG_NOISY, FLAG_FAILED = 1, 2, 4
FLAGS = {FLAG_THROTTLED: "throttled", FLAG_NOISY: "noisier than the noise target", FLAG_FAILED: "failed or no value"}
SIGNIFICANT_DIGITS = 5


@dataclass
class ChangePoint:
    """A step in one benchmark's history on one machine: `at` is the datetime, as the source file wrote
    it, of the first run after the change; the commit range is (last commit before, first commit after]."""

    benchmark: str
    metric: str
    unit: str
    better: str
    hardware: str
    hardware_label: str
    at: str
    run_id: int
    last_before: str
    commit_before: str | None
    commit_after: str | None
    before: float
    after: float
    change: float
    kind: str            # "regression" or "improvement"
    p_value: float
    nights_before: int
    nights_after: int

    def to_dict(self) -> dict:
        return asdict(self)


def night_flags(r, noise_target: float) -> int:
    why = unreliable_reason(r, noise_target)
    if why is None:
        return 0
    if why.startswith("throttled"):
        return FLAG_THROTTLED
    if why.startswith("noisy"):
        return FLAG_NOISY
    return FLAG_FAILED


def _series_steps(s: query.Series, settings: CompareSettings, min_change: float, alpha: float):
    """(flags per night, steps as (index into the series, Step))."""
    _, noise = settings.for_benchmark(s.benchmark)
    flags = [night_flags(r, noise) for r in s.results]
    keep = [i for i, f in enumerate(flags) if f == 0]
    steps = detect_steps([s.results[i].median for i in keep], min_change=min_change, alpha=alpha) if keep else []
    return flags, keep, steps


def history_changes(store: Store, *, hardware: str | None = None, benchmark: str | None = None,
                    metrics: Sequence[str] | None = PRIMARY_METRICS, settings: CompareSettings | None = None,
                    min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA) -> list[ChangePoint]:
    """Every change point in every (machine, benchmark, metric) history, oldest first within each."""
    settings = settings or CompareSettings()
    out = []
    for s in query.series(store, hardware=hardware, benchmark=benchmark, metrics=metrics):
        _, keep, steps = _series_steps(s, settings, min_change, alpha)
        for st in steps:
            i, prev = keep[st.index], keep[st.index - 1]
            worse = st.change > 0 if s.better != HIGHER else st.change < 0
            out.append(ChangePoint(
                benchmark=s.benchmark, metric=s.metric, unit=s.unit, better=s.better, hardware=s.hardware_key,
                hardware_label=s.hardware_label, at=s.time_texts[i], run_id=s.run_ids[i],
                last_before=s.time_texts[prev], commit_before=s.commits[prev], commit_after=s.commits[i],
                before=st.before, after=st.after, change=st.change, kind="regression" if worse else "improvement",
                p_value=st.p_value, nights_before=st.n_before, nights_after=st.n_after))
    return out


def _sig(v: float | None) -> float | None:
    return None if v is None else float(f"{v:.{SIGNIFICANT_DIGITS}g}")


def trend_summaries(store: Store, *, hardware: str | None = None, benchmark: str | None = None,
                    metrics: Sequence[str] | None = PRIMARY_METRICS, settings: CompareSettings | None = None,
                    min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA) -> dict:
    """Per-benchmark trend summaries for a report: small enough to embed (no raw samples).

    {"format": "bench.trends", "version": 1, "flags": {bit: meaning},
     "machines": [{"key", "label", "runs": {"id": [...], "time": [as written], "commit": [index or null]},
                   "commits": [full ids]}],
     "benchmarks": [{"machine": index, "benchmark", "metric", "unit", "better",
                     "run": [indices into the machine's runs] or null (every run),
                     "median": [...], "low": [...], "high": [...]  (95% CI of each night's median; null if none),
                     "flags": [bit mask per night: 1 throttled, 2 noisy, 4 failed; 0 reliable],
                     "changes": [{"run": index, "before", "after", "change", "kind", "p_value",
                                  "commit_before", "commit_after"}]}]}
    Numbers carry 5 significant digits.
    """
    settings = settings or CompareSettings()
    all_series = query.series(store, hardware=hardware, benchmark=benchmark, metrics=metrics)
    machines: dict[str, dict] = {}
    run_index: dict[str, dict[int, int]] = {}
    commit_index: dict[str, dict[str, int]] = {}
    for s in all_series:  # each machine's runs, in time order, once
        m = machines.setdefault(s.hardware_key, {"key": s.hardware_key, "label": s.hardware_label,
                                                 "runs": {"id": [], "time": [], "commit": []}, "commits": [], "_t": {}})
        for rid, t, text, commit in zip(s.run_ids, s.times, s.time_texts, s.commits):
            m["_t"].setdefault(rid, (t, text, commit))
    for key, m in machines.items():
        ordered = sorted(m.pop("_t").items(), key=lambda kv: (kv[1][0], kv[0]))
        run_index[key], commit_index[key] = {}, {}
        for rid, (_, text, commit) in ordered:
            run_index[key][rid] = len(m["runs"]["id"])
            m["runs"]["id"].append(rid)
            m["runs"]["time"].append(text)
            if commit is not None and commit not in commit_index[key]:
                commit_index[key][commit] = len(m["commits"])
                m["commits"].append(commit)
            m["runs"]["commit"].append(commit_index[key].get(commit) if commit is not None else None)
    order = list(machines)
    benches = []
    for s in all_series:
        flags, keep, steps = _series_steps(s, settings, min_change, alpha)
        idx = [run_index[s.hardware_key][rid] for rid in s.run_ids]
        changes = []
        for st in steps:
            i, prev = keep[st.index], keep[st.index - 1]
            worse = st.change > 0 if s.better != HIGHER else st.change < 0
            changes.append({"run": idx[i], "before": _sig(st.before), "after": _sig(st.after),
                            "change": _sig(st.change), "kind": "regression" if worse else "improvement",
                            "p_value": _sig(st.p_value), "commit_before": s.commits[prev],
                            "commit_after": s.commits[i]})
        every = idx == list(range(len(machines[s.hardware_key]["runs"]["id"])))
        benches.append({
            "machine": order.index(s.hardware_key), "benchmark": s.benchmark, "metric": s.metric, "unit": s.unit,
            "better": s.better, "run": None if every else idx,
            "median": [_sig(r.median) for r in s.results], "low": [_sig(r.ci_low) for r in s.results],
            "high": [_sig(r.ci_high) for r in s.results], "flags": flags, "changes": changes})
    return {"format": TRENDS_FORMAT, "version": TRENDS_VERSION, "flags": {str(k): v for k, v in FLAGS.items()},
            "min_change": min_change, "alpha": alpha,
            "machines": list(machines.values()), "benchmarks": benches}
