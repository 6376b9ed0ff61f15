"""Reading the store back: runs, one run's results with raw samples, earlier runs on a machine, series.

Plain records out, no judgement: which result is reliable, what changed and whether it regressed are
decided in bench.analysis (compare, changepoints, trends).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import func, select, update

from bench.core.errors import BenchError
from bench.history.schema import results, runs
from bench.history.sources import ResultRecord
from bench.history.store import Store, samples_from_bytes

VERDICTS = ("ok", "regressed", "inconclusive")  # what `bench compare --record` stores; only ok is a good baseline


@dataclass
class RunInfo:
    id: int
    kind: str
    path: str
    content_hash: str
    time: datetime
    time_text: str
    commit: str | None
    dirty: bool | None
    hardware_key: str
    hardware_label: str
    fingerprint_hash: str | None
    software_hash: str | None
    verdict: str | None
    ingested_at: datetime
    n_results: int = 0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "path": self.path, "content_hash": self.content_hash,
                "time": self.time_text, "time_utc": self.time.isoformat(), "commit": self.commit, "dirty": self.dirty,
                "hardware": self.hardware_key, "hardware_label": self.hardware_label,
                "fingerprint_hash": self.fingerprint_hash, "software_hash": self.software_hash,
                "verdict": self.verdict, "ingested_at": self.ingested_at.isoformat(), "results": self.n_results}


_RUN_COLUMNS = (runs.c.id, runs.c.kind, runs.c.path, runs.c.content_hash, runs.c.run_time, runs.c.time_text,
                runs.c.commit_id, runs.c.dirty, runs.c.hardware_key, runs.c.hardware_label, runs.c.fingerprint_hash,
                runs.c.software_hash, runs.c.verdict, runs.c.ingested_at)


def _run(row, n_results: int = 0, fingerprint: str | None = None) -> RunInfo:
    return RunInfo(*row[:14], n_results=n_results, fingerprint=json.loads(fingerprint) if fingerprint else {})


def list_runs(store: Store, *, hardware: str | None = None) -> list[RunInfo]:
    """Every run (optionally on one machine), oldest first, with its number of results."""
    counts = (select(results.c.run_id, func.count().label("n")).group_by(results.c.run_id).subquery())
    q = (select(*_RUN_COLUMNS, func.coalesce(counts.c.n, 0)).select_from(runs.outerjoin(counts, counts.c.run_id == runs.c.id))
         .order_by(runs.c.run_time, runs.c.id))
    if hardware:
        q = q.where(runs.c.hardware_key == hardware)
    with store.read() as conn:
        return [_run(r, r[14]) for r in conn.execute(q)]


def get_run(store: Store, run_id: int) -> RunInfo:
    with store.read() as conn:
        row = conn.execute(select(*_RUN_COLUMNS, runs.c.fingerprint).where(runs.c.id == run_id)).first()
    if row is None:
        raise BenchError(f"no run {run_id} in the history store {store.where} (bench history list shows them)")
    return _run(row, fingerprint=row[14])


def run_fingerprints(store: Store, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored fingerprint of each run (by id), in one query per 500 runs."""
    ids = list(run_ids)
    out: dict[int, dict[str, Any]] = {}
    with store.read() as conn:
        for i in range(0, len(ids), 500):
            for rid, fp in conn.execute(select(runs.c.id, runs.c.fingerprint).where(runs.c.id.in_(ids[i:i + 500]))):
                out[rid] = json.loads(fp) if fp else {}
    return out


def run_by_content_hash(store: Store, content_hash: str) -> RunInfo | None:
    with store.read() as conn:
        row = conn.execute(select(*_RUN_COLUMNS, runs.c.fingerprint).where(runs.c.content_hash == content_hash)).first()
    return None if row is None else _run(row, fingerprint=row[14])


def earlier_runs(store: Store, hardware_key: str, *, before: datetime | None, exclude: Iterable[int] = (),
                 limit: int | None = None, skip_regressed: bool = False) -> list[RunInfo]:
    """Runs on one machine before `before` (all, if None), newest first."""
    q = select(*_RUN_COLUMNS).where(runs.c.hardware_key == hardware_key)
    if before is not None:
        q = q.where(runs.c.run_time < before)
    ex = list(exclude)
    if ex:
        q = q.where(runs.c.id.not_in(ex))
    if skip_regressed:
        q = q.where((runs.c.verdict.is_(None)) | (runs.c.verdict == "ok"))
    q = q.order_by(runs.c.run_time.desc(), runs.c.id.desc())
    if limit:
        q = q.limit(limit)
    with store.read() as conn:
        return [_run(r) for r in conn.execute(q)]


def run_results(store: Store, run_ids: int | Sequence[int], *, samples: bool = True) -> list[ResultRecord]:
    """The results of one or more runs (raw samples decoded unless `samples=False`)."""
    ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
    cols = [results.c.benchmark, results.c.metric, results.c.status, results.c.error, results.c.timer, results.c.n,
            results.c.median, results.c.ci_low, results.c.ci_high, results.c.q1, results.c.q3, results.c.mean,
            results.c.stddev, results.c.ci_rel_halfwidth, results.c.noise_target, results.c.throttled,
            results.c.throttled_fraction, results.c.batch_size, results.c.warnings, results.c.run_id]
    if samples:
        cols.append(results.c.samples)
    with store.read() as conn:
        rows = conn.execute(select(*cols).where(results.c.run_id.in_(ids)).order_by(results.c.run_id, results.c.id)).all()
    out = []
    for r in rows:
        out.append(ResultRecord(
            benchmark=r.benchmark, metric=r.metric, status=r.status, error=r.error, timer=r.timer, n=r.n,
            median=r.median, ci_low=r.ci_low, ci_high=r.ci_high, q1=r.q1, q3=r.q3, mean=r.mean, stddev=r.stddev,
            ci_rel_halfwidth=r.ci_rel_halfwidth, noise_target=r.noise_target, throttled=r.throttled,
            throttled_fraction=r.throttled_fraction, batch_size=r.batch_size,
            warnings=json.loads(r.warnings) if r.warnings else [],
            samples=samples_from_bytes(r.samples) if samples else None))
    return out


def set_verdict(store: Store, run_id: int, verdict: str) -> None:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    with store.write() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(verdict=verdict))


@dataclass
class Series:
    """One benchmark's metric on one machine, run by run in time order (summaries only, no samples: the
    median with its CI and quartiles, the mean with its standard deviation, the rounds, the flags)."""

    hardware_key: str
    hardware_label: str
    benchmark: str
    metric: str
    unit: str
    better: str
    run_ids: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    time_texts: list[str] = field(default_factory=list)
    commits: list[str | None] = field(default_factory=list)
    results: list[ResultRecord] = field(default_factory=list)


def series(store: Store, *, hardware: str | None = None, benchmark: str | None = None,
           metrics: Sequence[str] | None = None) -> list[Series]:
    """Every (machine, benchmark, metric) series, runs in time order; filters: exact machine key,
    a benchmark name containing `benchmark`, metric names."""
    q = (select(runs.c.hardware_key, runs.c.hardware_label, results.c.benchmark, results.c.metric, results.c.unit,
                results.c.better, runs.c.id, runs.c.run_time, runs.c.time_text, runs.c.commit_id, results.c.status,
                results.c.n, results.c.median, results.c.ci_low, results.c.ci_high, results.c.q1, results.c.q3,
                results.c.mean, results.c.stddev, results.c.ci_rel_halfwidth, results.c.noise_target, results.c.throttled,
                results.c.throttled_fraction, results.c.timer)
         .select_from(results.join(runs, runs.c.id == results.c.run_id))
         .order_by(runs.c.hardware_key, results.c.benchmark, results.c.metric, runs.c.run_time, runs.c.id))
    if hardware:
        q = q.where(runs.c.hardware_key == hardware)
    if benchmark:
        q = q.where(results.c.benchmark.contains(benchmark, autoescape=True))
    if metrics:
        q = q.where(results.c.metric.in_(list(metrics)))
    out: list[Series] = []
    cur: Series | None = None
    with store.read() as conn:
        for r in conn.execute(q):
            key = (r.hardware_key, r.benchmark, r.metric)
            if cur is None or (cur.hardware_key, cur.benchmark, cur.metric) != key:
                cur = Series(r.hardware_key, r.hardware_label, r.benchmark, r.metric, r.unit, r.better)
                out.append(cur)
            cur.run_ids.append(r.id)
            cur.times.append(r.run_time)
            cur.time_texts.append(r.time_text)
            cur.commits.append(r.commit_id)
            cur.results.append(ResultRecord(
                benchmark=r.benchmark, metric=r.metric, status=r.status, timer=r.timer, n=r.n, median=r.median,
                ci_low=r.ci_low, ci_high=r.ci_high, q1=r.q1, q3=r.q3, mean=r.mean, stddev=r.stddev,
                ci_rel_halfwidth=r.ci_rel_halfwidth,
                noise_target=r.noise_target, throttled=r.throttled, throttled_fraction=r.throttled_fraction))
    return out
