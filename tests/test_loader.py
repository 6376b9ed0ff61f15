"""The one loader: every file kind we read is recognised and comes back as its typed record; anything
else is refused in one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.core.errors import BenchError, InvalidResultsFile
from bench.records.curves import CurvesFile
from bench.records.loader import (
    KIND_CURVES,
    KIND_PYTEST,
    KIND_SWEEP,
    KIND_TTA,
    load,
    load_curves,
    load_sweeps,
    read,
    sniff,
)
from bench.records.suite import PytestBenchmarkRun
from bench.records.sweep import SweepResult
from bench.records.tta import TTAResult

DATA = Path(__file__).parent / "data"

FOREIGN_PYTEST = {"machine_info": {"node": "ci-1", "cpu": {"brand_raw": "AMD EPYC"}},
                  "commit_info": {"id": "abc", "dirty": False},
                  "benchmarks": [{"name": "test_sort", "fullname": "t.py::test_sort", "params": None, "extra_info": {},
                                  "stats": {"data": [0.5, 0.6, 0.7], "median": 0.6, "iterations": 1}}],
                  "datetime": "2026-01-01T00:00:00+00:00", "version": "5.3.1"}


@pytest.mark.parametrize("name, kind, record", [
    ("sweep-v1.json", KIND_SWEEP, SweepResult),
    ("sweep-v1-run-schema-name.json", KIND_SWEEP, SweepResult),
    ("curves-v1.json", KIND_CURVES, CurvesFile),
    ("tta-v1.json", KIND_TTA, TTAResult),
    ("pytest-benchmark-v1.json", KIND_PYTEST, PytestBenchmarkRun),
])
def test_each_kind_of_file_is_recognised_and_read_as_its_record(name, kind, record):
    path = DATA / name
    assert sniff(json.loads(path.read_text())) == kind
    f = load(path)
    assert (f.kind, f.path, type(f.record)) == (kind, str(path), record)
    assert f.data == json.loads(path.read_text())  # the file as it is on disk, for embedding
    # Every kind carries its fingerprint; curves files written before they did have none.
    assert isinstance(f.environment, dict) and bool(f.environment) == (kind != KIND_CURVES)


def test_another_projects_pytest_benchmark_file_is_read_too(tmp_path):
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(FOREIGN_PYTEST))
    f = load(path)
    assert f.kind == KIND_PYTEST and f.record.environment["hash"] is None
    (sweep,) = f.sweeps()
    assert sweep.points[0].samples_s == [0.5, 0.6, 0.7]


@pytest.mark.parametrize("data", [
    {"schema": "something.else"}, {"rows": []}, [1, 2], "text", None, {"benchmarks": []},
    {"benchmarks": {}, "machine_info": {}},
])
def test_anything_else_is_of_no_kind(data):
    assert sniff(data) is None


@pytest.mark.parametrize("content, message", [
    ('{"schema": "something.else"}', "not a results file bench reads (schema 'something.else'); expected a "
                                     "bench.sweep file, a bench.curves file, a bench.tta file, a bench.allreduce file or pytest-benchmark JSON"),
    ("[1, 2]", "not a results file bench reads (a JSON array)"),
    ("{}", "not a results file bench reads (an empty object)"),
    ('{"rows": [], "metric": 1}', "not a results file bench reads (an object with keys metric, rows)"),
    ('{"schema": "bench.sweep", "schema_version": "1"}', "bench.sweep schema_version must be a whole number, got '1'"),
    ('{"schema": "bench.tta", "schema_version": 7}', "bench.tta schema_version 7 is newer than this tool reads (1)"),
    ("{broken", "not valid JSON"),
])
def test_unknown_and_unreadable_files_are_refused_in_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(InvalidResultsFile) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_kinds_limit_what_is_accepted():
    tta = json.loads((DATA / "tta-v1.json").read_text())
    with pytest.raises(InvalidResultsFile, match="expected a bench.sweep file or pytest-benchmark JSON"):
        read(tta, "tta.json", kinds=(KIND_SWEEP, KIND_PYTEST))
    assert read(tta, kinds=(KIND_TTA,)).kind == KIND_TTA


def test_sweeps_come_from_sweep_files_and_pytest_benchmark_files_alike():
    assert [len(s.points) for s in load_sweeps(DATA / "sweep-v1.json")] == [3]
    assert [len(s.points) for s in load_sweeps(DATA / "pytest-benchmark-v1.json")] == [3]
    with pytest.raises(InvalidResultsFile, match="curves-v1.json: not a results file bench reads"):
        load_sweeps(DATA / "curves-v1.json")


def test_curves_come_from_curves_and_tta_files_and_from_other_tools_rows(tmp_path):
    assert len(load_curves(DATA / "curves-v1.json")) == 3
    assert len(load_curves(DATA / "tta-v1.json")) == 6
    assert load(DATA / "tta-v1.json").curves() == load_curves(DATA / "tta-v1.json")
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"batch_size": 8, "step": 0, "metric": 0.1}, {"batch_size": 8, "step": 5, "metric": 0.9}]))
    (c,) = load_curves(rows, metric="accuracy")
    assert (c.batch_size, c.metric, c.steps_to_target(0.9).steps) == (8, "accuracy", 5)
    with pytest.raises(BenchError, match="no such file"):
        load_curves(tmp_path / "missing.csv")
