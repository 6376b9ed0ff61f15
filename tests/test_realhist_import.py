"""Importing other tools' histories (bench.history.foreign) from the real-history test bed slices in
tests/data/realhist (see its PROVENANCE.md): an asv results folder with raw samples (django on shared
runners), one with quartiles only (empymod on a dedicated laptop), a github-action-benchmark data.js;
and the importers' bad inputs: one line, exit 2, the store unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import InvalidResultsFile
from bench.history import query
from bench.history.foreign import read_asv_results, read_gab_file, read_inputs
from bench.history.sources import HIGHER, RATE, TIME
from bench.history.store import open_store

DATA = Path(__file__).resolve().parent / "data" / "realhist"
DJANGO = DATA / "django" / "results"
EMPYMOD = DATA / "empymod" / "results"
GAB = DATA / "gab" / "data.js"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_asv_folder_with_raw_samples_keeps_them_one_run_per_results_file():
    imp = read_asv_results(DJANGO)
    assert len(imp.runs) == 903
    run = imp.runs[0]
    assert run.kind == "asv" and run.hardware_key == "asv:ubuntu-latest:conda-py3.12"
    r = next(r for r in run.results if r.status == "ok")
    assert r.metric == TIME and r.samples and len(r.samples) >= 2 and r.ci_low < r.median < r.ci_high
    assert "raw samples in 1806" in imp.missing and "99% interval" in imp.missing


def test_asv_folder_without_samples_keeps_median_quartiles_and_repeats_per_parameter():
    imp = read_asv_results(EMPYMOD)
    assert len(imp.runs) == 516
    names = {r.benchmark for run in imp.runs for r in run.results}
    assert "kernel.Kernel.time_fields('Small')" in names and "kernel.Kernel.time_fields('Big')" in names
    r = next(r for run in imp.runs for r in run.results if r.status == "ok")
    assert r.samples is None and r.q1 <= r.median <= r.q3 and r.n == 10
    assert "median with quartiles only in" in imp.missing


def test_github_action_benchmark_keeps_mean_stddev_rounds_or_median_or_rate():
    imp = read_gab_file(GAB)
    by_machine = {}
    for run in imp.runs:
        by_machine.setdefault(run.hardware_key, []).append(run)
    assert {k: len(v) for k, v in by_machine.items()} == {
        "gab:Rust Benchmark": 301, "gab:Benchmark.js Benchmark": 279, "gab:Python Benchmark with pytest-benchmark": 233}
    py = by_machine["gab:Python Benchmark with pytest-benchmark"][-1].results[0]
    assert py.metric == TIME and py.median is None and py.mean > 0 and py.stddev > 0 and py.n > 1
    rust = by_machine["gab:Rust Benchmark"][-1].results[0]
    assert rust.median is not None and rust.mean is None and rust.median < 1e-3  # ns/iter -> seconds
    js = by_machine["gab:Benchmark.js Benchmark"][-1].results[0]
    assert js.metric == RATE and js.better == HIGHER and 0 < js.ci_rel_halfwidth < 0.1
    assert "no raw samples" in imp.missing


def test_ingest_reads_all_three_sources_and_says_what_each_lacks(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    code, out, err = run_cli(capsys, "history", "ingest", "--db", str(db), "-q", str(EMPYMOD), str(GAB))
    assert code == 0, err
    assert "stored 1329 run(s)" in out
    assert "median with quartiles only" in err and "no raw samples" in err
    with open_store(db) as store:
        assert len(query.list_runs(store)) == 1329


def _runs(db: Path) -> int:
    with open_store(db) as store:
        return len(query.list_runs(store))


@pytest.fixture
def store_with_one_run(tmp_path):
    db = tmp_path / "h.sqlite"
    small = tmp_path / "small.js"
    data = json.loads(GAB.read_text().removeprefix("window.BENCHMARK_DATA =").strip())
    data["entries"] = {"Rust Benchmark": data["entries"]["Rust Benchmark"][:1]}
    small.write_text("window.BENCHMARK_DATA = " + json.dumps(data))
    assert main(["history", "ingest", "--db", str(db), "-q", str(small)]) == 0
    return db, data


def test_a_truncated_asv_file_is_one_line_exit_2_and_the_store_unchanged(tmp_path, capsys, store_with_one_run):
    db, _ = store_with_one_run
    capsys.readouterr()
    folder = tmp_path / "asv"
    shutil.copytree(EMPYMOD, folder)
    victim = sorted((folder / "dtr-latitude").glob("*-py3.6-*.json"))[10]
    victim.write_text(victim.read_text()[:200])
    code, out, err = run_cli(capsys, "history", "ingest", "--db", str(db), str(folder))
    assert code == 2 and err.count("\n") == 1 and victim.name in err and "truncated" in err
    assert _runs(db) == 1


def test_a_data_js_that_is_not_json_after_its_prefix_is_one_line_exit_2(tmp_path, capsys, store_with_one_run):
    db, _ = store_with_one_run
    capsys.readouterr()
    bad = tmp_path / "data.js"
    bad.write_text("window.BENCHMARK_DATA = {\"lastUpdate\": 1, \"entries\": {")
    code, _, err = run_cli(capsys, "history", "ingest", "--db", str(db), str(bad))
    assert code == 2 and err.count("\n") == 1 and "not JSON after its" in err
    assert _runs(db) == 1


def test_unknown_units_are_refused_unless_skipped_and_counted(tmp_path, capsys, store_with_one_run):
    db, data = store_with_one_run
    capsys.readouterr()
    run = json.loads(json.dumps(data["entries"]["Rust Benchmark"][0]))
    run["date"] += 1000
    run["benches"][0]["unit"] = "furlongs/fortnight"
    f = tmp_path / "units.js"
    f.write_text("window.BENCHMARK_DATA = " + json.dumps({"entries": {"Rust Benchmark": [run]}}))
    code, _, err = run_cli(capsys, "history", "ingest", "--db", str(db), str(f))
    assert code == 2 and err.count("\n") == 1 and "unknown unit 'furlongs/fortnight'" in err
    assert _runs(db) == 1
    code, _, err = run_cli(capsys, "history", "ingest", "--db", str(db), "--skip-unknown-units", str(f))
    assert code == 0 and "1 result(s) in unknown units ('furlongs/fortnight')" in err
    assert _runs(db) == 2


def test_a_run_with_no_benchmarks_is_warned_about(tmp_path, capsys):
    f = tmp_path / "data.js"
    f.write_text("window.BENCHMARK_DATA = " + json.dumps(
        {"entries": {"S": [{"commit": {"id": "abc"}, "date": 1_700_000_000_000, "tool": "cargo", "benches": []}]}}))
    code, _, err = run_cli(capsys, "history", "ingest", "--db", str(tmp_path / "h.sqlite"), str(f))
    assert code == 0 and "warning: 1 run(s) carry no benchmark result" in err


def test_read_inputs_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(InvalidResultsFile, match="no \\*.json"):
        read_inputs([str(tmp_path)])


def test_a_nights_quartiles_are_numpys():
    import numpy as np

    from bench.history.sources import _quartiles

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 10, 51):
        x = rng.lognormal(0, 0.1, n).tolist()
        assert _quartiles(sorted(x)) == pytest.approx(tuple(np.percentile(x, [25, 75])), rel=1e-12)
