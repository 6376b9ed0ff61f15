"""Assembling and writing the page: untrusted strings stay text, the embedded data stays inert and whole
(or says what it left out), nothing is fetched from the network, and the file is written atomically."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import report_inputs as R

import bench.present.report.page as page
from bench.core.errors import BenchError
from bench.present.report import (
    build_report,
    embed_json,
    load_inputs,
    read_embedded,
    write_report,
)


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory) -> str:
    return R.build(tmp_path_factory.mktemp("gpu"), ("sweep.json", R.make_sweep()))


def test_untrusted_strings_from_every_input_are_escaped_in_text_attributes_figures_and_json(tmp_path):
    sweep = R.make_sweep(workload=R.EVIL, error=f'boom {R.EVIL} " onmouseover="alert(2)')
    run = R.make_pytest_run(R.FIXED_TIME, {f"suites/t.py::test_{R.EVIL}[4]": 0.01}, extra={"note": R.EVIL, R.EVIL: 1})
    tta = R.make_tta(task=R.EVIL)
    html = R.build(tmp_path, ("s.json", sweep), ("p.json", run), ("t.json", tta))
    assert "<script>alert" not in html.lower()
    assert 'onmouseover="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    # Only our own three scripts: the capture hook, the embedded data, the page script.
    assert html.count("<script") == 3 and html.count("</script>") == 3
    data = R.source_data(html)
    kinds = {i["kind"]: i["data"] for i in data["inputs"]}
    assert kinds["sweep"]["config"]["workload"] == R.EVIL  # the embedded data round-trips unchanged
    assert kinds["pytest-benchmark"]["benchmarks"][0]["extra_info"]["note"] == R.EVIL
    assert kinds["tta"]["task"]["name"] == R.EVIL


def test_embedded_data_cannot_close_its_script_element_and_reads_back_whole():
    data = {"a": "</script><!-- & \u2028", "b": [1.5, float("nan")], "samples": [1e-3 * (1 + i / 7) for i in range(5000)]}
    text = embed_json(data)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", text)  # base64: no '<', '>' or '&'
    assert read_embedded(text) == {**data, "b": [1.5, None]}
    assert len(text) < len(json.dumps(data)) / 2  # gzipped: raw samples embed whole and still small
    assert embed_json(data) == text  # no timestamp inside: the same data gives the same page


def test_page_makes_no_external_references(gpu_report):
    refs = re.findall(r'(?:src|href|xlink:href)\s*=\s*["\']?\s*(?:https?:)?//', gpu_report, re.I)
    refs += re.findall(r'url\(\s*["\']?\s*(?:https?:)?//', gpu_report, re.I)
    refs += re.findall(r"@import", gpu_report)
    assert refs == []
    assert "http://" not in gpu_report and "https://" not in gpu_report


def test_over_the_embed_limit_round_times_are_dropped_and_the_page_says_so(tmp_path):
    runs = [("a.json", R.make_pytest_run(R.FIXED_TIME, {"s.py::test_a": 1e-3})),
            ("b.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=1), {"s.py::test_a": 1e-3}))]
    html = R.build(tmp_path, *runs, max_embed_bytes=1000)
    data = R.source_data(html)
    assert "stats.data" in data["omitted"] and "left out" in R.section(html, "data")
    stats = data["inputs"][0]["data"]["benchmarks"][0]["stats"]
    assert "data" not in stats and stats["median"] == 1e-3


def test_write_report_refuses_an_existing_file_even_if_it_appears_after_the_check(tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    monkeypatch.setattr(page, "check_output", lambda path, overwrite: None)  # the file appears after the check
    out.write_text("theirs")
    with pytest.raises(BenchError, match="exists"):
        write_report("<html></html>", out)
    assert out.read_text() == "theirs" and list(tmp_path.iterdir()) == [out]


def test_the_same_inputs_give_the_same_page(tmp_path):
    path = R.write(tmp_path / "s.json", R.make_sweep(gpu=False, batches=(1, 4, 16), oom_from=None))
    first = build_report(load_inputs([path]), generated=R.FIXED_TIME)
    second = build_report(load_inputs([path]), generated=R.FIXED_TIME)
    assert first == second
    ids = re.findall(r'<[a-zA-Z][^<>]*?\sid="([^"]+)"', first)
    assert len(ids) == len(set(ids))  # many SVGs share one document: no id may repeat


def test_warnings_are_grouped_by_kind_one_folded_line_each_with_its_count(tmp_path):
    sweeps = [(f"s{i}.json", R.make_sweep(gpu=False, oom_from=None, seed=i, batches=(1, 4, 16), precision=p))
              for i, p in enumerate(("fp32", "bf16"))]
    html = R.build(tmp_path, *sweeps, ("t.json", R.make_tta()))
    w = R.section(html, "warnings")
    groups = re.findall(r'<details class="warn-group"><summary><strong>(.*?)</strong> ×(\d+) · (.*?)</summary>(.*?)</details>',
                        w, re.S)
    kinds = [g[0] for g in groups]
    assert len(kinds) == len(set(kinds)) >= 2  # one line per kind
    assert all(int(n) == body.count("<li>") for _, n, _, body in groups)  # its count is what it folds
    budget = next(g for g in groups if g[0] == "Budget-limited")
    assert budget[1] == "2" and budget[2] == "in 2 sweeps"
    total = sum(int(g[1]) for g in groups)
    assert f"<h2>Warnings ({total}, {len(groups)} kinds)</h2>" in w
    assert "<details open" not in w  # the details are folded


def test_what_every_sweep_lacks_is_said_once_for_the_section(tmp_path):
    sweeps = [(f"s{i}.json", R.make_sweep(gpu=False, oom_from=None, seed=i, batches=(1, 4, 16), precision=p))
              for i, p in enumerate(("fp32", "bf16"))]
    step = R.section(R.build(tmp_path, *sweeps), "step-time")
    assert step.count("No GPU telemetry") == 1 and "No GPU telemetry tables: device cpu is not a CUDA device" in step
    assert step.count("peak memory (allocator peak statistics") == 1
