"""The noise between runs of each series in the history store, from its nights of unchanged code: what
`bench history calibrate` prints and stores, and what `bench compare` uses when given the store.

Per machine, benchmark and metric: the log ratios of consecutive reliable nights' medians. The noise
between two runs (`BetweenRuns.sigma`) is the larger of two estimates of their standard deviation: the
robust one (1.4826 x the median |log ratio|) and the tail one (the 90th percentile of |log ratio| / 1.645),
because on shared machines the spread between runs has heavy tails, and a gate calibrated on the middle
alone raises false alarms on them (scripts/compare_aa.py measures both). A high quantile of |log ratio| is
the threshold a night-against-night gate needs to stay quiet on unchanged code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np

from bench.analysis.compare import SOURCE_HISTORY, BetweenRuns, unreliable_reason
from bench.history import query

MIN_PAIRS = 5                 # consecutive reliable nights needed before a series' own noise is used
THRESHOLD_QUANTILE = 0.95     # of |log ratio|: the suggested threshold
MAD_TO_SIGMA = 1.4826
TAIL_QUANTILE, TAIL_TO_SIGMA = 0.90, 1.0 / 1.6448536269514722  # |N(0, s)|: its 90th percentile is 1.645 s


@dataclass
class SeriesNoise:
    """One series' spread between consecutive nights; `sigma` None below MIN_PAIRS pairs."""

    hardware_key: str
    hardware_label: str
    benchmark: str
    metric: str
    nights: int                   # reliable nights
    pairs: int                    # consecutive pairs of them
    sigma: float | None           # sd of log(median ratio) of two nights (robust, or from the tail if larger)
    q_abs: float | None           # THRESHOLD_QUANTILE of |log ratio|
    threshold: float | None       # expm1(q_abs): a change two unchanged nights stay within, 95% of the time

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def spread(medians: Sequence[float]) -> tuple[float | None, float | None]:
    """(robust sigma, THRESHOLD_QUANTILE of |log ratio|) of consecutive medians; None below MIN_PAIRS."""
    x = np.log(np.asarray([m for m in medians if m and m > 0], float))
    if x.size - 1 < MIN_PAIRS:
        return None, None
    d = np.abs(np.diff(x))
    sigma = max(MAD_TO_SIGMA * float(np.median(d)), TAIL_TO_SIGMA * float(np.quantile(d, TAIL_QUANTILE)))
    return sigma, float(np.quantile(d, THRESHOLD_QUANTILE))


def series_noise(store, *, hardware: str | None = None, benchmark: str | None = None,
                 metrics: Sequence[str] | None = None, before: datetime | None = None,
                 exclude: Sequence[int] = ()) -> list[SeriesNoise]:
    """Every series' night-to-night spread, over its reliable nights (not throttled, not failed) before
    `before` (all, if None), leaving out the runs in `exclude`."""
    out = []
    for s in query.series(store, hardware=hardware, benchmark=benchmark, metrics=metrics):
        meds = [r.median for r, t, rid in zip(s.results, s.times, s.run_ids)
                if (before is None or t < before) and rid not in exclude and unreliable_reason(r, math.inf) is None]
        sigma, q = spread(meds)
        out.append(SeriesNoise(s.hardware_key, s.hardware_label, s.benchmark, s.metric, len(meds),
                               max(0, len(meds) - 1), sigma, q, None if q is None else math.expm1(q)))
    return out


def between_runs_from_store(store, hardware_key: str, *, before: datetime | None = None,
                            exclude: Sequence[int] = (), metrics: Sequence[str] | None = None
                            ) -> dict[tuple[str, str], BetweenRuns]:
    """(benchmark, metric) -> its series' own noise between runs, for the series with enough nights."""
    return {(n.benchmark, n.metric): BetweenRuns(n.sigma, SOURCE_HISTORY, nights=n.nights)
            for n in series_noise(store, hardware=hardware_key, before=before, exclude=exclude, metrics=metrics)
            if n.sigma is not None}


def settings_toml(noises: Sequence[SeriesNoise]) -> str:
    """A `[tool.bench.compare.benchmarks]` table with each calibrated series' threshold and noise between
    runs, for `bench compare --config` (one entry per benchmark: its first metric with a value)."""
    lines = ["# bench history calibrate: per-benchmark noise between runs and thresholds from the store",
             "[tool.bench.compare.benchmarks]"]
    seen = set()
    for n in sorted(noises, key=lambda n: (n.benchmark, n.metric)):
        if n.sigma is None or n.benchmark in seen:
            continue
        seen.add(n.benchmark)
        name = json.dumps(n.benchmark)  # a TOML basic string: JSON escapes are valid there
        lines.append(f'{name} = {{ threshold = {max(n.threshold, 1e-4):.4f}, between_runs = {max(n.sigma, 1e-4):.4f} }}')
    return "\n".join(lines) + "\n"


def store_noise_for(candidate, db: str | None) -> dict[tuple[str, str], BetweenRuns]:
    """between_runs_from_store for a compare's candidate (a Side): its machine's nights before it, itself
    left out (by run id, or by content if the file was ingested)."""
    from bench.history.store import open_store

    with open_store(db) as store:
        exclude = [candidate.run_id] if candidate.run_id is not None else []
        if not exclude and candidate.content_hash:
            same = query.run_by_content_hash(store, candidate.content_hash)
            exclude = [same.id] if same is not None else []
        return between_runs_from_store(store, candidate.hardware_key, before=candidate.time, exclude=exclude)
