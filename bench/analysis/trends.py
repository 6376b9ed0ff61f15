"""Nightly trends from the history store: change points per benchmark (`history_changes`, behind
`bench history changes`) and compact per-benchmark trend summaries for a report (`trend_summaries`).

Every night with a value enters its series' trend, whatever it carries: raw samples, a median with
quartiles, or only a mean with its standard deviation and rounds (github-action-benchmark, pytest-benchmark
files saved without data). None is dropped for being noisy: a night weighs less the wider its own
uncertainty is against its series' usual noise (bench.analysis.changepoints), and each step is judged
against the series' own night-to-night noise. Throttled and failed nights are left out, with their flags.

Then, per machine and per series:
- excursions: a step whose level returns within EXCURSION_RUNS runs is one "excursion" with its runs,
  not a regression followed by an improvement;
- machine-wide events: when at least MACHINE_SHARE of a machine's series (and MACHINE_MIN_SERIES) step the
  same way (worse, or better) within MACHINE_WITHIN runs of one run, and that many would be unlikely by
  chance at the machine's own rate of steps (binomial, MACHINE_ALPHA), they are one event of scope "machine" with the
  number of series, the median change and the benchmarks; a series that moved otherwise stays on its own;
- a step that does not hold (the medians of the HOLD_RUNS runs before and after it differ by less than
  the smallest change reported) is not reported;
- status: a step or event with fewer than CONFIRM_RUNS runs after it is "provisional" (later runs could
  still turn it into an excursion), else "confirmed".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy import stats as sps

from bench.analysis.changepoints import DEFAULT_ALPHA, DEFAULT_MIN_CHANGE, detect_steps
from bench.analysis.compare import (
    CompareSettings,
    relative_halfwidth,
    unreliable_reason,
)
from bench.core.numbers import is_number
from bench.history import query
from bench.history.sources import HIGHER, PRIMARY_METRICS
from bench.history.store import Store

TRENDS_FORMAT = "bench.trends"
TRENDS_VERSION = 2
# Per-night flags in the summaries (a bit mask). Throttled and failed nights are left out of the change
# points; a noisy night stays in, weighed by its own noise.
FLAG_THROTTLED, FLAG_NOISY, FLAG_FAILED = 1, 2, 4
FLAGS = {FLAG_THROTTLED: "throttled", FLAG_NOISY: "noisier than the noise target (weighed less)",
         FLAG_FAILED: "failed or no value"}
LEFT_OUT = FLAG_THROTTLED | FLAG_FAILED
SIGNIFICANT_DIGITS = 5
Z95 = 1.959963984540054

EXCURSION_RUNS = 10        # a level that returns within this many runs is an excursion
HOLD_RUNS = 20             # a step must still hold over this many runs on either side
CONFIRM_RUNS = 10          # runs after a change before it is "confirmed"
MACHINE_SHARE = 0.2        # share of a machine's series stepping the same way at one run: a machine-wide event...
MACHINE_MIN_SERIES = 3
MACHINE_ALPHA = 1e-4       # ...when so many steps so close together would be that unlikely at the series' own rate
MACHINE_WITHIN = 2         # runs: steps this close to each other count as the same run

SCOPE_BENCHMARK, SCOPE_MACHINE = "benchmark", "machine"
CONFIRMED, PROVISIONAL = "confirmed", "provisional"
REGRESSION, IMPROVEMENT, EXCURSION = "regression", "improvement", "excursion"


@dataclass
class ChangePoint:
    """A step in one benchmark's history on one machine (scope "benchmark"), or one event shared by many
    series of a machine (scope "machine": `benchmarks`, `count` of `series`, `change` their median change,
    `before`/`after` null as the series' levels differ). `at` is the datetime, as the source file wrote it,
    of the first run after the change; the commit range is (last commit before, first commit after].
    An excursion's `change` is its level against the level before, `after` the level it returned to,
    and `runs` the datetimes of its runs."""

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
    before: float | None
    after: float | None
    change: float
    kind: str            # "regression", "improvement" or "excursion"
    p_value: float
    nights_before: int
    nights_after: int
    scope: str = SCOPE_BENCHMARK
    status: str = CONFIRMED
    benchmarks: list[str] | None = None      # machine events: the series in it
    count: int | None = None                 # machine events: how many series stepped together
    series: int | None = None                # machine events: how many series the machine has at that run
    runs: list[str] | None = None            # excursions: the runs the level was away
    worse: bool = False                      # a regression (or an excursion the worse way)
    machine_run: int | None = field(default=None, repr=False)  # index into the machine's runs

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("machine_run")
        for k in ("benchmarks", "count", "series", "runs"):
            if d[k] is None:
                d.pop(k)
        return d


def night_flags(r, noise_target: float) -> int:
    """FLAG_FAILED (no usable value), FLAG_THROTTLED, FLAG_NOISY (its CI wider than the noise target: kept
    in the trend, weighed by its noise), else 0."""
    if night_value(r) is None:
        return FLAG_FAILED
    why = unreliable_reason(r if is_number(r.median) else replace(r, median=night_value(r)), noise_target)
    if why is None:
        return 0
    if why.startswith("throttled"):
        return FLAG_THROTTLED
    return FLAG_NOISY if why.startswith("noisy") else 0


def night_value(r) -> float | None:
    """The night's value: its median, else its mean (summary-only files carry only a mean); None if neither."""
    if r.status != "ok":
        return None
    for v in (r.median, r.mean):
        if is_number(v) and v > 0:
            return float(v)
    return None


def night_rel_se(r) -> float | None:
    """The night's own relative standard error (from its CI, its quartiles or its standard deviation
    and rounds, bench.analysis.compare.relative_halfwidth), or None when it carries no spread."""
    v = night_value(r)
    if v is None:
        return None
    q = r if is_number(r.median) and r.median > 0 else replace(r, median=v)
    hw = relative_halfwidth(q)
    if hw is None and is_number(r.stddev) and r.stddev > 0:
        hw = Z95 * r.stddev / v  # a mean with a spread but no rounds: one round's spread, the widest it can be
    return None if hw is None else hw / Z95


@dataclass
class _SeriesSteps:
    series: query.Series
    flags: list[int]
    keep: list[int]                 # indices of the nights in the trend
    changes: list[ChangePoint]


def _series_steps(s: query.Series, settings: CompareSettings, min_change: float, alpha: float) -> _SeriesSteps:
    _, noise = settings.for_benchmark(s.benchmark)
    flags = [night_flags(r, noise) for r in s.results]
    keep = [i for i, f in enumerate(flags) if not f & LEFT_OUT]
    values = [night_value(s.results[i]) for i in keep]
    steps = detect_steps(values, min_change=min_change, alpha=alpha,
                         rel_se=[night_rel_se(s.results[i]) for i in keep]) if keep else []
    out = []
    for st in steps:
        i, prev = keep[st.index], keep[st.index - 1]
        worse = st.change > 0 if s.better != HIGHER else st.change < 0
        out.append(ChangePoint(
            benchmark=s.benchmark, metric=s.metric, unit=s.unit, better=s.better, hardware=s.hardware_key,
            hardware_label=s.hardware_label, at=s.time_texts[i], run_id=s.run_ids[i],
            last_before=s.time_texts[prev], commit_before=s.commits[prev], commit_after=s.commits[i],
            before=st.before, after=st.after, change=st.change, kind=REGRESSION if worse else IMPROVEMENT,
            p_value=st.p_value, nights_before=st.n_before, nights_after=st.n_after, worse=worse))
    merged = _excursions(s, keep, out, min_change)
    return _SeriesSteps(s, flags, keep, _lasting(s, keep, values, merged, min_change))


def _lasting(s: query.Series, keep: list[int], values: list[float], changes: list[ChangePoint],
             min_change: float) -> list[ChangePoint]:
    """Drop a step that does not hold: the medians of the HOLD_RUNS trended nights before and after it
    differ by less than `min_change`, or the other way (the level came back after more than EXCURSION_RUNS
    runs, or the step sits among others). Excursions and steps too near an end to tell are kept."""
    position = {s.run_ids[k]: j for j, k in enumerate(keep)}
    out = []
    for c in changes:
        j = position[c.run_id]
        before, after = values[max(0, j - HOLD_RUNS):j], values[j:j + HOLD_RUNS]
        if c.kind != EXCURSION and len(before) >= HOLD_RUNS // 2 and len(after) >= HOLD_RUNS // 2:
            held = float(np.median(after)) / float(np.median(before)) - 1.0
            if held * c.change <= 0 or abs(held) < min_change:
                continue
        out.append(c)
    return out


def _excursions(s: query.Series, keep: list[int], steps: list[ChangePoint], min_change: float) -> list[ChangePoint]:
    """Merge a step and the opposite step within EXCURSION_RUNS runs that brings the level back (within
    `min_change` of the level before) into one excursion."""
    out: list[ChangePoint] = []
    j = 0
    while j < len(steps):
        a = steps[j]
        b = steps[j + 1] if j + 1 < len(steps) else None
        if (b is not None and a.nights_after <= EXCURSION_RUNS and a.worse != b.worse
                and abs(b.after / a.before - 1.0) < max(min_change, abs(a.change) / 3.0)):
            ia = s.run_ids.index(a.run_id)
            ib = s.run_ids.index(b.run_id)
            away = [s.time_texts[k] for k in keep if ia <= k < ib]
            out.append(replace(a, kind=EXCURSION, after=b.after, change=a.change, p_value=max(a.p_value, b.p_value),
                               nights_after=b.nights_after, runs=away))
            j += 2
        else:
            out.append(a)
            j += 1
    return out


def machine_runs(all_series: Sequence[query.Series]) -> dict[str, list[int]]:
    """Each machine's run ids in time order."""
    seen: dict[str, dict[int, tuple]] = defaultdict(dict)
    for s in all_series:
        for rid, t in zip(s.run_ids, s.times):
            seen[s.hardware_key].setdefault(rid, (t, rid))
    return {k: [rid for rid, _ in sorted(v.items(), key=lambda kv: kv[1])] for k, v in seen.items()}


def _machine_events(per_series: list[_SeriesSteps], runs: dict[str, list[int]]) -> list[ChangePoint]:
    """Replace the steps many series of one machine share (same run, same way) by one machine event each."""
    out: list[ChangePoint] = []
    by_machine: dict[str, list[_SeriesSteps]] = defaultdict(list)
    for ss in per_series:
        by_machine[ss.series.hardware_key].append(ss)
    for key, group in by_machine.items():
        position = {rid: i for i, rid in enumerate(runs[key])}
        n_runs = len(runs[key])
        # how many series have a trended night at each machine run (the denominator of "a share of series")
        present = np.zeros(n_runs + 1, dtype=int)
        for ss in group:
            for k in ss.keep:
                present[position[ss.series.run_ids[k]]] += 1
        changes = []
        for ss in group:
            for c in ss.changes:
                changes.append(replace(c, machine_run=position[c.run_id]))
        # How likely a series steps within the window around one run by chance: each machine's own rate of steps
        rate = min(1.0, (2 * MACHINE_WITHIN + 1) * len(changes) / max(1, sum(len(ss.keep) for ss in group)))
        used: set[int] = set()
        events = []
        while True:
            best = None
            for way in {(c.kind, c.worse) for c in changes}:
                free = [i for i, c in enumerate(changes) if i not in used and (c.kind, c.worse) == way]
                for center in {changes[i].machine_run for i in free}:
                    by_series: dict = {}
                    for i in sorted(free, key=lambda i: abs(changes[i].machine_run - center)):
                        if abs(changes[i].machine_run - center) <= MACHINE_WITHIN:
                            by_series.setdefault((changes[i].benchmark, changes[i].metric), i)
                    if best is None or len(by_series) > len(best[0]):
                        best = (list(by_series.values()), center)
            if best is None or len(best[0]) < MACHINE_MIN_SERIES:
                break
            members, center = best
            n_series = int(present[max(0, center - MACHINE_WITHIN):center + MACHINE_WITHIN + 1].max())
            p = float(sps.binom.sf(len(members) - 1, max(n_series, len(members)), rate))
            if len(members) < MACHINE_SHARE * n_series or p >= MACHINE_ALPHA:
                break
            used.update(members)
            events.append((members, n_series, p))
        for c_i, c in enumerate(changes):
            if c_i not in used:
                out.append(c)
        for members, n_series, p in events:
            ms = [changes[i] for i in members]
            at_run = int(np.median([c.machine_run for c in ms]))
            lead = min(ms, key=lambda c: abs(c.machine_run - at_run))
            metrics = {c.metric for c in ms}
            units = {c.unit for c in ms}
            out.append(replace(
                lead, benchmark=f"{len(ms)} of {n_series} series", metric=metrics.pop() if len(metrics) == 1 else "mixed",
                unit=units.pop() if len(units) == 1 else "mixed", before=None, after=None,
                change=float(np.median([c.change for c in ms])), p_value=p, scope=SCOPE_MACHINE,
                benchmarks=sorted(c.benchmark for c in ms), count=len(ms), series=n_series,
                nights_before=min(c.nights_before for c in ms), nights_after=min(c.nights_after for c in ms),
                machine_run=at_run, runs=lead.runs))
    return out


def analyse(all_series: Sequence[query.Series], settings: CompareSettings | None = None, *,
            min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA) -> tuple[list[_SeriesSteps], list[ChangePoint]]:
    """(per series: flags, trended nights and its own changes; every change and machine event, with status)."""
    settings = settings or CompareSettings()
    per_series = [_series_steps(s, settings, min_change, alpha) for s in all_series]
    runs = machine_runs(all_series)
    changes = _machine_events(per_series, runs)
    for c in changes:
        after_runs = len(runs[c.hardware]) - c.machine_run
        c.status = PROVISIONAL if after_runs < CONFIRM_RUNS else CONFIRMED
    changes.sort(key=lambda c: (c.hardware, c.machine_run, c.scope != SCOPE_MACHINE, c.benchmark))
    return per_series, changes


def history_changes(store: Store, *, hardware: str | None = None, benchmark: str | None = None,
                    metrics: Sequence[str] | None = PRIMARY_METRICS, settings: CompareSettings | None = None,
                    min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA) -> list[ChangePoint]:
    """Every change point, excursion and machine-wide event in every machine's histories, in time order."""
    return _analysed(store, hardware, benchmark, metrics, settings, min_change, alpha)[2]


def _analysed(store: Store, hardware, benchmark, metrics, settings, min_change, alpha):
    """(series, per-series steps, changes), judged over every series of the machines, then cut to the
    benchmarks whose name contains `benchmark`: whether a step is machine-wide depends on the machine's
    other series, shown or not. A machine event is kept when one of its series is shown."""
    all_series = query.series(store, hardware=hardware, metrics=metrics)
    per_series, changes = analyse(all_series, settings, min_change=min_change, alpha=alpha)
    if not benchmark:
        return all_series, per_series, changes
    shown = [ss for ss in per_series if benchmark in ss.series.benchmark]
    changes = [c for c in changes if any(benchmark in b for b in (c.benchmarks or [c.benchmark]))]
    return [ss.series for ss in shown], shown, changes


def _sig(v: float | None) -> float | None:
    return None if v is None else float(f"{v:.{SIGNIFICANT_DIGITS}g}")


def trend_summaries(store: Store, *, hardware: str | None = None, benchmark: str | None = None,
                    metrics: Sequence[str] | None = PRIMARY_METRICS, settings: CompareSettings | None = None,
                    min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA) -> dict:
    """Per-benchmark trend summaries for a report: small enough to embed (no raw samples).

    {"format": "bench.trends", "version": 2, "flags": {bit: meaning},
     "machines": [{"key", "label", "runs": {"id": [...], "time": [as written], "commit": [index or null]},
                   "commits": [full ids]}],
     "benchmarks": [{"machine": index, "benchmark", "metric", "unit", "better",
                     "run": [indices into the machine's runs] or null (every run),
                     "median": [...]  (the night's median, else its mean for summary-only nights),
                     "low": [...], "high": [...]  (95% CI of each night's median; null if none),
                     "flags": [bit mask per night: 1 throttled, 4 failed (both left out), 2 noisy (weighed less)],
                     "changes": [{"run": index, "before", "after", "change", "kind", "status", "p_value",
                                  "commit_before", "commit_after", "runs": [indices] (excursions)}],
                     "events": [indices into machine_events this series is part of]}],
     "machine_events": [{"machine": index, "run": index, "change" (median), "kind", "status", "count",
                         "series", "benchmarks", "p_value", "commit_before", "commit_after"}]}
    Numbers carry 5 significant digits.
    """
    all_series, per_series, changes = _analysed(store, hardware, benchmark, metrics, settings, min_change, alpha)
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
    order = {k: i for i, k in enumerate(machines)}
    events, member_of = [], defaultdict(list)
    for c in changes:
        if c.scope != SCOPE_MACHINE or c.run_id not in run_index.get(c.hardware, {}):
            continue
        for b in c.benchmarks or []:
            member_of[(c.hardware, b, c.metric)].append(len(events))
        events.append({"machine": order[c.hardware], "run": run_index[c.hardware][c.run_id], "change": _sig(c.change),
                       "kind": c.kind, "status": c.status, "count": c.count, "series": c.series,
                       "benchmarks": c.benchmarks, "p_value": _sig(c.p_value), "commit_before": c.commit_before,
                       "commit_after": c.commit_after})
    own = defaultdict(list)
    for c in changes:
        if c.scope == SCOPE_BENCHMARK:
            own[(c.hardware, c.benchmark, c.metric)].append(c)
    time_index = {}
    benches = []
    for ss in per_series:
        s = ss.series
        key = (s.hardware_key, s.benchmark, s.metric)
        idx = [run_index[s.hardware_key][rid] for rid in s.run_ids]
        time_index = dict(zip(s.time_texts, idx))
        out_changes = []
        for c in own[key]:
            d = {"run": run_index[s.hardware_key][c.run_id], "before": _sig(c.before), "after": _sig(c.after),
                 "change": _sig(c.change), "kind": c.kind, "status": c.status, "p_value": _sig(c.p_value),
                 "commit_before": c.commit_before, "commit_after": c.commit_after}
            if c.runs:
                d["runs"] = [time_index[t] for t in c.runs if t in time_index]
            out_changes.append(d)
        every = idx == list(range(len(machines[s.hardware_key]["runs"]["id"])))
        benches.append({
            "machine": order[s.hardware_key], "benchmark": s.benchmark, "metric": s.metric, "unit": s.unit,
            "better": s.better, "run": None if every else idx,
            "median": [_sig(night_value(r)) for r in s.results], "low": [_sig(r.ci_low) for r in s.results],
            "high": [_sig(r.ci_high) for r in s.results], "flags": ss.flags, "changes": out_changes,
            "events": member_of.get(key, [])})
    return {"format": TRENDS_FORMAT, "version": TRENDS_VERSION, "flags": {str(k): v for k, v in FLAGS.items()},
            "min_change": min_change, "alpha": alpha,
            "machines": list(machines.values()), "benchmarks": benches, "machine_events": events}
