"""The nightly-trends section of the report: runs in time order per benchmark and machine, regressions and
environment changes marked."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

import bench.analysis.regression as regression
from bench.present.report import ReportInputs, Source, build_report
from bench.present.report.inputs import KIND_PYTEST, read_source

import report_inputs as R


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
        sources.append(Source(f"run{i}.json", KIND_PYTEST, data))
    html = build_report(ReportInputs(sources), generated=R.FIXED_TIME)
    trends = R.section(html, "trends")
    assert "are drawn from the lowest and highest median" in trends
    assert len(R.source_data(html)["inputs"]) == 900
