"""The time-to-accuracy section of the report: each study's verdict (made by bench.present.tta), figures
and table, and the convergence curves of a curves file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import report_inputs as R

from bench.present.report.tta import tta_summary
from bench.records.curves import CurvesFile
from bench.records.tta import TTAResult

OLD_TTA = Path(__file__).parent / "data" / "tta-v1-with-summaries.json"


@pytest.fixture(scope="module")
def tta_report(tmp_path_factory) -> str:
    return R.build(tmp_path_factory.mktemp("tta"), ("tta.json", R.make_tta()))


def test_tta_alone_draws_convergence_steps_to_target_and_time_to_accuracy(tta_report):
    tta = R.section(tta_report, "tta")
    summary = R.section(tta_report, "summary")
    assert R.figures_in(tta) == {"convergence": 1, "steps": 1} and R.figures_in(summary) == {"tta": 1}
    assert "B_crit ≈" in tta and "S(B) = S_min·(1 + B_crit/B)" in tta
    assert "naive: every batch at batch 8" in summary and "fastest measured: batch" in summary
    assert "B* = √(B_crit·a/b)" in summary
    assert "not reached: at least this many steps" in tta  # batch 2048 never got there: a lower bound
    card = re.search(r'<div class="verdict-text">(.*?)</div>', summary, re.S).group(1)
    assert "Fastest to accuracy ≥ 0.81: batch" in card and "Critical batch size B_crit ≈" in card
    # The naive error in words that cannot be read backwards ("N% short: the real time is M% longer").
    assert re.search(r"At batch [\d,]+, the equal-step-time estimate is \d+% (short: the real time is \d+% longer|"
                     r"long: the real time is \d+% shorter)", card)
    assert len(re.findall(r"<p[ >]", card)) <= 5
    # The full verdict, folded in the study's card.
    assert "Fastest to target: batch" in tta and "Equal-step-time rule of thumb" in tta
    assert 'id="step-time"' not in tta_report


def test_curves_file_alone_draws_the_convergence_curves(tmp_path):
    curves = TTAResult.from_dict(R.make_tta()).curves
    cf = CurvesFile(curves=curves, config={"target": 0.81}, task={"name": "demo"}, finished=True)
    html = R.build(tmp_path, ("c.json", cf.to_dict()))
    assert R.figures_in(R.section(html, "summary")) == {"convergence": 1}  # beside the card
    assert R.figures_in(R.section(html, "tta")) == {}  # not drawn twice


def test_a_study_written_with_prose_summaries_inside_shows_the_sentences_it_always_did(tmp_path):
    """A bench.tta file from before its analysis held no prose (its `naive` and `generalisation` carried
    summaries): the page's verdict is made from the typed fields, and reads as `bench tta` printed it then."""
    stored = json.loads(OLD_TTA.read_text())
    assert stored["analysis"]["naive"]["summary"] and stored["analysis"]["generalisation"]["summary"]
    summary = tta_summary(TTAResult.from_dict(stored))
    assert ("Equal-step-time rule of thumb (every batch size takes batch 8's step time (789 µs)): it picks batch 64 "
            "and predicts 58.1 ms to target; the real time is 66.7 ms, so the equal-step-time estimate is 13% short: the real time is 15% longer; that batch is "
            "also the fastest.") in summary
    assert ("Generalisation: final accuracy 0.9556 at batch 8 vs 0.9611 at batch 64: the largest batch ends "
            "no worse.") in summary
    assert not any(s.startswith("Warning:") for s in summary)  # the page lists warnings in their own section
    html = R.build(tmp_path, ("old.json", stored))
    assert "Fastest to target: batch 64, 66.7 ms" in R.section(html, "tta")
    assert "Fastest to accuracy ≥ 0.96: batch 64, 67 ms" in R.section(html, "summary")


def test_two_studies_of_the_same_task_are_named_by_what_distinguishes_them(tmp_path):
    linear, sqrt = R.make_tta(), R.make_tta()
    sqrt["config"]["study"]["lr_rule"] = "sqrt"
    html = R.build(tmp_path, ("a.json", linear), ("b.json", sqrt))
    titles = re.findall(r"<h3>(.*?)</h3>", R.section(html, "tta"))
    assert titles == ["demo · accuracy to 0.81 · lr rule linear", "demo · accuracy to 0.81 · lr rule sqrt"]
    same = R.build(tmp_path, ("c.json", R.make_tta()), ("d.json", R.make_tta()))
    assert re.findall(r"<h3>(.*?)</h3>", R.section(same, "tta")) == ["demo · accuracy to 0.81 · c.json",
                                                                      "demo · accuracy to 0.81 · d.json"]


def test_the_study_table_shows_the_step_time_its_time_to_target_multiplies(tta_report):
    table = re.search(r'<table class="sortable" id="tta-0-table">(.*?)</table>', tta_report, re.S).group(1)
    assert "step time used" in table
    row = re.search(r"<tr><td data-v=\"32\".*?</tr>", table, re.S).group(0)
    cells = re.findall(r'<td[^>]*data-v="([^"]+)"', row)
    steps, used, ttt = float(cells[2]), float(cells[6]), float(cells[7])
    assert ttt == pytest.approx(steps * used)
    assert "time to target = steps × this median" in row or "time to target = steps × this mean" in row


def test_the_naive_error_cell_carries_its_interval_where_the_step_times_give_one():
    from bench.present.report.tta import _naive_error
    from bench.records.tta import BatchTTA

    b = BatchTTA(64, 0.1, 10.0, 9.0, 11.0, [9.0, 11.0], 640.0, naive_rel_error=-0.25)
    assert _naive_error(b) == "−25%"
    b.naive_rel_error_low, b.naive_rel_error_high = -0.4, -0.1
    assert _naive_error(b) == "−25% [−40%, −10%]"
