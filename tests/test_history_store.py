"""The history store (bench.history), on SQLite and, with BENCH_TEST_POSTGRES_URL set, on PostgreSQL:
ingest keeps raw samples, fingerprint, commit and flags; one transaction per ingest; duplicates stored
once; concurrent ingest loses nothing; a killed ingest leaves nothing; bad files change nothing;
a store made by the previous schema version is migrated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from bench.core.errors import BenchError, InvalidResultsFile
from bench.history import query
from bench.history.schema import SCHEMA_VERSION, metadata, migrate, schema_version
from bench.history.simulate import fake_fingerprint, suite_file, write_night
from bench.history.sources import STEP_TIME, THROUGHPUT, read_results_file, run_record
from bench.history.store import DB_ENV, Store, make_engine, open_store, resolve_url

REPO = Path(__file__).resolve().parents[1]
MEDIANS = {"mlp-fp32-bs32-cuda": 0.010, "resnet50-bf16-bs64-cuda": 0.050}


def run_count(url: str) -> int:
    with open_store(url) as store:
        return len(query.list_runs(store))


def test_ingest_keeps_the_librarys_raw_samples_fingerprint_commit_and_flags(db_url, tmp_path):
    f = write_night(tmp_path, 3, MEDIANS, throttled=["resnet50-bf16-bs64-cuda"])
    with open_store(db_url, create=True) as store:
        [outcome] = store.ingest([f])
        assert outcome.status == "stored"
        run = query.get_run(store, outcome.run_id)
        results = {(r.benchmark, r.metric): r for r in query.run_results(store, run.id)}
    data = json.loads(f.read_text())
    assert run.time_text == data["datetime"] and run.commit == data["commit_info"]["id"]
    assert run.fingerprint["hash"] == data["machine_info"]["bench_fingerprint"]["hash"]
    assert run.hardware_key == data["machine_info"]["bench_fingerprint"]["hardware_hash"]
    name = "suites/test_step_time.py::test_step_time[mlp-fp32-bs32-cuda]"
    step = results[(name, STEP_TIME)]
    # the device-timed samples from extra_info, not pytest-benchmark's host-clock rounds
    assert step.samples == data["benchmarks"][0]["extra_info"]["measurement"]["samples_s"]
    assert step.timer == "cuda_event" and step.noise_target == 0.01 and step.throttled is None
    assert results[(name, THROUGHPUT)].better == "higher"
    assert results[(name.replace("mlp-fp32-bs32", "resnet50-bf16-bs64"), STEP_TIME)].throttled is True


def test_the_same_file_ingested_twice_is_stored_once(db_url, tmp_path):
    f = write_night(tmp_path, 1, MEDIANS)
    copy = tmp_path / "copy-elsewhere.json"
    copy.write_text(json.dumps(json.loads(f.read_text()), indent=2))  # same content, other bytes and path
    with open_store(db_url, create=True) as store:
        first = store.ingest([f, f])
        second = store.ingest([copy])
    assert [o.status for o in first] == ["stored", "duplicate"]
    assert second[0].status == "duplicate" and second[0].run_id == first[0].run_id
    assert run_count(db_url) == 1


@pytest.mark.parametrize("content, message", [
    ('{"benchmarks": [', "not valid JSON"),
    ('{"name": "some other tool", "values": [1, 2]}', "not a results file bench reads"),
    ('[1, 2, 3]', "not a results file bench reads"),
    ('{"schema": "bench.sweep", "schema_version": 99}', "newer than this tool reads"),
])
def test_a_corrupt_or_foreign_file_is_one_line_and_leaves_the_store_unchanged(db_url, tmp_path, content, message):
    good = write_night(tmp_path, 1, MEDIANS)
    with open_store(db_url, create=True) as store:
        store.ingest([good])
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    later = write_night(tmp_path, 2, MEDIANS)
    with open_store(db_url) as store, pytest.raises(InvalidResultsFile) as e:
        store.ingest([later, bad])  # the good file before the bad one is not stored either
    assert message in str(e.value) and "\n" not in str(e.value) and str(bad) in str(e.value)
    assert run_count(db_url) == 1


def test_the_cli_reports_a_bad_file_in_one_line_with_exit_status_2(db_url, tmp_path, capsys):
    from bench.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["history", "ingest", str(bad), "--db", db_url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench history: error:") and len(err.splitlines()) == 1


def test_four_processes_ingesting_at_once_lose_nothing(db_url, tmp_path):
    shared = write_night(tmp_path, 999, MEDIANS)
    batches = [[write_night(tmp_path, 10 * p + i, MEDIANS) for i in range(4)] + [shared] for p in range(4)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "history", "ingest", "--quiet", "--db", db_url,
                               *map(str, files)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for files in batches]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    with open_store(db_url) as store:
        runs = query.list_runs(store)
    assert len(runs) == 4 * 4 + 1  # every file, the shared one once
    assert all(r.n_results == 4 for r in runs)


def test_a_process_killed_mid_ingest_leaves_nothing_half_written(db_url, tmp_path):
    first = write_night(tmp_path, 1, MEDIANS)
    with open_store(db_url, create=True) as store:
        store.ingest([first])
    files = [write_night(tmp_path, i, MEDIANS) for i in range(2, 6)]
    marker = tmp_path / "half-way"
    child = textwrap.dedent(f"""
        import time
        from bench.history.store import open_store
        def progress(done, total, path, what):
            if what == "stored" and done == 2:  # two runs and their results inserted, not committed
                open({str(marker)!r}, "w").close()
                time.sleep(600)
        open_store({db_url!r}).ingest({[str(f) for f in files]!r}, progress=progress)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the ingesting process ended before it was killed"
            assert time.monotonic() < deadline, "the ingesting process never got half-way"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert run_count(db_url) == 1  # nothing of the killed ingest
    with open_store(db_url) as store:  # and the store takes the same files afterwards
        assert [o.status for o in store.ingest(files)] == ["stored"] * 4
        n_results = sum(r.n_results for r in query.list_runs(store))
    assert n_results == 5 * 4


def _columns(conn) -> dict[str, list[str]]:
    insp = inspect(conn)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in ("bench_runs", "bench_results")}


def test_a_store_made_by_the_previous_schema_version_is_migrated_with_its_data(db_url, tmp_path):
    url = resolve_url(db_url)
    old = Store(make_engine(url), url)
    with old.write() as conn:
        assert migrate(conn, target=SCHEMA_VERSION - 1) == list(range(1, SCHEMA_VERSION))
    with old.read() as conn:
        assert "verdict" not in _columns(conn)["bench_runs"]
    f = write_night(tmp_path, 1, MEDIANS)
    old.ingest([f])  # what the previous version wrote: runs and results, no verdict column
    old.close()

    with open_store(db_url) as store:  # a later version opens the old store: migrated, data intact
        with store.read() as conn:
            versions = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version)).scalars().all()
            assert versions == list(range(1, SCHEMA_VERSION + 1))
            assert _columns(conn) == {t: sorted(c.name for c in metadata.tables[t].columns)
                                      for t in ("bench_runs", "bench_results")}
        [run] = query.list_runs(store)
        assert run.n_results == 4 and run.verdict is None
        query.set_verdict(store, run.id, "regressed")
        assert query.get_run(store, run.id).verdict == "regressed"
        assert store.ingest([f])[0].status == "duplicate"


def test_a_store_newer_than_this_version_is_refused_in_one_line(db_url, tmp_path):
    with open_store(db_url, create=True) as store, store.write() as conn:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, description="from the future",
                                                    applied_at=datetime(2030, 1, 1)))
    with pytest.raises(BenchError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this bench reads"):
        open_store(db_url)


def test_reading_a_store_that_does_not_exist_says_so_and_creates_nothing(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "history.sqlite"
    with pytest.raises(BenchError, match="no history store at"):
        open_store(missing)
    assert not missing.parent.exists()
    monkeypatch.setenv(DB_ENV, str(missing))
    assert resolve_url(None) == f"sqlite:///{missing}"
    monkeypatch.delenv(DB_ENV)
    assert resolve_url(None).endswith(os.path.join("reports", "history.sqlite"))
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_sqlite_stores_run_in_wal_mode(tmp_path):
    with open_store(tmp_path / "h.sqlite", create=True) as store, store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_files_from_other_tools_and_formats_are_read(tmp_path):
    """A plain pytest-benchmark file (host-clock rounds, or summary stats only) and a bench sweep file."""
    from bench.records.sweep import Case, Measurement, SweepResult

    plain = suite_file({"x": [0.001] * 5})
    for b in plain["benchmarks"]:
        del b["extra_info"]
    del plain["machine_info"]["bench_fingerprint"]
    p = tmp_path / "plain.json"
    p.write_text(json.dumps(plain))
    run = read_results_file(p)
    [r] = run.results
    assert (r.metric, r.timer, r.samples) == ("time", "pytest-benchmark host", [0.001] * 5)
    assert run.hardware_label == "simulated CPU" and run.fingerprint_hash is None
    for b in plain["benchmarks"]:
        del b["stats"]["data"]
    p.write_text(json.dumps(plain))
    [r] = read_results_file(p).results
    assert r.samples is None and r.median == 0.001 and "only summary statistics" in r.warnings[0]

    sweep = SweepResult(config={"workload": "mlp", "ci_target": 0.02}, environment=fake_fingerprint(),
                        points=[Measurement(Case("mlp", 8), samples_s=[0.002] * 8, timer="host")], created="2026-02-01T00:00:00")
    s = tmp_path / "sweep.json"
    s.write_text(json.dumps(sweep.to_dict()))
    run = read_results_file(s)
    assert run.kind == "bench.sweep" and run.time_text == "2026-02-01T00:00:00"
    assert {(r.benchmark, r.metric) for r in run.results} == {("sweep:mlp-fp32-bs8-cpu", "step_time"),
                                                              ("sweep:mlp-fp32-bs8-cpu", "throughput")}
    assert run.results[0].noise_target == 0.02


def test_a_file_the_loader_has_read_gives_the_record_reading_it_gives(tmp_path):
    """run_record: the report's inputs, already read, go into a store without reading them again."""
    from bench.records.loader import load, read

    path = write_night(tmp_path, 3, MEDIANS)
    assert run_record(load(path)) == read_results_file(path)
    data = json.loads(path.read_text())
    del data["datetime"]
    with pytest.raises(InvalidResultsFile, match="says no datetime, and its modification time cannot be read"):
        run_record(read(data, tmp_path / "gone.json"))  # no time of its own, and no file to take one from


def test_run_fingerprints_gives_each_runs_stored_fingerprint(tmp_path):
    fp = fake_fingerprint(torch_version="2.12.0")
    with open_store(tmp_path / "h.sqlite", create=True) as store:
        store.ingest([write_night(tmp_path, 0, MEDIANS), write_night(tmp_path, 1, MEDIANS, fingerprint=fp)])
        ids = [r.id for r in query.list_runs(store)]
        fps = query.run_fingerprints(store, ids)
    assert sorted(fps) == sorted(ids) and fps[ids[1]] == fp and fps[ids[0]]["torch_version"] == "2.13.0"


def test_the_history_modules_import_only_downward_and_in_no_circle():
    from test_layers import graph, import_cycles, upward_imports

    mine = ("bench.history", "bench.analysis.compare", "bench.analysis.changepoints", "bench.analysis.trends",
            "bench.present.nightly", "bench.cli.history", "bench.cli.compare")
    edges = graph()
    assert [u for u in upward_imports(edges) if u.startswith(mine)] == []
    assert [c for c in import_cycles(edges) if any(m.startswith(mine) for m in c)] == []
