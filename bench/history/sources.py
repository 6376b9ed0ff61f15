"""Results files -> the records the history store keeps: one run per file, one result per benchmark and metric.

`read_results_file(path)` is the one adapter between the file formats and the store: pytest-benchmark
JSON (ours, with the library's device-timed samples in `extra_info`, and any other suite's, with its
host-clock round times or only its summary statistics), `bench.sweep` files and `bench.tta` studies,
each recognised and checked by the one loader (bench.records.loader); nothing else reads files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import InvalidResultsFile
from bench.core.numbers import as_number
from bench.core.stats import SampleStats, summarize
from bench.core.vocabulary import STATUS_OK, STATUSES
from bench.history.identity import hardware_identity, software_identity
from bench.records.loader import KIND_PYTEST as LOADER_PYTEST
from bench.records.loader import KIND_SWEEP as LOADER_SWEEP
from bench.records.loader import KIND_TTA as LOADER_TTA
from bench.records.loader import ResultsFile, load
from bench.records.suite import EXTRA_INFO_SCHEMA, FAILED_CASES_KEY
from bench.records.sweep import SWEEP_SCHEMA, Measurement, SweepResult
from bench.records.tta import TTA_SCHEMA

KIND_PYTEST = "pytest-benchmark"
KIND_SWEEP = SWEEP_SCHEMA
KIND_TTA = TTA_SCHEMA
KINDS = (KIND_PYTEST, KIND_SWEEP, KIND_TTA)

LOWER, HIGHER = "lower", "higher"
# Metric names, their unit and which way is better.
STEP_TIME = "step_time"          # our library's step time (CUDA events on a GPU), seconds
TIME = "time"                    # another suite's pytest-benchmark round time, seconds
THROUGHPUT = "throughput"        # batch size / step time, samples per second
RATE = "rate"                    # another tool's operations per second (github-action-benchmark's ops/sec)
PEAK_MEMORY = "peak_allocated_bytes"
LARGEST_BATCH = "largest_batch"
TIME_TO_TARGET = "time_to_target"
STEPS_TO_TARGET = "steps_to_target"
METRICS = {
    STEP_TIME: ("s", LOWER), TIME: ("s", LOWER), THROUGHPUT: ("samples/s", HIGHER), RATE: ("1/s", HIGHER),
    PEAK_MEMORY: ("bytes", LOWER), LARGEST_BATCH: ("samples", HIGHER),
    TIME_TO_TARGET: ("s", LOWER), STEPS_TO_TARGET: ("steps", LOWER),
}
# The metric a benchmark's trend is drawn from (the others follow from it or are single numbers).
PRIMARY_METRICS = (STEP_TIME, TIME, TIME_TO_TARGET, RATE)


@dataclass
class ResultRecord:
    """One benchmark's one metric in one run: raw samples where the file has them, their summary, and
    the flags that make a result unreliable (throttled clocks, a CI wider than the run's own target)."""

    benchmark: str
    metric: str
    status: str = STATUS_OK
    error: str | None = None
    timer: str | None = None
    samples: list[float] | None = None
    n: int | None = None
    median: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    q1: float | None = None
    q3: float | None = None
    mean: float | None = None
    stddev: float | None = None
    ci_rel_halfwidth: float | None = None
    noise_target: float | None = None       # the CI half-width the run itself aimed for
    throttled: bool | None = None
    throttled_fraction: float | None = None
    batch_size: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return METRICS[self.metric][0]

    @property
    def better(self) -> str:
        return METRICS[self.metric][1]


@dataclass
class RunRecord:
    """One results file: when and where it ran, on which commit, and its results."""

    kind: str
    path: str
    content_hash: str
    size_bytes: int
    time: datetime                  # UTC, naive (what the store keeps and orders by)
    time_text: str                  # the datetime as the source file wrote it (else the file's mtime, ISO)
    commit: str | None
    dirty: bool | None
    hardware_key: str
    hardware_label: str
    fingerprint_hash: str | None
    software_hash: str | None
    fingerprint: dict[str, Any]
    results: list[ResultRecord] = field(default_factory=list)


def content_hash(data: Any) -> str:
    """sha256 of the canonical JSON of a parsed file: the same results stored twice are one run."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_results_file(path: str | os.PathLike) -> RunRecord:
    """The adapter: a results file -> RunRecord, or InvalidResultsFile with one line naming the file.

    Files are recognised and checked by the one loader (bench.records.loader); curves files hold no
    benchmark and are refused here."""
    p = Path(path)
    return run_record(load(p, kinds=(LOADER_SWEEP, LOADER_TTA, LOADER_PYTEST)))


def run_record(rf: ResultsFile) -> RunRecord:
    """`read_results_file` for a file the loader has already read (e.g. the report's inputs): its
    parsed data and typed record -> RunRecord; InvalidResultsFile for a curves file or a bad benchmark."""
    p = Path(rf.path)
    if rf.kind not in (LOADER_SWEEP, LOADER_TTA, LOADER_PYTEST):
        raise InvalidResultsFile(f"{p}: a {rf.kind} file holds no benchmark results for the history store")
    data = rf.data
    try:
        size = p.stat().st_size
    except OSError:
        size = 0
    if rf.kind == LOADER_SWEEP:
        return _with_results(p, data, size, KIND_SWEEP, data.get("created"), rf.record.environment, {},
                             _sweep_results(rf.record))
    if rf.kind == LOADER_TTA:
        return _with_results(p, data, size, KIND_TTA, data.get("created"), rf.record.environment, {},
                             _tta_results(p, data))
    machine = data.get("machine_info") or {}
    fp = machine.get("bench_fingerprint") if isinstance(machine.get("bench_fingerprint"), dict) else {}
    run = _with_results(p, data, size, KIND_PYTEST, data.get("datetime"), fp, machine, _pytest_results(p, data))
    commit = data.get("commit_info") if isinstance(data.get("commit_info"), dict) else {}
    run.commit = _text(commit.get("id")) or run.commit
    run.dirty = commit.get("dirty") if isinstance(commit.get("dirty"), bool) else run.dirty
    return run


# --------------------------------------------------------------------------- shared


def _with_results(p: Path, data: Any, size: int, kind: str, when: Any, fp: dict, machine_info: dict,
                  results: list[ResultRecord]) -> RunRecord:
    time, text = _run_time(when, p)
    key, label = hardware_identity(fp, machine_info)
    soft_hash, _ = software_identity(fp, machine_info)
    fp_hash = fp.get("hash") if isinstance(fp, dict) else None
    return RunRecord(kind=kind, path=str(p), content_hash=content_hash(data), size_bytes=size, time=time,
                     time_text=text, commit=_text(fp.get("git_commit")), dirty=fp.get("git_dirty")
                     if isinstance(fp.get("git_dirty"), bool) else None, hardware_key=key, hardware_label=label,
                     fingerprint_hash=_text(fp_hash), software_hash=soft_hash,
                     fingerprint=dict(fp) if fp else {"pytest_benchmark_machine_info": machine_info},
                     results=results)


def _run_time(text: Any, path: Path) -> tuple[datetime, str]:
    """(UTC naive datetime, the text as written) of a run; the file's modification time if it has none."""
    if isinstance(text, str) and text.strip():
        try:
            t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidResultsFile(f"{path}: its datetime {text!r} is not an ISO 8601 time") from None
        t = t.astimezone(timezone.utc) if t.tzinfo else t
        return t.replace(tzinfo=None), text
    try:
        t = datetime.fromtimestamp(os.path.getmtime(path), tz=timezone.utc)
    except OSError:
        raise InvalidResultsFile(f"{path}: it says no datetime, and its modification time cannot be read") from None
    return t.replace(tzinfo=None), t.isoformat()


def _text(v: Any) -> str | None:
    return str(v) if v not in (None, "") else None


def _quartiles(x: list[float]) -> tuple[float, float]:
    """The first and third quartiles of sorted `x`, interpolated as numpy's percentile does by default
    (its call costs more than the arithmetic for the few samples of a night)."""
    out = []
    for q in (0.25, 0.75):
        h = (len(x) - 1) * q
        lo = int(h)
        hi = min(lo + 1, len(x) - 1)
        out.append(float(x[lo] + (x[hi] - x[lo]) * (h - lo)))
    return out[0], out[1]


def from_samples(r: ResultRecord, samples: list[float], block_medians: list[float] | None = None,
                 stats: dict | None = None) -> ResultRecord:
    """Fill `r` from raw samples: their median with its 95% CI (bench.core.stats.summarize, or `stats`,
    the summary the library wrote beside the same samples), quartiles, mean and spread."""
    x = [float(v) for v in samples if v is not None and math.isfinite(v)]
    if not x:
        return r
    written = isinstance(stats, dict) and stats.get("n") == len(x) and as_number(stats.get("median_s")) is not None
    s = SampleStats.from_dict(stats) if written else summarize(x, block_medians=block_medians)
    q1, q3 = _quartiles(sorted(x))
    r.samples, r.n, r.median, r.ci_low, r.ci_high = x, s.n, s.median_s, s.ci_low_s, s.ci_high_s
    r.q1, r.q3, r.mean, r.stddev, r.ci_rel_halfwidth = q1, q3, s.mean_s, s.stdev_s, s.ci_rel_halfwidth
    return r


def _throughput(t: ResultRecord) -> ResultRecord | None:
    """Samples per second, B / t for each step; its median, CI and quartiles are B over the step time's
    (a decreasing map turns order statistics into order statistics, so the CI is exact)."""
    b = t.batch_size
    if not b or not t.samples or t.status != STATUS_OK or not all(v > 0 for v in t.samples):
        return None
    inv = lambda v: None if v is None or v <= 0 else b / v  # noqa: E731
    x = np.asarray([b / v for v in t.samples])
    r = ResultRecord(t.benchmark, THROUGHPUT, timer=t.timer, batch_size=b, noise_target=t.noise_target,
                     throttled=t.throttled, throttled_fraction=t.throttled_fraction, warnings=list(t.warnings),
                     samples=x.tolist(), n=t.n, median=inv(t.median), ci_low=inv(t.ci_high), ci_high=inv(t.ci_low),
                     q1=inv(t.q3), q3=inv(t.q1), mean=float(x.mean()),
                     stddev=float(x.std(ddof=1)) if x.size > 1 else None)
    if r.ci_low is not None and r.ci_high is not None and r.median:
        r.ci_rel_halfwidth = (r.ci_high - r.ci_low) / 2.0 / r.median
    return r


def _from_measurement(name: str, m: Measurement, noise_target: float | None,
                      stats: dict | None = None) -> list[ResultRecord]:
    tel = m.telemetry or {}
    throttled = tel.get("throttled") if isinstance(tel.get("throttled"), bool) else None
    r = ResultRecord(name, STEP_TIME, status=m.status, error=m.error, timer=m.timer, noise_target=noise_target,
                     throttled=throttled, throttled_fraction=as_number(tel.get("throttled_sample_fraction")),
                     batch_size=m.case.batch_size, warnings=list(m.warnings))
    if m.ok and m.samples_s:
        from_samples(r, m.samples_s, m.block_medians_s, stats)
    out = [r]
    t = _throughput(r)
    if t is not None:
        out.append(t)
    return out


# --------------------------------------------------------------------------- the formats


def _pytest_results(p: Path, data: dict) -> list[ResultRecord]:
    out: list[ResultRecord] = []
    seen: set[tuple[str, str]] = set()
    entries = [(b, False) for b in data.get("benchmarks") or []]
    failed = data.get(FAILED_CASES_KEY) or []
    entries += [(f, True) for f in (failed if isinstance(failed, list) else [])]
    for i, (bench, is_failed) in enumerate(entries):
        if not isinstance(bench, dict):
            raise InvalidResultsFile(f"{p}: benchmark #{i} is not an object")
        name = str(bench.get("fullname") or bench.get("name") or f"#{i}")
        info = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
        try:
            if info.get("bench_schema") == EXTRA_INFO_SCHEMA and isinstance(info.get("measurement"), dict):
                m = Measurement.from_dict(info["measurement"])
                config = info.get("config") if isinstance(info.get("config"), dict) else {}
                if is_failed:
                    status = bench.get("status") if bench.get("status") in STATUSES else m.status
                    m.status, m.error = status, bench.get("error") or m.error
                results = _from_measurement(name, m, as_number(config.get("ci_target")), info["measurement"].get("stats"))
                if as_number(info.get("peak_allocated_bytes")) is not None and info.get("suite") == "memory":
                    results.append(ResultRecord(name, PEAK_MEMORY, batch_size=m.case.batch_size,
                                                n=1, median=float(info["peak_allocated_bytes"])))
                lb = info.get("largest_batch") if isinstance(info.get("largest_batch"), dict) else None
                if lb and isinstance(lb.get("batch_size"), int) and not lb.get("limited"):
                    results.append(ResultRecord(name, LARGEST_BATCH, n=1, median=float(lb["batch_size"])))
            elif is_failed:
                results = [ResultRecord(name, STEP_TIME, status=str(bench.get("status") or "error"),
                                        error=bench.get("error"))]
            else:
                results = [_foreign(name, bench)]
        except (KeyError, TypeError, ValueError, InvalidResultsFile) as e:
            raise InvalidResultsFile(f"{p}: benchmark {name}: {type(e).__name__}: {e}") from None
        for r in results:
            if (r.benchmark, r.metric) in seen:
                raise InvalidResultsFile(f"{p}: benchmark {name} appears twice")
            seen.add((r.benchmark, r.metric))
            out.append(r)
    return out


def _foreign(name: str, bench: dict) -> ResultRecord:
    """Another suite's benchmark: its raw round times (host clock), else its summary statistics."""
    stats = bench.get("stats") if isinstance(bench.get("stats"), dict) else None
    if stats is None:
        raise InvalidResultsFile("no stats")
    r = ResultRecord(name, TIME, timer="pytest-benchmark host")
    params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
    size = params.get("batch_size")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        r.batch_size = size
    iterations = stats.get("iterations")
    if isinstance(iterations, int) and iterations > 1:
        r.warnings.append(f"each sample is the mean of {iterations} iterations of one pytest-benchmark round")
    data = stats.get("data")
    if isinstance(data, list) and data:
        return from_samples(r, [float(v) for v in data])
    r.median = as_number(stats.get("median"))
    if r.median is None:
        raise InvalidResultsFile("stats has neither raw data nor a median")
    r.q1, r.q3, r.mean, r.stddev = (as_number(stats.get(k)) for k in ("q1", "q3", "mean", "stddev"))
    r.n = stats.get("rounds") if isinstance(stats.get("rounds"), int) else None
    r.warnings.append("only summary statistics: the file was saved without raw round times")
    return r


def _sweep_results(sweep: SweepResult) -> list[ResultRecord]:
    args = sweep.config.get("workload_args") or {}
    suffix = f" {json.dumps(args, sort_keys=True, default=str)}" if args else ""
    target = as_number(sweep.config.get("ci_target"))
    out = []
    for m in sorted(sweep.points, key=lambda q: q.case.batch_size):
        out += _from_measurement(f"sweep:{m.case.key}{suffix}", m, target)
    return out


def _tta_results(p: Path, data: dict) -> list[ResultRecord]:
    analysis = data.get("analysis") if isinstance(data.get("analysis"), dict) else {}
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    name = task.get("name") or config.get("task") or "task"
    target = analysis.get("target", config.get("target"))
    out = []
    for b in analysis.get("batches") or []:
        if not isinstance(b, dict) or not isinstance(b.get("batch_size"), int):
            raise InvalidResultsFile(f"{p}: analysis.batches holds an entry without an integer batch_size")
        bench = f"tta:{name}/target={target}/bs{b['batch_size']}"
        per_seed = [as_number(s) for s in b.get("steps_per_seed") or []]
        per_seed = [s for s in per_seed if s is not None]
        step_t = as_number(b.get("step_time_mean_s")) or as_number(b.get("step_time_s"))
        steps = ResultRecord(bench, STEPS_TO_TARGET, batch_size=b["batch_size"])
        tta = ResultRecord(bench, TIME_TO_TARGET, batch_size=b["batch_size"])
        if per_seed:
            from_samples(steps, per_seed)
            if step_t:
                from_samples(tta, [s * step_t for s in per_seed])
        if steps.median is None and as_number(b.get("steps_to_target")) is not None:
            steps.median, steps.n = float(b["steps_to_target"]), 1
        if tta.median is None and as_number(b.get("time_to_target_s")) is not None:
            tta.median = float(b["time_to_target_s"])
            tta.ci_low, tta.ci_high = as_number(b.get("time_to_target_low_s")), as_number(b.get("time_to_target_high_s"))
            tta.n = tta.n or 1
        for r in (steps, tta):
            if r.median is None:
                r.status, r.error = "error", "not reached or not measured in this study"
            out.append(r)
    return out
