"""The nightly-trends section of the report: runs in time order per benchmark and machine, regressions and
environment changes marked, judged and drawn on the library's step times where a run recorded them, and
the page saying which numbers it shows."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pytest
import report_inputs as R

import bench.analysis.regression as regression
from bench.present.report import ReportInputs, build_report
from bench.present.report.inputs import read_source
from bench.records.loader import read


def trends_table(html: str) -> str:
    return re.search(r'<table class="sortable" id="trends-table">(.*?)</table>', html, re.S).group(1)


def test_history_orders_runs_by_their_datetime_and_marks_each_regression(tmp_path):
    meds = [1.0, 1.01, 1.2, 1.21, 1.19, 1.5]  # regressions at runs 2 and 5 (0-based)
    files = []
    for i, m in enumerate(meds):
        when = R.FIXED_TIME + timedelta(days=i)
        files.append((f"{9 - i:02d}.json", R.make_pytest_run(when, {"s.py::test_a": m * 1e-3, "s.py::test_b": 2e-3})))
    sources = [read_source(R.write(tmp_path / n, d)) for n, d in files]
    hist = {h.fullname: h for h in regression.benchmark_history(sources)}
    assert [r.median_s for r in hist["s.py::test_a"].runs] == pytest.approx([m * 1e-3 for m in meds])
    assert hist["s.py::test_a"].regressions == [2, 5] and hist["s.py::test_a"].latest_regressed
    assert hist["s.py::test_b"].regressions == []
    html = R.build(tmp_path, *files)
    trends = R.section(html, "trends")
    assert "Regression rule." in trends and "more than 5% above" in trends
    assert R.figures_in(trends) == {"trend": 2}
    assert trends.count('<li class="latest">') == 1 and "(latest run)" in trends
    assert "1 regressed in the latest run" in R.section(html, "summary")
    assert trends.index("s.py::test_a") < trends.index("s.py::test_b")  # regressed first
    assert 'id="suites"' in html  # the latest run is shown too


def test_history_spans_a_software_upgrade_and_marks_the_environment_change(tmp_path):
    files = []
    for i, (med, torch_v) in enumerate(((1e-3, "2.11.0"), (1e-3, "2.11.0"), (1.5e-3, "2.12.0"))):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_a": med})
        run["machine_info"]["bench_fingerprint"] = {
            "device_type": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_total_bytes": 85520809984,
            "gpu_compute_capability": "9.0", "cpu_model": "AMD EPYC", "cpu_count": 16, "torch_version": torch_v,
            "hash": f"h{i}", "model_hash": f"m{torch_v}"}
        files.append((f"r{i}.json", run))
    trends = R.section(R.build(tmp_path, *files), "trends")
    assert "environment changed (software differs from the run before)" in trends  # the trend figure's mark
    assert "environment changed: torch_version 2.11.0 → 2.12.0" in trends  # the regression and the table say what
    assert trends.count('<li class="latest">') == 1


def test_long_history_is_decimated_for_drawing_but_embedded_whole():
    sources = []
    for i in range(900):
        data = R.make_pytest_run(R.FIXED_TIME + timedelta(hours=i), {"s.py::test_a": 1e-3 * (1 + 0.01 * math.sin(i))},
                                 with_data=False)
        sources.append(read(data, f"run{i}.json"))
    html = build_report(ReportInputs(sources), generated=R.FIXED_TIME)
    trends = R.section(html, "trends")
    assert "are drawn from the lowest and highest median" in trends
    assert len(R.source_data(html)["inputs"]) == 900


def test_trends_and_regressions_use_the_librarys_step_times_where_a_run_recorded_them(tmp_path):
    # pytest-benchmark's host-clock rounds see a 50% slowdown (its sync and Python loop got slower);
    # the library's device-timed steps did not change: no regression, and the page shows the step times.
    files = []
    for i, (host, device) in enumerate(((2e-3, 1e-3), (2e-3, 1e-3), (3e-3, 1.002e-3))):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_mlp[8]": host},
                                library_medians={"s.py::test_mlp[8]": device})
        files.append((f"r{i}.json", run))
    html = R.build(tmp_path, *files)
    trends = R.section(html, "trends")
    assert "none regressed in the latest run" in R.section(html, "summary")
    assert "<h3>Regressions" not in trends
    assert ">1 ms<" in trends_table(html) and ">3 ms<" not in trends_table(html)
    assert "bench · CUDA events" in trends_table(html)
    assert "the library&#39;s step times" in trends and "CUDA events around each step" in trends
    assert "step time (ms)" in trends  # the trend figure's axis names the number drawn
    # and the other way round: the device-timed step got slower while the host rounds did not
    slow = [R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"s.py::test_mlp[8]": 2e-3},
                              library_medians={"s.py::test_mlp[8]": device})
            for i, device in enumerate((1e-3, 1e-3, 1.5e-3))]
    (tmp_path / "slow").mkdir()
    later = R.build(tmp_path / "slow", *((f"s{i}.json", r) for i, r in enumerate(slow)))
    assert "1 regressed in the latest run" in R.section(later, "summary")
    assert "1 ms → 1.5 ms (+50%" in R.section(later, "trends")


def test_runs_without_bench_extra_info_are_judged_on_pytest_benchmarks_numbers_and_the_page_says_so(tmp_path):
    files = [(f"r{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"t.py::test_theirs": m}))
             for i, m in enumerate((1e-3, 1.5e-3))]
    trends = R.section(R.build(tmp_path, *files), "trends")
    assert "No benchmark run here carries bench&#39;s extra_info" in trends
    assert "pytest-benchmark&#39;s round statistics" in trends
    assert "pytest-benchmark rounds" in trends and "time per call (ms)" in trends
    assert trends.count('<li class="latest">') == 1


def test_a_change_of_clock_between_runs_is_marked_and_not_called_a_regression(tmp_path):
    files = [("r0.json", R.make_pytest_run(R.FIXED_TIME, {"s.py::test_mlp[8]": 1e-3})),
             ("r1.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=1), {"s.py::test_mlp[8]": 3e-3},
                                           library_medians={"s.py::test_mlp[8]": 2e-3}))]
    trends = R.section(R.build(tmp_path, *files), "trends")
    assert "<h3>Regressions" not in trends
    assert "timing pytest-benchmark rounds → bench cuda_event" in trends
    assert "not compared with it" in trends and "1 of the 2 benchmark runs carry no bench extra_info" in trends
