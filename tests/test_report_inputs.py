"""The report's inputs: which files are read, how each kind is told, and what a bad one gives (one line,
or a skip listed on the page when it sits in a folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report_inputs as R

from bench.core.errors import BenchError
from bench.present.report import build_report, load_inputs
from bench.records.loader import KIND_CURVES, KIND_PYTEST, KIND_SWEEP, KIND_TTA, sniff


def test_bad_inputs_are_one_line_bench_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    R.write(tmp_path / "other.json", {"schema": "something.else"})
    R.write(tmp_path / "list.json", [1, 2])
    (tmp_path / "empty").mkdir()
    cases = {tmp_path / "missing.json": "no such file", tmp_path / "bad.json": "not valid JSON",
             tmp_path / "other.json": "not a results file bench reads (schema 'something.else')",
             tmp_path / "list.json": "not a results file bench reads (a JSON array)", tmp_path / "empty": "holds no *.json"}
    for path, words in cases.items():
        with pytest.raises(BenchError) as e:
            load_inputs([path])
        assert words in str(e.value) and "\n" not in str(e.value)


def test_a_lone_utf16_surrogate_is_a_one_line_error_or_a_skip_inside_a_folder(tmp_path):
    sweep = json.dumps(R.make_sweep(batches=(1, 4), oom_from=None, gpu=False))
    bad = tmp_path / "in" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(sweep.replace('"mlp"', '"ml\\ud800p"', 1))
    R.write(tmp_path / "in" / "good.json", json.loads(sweep.replace('"mlp"', '"ok \\ud83d\\ude00"', 1)))  # a valid pair
    with pytest.raises(BenchError, match="lone UTF-16 surrogate") as e:
        load_inputs([bad])
    assert "\n" not in str(e.value)
    inputs = load_inputs([tmp_path / "in"])
    assert [Path(s.path).name for s in inputs.sources] == ["good.json"]
    assert inputs.skipped[0][0].endswith("bad.json") and "surrogate" in inputs.skipped[0][1]
    build_report(inputs, generated=R.FIXED_TIME).encode("utf-8")


def test_folders_are_read_recursively_and_stray_json_inside_is_skipped_and_listed(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    R.write(tmp_path / "deep" / "er" / "sweep.json", R.make_sweep(batches=(1, 4), oom_from=None))
    R.write(tmp_path / "package.json", {"name": "not results"})
    inputs = load_inputs([tmp_path])
    assert [s.kind for s in inputs.sources] == ["sweep"]
    assert inputs.skipped and inputs.skipped[0][0].endswith("package.json")
    html = build_report(inputs, generated=R.FIXED_TIME)
    assert "Skipped" in R.section(html, "warnings") and "package.json" in html
    stray = tmp_path / "stray"
    stray.mkdir()
    R.write(stray / "x.json", {"hello": 1})
    with pytest.raises(BenchError, match="no results files among the inputs"):
        load_inputs([stray])


def test_each_kind_of_results_file_is_told_by_its_content():
    assert sniff(R.make_sweep(batches=(1, 4), oom_from=None)) == KIND_SWEEP
    assert sniff(R.make_tta(n_bootstrap=0)) == KIND_TTA
    assert sniff({"schema": "bench.curves"}) == KIND_CURVES
    assert sniff(R.make_pytest_run(R.FIXED_TIME, {"t.py::test_a": 1e-3})) == KIND_PYTEST
    assert sniff({"benchmarks": []}) is None and sniff([1]) is None
