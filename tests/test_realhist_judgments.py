"""`bench history changes` on the real-history test bed slices (tests/data/realhist, see PROVENANCE.md):
documented events are found, summary-only series are judged, no series is lost to a noise gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.analysis.trends import FLAG_FAILED, LEFT_OUT, analyse
from bench.history import query
from bench.history.foreign import read_inputs
from bench.history.store import open_store

DATA = Path(__file__).resolve().parent / "data" / "realhist"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    db = tmp_path_factory.mktemp("realhist") / "h.sqlite"
    records, _ = read_inputs([str(DATA / "empymod" / "results"), str(DATA / "gab" / "data.js")])
    with open_store(db, create=True) as store:
        store.ingest_records(records)
        all_series = query.series(store)
    per_series, changes = analyse(all_series)
    return all_series, per_series, changes


def _changes(changes, machine_prefix, benchmark, worse):
    """Changes (or machine events) on a machine touching a benchmark, the given way."""
    out = []
    for c in changes:
        if not c.hardware.startswith(machine_prefix) or c.worse != worse:
            continue
        names = c.benchmarks or [c.benchmark]
        if not any(benchmark in n for n in names):
            continue
        out.append(c)
    return out


def test_empymod_v2_numba_kernels_are_found_as_one_speed_up(judged):
    all_series, _, changes = judged
    s = next(s for s in all_series if s.benchmark.startswith("kernel.Kernel.time_fields"))
    at = next(i for i, c in enumerate(s.commits) if c and c.startswith("eeba70b"))
    found = [c for c in _changes(changes, "asv:dtr-latitude", "kernel.Kernel.", worse=False)
             if abs(s.run_ids.index(c.run_id) - at) <= 2]
    assert found and all(c.change < -0.2 for c in found)


def test_summary_only_pytest_benchmark_nights_are_all_judged_and_the_runner_upgrade_found(judged):
    all_series, per_series, changes = judged
    py = [ss for ss in per_series if ss.series.hardware_key == "gab:Python Benchmark with pytest-benchmark"]
    assert len(py) == 2
    for ss in py:
        r = ss.series.results[-1]
        assert r.median is None and r.mean > 0 and r.stddev > 0  # summary-only
        assert sum(1 for f in ss.flags if f & LEFT_OUT) == sum(1 for f in ss.flags if f & FLAG_FAILED) <= 2
        at = next(i for i, c in enumerate(ss.series.commits) if c and c.startswith("da5ac2e"))
        assert any(abs(ss.series.run_ids.index(c.run_id) - at) <= 2 and c.kind == "improvement"
                   for c in ss.changes)


def test_no_series_is_lost_to_a_noise_gate(judged):
    _, per_series, _ = judged
    for ss in per_series:
        with_value = sum(1 for f in ss.flags if not f & FLAG_FAILED)
        assert len(ss.keep) == with_value > 100
