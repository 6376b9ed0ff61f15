"""The benchmark-suites section of the report: the latest pytest-benchmark run per machine, its table and
figure, and the step-time curves the adapter rebuilds from benchmarks at several batch sizes."""

from __future__ import annotations

import re

import report_inputs as R


def test_suite_json_alone_gives_a_table_and_batch_curves_through_the_adapter(tmp_path):
    names = {f"suites/test_step.py::test_mlp[{b}]": 0.001 * (1 + b / 64) for b in (4, 16, 64)}
    names["suites/test_other.py::test_plain"] = 0.002
    html = R.build(tmp_path, ("run.json", R.make_pytest_run(R.FIXED_TIME, names)))
    suites = R.section(html, "suites")
    summary = R.section(html, "summary")
    assert R.figures_in(summary) == {"suite": 1} and R.figures_in(suites) == {}  # beside its card, drawn once
    assert suites.count("<tr>") >= 1 + 4
    assert "test_plain" in suites and "One run: trends need two or more" in summary
    # test_mlp has three batch sizes: the adapter turns it into a curve over batch size.
    assert R.figures_in(R.section(html, "step-time"))["step-time"] == 1
    assert 'id="trends"' not in html


def test_the_suite_figure_draws_the_librarys_step_times_and_the_table_shows_both(tmp_path):
    run = R.make_pytest_run(R.FIXED_TIME, {"s.py::test_mlp[8]": 3e-3}, library_medians={"s.py::test_mlp[8]": 1e-3})
    html = R.build(tmp_path, ("run.json", run))
    row = re.search(r"<tbody>(.*?)</tbody>", R.section(html, "suites"), re.S).group(1)
    assert ">1 ms<" in row and ">3 ms<" in row  # bench's step time, then pytest-benchmark's median
    assert "step time (bench) (ms)" in R.section(html, "summary")  # the figure's axis says which number it draws
    foreign = R.make_pytest_run(R.FIXED_TIME, {"t.py::test_theirs": 3e-3})
    (tmp_path / "foreign").mkdir()
    assert "time per call (pytest-benchmark) (ms)" in R.section(R.build(tmp_path / "foreign", ("f.json", foreign)),
                                                                "summary")


def test_the_verdict_and_the_suites_table_say_which_clock_each_step_time_comes_from(tmp_path):
    # bench times one step on the device; pytest-benchmark the whole call on the host: 100x apart here.
    medians = {f"suites/step.py::test_mlp_step[{b}]": 4e-3 * (1 + b / 256) for b in (16, 64, 256)}
    run = R.make_pytest_run(R.FIXED_TIME, medians, library_medians={k: v / 100 for k, v in medians.items()})
    html = R.build(tmp_path, ("run.json", run))
    verdict = html_text(R.section(html, "step-time"))  # the curve's full verdict, folded in its card
    assert "Step times here are bench's own, one training step each (CUDA events around each step" in verdict
    assert "pytest-benchmark's time per call" in verdict
    suites = html_text(R.section(html, "suites"))
    assert "bench step time (device clock)" in suites and "pytest-benchmark median (host clock)" in suites
    assert "Two clocks: “bench step time” is the library's timing of one training step" in suites


def html_text(part: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", part))
