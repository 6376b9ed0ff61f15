"""Visual regression: a fixed set of reports (one sweep, several sweeps, two TTA studies, a TTA study from
files, suites with a history; tests/report_inputs.py) laid out by a real headless browser, and measured
there: no text overlaps other text, no mark lies outside its axes (nor a line wholly outside, drawn where
no one sees it), no label is a raw TeX string, and no table is wider than the page.

A script (tests/data/visual_check.js) is injected into a copy of each page; it writes what it measures into
the DOM, which `chromium --dump-dom` returns. Skipped only where no chromium is installed.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import report_inputs as R
from test_report_browser import CHROMIUM, page_metrics, run_chromium

from bench.present.report import build_report, load_inputs

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium): "
                                                           "the visual check needs a real headless browser"),
              pytest.mark.slow]

CHECK = (Path(__file__).parent / "data" / "visual_check.js").read_text()
REPORTS = ("single-sweep", "several-sweeps", "tta-studies", "tta-from-files", "suites-history", "allreduce")


def measure(page: Path, tmp: Path) -> dict:
    """Inject the check into a copy of `page`, load it in chromium, and read back what it found."""
    probe = tmp / f"{page.stem}-probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", f"<script>{CHECK}</script></body>", 1),
                     encoding="utf-8")
    dom, _, _ = run_chromium(probe.as_uri(), tmp)
    found = re.findall(r'<pre id="visual-findings">(.*?)</pre>', dom, re.S)  # the last: the script's own text names it
    assert found, "the check script did not run to its end"
    return json.loads(html.unescape(found[-1]))


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("visual")
    out = {}
    for name, paths in R.visual_inputs(d / "inputs").items():
        page = d / f"{name}.html"
        page.write_text(build_report(load_inputs(paths), generated=R.FIXED_TIME), encoding="utf-8")
        out[name] = measure(page, d)
    return out


def test_every_report_of_the_fixed_set_was_measured(findings):
    assert set(findings) == set(REPORTS)
    for name, f in findings.items():
        assert f["figures"], f"{name}: no figure measured"
        plots = [fig for fig in f["figures"] if not fig["label"].startswith("key to")]  # a key has no axes
        assert plots and all(fig["texts"] > 3 and fig["marks"] > 0 for fig in plots), name


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("layout")
    out = {}
    for name, paths in R.visual_inputs(d / "inputs").items():
        page = d / f"{name}.html"
        page.write_text(build_report(load_inputs(paths), generated=R.FIXED_TIME), encoding="utf-8")
        out[name] = page_metrics(page, d)
    return out


@pytest.mark.parametrize("name", REPORTS)
def test_verdict_cards_are_short_and_the_first_figure_is_on_the_first_screen(layouts, name):
    m = layouts[name]
    assert m["card_lines"] and max(m["card_lines"]) <= 6, m
    assert m["first_figure_top"] < 800 and m["repeated_tick_labels"] == [], m


@pytest.mark.parametrize("name", REPORTS)
def test_no_text_overlaps_other_text(findings, name):
    bad = {fig["label"]: fig["overlaps"] for fig in findings[name]["figures"] if fig["overlaps"]}
    assert bad == {}


@pytest.mark.parametrize("name", REPORTS)
def test_no_mark_lies_outside_its_axes(findings, name):
    bad = {fig["label"]: {"outside": fig["outside"], "invisible": fig["invisible"]}
           for fig in findings[name]["figures"] if fig["outside"] or fig["invisible"]}
    assert bad == {}


@pytest.mark.parametrize("name", REPORTS)
def test_no_label_is_a_raw_tex_string(findings, name):
    assert {fig["label"]: fig["tex"] for fig in findings[name]["figures"] if fig["tex"]} == {}


@pytest.mark.parametrize("name", REPORTS)
def test_no_table_is_wider_than_the_page(findings, name):
    assert [t for t in findings[name]["tables"] if t["clipped"]] == []


def test_the_checks_catch_overlapping_text_a_mark_outside_its_axes_and_raw_tex(tmp_path):
    """The detectors are not vacuous: a figure drawn with each fault trips each check."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    from bench.present.report.figures.common import style, to_svg

    with rc_context(style()):
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.plot([1, 2, 3], [1, 2, 3], "o-")
        ax.plot([2.5], [4.4], "s", clip_on=False)  # a marker above the axes (still on the figure)
        ax.set_ylim(0, 4)
        ax.text(1.5, 2, "overlapping text")
        ax.text(1.5, 2, "overlapping text too")
        ax.set_xlabel(r"$\mathdefault{2\times10^{3}}$")
    page = tmp_path / "faulty.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><figure class='fig' data-fig='f'>"
                    f"{to_svg(fig, 'faulty')}</figure><div class='table-wrap' style='width:100px;overflow-x:auto'>"
                    f"<table id='wide'><tr><td>{'x' * 200}</td></tr></table></div></body></html>", encoding="utf-8")
    f = measure(page, tmp_path)
    (found,) = f["figures"]
    assert any("overlapping text" in pair[0] and "overlapping text" in pair[1] for pair in found["overlaps"]), found
    assert any(o[0].startswith("line2d") for o in found["outside"])
    assert found["tex"] == [r"$\mathdefault{2\times10^{3}}$"]
    assert f["tables"] == [{"id": "wide", "scroll": f["tables"][0]["scroll"], "client": 100, "clipped": True}]
