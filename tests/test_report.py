"""The HTML report: what each kind of input produces, escaping of untrusted strings, the embedded data,
nightly regression marks, bad inputs, and how the file is written."""

from __future__ import annotations

import argparse
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import bench.analysis.regression as R
from bench.analysis.steptime import analyse_sweep
from bench.core.errors import BenchError
from bench.present.report import build as B
from bench.records.sweep import Case, Measurement, SweepResult

EVIL = "<script>alert(1)</script>\"q'"
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------ input makers
# Built with the project's own records and analyses, so the report reads what the tools really write.


def make_sweep(workload: str = "mlp", precision: str = "fp32", *, gpu: bool = True, batches=(1, 4, 16, 64, 256, 1024),
               base_s: float = 0.010, slope_s: float = 4e-5, oom_from: int | None = 1024, error: str | None = None,
               seed: int = 0, n: int = 30, finished: bool = True, analysed: bool = True) -> dict:
    """A bench.run.sweep dict: flat then linear step time, GPU memory and telemetry, an OOM at the top."""
    rng = np.random.default_rng(seed)
    device = "cuda:0" if gpu else "cpu"
    points = []
    for b in batches:
        case = Case(workload, b, device, precision)
        if oom_from is not None and b >= oom_from:
            points.append(Measurement(case, status="oom", error=error or "CUDA out of memory. Tried to allocate 2.00 GiB"))
            continue
        t = max(base_s, base_s * 0.6 + slope_s * b)
        samples = (t * (1 + 0.004 * rng.standard_normal(n))).tolist()
        m = Measurement(case, timer="cuda_event" if gpu else "host", samples_s=samples, block_medians_s=[t, t * 1.001],
                        stop_reason="ci_target" if b != 4 else "budget", warmup_reason="stable")
        if b == 4:
            m.warnings.append("time budget ran out before the 95% CI of the median reached ±1.0% (it is ±1.4%)")
        if gpu:
            m.peak_allocated_bytes = int(3e8 + 2.5e6 * b)
            m.peak_reserved_bytes = int(4e8 + 2.6e6 * b)
            busy = min(99.0, 30 + 0.2 * b)
            m.telemetry = {"telemetry_source": "nvml", "sample_period_s": 0.05, "kernel_active_pct_mean": busy,
                           "sm_activity_pct_mean": busy * 0.7, "tensor_activity_pct_mean": busy * 0.4,
                           "dram_bw_pct_mean": busy * 0.3, "power_w_energy_mean": 120 + 1.5 * b ** 0.8,
                           "power_source": "energy_counter", "power_w_mean": 71.0,  # 1 s average: mostly idle
                           "energy_per_sample_j": 0.5 / b + 0.002, "throttled": b >= 256,
                           "throttle_reasons": ["sw_power_cap"] if b >= 256 else [],
                           "diagnosis": {"label": "launch-bound" if b < 64 else "compute-bound",
                                         "sentence": "rule-based reading of the telemetry"}}
        else:
            m.null_reasons["peak_allocated_bytes"] = "allocator peak statistics exist only on CUDA devices"
            m.null_reasons["kernel_active_pct_mean"] = "device cpu is not a CUDA device"
        points.append(m)
    if error is not None:
        points.append(Measurement(Case(workload, 3, device, precision), status="error", error=error))
    env = {"device_type": "cuda" if gpu else "cpu", "device": device,
           "gpu_name": "NVIDIA H100 80GB HBM3" if gpu else None, "gpu_memory_total_bytes": 85e9 if gpu else None,
           "gpu_power_limit_w": 700.0 if gpu else None, "torch_version": "2.13.0", "python_version": "3.11.7",
           "cpu_model": "AMD EPYC", "hash": f"{precision}{workload}"[:16].ljust(16, "0"),
           "null_reasons": {} if gpu else {"gpu_name": "device is cpu, not a CUDA GPU"}}
    config = {"workload": workload, "device": device, "precision": precision, "optimizer": "sgd", "eps": 0.05,
              "ci_target": 0.01, "stopping_rule": {"name": "ci", "ci_target": 0.01, "min_samples": 10,
                                                    "min_time_s": 0.5, "budget_s": 2.0, "max_samples": 100000},
              "warmup_rule": {"min_steps": 2, "window": 3, "tolerance": 0.05, "max_steps": 200, "max_time_s": 30.0}}
    r = SweepResult(config=config, environment=env, points=points, finished=finished,
                    largest_batch_that_fits=(oom_from - 1) if oom_from and oom_from > 1 else None,
                    largest_batch_reason="bisected between the last fit and the first OOM" if oom_from else None,
                    created="2026-01-01T00:00:00+00:00")
    if analysed:
        r.analysis = analyse_sweep(r).to_dict()
    return r.to_dict()


def make_tta(task: str = "demo", n_bootstrap: int = 40) -> dict:
    """A bench.tta dict: curves whose steps to target follow S(B) = 100(1 + 64/B), one batch misses."""
    from bench.analysis.tta import analyse_tta
    from bench.records.curves import Curve, CurvePoint
    from bench.records.tta import StepTime, TTAResult

    curves = []
    for b in (8, 32, 128, 512, 2048):
        for lr in (0.05, 0.1):
            for seed in (0, 1):
                need = 100 * (1 + 64 / b) * (1.0 if lr == 0.1 else 1.3) * (1 + 0.05 * seed)
                pts = []
                for step in range(0, 1201, 20):
                    acc = 0.9 * (1 - math.exp(-2.3 * step / need)) if b < 2048 else 0.5 * (1 - math.exp(-step / 300))
                    pts.append(CurvePoint(step, step * b, step * 0.001, 1 - acc, acc))
                curves.append(Curve(task, b, lr, seed, pts, metric="accuracy", higher_is_better=True))
    times = [StepTime(b, 0.01 + 1e-5 * b, 0.0099 + 1e-5 * b, 0.0101 + 1e-5 * b) for b in (8, 32, 128, 512, 2048)]
    analysis = analyse_tta(curves, times, 0.81, n_bootstrap=n_bootstrap)
    result = TTAResult(config={"study": {"task": task, "target": 0.81, "lr_rule": "linear", "lr_factors": [0.5, 1],
                                         "seeds": [0, 1]}},
                       task={"name": task, "metric": "accuracy"}, curves=curves, step_times=times,
                       step_time_source="sweep file demo.json", analysis=analysis,
                       environment={"torch": "2.13.0", "python": "3.11.7", "device": "cpu"}, finished=True)
    return result.to_dict()


def make_pytest_run(when: datetime, medians: dict[str, float], *, spread: float = 0.01, extra=None,
                    with_data: bool = True) -> dict:
    """A pytest-benchmark JSON dict (as `--benchmark-json` writes it) with one entry per name."""
    benches = []
    for name, med in medians.items():
        q1, q3 = med * (1 - spread), med * (1 + spread)
        stats = {"min": med * 0.97, "max": med * 1.05, "mean": med, "stddev": med * spread, "rounds": 20,
                 "median": med, "iqr": q3 - q1, "q1": q1, "q3": q3, "iqr_outliers": 0, "stddev_outliers": 1,
                 "outliers": "1;0", "ld15iqr": q1, "hd15iqr": q3, "ops": 1 / med, "total": med * 20,
                 "iterations": 1}
        if with_data:
            stats["data"] = [med * (1 + spread * math.sin(i)) for i in range(20)]
        short = name.split("::")[-1]
        params = {"batch_size": int(short.split("[")[1].rstrip("]"))} if "[" in short else None
        benches.append({"group": None, "name": short, "fullname": name, "params": params,
                        "param": None, "extra_info": dict(extra or {}), "options": {"timer": "perf_counter"},
                        "stats": stats})
    return {"machine_info": {"node": "runner-1", "processor": "x86_64", "machine": "x86_64",
                             "python_version": "3.11.7", "system": "Linux", "cpu": {"brand_raw": "AMD EPYC"}},
            "commit_info": {"id": "abc123", "dirty": False, "project": "bench", "branch": "main"},
            "benchmarks": benches, "datetime": when.isoformat(), "version": "5.3.1"}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def build(tmp_path: Path, *named: tuple[str, object], **kw) -> str:
    paths = [write(tmp_path / name, data) for name, data in named]
    return B.build_report(B.load_inputs(paths), generated=FIXED_TIME, **kw)


def section(html: str, section_id: str) -> str:
    m = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert m, f"no section {section_id}"
    return m.group(1)


def figures_in(html_part: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for m in re.finditer(r'<figure class="fig" data-fig="([^"]+)">\s*<svg', html_part):
        found[m.group(1)] = found.get(m.group(1), 0) + 1
    return found


def source_data(html: str):
    m = re.search(r'<script type="application/json" id="source-data">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory) -> str:
    return build(tmp_path_factory.mktemp("gpu"), ("sweep.json", make_sweep()))


def test_one_sweep_puts_the_verdict_first_then_figures_and_the_points_table(gpu_report):
    html = gpu_report
    verdict = section(html, "summary")
    assert "Step time stays within 5%" in verdict or "Step time" in verdict
    assert "The largest batch that fits is 1023." in verdict and "Largest batch that fits:" not in verdict
    assert "NVIDIA H100 80GB HBM3" in verdict  # the fingerprint sits beside the verdict
    assert "stop at a ±1% CI of the median" in verdict  # and how it was measured
    assert html.index('id="summary"') < html.index('id="step-time"')
    figs = figures_in(section(html, "step-time"))
    assert figs == {"step-time": 1, "throughput": 1, "memory": 1, "telemetry": 1}
    table = re.search(r'<table class="sortable" id="sweep-0-table">(.*?)</table>', html, re.S).group(1)
    assert table.count("<tr>") == 1 + 6  # heading + every point, the OOM one included
    assert ">oom<" in table and "launch-bound" in table and "compute-bound" in table


def test_sweep_figures_are_labelled_with_units_and_mark_knee_equal_time_and_oom(gpu_report):
    step = re.search(r'data-fig="step-time">(.*?)</figure>', gpu_report, re.S).group(1)
    assert "step time (ms)" in step and "batch size (samples per step)" in step
    assert "knee ≈" in step and "equal time (within 5% of batch 1)" in step
    assert "OOM from 1,024" in step and "flat guide" in step and "linear guide" in step
    memory = re.search(r'data-fig="memory">(.*?)</figure>', gpu_report, re.S).group(1)
    assert "peak memory (MiB)" in memory or "peak memory (GiB)" in memory
    assert "largest batch that fits: 1,023" in memory and "card memory" in memory
    tel = re.search(r'data-fig="telemetry">(.*?)</figure>', gpu_report, re.S).group(1)
    assert "power (W)" in tel and "SM activity (GPM)" in tel and "clocks held down (throttled)" in tel


def test_power_column_shows_energy_over_timed_time_not_nvmls_one_second_average(gpu_report):
    table = re.search(r'<table class="sortable" id="sweep-0-table">(.*?)</table>', gpu_report, re.S).group(1)
    assert f">{120 + 1.5:.0f} W<" in table  # batch 1: energy / time
    assert ">71 W<" not in table  # the raw 1 s trailing average stays in the data, not the column


def test_warnings_name_budget_limited_throttled_and_failed_points(gpu_report):
    w = section(gpu_report, "warnings")
    assert "Budget-limited" in w and "batch 4" in w
    assert "Throttled" in w and "sw_power_cap" in w
    assert "Batch 1,024: out of memory" in w


def test_two_sweeps_share_each_figure_with_a_legend_naming_only_what_differs(tmp_path):
    html = build(tmp_path, ("a.json", make_sweep(precision="fp32")),
                 ("b.json", make_sweep(precision="bf16", base_s=0.006, slope_s=2e-5, seed=1)))
    figs = figures_in(section(html, "step-time"))
    assert figs["step-time"] == 1 and figs["throughput"] == 1
    step = re.search(r'data-fig="step-time">(.*?)</figure>', html, re.S).group(1)
    assert "fp32: median, 95% CI" in step and "bf16: median, 95% CI" in step
    assert "mlp" not in re.sub(r"<[^>]+>", "", step).replace("samples per step", "")  # same workload: not in legend
    assert html.count('<article class="card" id="sweep-') == 2
    assert "different hardware/software fingerprints" in section(html, "warnings")
    assert 'class="differs"' in section(html, "environment")


def test_cpu_sweep_without_memory_or_telemetry_says_why_those_figures_are_missing(tmp_path):
    html = build(tmp_path, ("cpu.json", make_sweep(gpu=False, oom_from=None)))
    figs = figures_in(section(html, "step-time"))
    assert set(figs) == {"step-time", "throughput"}
    assert "Not drawn: Peak memory (not measured: allocator peak statistics exist only on CUDA devices)" in html
    assert "Not drawn: GPU activity and power (not measured: device cpu is not a CUDA device)" in html


def test_unfinished_sweep_without_analysis_still_gives_a_report(tmp_path):
    html = build(tmp_path, ("part.json", make_sweep(finished=False, analysed=False, batches=(1, 4))))
    assert "The sweep did not finish" in html and "No step-time analysis" in html
    assert figures_in(section(html, "step-time"))["step-time"] == 1


def test_sweep_where_every_point_failed_still_gives_a_report(tmp_path):
    html = build(tmp_path, ("oom.json", make_sweep(batches=(64, 128), oom_from=1)))
    assert "Not drawn: Step time (no successful point to draw)" in html
    assert "Batch 64: out of memory" in html


# ---------------------------------------------------------------------------------------- escaping


def test_untrusted_strings_from_every_input_are_escaped_in_text_attributes_figures_and_json(tmp_path):
    sweep = make_sweep(workload=EVIL, error=f'boom {EVIL} " onmouseover="alert(2)')
    run = make_pytest_run(FIXED_TIME, {f"suites/t.py::test_{EVIL}[4]": 0.01}, extra={"note": EVIL, EVIL: 1})
    tta = make_tta(task=EVIL)
    html = build(tmp_path, ("s.json", sweep), ("p.json", run), ("t.json", tta))
    assert "<script>alert" not in html.lower()
    assert 'onmouseover="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    # Only our own three scripts: the capture hook, the embedded data, the page script.
    assert html.count("<script") == 3 and html.count("</script>") == 3
    data = source_data(html)
    kinds = {i["kind"]: i["data"] for i in data["inputs"]}
    assert kinds["sweep"]["config"]["workload"] == EVIL  # the embedded data round-trips unchanged
    assert kinds["pytest-benchmark"]["benchmarks"][0]["extra_info"]["note"] == EVIL
    assert kinds["tta"]["task"]["name"] == EVIL


def test_names_with_dollar_signs_or_a_leading_underscore_are_drawn_as_plain_text(tmp_path):
    runs = []
    for i, med in enumerate((1.0e-3, 1.0e-3, 1.5e-3)):
        run = make_pytest_run(FIXED_TIME + timedelta(days=i), {"t.py::test_cost": med})
        run["benchmarks"][0].update(fullname="t.py::test_cost[$^$]", name="test_cost[$^$]")
        runs.append((f"r{i}.json", run))
    sweeps = [("a.json", make_sweep(workload="_private", batches=(1, 4), oom_from=None)),
              ("b.json", make_sweep(workload="$x^2$", batches=(1, 4), oom_from=None, seed=1))]
    html = build(tmp_path, *runs, *sweeps)  # "$^$" is not valid mathtext: this used to raise
    assert "t.py::test_cost[$^$]" in section(html, "trends")
    step = re.search(r'data-fig="step-time">(.*?)</figure>', html, re.S).group(1)
    assert "_private: median, 95% CI" in step  # matplotlib would hide a legend label starting with "_"
    assert "$x^2$: median, 95% CI" in step  # shown as written, not rendered as maths


def test_embedded_json_cannot_close_its_script_element():
    text = B.embed_json({"a": "</script><!-- & \u2028", "b": [1.5, float("nan")]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028", "b": [1.5, None]}


def test_page_makes_no_external_references(gpu_report):
    refs = re.findall(r'(?:src|href|xlink:href)\s*=\s*["\']?\s*(?:https?:)?//', gpu_report, re.I)
    refs += re.findall(r'url\(\s*["\']?\s*(?:https?:)?//', gpu_report, re.I)
    refs += re.findall(r"@import", gpu_report)
    assert refs == []
    assert "http://" not in gpu_report and "https://" not in gpu_report


# ------------------------------------------------------------------------------- pytest-benchmark


def test_suite_json_alone_gives_a_table_and_batch_curves_through_the_adapter(tmp_path):
    names = {f"suites/test_step.py::test_mlp[{b}]": 0.001 * (1 + b / 64) for b in (4, 16, 64)}
    names["suites/test_other.py::test_plain"] = 0.002
    html = build(tmp_path, ("run.json", make_pytest_run(FIXED_TIME, names)))
    suites = section(html, "suites")
    assert figures_in(suites) == {"suite": 1}
    assert suites.count("<tr>") >= 1 + 4
    assert "test_plain" in suites and "One run only" in section(html, "summary")
    # test_mlp has three batch sizes: the adapter turns it into a curve over batch size.
    assert figures_in(section(html, "step-time"))["step-time"] == 1
    assert 'id="trends"' not in html


def test_regression_needs_both_a_5_percent_slowdown_and_separate_iqrs():
    t = FIXED_TIME

    def run(med, q1, q3):
        return R.RunStats(t, "x", med, q1, q3)

    assert R.is_regression(run(1.0, 0.99, 1.01), run(1.10, 1.09, 1.11))
    assert not R.is_regression(run(1.0, 0.99, 1.01), run(1.04, 1.03, 1.05))  # apart, but under 5%
    assert not R.is_regression(run(1.0, 0.8, 1.2), run(1.10, 0.9, 1.3))  # 10% slower, but IQRs overlap
    assert not R.is_regression(run(1.0, 0.99, 1.01), run(0.8, 0.79, 0.81))  # faster
    assert not R.is_regression(run(1.0, None, None), run(2.0, None, None))  # spread unknown: no claim


def test_history_orders_runs_by_their_datetime_and_marks_each_regression(tmp_path):
    meds = [1.0, 1.01, 1.2, 1.21, 1.19, 1.5]  # regressions at runs 2 and 5 (0-based)
    files = []
    for i, m in enumerate(meds):
        when = FIXED_TIME + timedelta(days=i)
        files.append((f"{9 - i:02d}.json", make_pytest_run(when, {"s.py::test_a": m * 1e-3, "s.py::test_b": 2e-3})))
    sources = [B.read_source(write(tmp_path / n, d)) for n, d in files]
    hist = {h.fullname: h for h in R.benchmark_history(sources)}
    assert [r.median_s for r in hist["s.py::test_a"].runs] == pytest.approx([m * 1e-3 for m in meds])
    assert hist["s.py::test_a"].regressions == [2, 5] and hist["s.py::test_a"].latest_regressed
    assert hist["s.py::test_b"].regressions == []
    html = build(tmp_path, *files)
    trends = section(html, "trends")
    assert "Regression rule." in trends and "more than 5% above" in trends
    assert figures_in(trends) == {"trend": 2}
    assert trends.count('<li class="latest">') == 1 and "(latest run)" in trends
    assert "1 regressed in the latest run" in section(html, "summary")
    assert trends.index("s.py::test_a") < trends.index("s.py::test_b")  # regressed first
    assert 'id="suites"' in html  # the latest run is shown too


def test_history_spans_a_software_upgrade_and_marks_the_environment_change(tmp_path):
    files = []
    for i, (med, torch_v) in enumerate(((1e-3, "2.11.0"), (1e-3, "2.11.0"), (1.5e-3, "2.12.0"))):
        run = make_pytest_run(FIXED_TIME + timedelta(days=i), {"s.py::test_a": med})
        run["machine_info"]["bench_fingerprint"] = {
            "device_type": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_total_bytes": 85520809984,
            "gpu_compute_capability": "9.0", "cpu_model": "AMD EPYC", "cpu_count": 16, "torch_version": torch_v,
            "hash": f"h{i}", "model_hash": f"m{torch_v}"}
        files.append((f"r{i}.json", run))
    trends = section(build(tmp_path, *files), "trends")
    assert "environment changed (software differs from the run before)" in trends  # the trend figure's mark
    assert "environment changed: torch_version 2.11.0 → 2.12.0" in trends  # the regression and the table say what
    assert trends.count('<li class="latest">') == 1


def test_long_history_is_decimated_for_drawing_but_embedded_whole(tmp_path):
    sources = []
    for i in range(900):
        data = make_pytest_run(FIXED_TIME + timedelta(hours=i), {"s.py::test_a": 1e-3 * (1 + 0.01 * math.sin(i))},
                               with_data=False)
        sources.append(B.Source(f"run{i}.json", B.KIND_PYTEST, data))
    html = B.build_report(B.ReportInputs(sources), generated=FIXED_TIME)
    trends = section(html, "trends")
    assert "are drawn from the lowest and highest median" in trends
    assert len(source_data(html)["inputs"]) == 900
    idx = B.F.decimate(900, [math.sin(i) for i in range(900)], 400)
    assert len(idx) <= 402 and idx[0] == 0 and idx[-1] == 899


def test_over_the_embed_limit_round_times_are_dropped_and_the_page_says_so(tmp_path):
    runs = [("a.json", make_pytest_run(FIXED_TIME, {"s.py::test_a": 1e-3})),
            ("b.json", make_pytest_run(FIXED_TIME + timedelta(days=1), {"s.py::test_a": 1e-3}))]
    html = build(tmp_path, *runs, max_embed_bytes=1000)
    data = source_data(html)
    assert "stats.data" in data["omitted"] and "left out" in section(html, "data")
    stats = data["inputs"][0]["data"]["benchmarks"][0]["stats"]
    assert "data" not in stats and stats["median"] == 1e-3


# -------------------------------------------------------------------------------- time to accuracy


@pytest.fixture(scope="module")
def tta_report(tmp_path_factory) -> str:
    return build(tmp_path_factory.mktemp("tta"), ("tta.json", make_tta()))


def test_tta_alone_draws_convergence_steps_to_target_and_time_to_accuracy(tta_report):
    tta = section(tta_report, "tta")
    assert figures_in(tta) == {"convergence": 1, "steps": 1, "tta": 1}
    assert "B_crit ≈" in tta and "S(B) = S_min·(1 + B_crit/B)" in tta
    assert "naive: every batch at batch 8" in tta and "fastest measured: batch" in tta and "B* = √(B_crit·a/b)" in tta
    assert "did not reach the target" in tta  # batch 2048 never got there
    summary = section(tta_report, "summary")
    assert "Fastest to target: batch" in summary and "Critical batch size B_crit =" in summary
    assert "Equal-step-time rule of thumb" in summary
    assert 'id="step-time"' not in tta_report


def test_curves_file_alone_draws_the_convergence_curves(tmp_path):
    from bench.records.curves import CurvesFile
    from bench.records.tta import TTAResult

    curves = TTAResult.from_dict(make_tta()).curves
    cf = CurvesFile(curves=curves, config={"target": 0.81}, task={"name": "demo"}, finished=True)
    html = build(tmp_path, ("c.json", cf.to_dict()))
    assert figures_in(section(html, "tta")) == {"convergence": 1}


# --------------------------------------------------------------------------------- inputs, output


def test_bad_inputs_are_one_line_bench_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    write(tmp_path / "other.json", {"schema": "something.else"})
    write(tmp_path / "list.json", [1, 2])
    (tmp_path / "empty").mkdir()
    cases = {tmp_path / "missing.json": "no such file", tmp_path / "bad.json": "not valid JSON",
             tmp_path / "other.json": "unknown results format (schema 'something.else')",
             tmp_path / "list.json": "unknown results format (a JSON list)", tmp_path / "empty": "holds no *.json"}
    for path, words in cases.items():
        with pytest.raises(BenchError) as e:
            B.load_inputs([path])
        assert words in str(e.value) and "\n" not in str(e.value)


def test_a_lone_utf16_surrogate_is_a_one_line_error_or_a_skip_inside_a_folder(tmp_path):
    sweep = json.dumps(make_sweep(batches=(1, 4), oom_from=None, gpu=False))
    bad = tmp_path / "in" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(sweep.replace('"mlp"', '"ml\\ud800p"', 1))
    write(tmp_path / "in" / "good.json", json.loads(sweep.replace('"mlp"', '"ok \\ud83d\\ude00"', 1)))  # a valid pair
    with pytest.raises(BenchError, match="lone UTF-16 surrogate") as e:
        B.load_inputs([bad])
    assert "\n" not in str(e.value)
    inputs = B.load_inputs([tmp_path / "in"])
    assert [Path(s.path).name for s in inputs.sources] == ["good.json"]
    assert inputs.skipped[0][0].endswith("bad.json") and "surrogate" in inputs.skipped[0][1]
    B.build_report(inputs, generated=FIXED_TIME).encode("utf-8")


def test_folders_are_read_recursively_and_stray_json_inside_is_skipped_and_listed(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    write(tmp_path / "deep" / "er" / "sweep.json", make_sweep(batches=(1, 4), oom_from=None))
    write(tmp_path / "package.json", {"name": "not results"})
    inputs = B.load_inputs([tmp_path])
    assert [s.kind for s in inputs.sources] == ["sweep"]
    assert inputs.skipped and inputs.skipped[0][0].endswith("package.json")
    html = B.build_report(inputs, generated=FIXED_TIME)
    assert "Skipped" in section(html, "warnings") and "package.json" in html
    stray = tmp_path / "stray"
    stray.mkdir()
    write(stray / "x.json", {"hello": 1})
    with pytest.raises(BenchError, match="no results files among the inputs"):
        B.load_inputs([stray])


def _parser():
    import bench.cli.report as report

    parser = argparse.ArgumentParser(prog="bench")
    report.register(parser.add_subparsers(dest="command"))
    return parser


def test_command_writes_the_default_path_and_refuses_to_overwrite_without_the_flag(tmp_path, monkeypatch, capsys):
    src = write(tmp_path / "s.json", make_sweep(batches=(1, 4, 16), oom_from=None, gpu=False))
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["report", str(src), "--title", "My <b>title</b>"])
    assert args.func(args) == 0
    written = list((tmp_path / "reports").glob("report-*.html"))
    assert len(written) == 1 and "Report: reports/report-" in capsys.readouterr().out
    html = written[0].read_text()
    assert "<title>My &lt;b&gt;title&lt;/b&gt;</title>" in html

    out = tmp_path / "r.html"
    out.write_text("keep me")
    args = _parser().parse_args(["report", str(src), "-o", str(out)])
    with pytest.raises(BenchError, match="exists: pass --overwrite"):
        args.func(args)
    assert out.read_text() == "keep me"
    args = _parser().parse_args(["report", str(src), "-o", str(out), "--overwrite"])
    assert args.func(args) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary file left


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_command_wants_a_finite_positive_embed_limit(tmp_path, value):
    src = write(tmp_path / "s.json", make_sweep(batches=(1, 4), oom_from=None, gpu=False))
    args = _parser().parse_args(["report", str(src), "-o", str(tmp_path / "r.html"), "--max-embed-mb", value])
    with pytest.raises(BenchError, match="finite positive"):
        args.func(args)


def test_write_report_refuses_an_existing_file_even_if_it_appears_after_the_check(tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    monkeypatch.setattr(B, "check_output", lambda path, overwrite: None)  # the file appears after the check
    out.write_text("theirs")
    with pytest.raises(BenchError, match="exists"):
        B.write_report("<html></html>", out)
    assert out.read_text() == "theirs" and list(tmp_path.iterdir()) == [out]


def test_the_same_inputs_give_the_same_page(tmp_path):
    path = write(tmp_path / "s.json", make_sweep(gpu=False, batches=(1, 4, 16), oom_from=None))
    first = B.build_report(B.load_inputs([path]), generated=FIXED_TIME)
    second = B.build_report(B.load_inputs([path]), generated=FIXED_TIME)
    assert first == second
    ids = re.findall(r'<[a-zA-Z][^<>]*?\sid="([^"]+)"', first)
    assert len(ids) == len(set(ids))  # many SVGs share one document: no id may repeat
