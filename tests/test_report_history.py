"""The nightly-trends section of the report, from the history store (`bench report --db`, on SQLite and, when
BENCH_TEST_POSTGRES_URL names a server, PostgreSQL) or from pytest-benchmark files read into a temporary
store: change points with their commit ranges, unreliable nights marked apart and left out, the latest
night's bench compare verdict, the rules stated on the page, and summaries (never raw samples) embedded."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import report_inputs as R

from bench.cli import main
from bench.core.errors import BenchError
from bench.history import query
from bench.history.simulate import lognormal_samples, night, suite_file
from bench.history.sources import run_record
from bench.history.store import open_store
from bench.present.report import ReportInputs, build_report, load_inputs
from bench.present.report.page import make_report
from bench.present.report.store_history import history_from_db
from bench.records.loader import read

A = "suites/test_step_time.py::test_step_time[a-fp32-bs32-cuda]"
B = "suites/test_step_time.py::test_step_time[b-fp32-bs32-cuda]"
NIGHTS = 40
STEP_AT = 22          # A is 8% slower from this night on
THROTTLED = (5, 30)   # A's clocks held down (and 30% slower) on these nights
NOISY, FAILED = 12, 17  # B's noisy night (15% spread) and out-of-memory night


def commit(i: int) -> str:
    return hashlib.sha1(f"night {i}".encode()).hexdigest()


def write_nights(folder: Path, nights: int = NIGHTS, *, last_slower: float = 1.10) -> list[Path]:
    """A and B over `nights` nights: A steps at STEP_AT, is throttled on THROTTLED and `last_slower` times
    slower on the last night; B is noisy on NOISY and fails on FAILED."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(nights):
        rng = np.random.default_rng(i)
        a = 10e-3 * (1.08 if i >= STEP_AT else 1.0) * (1.3 if i in THROTTLED else 1.0)
        a *= last_slower if i == nights - 1 else 1.0
        samples = {"a-fp32-bs32-cuda": lognormal_samples(rng, a, 60, 0.005)}
        failed = {}
        if i == FAILED:
            failed["b-fp32-bs32-cuda"] = "oom"
        else:
            samples["b-fp32-bs32-cuda"] = lognormal_samples(rng, 2e-3, 60, 0.15 if i == NOISY else 0.005)
        data = suite_file(samples, when=night(i), commit=commit(i),
                          throttled=["a-fp32-bs32-cuda"] if i in THROTTLED else [], failed=failed)
        path = folder / f"night-{i:03d}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


def trends_row(html: str, name: str) -> list[str]:
    table = re.search(r'<table class="sortable" id="trends-table">(.*?)</table>', html, re.S).group(1)
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", table, re.S) if name in r)
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


@pytest.fixture
def store_page(db_url, tmp_path):  # noqa: F811 - the fixture
    with open_store(db_url, create=True) as store:
        store.ingest(write_nights(tmp_path / "nights"))
    out = make_report(output=tmp_path / "report.html", db=db_url)
    return db_url, out.read_text(encoding="utf-8")


def test_a_store_backed_page_marks_the_change_point_with_its_commit_range(store_page):
    _, html = store_page
    trends = R.section(html, "trends")
    assert "From the history store" in trends
    changes = re.search(r"<h3>Change points \(1\)</h3>\s*<ul[^>]*>(.*?)</ul>", trends, re.S).group(1)
    assert night(STEP_AT).isoformat() in changes and "regression" in changes and A in changes
    # the range runs from the last reliable night before the step to the first after it
    assert f"commits {commit(STEP_AT - 1)[:10]}..{commit(STEP_AT)[:10]}" in changes
    assert re.search(r"\+8\.\d%", changes)
    assert trends_row(html, A)[4] == "1"  # change points
    assert trends_row(html, B)[4] == "0"
    assert R.figures_in(trends) == {"trend-key": 1, "trend": 1}
    assert R.figures_in(R.section(html, "summary")) == {"trend": 1}  # the first beside the card, drawn once
    assert "change point: regression" in trends  # the key names the mark drawn


def test_unreliable_nights_are_marked_apart_by_kind_and_left_out_of_the_trend(store_page):
    _, html = store_page
    trends = R.section(html, "trends")
    assert trends_row(html, A)[1] == f"{NIGHTS - len(THROTTLED)} of {NIGHTS}"  # reliable nights
    assert trends_row(html, A)[6] == "2 throttled"
    assert trends_row(html, B)[6] == "1 noisy, 1 failed"
    for mark in ("throttled (left out", "noisier than the noise target (in the change points", "failed or no value (left out"):
        assert mark in trends  # each kind has its own mark in the figures' key
    assert "Unreliable nights." in trends and "never be a change point" in trends  # the rule, stated
    data = R.source_data(html)["history"]["trends"]
    flags = {b["benchmark"]: b["flags"] for b in data["benchmarks"]}
    assert [i for i, f in enumerate(flags[A]) if f] == list(THROTTLED) and {flags[A][i] for i in THROTTLED} == {1}
    assert flags[B][NOISY] == 2 and flags[B][FAILED] == 4
    assert sum(1 for f in flags[B] if f) == 2


def test_the_latest_night_has_bench_compares_verdict_and_a_recorded_one_is_shown(store_page, tmp_path):
    url, html = store_page
    assert "1 regressed" in R.section(html, "summary")
    latest = re.search(r'<h3 id="trends-latest">Latest night</h3>(.*?)<h3>', R.section(html, "trends"), re.S).group(1)
    assert f"Against run {NIGHTS - 1} ({night(NIGHTS - 2).isoformat()}" in latest
    assert re.search(r'<li class="regression">.*?' + re.escape(A) + r".*?\(\+10\.\d%, 95% interval", latest, re.S)
    assert "No verdict recorded on it." in latest
    assert trends_row(html, A)[3].startswith("regression +10.")
    assert "regressed in the latest night" in R.section(html, "warnings")
    with open_store(url) as store:
        query.set_verdict(store, query.list_runs(store)[-1].id, "regressed")
    again = make_report(output=tmp_path / "again.html", db=url).read_text(encoding="utf-8")
    assert "bench compare --record stored <strong class=\"warn-text\">regressed</strong>" in again


def test_the_page_embeds_the_stores_summaries_not_its_raw_samples(store_page):
    _, html = store_page
    data = R.source_data(html)
    assert data["inputs"] == []
    history = data["history"]
    assert history["source"] == "store" and history["trends"]["format"] == "bench.trends"
    assert len(history["trends"]["machines"][0]["runs"]["id"]) == NIGHTS
    assert history["recorded_verdicts"] == [[None] * NIGHTS]
    text = json.dumps(history)
    assert '"samples":' not in text and '"samples_s":' not in text
    # 3 numbers per benchmark-night (median and its CI), not the 60 samples each night holds
    numbers = len(re.findall(r"\d\.\d+(?:e-?\d+)?", json.dumps(history["trends"]["benchmarks"])))
    assert numbers <= 3 * 2 * NIGHTS + 20


def test_nights_shows_each_machines_last_n_after_finding_change_points_over_all(db_url, tmp_path):  # noqa: F811
    with open_store(db_url, create=True) as store:
        store.ingest(write_nights(tmp_path / "nights"))
    h = history_from_db(db_url, nights=10)
    assert len(h.trends["machines"][0]["runs"]["id"]) == 10
    assert all(len(b["median"]) == 10 and not b["changes"] for b in h.trends["benchmarks"])
    assert h.hidden_changes == 1
    html = build_report(ReportInputs(), history=h, generated=R.FIXED_TIME)
    trends = R.section(html, "trends")
    assert "last 10 nights are shown (of up to 40)" in trends and "1 change point in the earlier nights" in trends
    assert "0 change points in the nights shown (0 regressions; 1 earlier)" in R.section(html, "summary")


def test_a_page_size_bound_holds_on_a_long_history(tmp_path):
    """Summaries, not raw samples: 6 benchmarks x 450 nights of 60 samples each (the samples alone would
    be about 3 MB of JSON) make a page of well under 1 MB, and the figures are thinned for drawing."""
    names, nights = [f"w{j}-fp32-bs32-cuda" for j in range(6)], 450
    rng = np.random.default_rng(0)
    records = []
    for i in range(nights):
        data = suite_file({n: lognormal_samples(rng, 1e-3 * (j + 1), 60, 0.005) for j, n in enumerate(names)},
                          when=night(i), commit=commit(i))
        records.append(run_record(read(data, tmp_path / f"n{i}.json")))
    db = tmp_path / "h.sqlite"
    with open_store(db, create=True) as store:
        store.ingest_records(records)
    html = build_report(ReportInputs(), history=history_from_db(db), generated=R.FIXED_TIME)
    size = len(html.encode("utf-8"))
    per_figure = 60_000      # one trend figure, decimated to MAX_TREND_POINTS reliable nights
    per_night = 40           # the embedded summaries: median, CI, flag, run time and commit
    fixed = 150_000          # styles, script, rules, tables
    assert size <= fixed + len(names) * (per_figure + nights * per_night)
    assert "are drawn from the lowest and highest median" in R.section(html, "trends")
    assert len(R.source_data(html)["history"]["trends"]["benchmarks"][0]["median"]) == nights


# ----------------------------------------------------------------------- files without a store


def test_pytest_files_are_read_into_a_temporary_store_and_judged_by_the_same_rules(tmp_path):
    paths = write_nights(tmp_path / "nights")
    html = build_report(load_inputs([tmp_path / "nights"]), generated=R.FIXED_TIME)
    trends = R.section(html, "trends")
    assert f"From the {NIGHTS} pytest-benchmark files given, read into a temporary history store" in trends
    assert "<h3>Change points (1)</h3>" in trends and "2 throttled" in trends
    assert "interquartile ranges do not overlap" not in html  # the old IQR rule is gone
    assert R.source_data(html)["history"]["source"] == "files"
    assert len(R.source_data(html)["inputs"]) == len(paths)  # the files themselves are embedded as before
    assert not list(tmp_path.glob("**/*.sqlite"))  # the temporary store is gone
    last = build_report(load_inputs([tmp_path / "nights"]), generated=R.FIXED_TIME, nights=7)
    assert "last 7 nights are shown (of up to 40)" in R.section(last, "trends")


def test_a_short_history_shows_no_change_point_yet_but_the_latest_nights_regression(tmp_path):
    files = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_a": m, "s.py::test_b": 2e-3}))
             for i, m in enumerate((1e-3, 1.01e-3, 4e-3))]  # 3 nights: too few for their own noise, so the
    html = R.build(tmp_path, *files)                       # A/A default judges, and 4x is far beyond it
    trends = R.section(html, "trends")
    assert "No change points" in trends and "A step is placed only once at least 3 reliable nights follow it" in trends
    assert "1 regressed" in R.section(html, "summary")
    assert re.search(r'<li class="regression">.*?s\.py::test_a</code> \(time\): 1\.01 ms → 4 ms \(\+296\.\d%', trends, re.S)
    assert "time per call (ms)" in trends and "pytest-benchmark&#39;s round times" in trends


def test_trends_use_the_librarys_step_times_where_a_run_recorded_them(tmp_path):
    # pytest-benchmark's host-clock rounds see a 50% slowdown; the library's device-timed steps do not.
    files = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_mlp[8]": host},
                                              library_medians={"s.py::test_mlp[8]": 1e-3}))
             for i, host in enumerate((2e-3, 2e-3, 3e-3))]
    html = R.build(tmp_path, *files)
    trends = R.section(html, "trends")
    assert "none regressed" in R.section(html, "summary")
    assert trends_row(html, "s.py::test_mlp[8]")[2].startswith("1 ms")
    assert "step time (ms)" in R.section(html, "summary") and "bench&#39;s own per-step samples" in trends


def test_a_software_change_between_nights_is_marked(tmp_path):
    files = []
    for i, (med, torch_v) in enumerate(((1e-3, "2.11.0"), (1e-3, "2.11.0"), (1.5e-3, "2.12.0"))):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_a": med})
        run["machine_info"]["bench_fingerprint"] = {
            "device_type": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_total_bytes": 85520809984,
            "gpu_compute_capability": "9.0", "cpu_model": "AMD EPYC", "cpu_count": 16, "torch_version": torch_v,
            "hash": f"h{i}", "model_hash": f"m{torch_v}"}
        files.append((f"r{i}.json", run))
    html = R.build(tmp_path, *files)
    assert "software changed from the night before" in R.section(html, "trends")  # the figures' key
    changes = R.source_data(html)["history"]["environment_changes"]
    assert changes == [{"2": "torch_version 2.11.0 → 2.12.0"}]
    assert "The software differs between the two nights." in R.section(html, "trends")


def test_a_file_the_store_cannot_take_is_left_out_of_the_trends_and_listed(tmp_path):
    good = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_a": 1e-3}))
            for i in range(2)]
    twice = R.make_pytest_run(R.FIXED_TIME + timedelta(days=2), {"s.py::test_a": 1e-3})
    twice["benchmarks"].append(dict(twice["benchmarks"][0]))  # the same benchmark twice: the store refuses it
    html = R.build(tmp_path, *good, ("twice.json", twice))
    assert "twice.json is not in the trends: benchmark s.py::test_a appears twice" in R.section(html, "warnings")
    assert "over 2 nights" in R.section(html, "summary")


# ----------------------------------------------------------------------- files and a store together


def test_files_and_a_store_give_the_files_sections_and_the_stores_trends(tmp_path):
    db = tmp_path / "h.sqlite"
    with open_store(db, create=True) as store:
        store.ingest(write_nights(tmp_path / "nights", 30))
    sweep = R.write(tmp_path / "sweep.json", R.make_sweep())
    tonight = R.write(tmp_path / "tonight.json", R.make_pytest_run(R.FIXED_TIME, {"s.py::test_new": 1e-3}))
    html = make_report([sweep, tonight], tmp_path / "both.html", db=db).read_text(encoding="utf-8")
    assert 'id="step-time"' in html and 'id="suites"' in html  # the files' own sections
    trends = R.section(html, "trends")
    assert "From the history store" in trends and "s.py::test_new" not in trends
    assert "1 pytest-benchmark input" in R.section(html, "warnings") and "not in the history store" in html
    assert "and the history store" in re.search(r'<p class="meta">(.*?)</p>', html, re.S).group(1)


# ----------------------------------------------------------------------- the command


def test_bench_report_reads_the_store_named_by_db_or_bench_db(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.sqlite"
    with open_store(db, create=True) as store:
        store.ingest(write_nights(tmp_path / "nights", 12))
    assert main(["report", "--db", str(db), "-o", str(tmp_path / "a.html")]) == 0
    assert "Nightly benchmark trends" in (tmp_path / "a.html").read_text(encoding="utf-8")
    monkeypatch.setenv("BENCH_DB", str(db))
    assert main(["report", "-o", str(tmp_path / "b.html"), "--nights", "5"]) == 0  # no INPUT: the store
    assert "last 5 nights are shown" in (tmp_path / "b.html").read_text(encoding="utf-8")
    monkeypatch.setenv("BENCH_DB", str(tmp_path / "none.sqlite"))
    assert main(["report", "-o", str(tmp_path / "c.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no history store at" in err[0] and not (tmp_path / "none.sqlite").exists()
    with pytest.raises(SystemExit) as bad_nights:  # argparse refuses it, in one line
        main(["report", "--db", str(db), "--nights", "0", "-o", str(tmp_path / "d.html")])
    assert bad_nights.value.code == 2
    assert "argument --nights: must be a whole number >= 1" in capsys.readouterr().err


def test_an_empty_store_is_said_and_alone_is_nothing_to_report(tmp_path):
    db = tmp_path / "empty.sqlite"
    open_store(db, create=True).close()
    with pytest.raises(BenchError, match="holds no benchmark results: nothing to report"):
        make_report(output=tmp_path / "none.html", db=db)
    assert not (tmp_path / "none.html").exists()
    sweep = R.write(tmp_path / "sweep.json", R.make_sweep())
    html = make_report([sweep], tmp_path / "page.html", db=db).read_text(encoding="utf-8")
    assert "holds no benchmark results yet" in R.section(html, "summary") and 'id="trends"' not in html


def test_a_latest_night_on_which_every_benchmark_moved_the_same_way_says_so(tmp_path):
    names = [f"s.py::test_{c}" for c in "abcdefgh"]
    files = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {n: 1e-3 * scale for n in names}))
             for i, scale in enumerate((1.0, 1.0, 1.25))]
    trends = R.section(R.build(tmp_path, *files), "trends")
    assert "The benchmarks moved together: 8 of 8 got worse (median change +25.0%" in trends
    calm = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {n: 1e-3 for n in names}))
            for i in range(3)]
    (tmp_path / "calm").mkdir()
    assert "moved together" not in R.section(R.build(tmp_path / "calm", *calm), "trends")


def test_the_latest_night_names_each_unreliable_result_as_it_is_not_all_failed(tmp_path):
    """A CPU suite run often has one sample (too few for any spread) or a wide one (noisy): the page says
    so, where it once counted both as failed."""
    names = {"s.py::test_few[8]": 1e-3, "s.py::test_wide[8]": 2e-3, "s.py::test_ok[8]": 3e-3}
    files = []
    for i in range(3):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {k: 10 * v for k, v in names.items()},
                                library_medians=names)
        if i == 2:
            by = {b["fullname"]: b["extra_info"]["measurement"] for b in run["benchmarks"]}
            by["s.py::test_few[8]"]["samples_s"] = [1e-3]
            by["s.py::test_wide[8]"]["samples_s"] = [2e-3 * (1 + 0.6 * ((j % 5) - 2)) for j in range(20)]
        files.append((f"r{i}.json", run))
    html = R.build(tmp_path, *files)
    latest = re.search(r'<div class="card latest-night">(.*?)</div>', R.section(html, "trends"), re.S).group(1)
    states = dict((name, word) for word, name in re.findall(
        r'<span class="verdict-word">(.*?)</span> <code>(.*?)</code>', latest))
    # Too few samples cannot be judged; a noisy result is judged with its noise (inconclusive, since the
    # noise between runs of a three-night series is the wide A/A default), never "failed".
    assert states == {"s.py::test_few[8]": "too few samples", "s.py::test_wide[8]": "inconclusive",
                      "s.py::test_ok[8]": "inconclusive"}
    assert "2 inconclusive, 1 unreliable (1 too few samples)" in latest
    card = re.search(r'<div class="verdict-text">(.*?)</div>', R.section(html, "summary"), re.S).group(1)
    assert "none regressed, 2 inconclusive, 1 too few samples." in card and "failed" not in card
    few = trends_row(html, "s.py::test_few[8]")
    # The table's latest-night cell too; its unreliable nights never count the night as failed (the history's
    # rules may count it as too few samples, or as reliable where they judge every night with what it carries).
    assert few[3].startswith("too few samples") and "failed" not in few[-1]
