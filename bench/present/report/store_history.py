"""Where the report's nightly trends come from: the history store (`bench report --db`), or the
pytest-benchmark files given, read into a temporary store so that one set of rules serves both.

What is gathered here, for bench.present.report.history to put on the page:
- the store's trend summaries (bench.analysis.trends.trend_summaries: per night the median with its
  95% CI and the unreliable-night flags, and the change points with their commit ranges), optionally
  cut to each machine's last N nights after the change points were found over the whole history;
- each machine's runs as stored (time, commit, the verdict `bench compare --record` left on them);
- the latest night on each machine compared with its last good night (bench.analysis.compare, the
  rule behind `bench compare --against last-good`);
- the runs whose software differs from the run before them on the same machine.

No raw samples leave this module: the page embeds the summaries.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from bench.analysis.calibrate import between_runs_from_store
from bench.analysis.compare import CompareSettings, Comparison, compare, side_from_run
from bench.analysis.regression import environment_change
from bench.analysis.trends import trend_summaries
from bench.core.errors import BenchError
from bench.history import query
from bench.history.identity import software_identity
from bench.history.sources import PRIMARY_METRICS, run_record
from bench.history.store import Store, open_store
from bench.records.loader import ResultsFile

SOURCE_STORE = "store"
SOURCE_FILES = "files"


@dataclass
class LatestNight:
    """A machine's newest run, and what `bench compare` says of it against the machine's last good night."""

    machine: int                       # index into trends["machines"]
    run: query.RunInfo
    baseline: query.RunInfo | None
    comparison: Comparison | None
    why_none: str | None = None        # why there is no comparison (e.g. the machine's first night)

    def verdicts(self) -> dict[tuple[str, str], Any]:
        """(benchmark, metric) -> BenchmarkVerdict."""
        return {(v.benchmark, v.metric): v for v in (self.comparison.verdicts if self.comparison else [])}

    def to_dict(self) -> dict:
        return {"machine": self.machine, "run": self.run.id, "time": self.run.time_text, "commit": self.run.commit,
                "recorded_verdict": self.run.verdict,
                "baseline": None if self.baseline is None else {"run": self.baseline.id, "time": self.baseline.time_text,
                                                                "commit": self.baseline.commit},
                "comparison": None if self.comparison is None else {
                    "settings": self.comparison.settings, "software_changed": self.comparison.software_changed,
                    "verdicts": [{k: v for k, v in vd.to_dict().items() if v is not None}
                                 for vd in self.comparison.verdicts]},
                "why_none": self.why_none}


@dataclass
class NightlyHistory:
    """Everything the nightly-trends section shows, read from one store."""

    source: str                                   # SOURCE_STORE or SOURCE_FILES
    where: str                                    # the store (password hidden), or what the files were
    trends: dict                                  # trend_summaries(), possibly cut to the last `nights`
    runs: list[list[query.RunInfo]]               # per machine (as in trends["machines"]), aligned with its runs
    latest: list[LatestNight]
    environment_changes: list[dict[int, str]]     # per machine: run index -> what software changed
    settings: CompareSettings
    nights: int | None = None                     # each machine's last N nights shown (None: all)
    hidden_changes: int = 0                       # change points older than the nights shown
    total_runs: list[int] = field(default_factory=list)  # per machine, before the cut
    content_hashes: set[str] = field(default_factory=set)  # of every run in the store
    left_out: list[tuple[str, str]] = field(default_factory=list)  # files not in the trends, and why
    fingerprints: list[dict] = field(default_factory=list)  # per machine, its latest night's fingerprint as stored

    def payload(self) -> dict:
        """What the page embeds: the summaries, each run's recorded verdict, the latest-night verdicts."""
        return {"source": self.source, "where": self.where, "nights": self.nights,
                "trends": self.trends,
                "recorded_verdicts": [[r.verdict for r in rs] for rs in self.runs],
                "latest": [n.to_dict() for n in self.latest],
                "environment_changes": [{str(i): t for i, t in ch.items()} for ch in self.environment_changes],
                "left_out": [{"path": p, "reason": r} for p, r in self.left_out]}


def _cut(trends: dict, runs: list[list[query.RunInfo]], nights: int) -> tuple[dict, list[list[query.RunInfo]], int]:
    """The summaries of each machine's last `nights` runs (change points and machine-wide events found over
    the whole history stay where they were; older ones are dropped and counted)."""
    starts = []
    machines = []
    for m, rs in zip(trends["machines"], runs):
        k = len(m["runs"]["id"])
        start = max(0, k - nights)
        starts.append(start)
        machines.append({**m, "runs": {key: vals[start:] for key, vals in m["runs"].items()}})
    hidden = 0
    # machine-wide events: shifted like the runs; older ones dropped and counted, the series' references renumbered
    events, renumber = [], {}
    for e_i, e in enumerate(trends.get("machine_events", [])):
        start = starts[e["machine"]]
        if e["run"] >= start:
            renumber[e_i] = len(events)
            events.append({**e, "run": e["run"] - start})
        else:
            hidden += 1
    benches = []
    for b in trends["benchmarks"]:
        start = starts[b["machine"]]
        k = len(trends["machines"][b["machine"]]["runs"]["id"])
        idx = b["run"] if b["run"] is not None else list(range(k))
        keep = [p for p, i in enumerate(idx) if i >= start]
        new_idx = [idx[p] - start for p in keep]
        changes = [{**c, "run": c["run"] - start, **({"runs": [r - start for r in c["runs"] if r >= start]}
                                                     if "runs" in c else {})}
                   for c in b["changes"] if c["run"] >= start]
        hidden += len(b["changes"]) - len(changes)
        every = new_idx == list(range(k - start))
        benches.append({**b, "run": None if every else new_idx,
                        **{key: [b[key][p] for p in keep] for key in ("median", "low", "high", "flags")},
                        "changes": changes, "events": [renumber[e] for e in b.get("events", []) if e in renumber]})
    out_runs = [rs[s:] for rs, s in zip(runs, starts)]
    return {**trends, "machines": machines, "benchmarks": benches, "machine_events": events}, out_runs, hidden


def _software(fp: dict) -> dict:
    return software_identity(fp, fp.get("pytest_benchmark_machine_info") if isinstance(fp, dict) else None)[1]


def _environment_changes(store: Store, runs: Sequence[query.RunInfo]) -> dict[int, str]:
    """Run index -> what software changed from the run before it on the same machine."""
    if len(runs) < 2:
        return {}
    fps = query.run_fingerprints(store, [r.id for r in runs])
    out: dict[int, str] = {}
    prev = _software(fps.get(runs[0].id, {}))
    for i in range(1, len(runs)):
        cur = _software(fps.get(runs[i].id, {}))
        change = environment_change(prev, cur)
        if change:
            out[i] = change
        prev = cur
    return out


def _only(side, metrics: set[str]):
    return replace(side, results={k: v for k, v in side.results.items() if k[1] in metrics})


def _latest_night(store: Store, machine: int, runs: Sequence[query.RunInfo], settings: CompareSettings,
                  metrics: set[str]) -> LatestNight:
    last = runs[-1]
    found = query.earlier_runs(store, last.hardware_key, before=last.time, exclude=[last.id], limit=1,
                               skip_regressed=True)
    if not found:
        return LatestNight(machine, last, None, None, "the machine's first night in the history: nothing to compare with")
    base = found[0]
    # judged against each series' own night-to-night noise, as `bench compare --against last-good` does
    noise = between_runs_from_store(store, last.hardware_key, before=last.time, exclude=[last.id],
                                    metrics=sorted(metrics))
    comparison = compare(_only(side_from_run(store, base.id), metrics), _only(side_from_run(store, last.id), metrics),
                         settings, history=noise)
    return LatestNight(machine, last, base, comparison)


def history_from_store(store: Store, *, settings: CompareSettings | None = None, nights: int | None = None,
                       source: str = SOURCE_STORE, where: str | None = None) -> NightlyHistory:
    """The nightly history in `store`: summaries of every benchmark's primary metric on every machine
    (none when the store holds no benchmark results), the latest night's verdicts, software changes."""
    if nights is not None and nights < 1:
        raise BenchError(f"the number of nights to show must be at least 1, got {nights}")
    settings = settings or CompareSettings()
    trends = trend_summaries(store, metrics=PRIMARY_METRICS, settings=settings)
    all_runs = query.list_runs(store)
    if not trends["benchmarks"]:
        return NightlyHistory(source=source, where=where or store.where, trends=trends, runs=[], latest=[],
                              environment_changes=[], settings=settings, nights=nights,
                              content_hashes={r.content_hash for r in all_runs})
    by_id = {r.id: r for r in all_runs}
    runs = [[by_id[i] for i in m["runs"]["id"]] for m in trends["machines"]]
    metrics = {b["metric"] for b in trends["benchmarks"]}
    latest = [_latest_night(store, i, rs, settings, metrics) for i, rs in enumerate(runs) if rs]
    total = [len(rs) for rs in runs]
    hidden = 0
    if nights is not None:
        trends, runs, hidden = _cut(trends, runs, nights)
    env = [_environment_changes(store, rs) for rs in runs]
    fps = query.run_fingerprints(store, [rs[-1].id for rs in runs if rs])
    return NightlyHistory(source=source, where=where or store.where, trends=trends, runs=runs, latest=latest,
                          environment_changes=env, settings=settings, nights=nights, hidden_changes=hidden,
                          total_runs=total, content_hashes={r.content_hash for r in all_runs},
                          fingerprints=[fps.get(rs[-1].id, {}) if rs else {} for rs in runs])


def history_from_db(db: str | os.PathLike | None, *, settings: CompareSettings | None = None,
                    nights: int | None = None) -> NightlyHistory:
    """`history_from_store` for the store at `db` (a path or URL; None: $BENCH_DB, else reports/history.sqlite)."""
    with open_store(db) as store:
        return history_from_store(store, settings=settings, nights=nights)


def history_from_files(files: Sequence[ResultsFile], *, settings: CompareSettings | None = None,
                       nights: int | None = None) -> NightlyHistory | None:
    """The history of results files already read by the loader (the report's pytest-benchmark inputs),
    put into a temporary store: the same summaries, change points and verdicts as a store's. Files the
    store cannot take are left out and listed (`left_out`)."""
    records, left_out = [], []
    for f in files:
        try:
            records.append(run_record(f))
        except BenchError as e:
            left_out.append((str(f.path), str(e).removeprefix(f"{f.path}: ")))
    if not records:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        with open_store(Path(tmp) / "history.sqlite", create=True) as store:
            store.ingest_records(records)
            h = history_from_store(store, settings=settings, nights=nights, source=SOURCE_FILES,
                                   where=f"{len(records)} pytest-benchmark file{'s' if len(records) != 1 else ''}")
    if h is not None:
        h.left_out = left_out
    return h
