"""The nightly-trends section of the report, from the history store's trend summaries (a store given with
`bench report --db`, or the pytest-benchmark files given, read into a temporary store): each benchmark's
nightly median with its 95% CI, the change points (bench.analysis.changepoints) with their commit ranges,
unreliable nights (throttled, noisy, failed) marked apart and left out of the trend, and what
`bench compare` says of each machine's latest night. The page states each rule it uses."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

import bench.present.fmt as fmt
from bench.analysis.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    REGRESSION,
    UNCHANGED,
    UNRELIABLE,
)
from bench.analysis.diagnosis import THROTTLE_MIN_FRACTION
from bench.history.sources import STEP_TIME, TIME, TIME_TO_TARGET
from bench.present.nightly import common_shift_sentence, signed, value
from bench.present.report.common import cell, markup
from bench.present.report.figures import trends as F
from bench.present.report.store_history import SOURCE_FILES, NightlyHistory

# What each primary metric is, as an axis label and in the "which numbers" line.
METRIC_LABELS = {STEP_TIME: "step time", TIME: "time per call", TIME_TO_TARGET: "time to target"}
METRIC_WORDS = {
    STEP_TIME: "step times are bench's own per-step samples from each benchmark's extra_info (CUDA events on a "
               "GPU, the host clock on a CPU; warm-up discarded)",
    TIME: "times per call are pytest-benchmark's round times (host clock), for tests without bench's extra_info",
    TIME_TO_TARGET: "times to target are bench tta studies' steps × step time",
}
MAX_LISTED_CHANGES = 200
# Figures of benchmarks whose newest change point is this recent (in nights of its machine) start open.
RECENT_NIGHTS = 14


def rules(h: NightlyHistory) -> list[tuple[str, str]]:
    """(name, sentence) for each rule the section uses: change points, unreliable nights, the latest night."""
    t, s = h.trends, h.settings
    noise = s.noise_target if s.noise_target is not None else s.threshold / 2
    per_bench = " (per-benchmark settings in [tool.bench.compare] apply)" if s.overrides else ""
    return [
        ("Change points", "Where a benchmark's level stepped, found by bench history changes over its nights on "
                          "one machine: PELT (ruptures) on the log of the nightly medians (a summary-only night's "
                          "mean), scaled by the series' own night-to-night noise, one-night outliers damped and a "
                          "night noisier than the series usually is weighed less; a step is kept "
                          f"only if it moves the median by at least {t['min_change']:.0%} and a Mann–Whitney test "
                          f"separates the nights on either side (p < {t['alpha']:g}). A step is placed only once at "
                          "least 3 reliable nights follow it (more when the history before it is short), so the "
                          "newest nights are judged by the latest-night comparison below instead. A level that returns within a "
                          "few runs is one excursion; a step shared by many series of a machine at one run is one "
                          "machine-wide event (drawn once, dash-dotted); a change with few runs after it is "
                          "provisional (drawn faint). Each step is drawn as a "
                          "vertical line (red: regression, green: improvement) with the level between change "
                          "points dashed."),
        ("Unreliable nights", "A night is left out of the trend and can never be a change point when it was "
                              f"throttled (clocks held down in at least {THROTTLE_MIN_FRACTION:.0%} of its samples; "
                              "drawn ▽) or failed or gave no value (✕ along the bottom). A night noisier than the "
                              f"noise target (its median's 95% CI wider than ±{noise:.1%}{per_bench}; drawn ○) "
                              "stays in the change points, weighed by its noise."),
        ("Latest night", "Each machine's newest run, compared by bench compare with the machine's last good night "
                         "(the newest earlier run not recorded as regressed by bench compare --record; the rule of "
                         f"--against last-good): a change counts when it exceeds {s.threshold:.0%}{per_bench} and "
                         "is significant on the raw samples (Mann–Whitney U and a bootstrap interval of the "
                         f"median ratio, alpha {s.alpha:g}); an unreliable run is never a regression. "
                         "Where bench compare --record stored a verdict on the run, the page shows it too."),
    ]


def numbers_sentence(metrics: set[str]) -> str:
    words = [METRIC_WORDS[m] for m in (STEP_TIME, TIME, TIME_TO_TARGET) if m in metrics]
    return (fmt.and_list(words)[0].upper() + fmt.and_list(words)[1:] + ".") if words else ""


def source_sentence(h: NightlyHistory) -> str:
    if h.source == SOURCE_FILES:
        return (f"From the {h.where} given, read into a temporary history store so that the same rules serve "
                "files and stores (bench history ingest keeps them in a store for good).")
    return f"From the history store {h.where}."


def _time(run) -> datetime:
    return run.time  # UTC, naive: the order the store keeps


def _when(run) -> str:
    return run.time.strftime("%Y-%m-%d %H:%M")


def _commit_range(c: dict) -> str:
    before, after = (c.get("commit_before") or "?")[:10], (c.get("commit_after") or "?")[:10]
    return f"commits {before}..{after}"


def _verdict_cell(v) -> dict:
    if v is None:
        return cell(None, "", title="not in the latest night, or the machine's first night")
    word = night_state(v.reason) if v.verdict == UNRELIABLE else v.verdict  # named as it is: noisy, too few samples…
    text = word if v.change is None else f"{word} {signed(v.change)}"
    title = None
    if v.change_low is not None:
        title = f"95% interval {signed(v.change_low)} to {signed(v.change_high)}; rule: {v.rule}"
    if v.reason:
        title = v.reason
    return cell(text, {REGRESSION: 0, UNRELIABLE: 1, IMPROVEMENT: 2, UNCHANGED: 3}.get(v.verdict, 1), title=title,
                cls="warn" if v.verdict == REGRESSION else None)


def latest_context(h: NightlyHistory) -> list[dict]:
    """Per machine: its newest run, the recorded verdict, and bench compare's verdicts against the last good night."""
    out = []
    for n in h.latest:
        m = h.trends["machines"][n.machine]
        item: dict[str, Any] = {"machine": m["label"], "run": n.run.id, "time": n.run.time_text,
                                "commit": (n.run.commit or "")[:12], "recorded": n.run.verdict, "why_none": n.why_none,
                                "counts": None, "items": [], "baseline": None, "software_changed": False, "unreliable_states": [],
                                "shift": None}
        if n.comparison is not None:
            c = n.comparison
            item["baseline"] = f"run {n.baseline.id} ({n.baseline.time_text}" + (
                f", commit {n.baseline.commit[:12]})" if n.baseline.commit else ")")
            item["counts"] = {k: c.count(k) for k in (REGRESSION, IMPROVEMENT, INCONCLUSIVE, UNRELIABLE, UNCHANGED)}
            states = [night_state(v.reason) for v in c.verdicts if v.verdict == UNRELIABLE]
            item["unreliable_states"] = [f"{states.count(w)} {w}" for w in dict.fromkeys(states)]
            item["software_changed"] = bool(c.software_changed)
            shift = common_shift_sentence(c)
            item["shift"] = shift[0].upper() + shift[1:] if shift else None
            for v in c.verdicts:
                if v.verdict == UNCHANGED:
                    continue
                text = f"{value(v.baseline, v.unit)} → {value(v.candidate, v.unit)}"
                if v.change is not None:
                    text += f" ({signed(v.change)}"
                    text += f", 95% interval {signed(v.change_low)} to {signed(v.change_high)})" \
                        if v.change_low is not None else ")"
                if v.verdict == UNRELIABLE and v.reason:
                    text += f": {v.reason}"
                item["items"].append({"verdict": v.verdict, "name": v.benchmark, "metric": v.metric, "text": text,
                                      "reason": v.reason,
                                      "state": night_state(v.reason) if v.verdict == UNRELIABLE else v.verdict})
        out.append(item)
    return out


def history_context(h: NightlyHistory | None) -> dict | None:
    """The section's context: rules, the latest night per machine, every change point (newest first), a
    table and a figure per benchmark."""
    if h is None or not h.trends["benchmarks"]:
        return None
    t = h.trends
    machines = t["machines"]
    multi_machine = len(machines) > 1
    metrics = {b["metric"] for b in t["benchmarks"]}
    names_metrics: dict[str, set[str]] = {}
    for b in t["benchmarks"]:
        names_metrics.setdefault(b["benchmark"], set()).add(b["metric"])
    latest_by_machine = {n.machine: n for n in h.latest}
    verdicts = {i: n.verdicts() for i, n in latest_by_machine.items()}

    groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for b in t["benchmarks"]:
        groups.setdefault((b["benchmark"], b["metric"]), []).append(b)

    rows, changes, entries = [], [], []
    marks: set[str] = set()
    any_decimated = False
    n_unreliable = 0
    for (name, metric), bs in groups.items():
        title = name if len(names_metrics[name]) == 1 else f"{name} ({metric})"
        series, sort_key, open_, n_changes = [], (3, 0.0), False, 0
        for b in bs:
            mi = b["machine"]
            runs = h.runs[mi]
            idx = b["run"] if b["run"] is not None else list(range(len(runs)))
            pos = {r: p for p, r in enumerate(idx)}
            v = verdicts.get(mi, {}).get((name, metric))
            is_latest = bool(idx) and latest_by_machine.get(mi) is not None and \
                runs[idx[-1]].id == latest_by_machine[mi].run.id
            series.append(F.TrendSeries(
                machines[mi]["label"], [_time(runs[i]) for i in idx], b["median"], b["low"], b["high"], b["flags"],
                [(pos[c["run"]], c["before"], c["after"], c["kind"], c.get("status")) for c in b["changes"]
                 if c["run"] in pos],
                [pos[i] for i in sorted(h.environment_changes[mi]) if i in pos],
                v.verdict if v is not None and is_latest else None,
                machine_events=[pos[t["machine_events"][e]["run"]] for e in b.get("events", [])
                                if t["machine_events"][e]["run"] in pos]))
            flags = b["flags"]
            counts = {bit: sum(1 for f in flags if f and F.mark_kind(f) == bit) for bit in (1, 2, 4)}
            # A night flagged as having no usable spread but with a value did not fail: too few samples.
            counts[0] = sum(1 for f, m in zip(flags, b["median"]) if f and F.mark_kind(f) == 4 and m is not None)
            counts[4] -= counts[0]
            n_unreliable += sum(1 for f in flags if f)
            reliable = sum(1 for f in flags if f == 0)
            last_ok = next((p for p in range(len(flags) - 1, -1, -1) if flags[p] == 0 and b["median"][p] is not None),
                           None)
            last_change = b["changes"][-1] if b["changes"] else None
            n_changes += len(b["changes"])
            if v is not None and v.verdict == REGRESSION:
                sort_key, open_ = min(sort_key, (0, 0.0)), True
            if last_change:
                when = _time(runs[last_change["run"]])
                k = 1 if last_change["kind"] == "regression" else 2
                sort_key = min(sort_key, (k, -when.timestamp()))
                if last_change["kind"] == "regression" and len(runs) - last_change["run"] <= RECENT_NIGHTS:
                    open_ = True
            unit = b["unit"]
            med = b["median"][last_ok] if last_ok is not None else None
            ci = ""
            if last_ok is not None and b["low"][last_ok] is not None and b["high"][last_ok] is not None:
                ci = f" ({value(b['low'][last_ok], unit)}–{value(b['high'][last_ok], unit)})"
            rows.append([
                cell(name, name),
                *([cell(machines[mi]["label"], machines[mi]["label"])] if multi_machine else []),
                *([cell(metric, metric)] if len(metrics) > 1 else []),
                cell(f"{reliable} of {len(flags)}", reliable, title="reliable nights of all nights"),
                cell(None if med is None else value(med, unit) + ci, med,
                     title=None if last_ok is None else f"night of {runs[idx[last_ok]].time_text}"),
                _verdict_cell(v if is_latest else None),
                cell(len(b["changes"]), len(b["changes"]), cls="warn" if last_change and
                     last_change["kind"] == "regression" else None),
                cell(None if not last_change else f"{signed(last_change['change'])} since {_when(runs[last_change['run']])}",
                     "" if not last_change else runs[last_change["run"]].time.isoformat(),
                     title=None if not last_change else _commit_range(last_change)),
                cell(", ".join(f"{counts[bit]} {word}" for bit, word in ((1, "throttled"), (2, "noisy"),
                                                                        (0, "too few samples"), (4, "failed"))
                               if counts[bit]) or None, sum(counts.values())),
            ])
            for c in b["changes"]:
                run = runs[c["run"]]
                changes.append({
                    "time": run.time, "when": run.time_text, "name": title,
                    "machine": machines[mi]["label"] if multi_machine else None, "kind": c["kind"],
                    "status": c.get("status"),
                    "text": f"{value(c['before'], unit)} → {value(c['after'], unit)} ({signed(c['change'])}, "
                            f"p = {c['p_value']:.2g}); {_commit_range(c)}",
                })
        y_label = METRIC_LABELS.get(metric, metric)
        svg, decimated = F.trend_figure(title, series, unit=bs[0]["unit"], y_label=y_label, marks=marks)
        any_decimated |= decimated
        entries.append({"name": title, "svg": markup(svg), "open": open_, "n_changes": n_changes,
                        "latest": next((s.latest_verdict for s in series if s.latest_verdict in (REGRESSION, IMPROVEMENT)),
                                       None), "_key": (sort_key, title)})
    entries.sort(key=lambda e: e.pop("_key"))
    changes.sort(key=lambda c: c["time"], reverse=True)
    cols = ["benchmark", *(["machine"] if multi_machine else []), *(["metric"] if len(metrics) > 1 else []),
            "reliable nights", "latest reliable median (95% CI)", "latest night vs last good", "change points",
            "last change point", "unreliable nights"]
    latest = latest_context(h)
    all_runs = [r for rs in h.runs for r in rs]
    n_nights = max((len(rs) for rs in h.runs), default=0)
    n_regressions = sum(1 for c in changes if c["kind"] == "regression")
    return {
        "headline": headline(len(groups), len(machines), n_nights, all_runs, latest, changes, n_regressions,
                             window=_nights_note(h) is not None, hidden=h.hidden_changes),
        "rules": rules(h),
        "numbers": numbers_sentence(metrics),
        "source": source_sentence(h),
        "nights_note": _nights_note(h),
        "window": _nights_note(h) is not None,
        "hidden_changes": h.hidden_changes,
        "n_benchmarks": len(groups),
        "n_machines": len(machines),
        "n_nights": n_nights,
        "n_unreliable": n_unreliable,
        "first": min(r.time for r in all_runs).strftime("%Y-%m-%d"),
        "last": max(r.time for r in all_runs).strftime("%Y-%m-%d"),
        "latest": latest,
        "latest_regressions": sum((i["counts"] or {}).get(REGRESSION, 0) for i in latest),
        "latest_improvements": sum((i["counts"] or {}).get(IMPROVEMENT, 0) for i in latest),
        "latest_unreliable": sum((i["counts"] or {}).get(UNRELIABLE, 0) for i in latest),
        "recorded_regressed": [i["machine"] for i in latest if i["recorded"] == "regressed"],
        "changes": [{k: v for k, v in c.items() if k != "time"} for c in changes[:MAX_LISTED_CHANGES]],
        "n_changes": len(changes),
        "n_change_regressions": sum(1 for c in changes if c["kind"] == "regression"),
        "newest_change": ({k: v for k, v in changes[0].items() if k != "time"} if changes else None),
        "table": {"columns": cols, "rows": rows},
        "entries": entries,
        "key": markup(F.trend_key(marks)),
        "decimated": any_decimated,
        "max_points": F.MAX_TREND_POINTS,
        "left_out": h.left_out,
    }


# A night's state as bench compare gives it, by the reason it was unreliable: named as it is, never all "failed".
STATE_WORDS = (("throttled", "throttled"), ("noisy", "noisy"), ("fewer than 2 samples", "too few samples"),
               ("no spread", "too few samples"))


def night_state(reason: str | None) -> str:
    """'noisy', 'throttled', 'too few samples' or 'failed' (an error, out of memory or no value)."""
    low = (reason or "").lower()
    return next((word for key, word in STATE_WORDS if key in low), "failed")


def latest_states(latest: list[dict]) -> list[str]:
    """The latest nights' verdicts counted by what they are: '1 regressed', '2 noisy', '1 too few samples'."""
    counts: dict[str, int] = {}
    for m in latest:
        for v in m["items"]:
            word = night_state(v["reason"]) if v["verdict"] == UNRELIABLE else \
                {REGRESSION: "regressed", IMPROVEMENT: "improved"}.get(v["verdict"], v["verdict"])
            counts[word] = counts.get(word, 0) + 1
    return [f"{n} {word}" for word, n in counts.items()]


def headline(n_benchmarks: int, n_machines: int, n_nights: int, runs, latest: list[dict], changes: list[dict],
             n_regressions: int, *, window: bool = False, hidden: int = 0) -> list[str]:
    """The nightly card's lines: what the history holds, the latest night's verdicts by state, the change points."""
    where = f" on {n_machines} machines" if n_machines > 1 else ""
    first, last = min(r.time for r in runs).strftime("%Y-%m-%d"), max(r.time for r in runs).strftime("%Y-%m-%d")
    lines = [f"{fmt.plural(n_benchmarks, 'benchmark')}{where} over {fmt.plural(n_nights, 'night')} ({first} to {last})."]
    compared = [m for m in latest if m["counts"] is not None]
    if compared:
        states = latest_states(compared)
        if not any(st.endswith(" regressed") for st in states):
            states.insert(0, "none regressed")
        lines.append("Latest night against the last good one (bench compare): " + ", ".join(states) + ".")
    else:
        lines.append("Latest night: not compared (" + "; ".join(m["why_none"] or "no baseline" for m in latest) + ").")
    provisional = sum(1 for c in changes if c.get("status") == "provisional")
    lines.append(f"{fmt.plural(len(changes), 'change point')} in {'the nights shown' if window else 'the history'} "
                 f"({n_regressions} regression{'s' if n_regressions != 1 else ''}"
                 + (f", {provisional} provisional" if provisional else "") + (f"; {hidden} earlier" if hidden else "")
                 + ")"
                 + (f"; the newest: {changes[0]['name']}, {changes[0]['kind']} from {changes[0]['when']}." if changes
                    else "."))
    return lines


def _nights_note(h: NightlyHistory) -> str | None:
    if h.nights is None or all(n <= h.nights for n in h.total_runs):
        return None
    hidden = (f" {fmt.plural(h.hidden_changes, 'change point')} in the earlier nights "
              "are not shown." if h.hidden_changes else "")
    return (f"Each machine's last {h.nights} nights are shown (of up to {max(h.total_runs):,}); the change points "
            f"were found over the whole history.{hidden}")
