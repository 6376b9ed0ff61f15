"""The step-time section of the report: each sweep's verdict (made from its typed analysis), method,
warnings and points table, and the figures the sweeps share."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import report_inputs as R

from bench.analysis.steptime import StepTimeAnalysis
from bench.present.report.sweeps import (
    largest_batch_line,
    read_analysis,
    sweep_warnings,
)
from bench.present.steptime import steptime_verdict
from bench.records.sweep import SweepResult

OLD_SWEEP = Path(__file__).parent / "data" / "sweep-v1-with-verdict.json"


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory) -> str:
    return R.build(tmp_path_factory.mktemp("gpu"), ("sweep.json", R.make_sweep()))


def test_one_sweep_puts_a_short_verdict_beside_its_step_time_figure_first(gpu_report):
    html = gpu_report
    verdict = R.section(html, "summary")
    card = re.search(r'<div class="verdict-text">(.*?)</div>', verdict, re.S).group(1)
    assert len(re.findall(r"<p[ >]", card)) <= 5  # a heading and at most five short lines
    assert "Equal step time (within 5% of batch 1&#39;s" in card and "Peak throughput" in card
    assert "Largest batch that fits: 1,023" in card and "NVIDIA H100 80GB HBM3" in card  # where it ran
    assert "Caveats: Budget-limited, Throttled, Out of memory." in card  # the warnings' kinds, not their prose
    assert R.figures_in(verdict) == {"step-time": 1}  # its figure beside it
    assert html.index('id="summary"') < html.index('id="step-time"')
    section = R.section(html, "step-time")
    assert R.figures_in(section) == {"throughput": 1, "memory": 1, "telemetry": 1}  # the step time is not drawn twice
    # The full verdict and how it was measured, folded in the sweep's card.
    full = re.search(r'<details class="method">(.*?)</details>', section, re.S).group(1)
    assert "The largest batch that fits is 1023." in full and "Largest batch that fits:" not in full
    assert "stop at a ±1% CI of the median" in full
    table = re.search(r'<table class="sortable" id="sweep-0-table">(.*?)</table>', html, re.S).group(1)
    assert table.count("<tr>") == 1 + 6  # heading + every point, the OOM one included
    assert ">oom<" in table and "launch-bound" in table and "compute-bound" in table


def test_table_numbers_carry_the_digits_their_ci_supports_and_notes_are_folded(tmp_path):
    data = R.make_sweep(gpu=False, oom_from=None, batches=(1, 4, 16))
    wide = data["points"][0]
    wide["samples_s"] = [0.01 * (1 + 3 * (i % 7) / 7) for i in range(40)]  # a CI hundreds of % wide
    html = R.build(tmp_path, ("wide.json", data))
    table = re.search(r'<table class="sortable" id="sweep-0-table">(.*?)</table>', html, re.S).group(1)
    shown = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table.split("</tr>")[1])]
    assert re.fullmatch(r"\d+(\.\d)?%", shown[4]) and len(shown[4].rstrip("%").replace(".", "")) <= 2  # ± CI: 2 figures
    assert "peak memory" not in table  # no CPU point has one: left out, with why
    assert "Not in the points tables (no point of any sweep has a value): peak memory (allocator peak statistics" in html
    assert "No GPU telemetry table: device cpu is not a CUDA device" in html and "GPU telemetry per point" not in html


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
    table = re.search(r'<table class="sortable" id="sweep-0-telemetry">(.*?)</table>', gpu_report, re.S).group(1)
    assert f">{120 + 1.5:.0f} W<" in table  # batch 1: energy / time
    assert ">71 W<" not in table  # the raw 1 s trailing average stays in the data, not the column


def test_warnings_name_budget_limited_throttled_and_failed_points(gpu_report):
    w = R.section(gpu_report, "warnings")
    assert "Budget-limited" in w and "batch 4" in w
    assert "Throttled" in w and "sw_power_cap" in w
    assert "Batch 1,024: out of memory" in w


def test_two_sweeps_share_each_figure_with_a_legend_naming_only_what_differs(tmp_path):
    html = R.build(tmp_path, ("a.json", R.make_sweep(precision="fp32")),
                 ("b.json", R.make_sweep(precision="bf16", base_s=0.006, slope_s=2e-5, seed=1)))
    figs = R.figures_in(R.section(html, "step-time"))
    assert figs["step-time"] == 1 and figs["throughput"] == 1
    step = re.search(r'data-fig="step-time">(.*?)</figure>', R.section(html, "step-time"), re.S).group(1)
    assert "fp32: median, 95% CI" in step and "bf16: median, 95% CI" in step
    assert "mlp" not in re.sub(r"<[^>]+>", "", step).replace("samples per step", "")  # same workload: not in legend
    assert html.count('<article class="card" id="sweep-') == 2
    assert "different hardware/software fingerprints" in R.section(html, "warnings")
    assert 'class="differs"' in R.section(html, "environment")


def test_cpu_sweep_without_memory_or_telemetry_says_why_those_figures_are_missing(tmp_path):
    html = R.build(tmp_path, ("cpu.json", R.make_sweep(gpu=False, oom_from=None)))
    figs = R.figures_in(R.section(html, "step-time"))
    assert set(figs) == {"throughput"} and R.figures_in(R.section(html, "summary")) == {"step-time": 1}
    assert "Not drawn: Peak memory (not measured: allocator peak statistics exist only on CUDA devices)" in html
    assert "Not drawn: GPU activity and power (not measured: device cpu is not a CUDA device)" in html


def test_unfinished_sweep_without_analysis_still_gives_a_report(tmp_path):
    html = R.build(tmp_path, ("part.json", R.make_sweep(finished=False, analysed=False, batches=(1, 4))))
    assert "The sweep did not finish" in html and "No step-time analysis" in html
    assert R.figures_in(R.section(html, "summary"))["step-time"] == 1


def test_sweep_where_every_point_failed_still_gives_a_report(tmp_path):
    html = R.build(tmp_path, ("oom.json", R.make_sweep(batches=(64, 128), oom_from=1)))
    assert "Not drawn: Step time (no successful point to draw)" in html
    assert "Batch 64: out of memory" in html


def test_a_sweep_written_with_its_verdict_inside_shows_the_same_sentences_made_from_its_fields(tmp_path):
    """A sweep file from before the analysis held no prose (bench.steptime version 1, with `verdict`)."""
    stored = json.loads(OLD_SWEEP.read_text())
    assert stored["analysis"]["schema_version"] == 1 and stored["analysis"]["verdict"]
    result = SweepResult.from_dict(stored)
    a, why = read_analysis(result)
    made = steptime_verdict(a)
    # The same sentences, said as honestly as today's: the throughput names its basis (the median, in
    # that version), and a fall resting on a point without a CI is not put "beyond the 95% CIs".
    old = stored["analysis"]["verdict"]
    assert why is None and made[0] == old[0] and "from the median step time" in made[1]
    assert "beyond the 95% CIs" in old[2] and "on the medians, without a 95% CI at batch 8" in made[2]
    summary = R.section(R.build(tmp_path, ("old.json", stored)), "step-time")
    for sentence in made:
        assert sentence.replace("'", "&#39;") in summary


def test_the_largest_batch_is_said_once_whether_or_not_the_verdict_says_it():
    """The verdict names the largest batch when the analysis knows it; otherwise the card's own line does,
    with how it was found. Decided on the analysis's field, not by reading the sentences."""
    found = SweepResult.from_dict(R.make_sweep())
    a, _ = read_analysis(found)
    assert "The largest batch that fits is 1023." in steptime_verdict(a)
    assert largest_batch_line(found, a) is None
    beyond = SweepResult.from_dict(R.make_sweep(oom_from=None, batches=(1, 4, 16)))
    beyond.largest_batch_reason = "no out-of-memory up to batch 16, the largest tried"
    b, _ = read_analysis(beyond)
    assert not any("largest batch" in s.lower() for s in steptime_verdict(b))
    assert largest_batch_line(beyond, b) == ("Largest batch that fits: — (no out-of-memory up to batch 16, "
                                             "the largest tried).")


def test_an_analysis_that_cannot_be_read_is_a_warning_not_a_crash(tmp_path):
    data = R.make_sweep(batches=(1, 4, 16), oom_from=None)
    data["analysis"]["schema_version"] = 99
    result = SweepResult.from_dict(data)
    assert read_analysis(result)[0] is None
    assert any("No step-time analysis" in w["text"] and "version 99" in w["text"] for w in sweep_warnings(result))
    html = R.build(tmp_path, ("future.json", data))
    assert "No verdict: the sweep has no step-time analysis." in html
    assert R.figures_in(R.section(html, "summary"))["step-time"] == 1


def test_the_stored_analysis_reads_back_into_the_same_record():
    data = R.make_sweep()
    assert "verdict" not in data["analysis"] and data["analysis"]["schema_version"] == 3
    a = StepTimeAnalysis.from_dict(data["analysis"])
    assert a.to_dict() == data["analysis"]


def test_the_method_says_how_warm_up_ended_under_todays_rule_and_under_the_old_step_count_rule():
    from bench.present.report.sweeps import warmup_sentence
    from bench.run.sweep import SweepConfig

    today = warmup_sentence(SweepConfig().to_dict()["warmup_rule"])
    assert "500 ms of steps" in today and "neither way by more than 1%" in today and "apart from the budget" in today
    assert "?" not in today
    before = warmup_sentence({"min_time_s": 0.5, "tolerance": 0.01, "max_steps": 100000, "max_time_s": 30.0,
                              "block_s": 0.125})
    assert "1% below" in before and "half the point's budget" in before
    old = warmup_sentence({"min_steps": 2, "window": 3, "tolerance": 0.05, "max_steps": 200, "max_time_s": 30.0})
    assert "at least 2 steps" in old and "last 3 within 5%" in old


@pytest.mark.parametrize("rule, words", [
    ({"name": "ci", "ci_target": 0.01}, "within ±1%"),
    ({"name": "count", "count": 7}, "after exactly 7 samples"),
    ({"name": "budget-only", "patience": 3}, "the rule 'budget-only' (patience=3) says so"),
])
def test_the_method_names_the_stopping_rule_the_sweep_used(rule, words):
    from bench.present.report.sweeps import stopping_sentence

    text = stopping_sentence({**rule, "min_samples": 10, "min_time_s": 0.5, "budget_s": 2.0, "max_samples": 100000})
    assert words in text and "2 s budget per point" in text and "?" not in text


def test_the_method_says_whether_the_budget_counted_warm_up():
    from bench.present.report.sweeps import stopping_sentence
    from bench.run.sweep import SweepConfig

    assert "(warm-up apart)" in stopping_sentence(SweepConfig().to_dict()["stopping_rule"])
    old = {"name": "ci", "ci_target": 0.01, "min_samples": 10, "min_time_s": 0.5, "budget_s": 2.0, "max_samples": 100000}
    assert "(warm-up included)" in stopping_sentence(old)


def test_two_sweeps_of_the_same_configuration_get_distinct_card_titles(tmp_path):
    first, second = R.make_sweep(gpu=False, oom_from=None), R.make_sweep(gpu=False, oom_from=None, seed=1)
    second["created"] = "2026-01-03T00:00:00+00:00"
    html = R.build(tmp_path, ("a.json", first), ("b.json", second))
    titles = re.findall(r'<h3><span class="swatch"[^>]*></span>(.*?)</h3>', R.section(html, "step-time"))
    assert len(titles) == 2 and len(set(titles)) == 2
    assert titles[1].endswith("2026-01-03T00:00:00+00:00")


def test_the_throughput_figure_draws_batch_over_the_mean_step_as_the_analysis_does_and_says_so():
    from bench.present.report.figures.sweeps import throughput_figure
    from bench.present.report.sweeps import sweep_series

    result = SweepResult.from_dict(R.make_sweep())
    s = sweep_series(result, "mlp", "C0")
    assert s.throughput_basis == "mean"
    assert s.throughput == pytest.approx([result.point(b).throughput for b in s.batch])
    assert max(s.throughput) == pytest.approx(read_analysis(result)[0].peak_throughput_samples_per_s)
    assert "samples/s from the mean step time, 95% CI" in throughput_figure([s])
    old = sweep_series(SweepResult.from_dict(json.loads(OLD_SWEEP.read_text())), "old", "C1")
    assert old.throughput_basis == "median"  # analysed before throughput came from the mean: said so
