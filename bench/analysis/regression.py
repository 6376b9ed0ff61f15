"""Nightly regressions over pytest-benchmark runs: one benchmark's history per machine, and the rule
that marks a run as a regression against the run before it.

The numbers judged are the library's own step times where a benchmark carries bench's extra_info (the
raw per-step samples of its Measurement, timed with CUDA events on a GPU), and pytest-benchmark's
host-clock round statistics only for benchmarks without it (another project's tests).

A machine is its hardware (GPU model and memory, compute capability, CPU model and count), not its
software: a run after a torch, CUDA, driver or Python upgrade is compared with the run before it,
and marked as one where the environment changed.

Runs are any objects with `.path` (the file) and `.data` (its parsed pytest-benchmark JSON), such
as the report's input sources.

The report no longer marks regressions with this rule: its nightly trends come from the history store
(change points, unreliable nights, bench compare; bench.present.report.store_history). The rule stays
for library users and as the baseline scripts/changepoint_quality.py measures the change points against.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np

from bench.core.numbers import as_number, is_number
from bench.core.vocabulary import STATUS_OK
from bench.history.identity import (
    PYTEST_SOFTWARE_FIELDS,
    hardware_identity,
    software_identity,
)
from bench.records.suite import EXTRA_INFO_SCHEMA, HOST_TIMER

# Nightly regression rule: slower by more than this fraction AND the interquartile ranges do not overlap.
REGRESSION_MIN_REL = 0.05
REGRESSION_RULE = (f"A run is marked as a regression when its median is more than {REGRESSION_MIN_REL:.0%} above "
                   "the previous run's median on the same machine and the two runs' interquartile ranges do not "
                   "overlap (its first quartile lies above the previous run's third quartile). Both conditions "
                   "must hold, so neither a small but consistent shift nor one noisy run is flagged. Runs on the "
                   "same hardware form one history whatever their software: a run whose software (torch, CUDA, "
                   "cuDNN, driver, Python, OS) differs from the previous run's is marked \"environment changed\" "
                   "and still compared.")
__all__ = ["REGRESSION_MIN_REL", "REGRESSION_RULE", "PYTEST_SOFTWARE_FIELDS", "RunStats", "BenchmarkHistory",
           "is_regression", "run_time", "machine_key", "software_environment", "environment_change",
           "benchmark_history", "latest_run_per_machine"]

# Where a run's numbers come from (`RunStats.source`).
SOURCE_LIBRARY = "bench"  # the library's per-step samples in the benchmark's extra_info
SOURCE_PYTEST = "pytest-benchmark"  # pytest-benchmark's round statistics (no bench extra_info)




@dataclass
class RunStats:
    """One benchmark in one pytest-benchmark run (times in seconds).

    `source` says whose numbers these are: SOURCE_LIBRARY (the library's per-step samples from
    extra_info; `rounds` is then their count) or SOURCE_PYTEST (pytest-benchmark's round statistics);
    `timer` names the clock ("cuda_event", "host", or "pytest-benchmark host").
    """

    time: datetime
    path: str
    median_s: float
    q1_s: float | None
    q3_s: float | None
    mean_s: float | None = None
    stddev_s: float | None = None
    rounds: int | None = None
    software: dict[str, Any] = field(default_factory=dict)  # software_environment() of the run
    source: str = SOURCE_PYTEST
    timer: str | None = HOST_TIMER


@dataclass(frozen=True)
class BenchmarkStats:
    """The numbers of one benchmark entry that trends and regressions use, and where they come from."""

    median_s: float
    q1_s: float | None
    q3_s: float | None
    mean_s: float | None
    stddev_s: float | None
    n: int | None  # samples (library) or rounds (pytest-benchmark)
    source: str
    timer: str | None


def benchmark_stats(bench: dict) -> BenchmarkStats | None:
    """The library's step-time statistics of a pytest-benchmark entry when its extra_info holds bench's
    Measurement with samples (median and quartiles of the raw per-step times), else pytest-benchmark's
    own round statistics; None without a median."""
    info = bench.get("extra_info")
    m = info.get("measurement") if isinstance(info, dict) and info.get("bench_schema") == EXTRA_INFO_SCHEMA else None
    if isinstance(m, dict) and m.get("status") == STATUS_OK:
        samples = [float(v) for v in m.get("samples_s") or [] if is_number(v)]
        if samples:
            q1, med, q3 = (float(v) for v in np.percentile(samples, [25, 50, 75]))
            return BenchmarkStats(med, q1, q3, float(np.mean(samples)),
                                  float(np.std(samples, ddof=1)) if len(samples) > 1 else None, len(samples),
                                  SOURCE_LIBRARY, m.get("timer"))
    st = bench.get("stats") if isinstance(bench.get("stats"), dict) else {}
    med = as_number(st.get("median"))
    if med is None:
        return None
    return BenchmarkStats(med, as_number(st.get("q1")), as_number(st.get("q3")), as_number(st.get("mean")), as_number(st.get("stddev")),
                          st.get("rounds") if isinstance(st.get("rounds"), int) else None, SOURCE_PYTEST, HOST_TIMER)


@dataclass
class BenchmarkHistory:
    """One benchmark's runs on one machine in time order, and which runs regressed."""

    fullname: str
    machine: str
    runs: list[RunStats]
    regressions: list[int] = field(default_factory=list)
    # Index of each run whose software differs from the previous run's -> what changed, in words.
    environment_changes: dict[int, str] = field(default_factory=dict)

    @property
    def latest_regressed(self) -> bool:
        return bool(self.runs) and (len(self.runs) - 1) in self.regressions


def is_regression(prev: RunStats, cur: RunStats, min_rel: float = REGRESSION_MIN_REL) -> bool:
    """REGRESSION_RULE: median up by more than `min_rel` and the interquartile ranges apart. Runs timed
    differently (library samples vs pytest-benchmark rounds, or another clock) are not compared."""
    if (prev.source, prev.timer) != (cur.source, cur.timer):
        return False
    if not (is_number(prev.median_s) and is_number(cur.median_s)) or prev.median_s <= 0:
        return False
    if cur.median_s <= prev.median_s * (1.0 + min_rel):
        return False
    if is_number(cur.q1_s) and is_number(prev.q3_s):
        return cur.q1_s > prev.q3_s
    return False  # without quartiles the spread is unknown: do not claim a regression


def run_time(text: Any, path: str) -> datetime:
    """A run's `datetime` (ISO 8601, UTC if no zone), else the file's modification time."""
    if isinstance(text, str):
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.fromtimestamp(os.path.getmtime(path), tz=timezone.utc)


def machine_key(machine_info: dict) -> tuple[str, str]:
    """(key, label) of the machine a pytest-benchmark run came from: the hardware hash of its bench
    fingerprint when the plugin recorded one (same model of card and CPU, whatever the software), else
    CPU and OS, never the host name (CI runners get a new one each night)."""
    return hardware_identity(None, machine_info)  # one home for the rule: bench.history.identity


def software_environment(machine_info: dict) -> dict[str, Any]:
    """The software a run used (the fingerprint's SOFTWARE_ENV_FIELDS, else pytest-benchmark's
    Python and OS release): what `environment_changes` compares between consecutive runs."""
    return software_identity(None, machine_info)[1]


def environment_change(prev: dict[str, Any], cur: dict[str, Any]) -> str | None:
    """The software fields that differ, in words ("torch_version 2.11.0 → 2.12.0; …"), or None."""
    changed = [f"{k} {prev.get(k)} → {cur.get(k)}" for k in sorted(set(prev) | set(cur)) if prev.get(k) != cur.get(k)]
    return "; ".join(changed) or None


def timing_change(prev: RunStats, cur: RunStats) -> str | None:
    """'timing pytest-benchmark rounds → bench cuda_event' when two runs' numbers come from different
    sources or clocks (such runs are not compared for regressions), else None."""
    if (prev.source, prev.timer) == (cur.source, cur.timer):
        return None
    return f"timing {_timing(prev)} → {_timing(cur)}"


def _timing(run: RunStats) -> str:
    return f"{SOURCE_LIBRARY} {run.timer}" if run.source == SOURCE_LIBRARY else f"{SOURCE_PYTEST} rounds"


def benchmark_history(sources: Iterable[Any]) -> list[BenchmarkHistory]:
    """Per benchmark fullname and machine, its runs in time order with REGRESSION_RULE applied."""
    runs: dict[tuple[str, str], list[RunStats]] = defaultdict(list)
    labels: dict[str, str] = {}
    for src in sources:
        info = src.data.get("machine_info") or {}
        key, label = machine_key(info)
        labels[key] = label
        software = software_environment(info)
        when = run_time(src.data.get("datetime"), src.path)
        for b in src.data.get("benchmarks") or []:
            if not isinstance(b, dict):
                continue
            st = benchmark_stats(b)
            if st is None:
                continue
            name = str(b.get("fullname") or b.get("name") or "?")
            runs[(name, key)].append(RunStats(when, src.path, st.median_s, st.q1_s, st.q3_s, st.mean_s, st.stddev_s,
                                              st.n, software, st.source, st.timer))
    out = []
    for (name, key), rs in runs.items():
        rs.sort(key=lambda r: (r.time, r.path))
        h = BenchmarkHistory(name, labels[key], rs)
        h.regressions = [i for i in range(1, len(rs)) if is_regression(rs[i - 1], rs[i])]
        for i in range(1, len(rs)):
            change = environment_change(rs[i - 1].software, rs[i].software)
            timing = timing_change(rs[i - 1], rs[i])
            if change or timing:
                h.environment_changes[i] = "; ".join(c for c in (timing, change) if c)
        out.append(h)
    out.sort(key=lambda h: (not h.latest_regressed, -len(h.regressions), h.fullname, h.machine))
    return out


def latest_run_per_machine(sources: Iterable[Any]) -> dict[str, Any]:
    """The newest pytest-benchmark run (by its `datetime`) for each machine."""
    latest: dict[str, Any] = {}
    for src in sources:
        key, _ = machine_key(src.data.get("machine_info") or {})
        when = run_time(src.data.get("datetime"), src.path)
        if key not in latest or when >= run_time(latest[key].data.get("datetime"), latest[key].path):
            latest[key] = src
    return latest
