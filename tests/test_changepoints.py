"""Change points in nightly histories (bench.analysis.changepoints), the store's `changes` and the
trend summaries a report embeds (bench.analysis.trends), and `bench history changes|list|trends`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bench.analysis.changepoints import detect_steps
from bench.analysis.trends import (
    FLAG_NOISY,
    FLAG_THROTTLED,
    LEFT_OUT,
    history_changes,
    trend_summaries,
)
from bench.cli import main
from bench.history.simulate import write_night
from bench.history.store import open_store


def noisy(n: int, sigma: float, seed: int, *, step_at: int | None = None, step: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.exp(rng.normal(0, sigma, n))
    if step_at is not None:
        v[step_at:] *= 1 + step
    return v


def test_pure_noise_has_no_change_point():
    assert all(detect_steps(noisy(80, 0.03, seed)) == [] for seed in range(5))


def test_a_5_percent_step_on_1_percent_noise_is_found_where_it_happened():
    [s] = detect_steps(noisy(60, 0.01, 7, step_at=37))
    assert abs(s.index - 37) <= 1
    assert s.change == pytest.approx(0.05, abs=0.015) and s.p_value < 0.001
    assert s.after / s.before - 1 == pytest.approx(s.change)


def test_one_night_outliers_are_not_steps():
    v = noisy(60, 0.01, 3)
    v[[10, 30, 31, 50]] *= 1.25
    assert detect_steps(v) == []


def test_a_step_down_and_a_step_back_up_are_both_found():
    v = noisy(90, 0.01, 4)
    v[30:60] *= 0.9
    steps = detect_steps(v)
    assert len(steps) == 2 and abs(steps[0].index - 30) <= 1 and abs(steps[1].index - 60) <= 1
    assert steps[0].change < -0.08 and steps[1].change > 0.08


def test_short_or_invalid_series():
    assert detect_steps([1.0, 2.0, 1.0]) == []
    with pytest.raises(ValueError):
        detect_steps([1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


BENCH = "mlp-fp32-bs32-cuda"
FULL = f"suites/test_step_time.py::test_step_time[{BENCH}]"


def _history(folder, nights=30, step_at=18, throttled=(5, 12, 24)):
    """Nightly files: 1% noise between nights, a 10% slowdown from `step_at`, 40% slower throttled nights."""
    rng = np.random.default_rng(11)
    files = []
    for i in range(nights):
        level = 0.010 * float(np.exp(rng.normal(0, 0.01))) * (1.10 if i >= step_at else 1.0)
        thr = i in throttled
        files.append(write_night(folder, i, {BENCH: level * (1.4 if thr else 1.0), "cnn-fp32-bs32-cuda": 0.02},
                                 throttled=[BENCH] if thr else ()))
    return files


def test_changes_over_the_store_name_the_night_and_the_commit_range_and_skip_throttled_nights(db_url, tmp_path):
    files = _history(tmp_path)
    with open_store(db_url, create=True) as store:
        store.ingest(files)
        changes = history_changes(store)
    [c] = changes
    first_after = json.loads(files[18].read_text())
    last_before = json.loads(files[17].read_text())
    assert (c.benchmark, c.metric, c.kind) == (FULL, "step_time", "regression")
    assert c.at == first_after["datetime"] and c.last_before == last_before["datetime"]
    assert (c.commit_before, c.commit_after) == (last_before["commit_info"]["id"], first_after["commit_info"]["id"])
    assert c.change == pytest.approx(0.10, abs=0.02) and c.before == pytest.approx(0.010, rel=0.02)
    assert c.nights_before == 18 - 2 and c.nights_after == 12 - 1  # throttled nights left out


def test_bench_history_changes_json_has_the_documented_fields(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    files = _history(tmp_path)
    assert main(["history", "ingest", "--db", str(db), *map(str, files)]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--db", str(db), "--json"]) == 0
    [c] = json.loads(capsys.readouterr().out)
    assert {"benchmark", "at", "change", "before", "after", "commit_before", "commit_after", "hardware"} <= set(c)
    assert main(["history", "changes", "--db", str(db), "--benchmark", "cnn"]) == 0
    assert capsys.readouterr().out.startswith("No change points")
    assert main(["history", "list", "--db", str(db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 30 and runs[0]["time"] == json.loads(files[0].read_text())["datetime"]


def test_trend_summaries_are_compact_and_mark_unreliable_nights_and_changes(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    files = _history(tmp_path)
    with open_store(db, create=True) as store:
        store.ingest(files)
        t = trend_summaries(store)
    [machine] = t["machines"]
    assert len(machine["runs"]["id"]) == 30 and len(machine["commits"]) == 30
    series = {b["benchmark"]: b for b in t["benchmarks"]}
    s = series[FULL]
    assert s["run"] is None  # the benchmark ran every night: no per-night run index needed
    assert [i for i, f in enumerate(s["flags"]) if f] == [5, 12, 24]
    assert all(s["flags"][i] == FLAG_THROTTLED for i in (5, 12, 24))
    [change] = s["changes"]
    assert change["run"] == 18 and change["kind"] == "regression"
    assert all(lo <= m <= hi for lo, m, hi in zip(s["low"], s["median"], s["high"]))
    assert series["suites/test_step_time.py::test_step_time[cnn-fp32-bs32-cuda]"]["changes"] == []
    # no raw samples: tens of bytes per benchmark-night
    size = len(json.dumps(t, separators=(",", ":")))
    assert size < 2 * 30 * 120 + 5000
    out = tmp_path / "trends.json"
    assert main(["history", "trends", "--db", str(db), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["format"] == "bench.trends"


# --------------------------------------------------------------------------- real-history judgments (issue 18)

def _gab(path, series: dict, *, suite="S", spread=0.01, rounds=100, start_ms=1_700_000_000_000):
    """A github-action-benchmark data.js: `series` name -> values (ns) per run, each a mean with a
    standard deviation of `spread` (relative) over `rounds` samples: summary statistics only."""
    n = len(next(iter(series.values())))
    runs = [{"commit": {"id": f"{i:040x}"}, "date": start_ms + i * 86_400_000, "tool": "catch2",
             "benches": [{"name": k, "value": float(v[i]), "unit": "ns", "range": f"± {float(v[i]) * spread:.6g}",
                          "extra": f"{rounds} samples"} for k, v in series.items()]} for i in range(n)]
    path.write_text("window.BENCHMARK_DATA = " + json.dumps({"lastUpdate": 0, "entries": {suite: runs}}))
    return path


def _changes(tmp_path, series, **kw):
    db = tmp_path / "h.sqlite"
    f = _gab(tmp_path / "data.js", series, **kw)
    assert main(["history", "ingest", "--db", str(db), "-q", str(f)]) == 0
    with open_store(db) as store:
        return history_changes(store), trend_summaries(store)


def test_summary_only_nights_with_mean_and_stddev_enter_change_points(tmp_path):
    v = noisy(80, 0.01, 21) * 477e6
    v[40:] = noisy(40, 0.01, 22) * 5.25e6  # 477 ms -> 5.25 ms
    changes, trends = _changes(tmp_path, {"speedup": v})
    [c] = changes
    assert (c.kind, c.scope, c.status) == ("improvement", "benchmark", "confirmed")
    assert c.change == pytest.approx(5.25 / 477 - 1, abs=0.01)
    [b] = trends["benchmarks"]
    assert b["flags"] == [0] * 80 and b["median"][0] == pytest.approx(v[0] * 1e-9, rel=1e-4)


def test_a_series_always_noisy_judges_a_step_against_its_own_noise(tmp_path):
    v = noisy(90, 0.08, 23)
    v[45:] *= 1.5
    flat = noisy(90, 0.08, 24)
    changes, trends = _changes(tmp_path, {"step": v, "flat": flat}, spread=0.3, rounds=5)
    [c] = changes  # every night is noisy (CI about +-25%): none left out, the 50% step found, nothing else
    step = next(b for b in trends["benchmarks"] if b["benchmark"] == "step")
    assert c.benchmark == "step" and abs(step["changes"][0]["run"] - 45) <= 2
    flags = [f for b in trends["benchmarks"] for f in b["flags"]]
    assert FLAG_NOISY in flags and not any(f & LEFT_OUT for f in flags)  # flagged noisy, yet none left out


def test_many_series_stepping_at_one_run_are_one_machine_event_and_a_contrary_one_stays_alone(tmp_path):
    series = {}
    for k in range(8):
        v = noisy(80, 0.01, 100 + k)
        v[50:] *= 1.3
        series[f"crowd{k}"] = v
    against = noisy(80, 0.01, 200)
    against[50:] *= 0.8
    series["against"] = against
    series["flat"] = noisy(80, 0.01, 201)
    changes, trends = _changes(tmp_path, series)
    machine = [c for c in changes if c.scope == "machine"]
    alone = [c for c in changes if c.scope == "benchmark"]
    [m] = machine
    assert m.count == 8 and m.series == 10 and m.benchmarks == sorted(f"crowd{k}" for k in range(8))
    assert m.kind == "regression" and m.change == pytest.approx(0.3, abs=0.03) and m.p_value < 1e-4
    assert [(c.benchmark, c.kind) for c in alone] == [("against", "improvement")]
    d = m.to_dict()
    assert d["scope"] == "machine" and d["count"] == 8 and d["before"] is None and "benchmarks" in d
    [event] = trends["machine_events"]
    assert event["run"] == 50 and event["count"] == 8
    crowd = next(b for b in trends["benchmarks"] if b["benchmark"] == "crowd0")
    assert crowd["changes"] == [] and crowd["events"] == [0]
    from bench.present.nightly import changes_lines

    text = "\n".join(changes_lines(changes))
    assert "1 of them machine-wide" in text and "machine-wide regression" in text and "8 of 10 series" in text
    assert "crowd0, crowd1" in text and re.search(r"\+(29|30|31)\.\d%", text)


def test_a_level_that_returns_within_a_few_runs_is_one_excursion(tmp_path):
    v = noisy(80, 0.01, 31)
    v[40:43] *= 1.5
    changes, _ = _changes(tmp_path, {"host": v})
    [c] = changes
    assert c.kind == "excursion" and len(c.runs) == 3 and c.change == pytest.approx(0.5, abs=0.05)
    assert c.after == pytest.approx(c.before, rel=0.02)


def test_a_change_in_the_last_runs_is_provisional(tmp_path):
    v = noisy(60, 0.01, 41)
    v[54:] *= 1.2
    changes, trends = _changes(tmp_path, {"late": v})
    [c] = changes
    assert c.kind == "regression" and c.status == "provisional"
    assert trends["benchmarks"][0]["changes"][0]["status"] == "provisional"


def test_changes_json_keeps_its_fields_and_adds_scope_and_status(tmp_path, capsys):
    v = noisy(60, 0.01, 51)
    v[30:] *= 1.2
    db = tmp_path / "h.sqlite"
    f = _gab(tmp_path / "data.js", {"one": v})
    assert main(["history", "ingest", "--db", str(db), "-q", str(f)]) == 0
    capsys.readouterr()
    assert main(["history", "changes", "--db", str(db), "--json"]) == 0
    [c] = json.loads(capsys.readouterr().out)
    assert {"benchmark", "at", "change", "before", "after", "commit_before", "commit_after", "kind"} <= set(c)
    assert (c["scope"], c["status"]) == ("benchmark", "confirmed") and "count" not in c


def test_the_report_figure_draws_one_marker_for_a_machine_event_and_faint_provisional_steps():
    from datetime import datetime, timedelta

    from bench.present.report.figures import trends as F

    times = [datetime(2026, 1, 1) + timedelta(days=i) for i in range(20)]
    med = [1e-3] * 10 + [1.3e-3] * 10
    s = F.TrendSeries("m", times, med, med, med, [0] * 20, [(10, 1e-3, 1.3e-3, "regression", "provisional")],
                      machine_events=[10])
    marks: set[str] = set()
    svg, _ = F.trend_figure("t", [s], marks=marks)
    assert svg and "machine-wide change (many series at once)" in marks
    assert "change point: regression (provisional)" in marks
    assert "machine-wide change" in F.trend_key(marks)


def test_the_lean_mann_whitney_p_value_is_scipys():
    from scipy import stats as sps

    from bench.analysis.changepoints import mann_whitney_p

    rng = np.random.default_rng(5)
    for n1, n2, ties in [(3, 40, False), (9, 12, False), (30, 200, True), (100, 100, True), (50, 60, False)]:
        a, b = rng.normal(0, 1, n1), rng.normal(0.4, 1, n2)
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        want = sps.mannwhitneyu(a, b, alternative="two-sided").pvalue
        assert mann_whitney_p(a, b) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_a_report_cut_to_the_last_nights_keeps_the_machine_event_it_shows(tmp_path):
    from bench.present.report.store_history import history_from_store

    series = {}
    for k in range(5):
        v = noisy(80, 0.01, 300 + k)
        v[50:] *= 1.3
        series[f"s{k}"] = v
    db = tmp_path / "h.sqlite"
    assert main(["history", "ingest", "--db", str(db), "-q", str(_gab(tmp_path / "data.js", series))]) == 0
    with open_store(db) as store:
        shown = history_from_store(store, nights=40).trends
        gone = history_from_store(store, nights=20).trends
    [e] = shown["machine_events"]
    assert e["run"] == 10 and all(b["events"] == [0] for b in shown["benchmarks"])
    assert gone["machine_events"] == [] and all(b["events"] == [] for b in gone["benchmarks"])


def test_a_benchmark_filter_still_judges_machine_wide_events_over_the_whole_machine(tmp_path):
    series = {}
    for k in range(6):
        v = noisy(80, 0.01, 400 + k)
        v[50:] *= 1.3
        series[f"crowd{k}"] = v
    series["flat"] = noisy(80, 0.01, 410)
    db = tmp_path / "h.sqlite"
    assert main(["history", "ingest", "--db", str(db), "-q", str(_gab(tmp_path / "data.js", series))]) == 0
    with open_store(db) as store:
        [m] = history_changes(store, benchmark="crowd3")
        assert history_changes(store, benchmark="flat") == []
        t = trend_summaries(store, benchmark="crowd3")
    assert (m.scope, m.count, m.series) == ("machine", 6, 7)
    assert [b["benchmark"] for b in t["benchmarks"]] == ["crowd3"] and t["benchmarks"][0]["events"] == [0]
