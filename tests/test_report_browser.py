"""The report in a real headless browser (Debian's chromium): it renders, runs its script without errors,
requests nothing from the network, keeps hostile strings inert, and shows its figures in every section.

Skipped only when no chromium is installed (`apt-get install chromium`); CI has it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import report_inputs as R

import bench.present.report.page as report_page
from bench.present.report import build_report, embed_json, load_inputs, write_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium): "
                                                          "the browser check needs a real headless browser")

# A payload that would mark the page if a browser ever ran it.
HOSTILE = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\"><script>document.documentElement.setAttribute('data-pwned','2')</script>"
BROWSER_OWN = "not an origin"  # the initiator of chromium's own background requests (updates, sign-in)
TEMPLATES = Path(report_page.__file__).parent / "templates"


def run_chromium(url: str, tmp: Path, *, screenshot: Path | None = None,
                 window: str = "1280,2000") -> tuple[str, str, list[dict]]:
    """(DOM after load, stderr with console lines, requests the page made) for one headless visit."""
    net = tmp / "net.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
           "--hide-scrollbars", "--virtual-time-budget=5000", f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--log-net-log={net}", f"--window-size={window}", "--dump-dom"]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    proc = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=90, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr, page_requests(net)


# Injected at the end of a copy of a page: how tall it lays out at 1280 px, where its first figure starts and
# how much visible text comes before it (innerText skips folded <details> and hidden elements), and whether
# any axis of a figure repeats a tick label. Written into the DOM as JSON for --dump-dom.
MEASURE_JS = r"""
(function () {
  var out = {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth};
  var fig = document.querySelector("figure.fig svg");
  if (fig) {
    out.first_figure_top = Math.round(fig.getBoundingClientRect().top + window.scrollY);
    var mark = document.createElement("span");
    mark.textContent = "\u2063FIRST-FIGURE\u2063";
    fig.parentNode.insertBefore(mark, fig);
    var text = document.body.innerText, at = text.indexOf(mark.textContent);
    var before = text.slice(0, at).replace(/\s+/g, " ").trim();
    out.text_before_figure_chars = before.length;
    out.text_before_figure_words = before ? before.split(" ").length : 0;
    mark.remove();
  }
  // Rendered lines of text in each verdict card (its heading left out): each paragraph's height over its
  // line height.
  out.card_lines = Array.prototype.map.call(document.querySelectorAll(".verdict-card .verdict-text"), function (c) {
    return Array.prototype.reduce.call(c.querySelectorAll("p"), function (n, p) {
      var lh = parseFloat(getComputedStyle(p).lineHeight) || 1;
      return n + Math.round(p.getBoundingClientRect().height / lh);
    }, 0);
  });
  out.sections = {};
  Array.prototype.forEach.call(document.querySelectorAll("main > section"), function (s) {
    out.sections[s.id] = Math.round(s.getBoundingClientRect().height);
  });
  out.repeated_tick_labels = [];
  Array.prototype.forEach.call(document.querySelectorAll("figure.fig svg"), function (svg) {
    Array.prototype.forEach.call(svg.querySelectorAll('g[id$="matplotlib.axis_1"], g[id$="matplotlib.axis_2"]'),
      function (axis) {
        var seen = {};
        Array.prototype.forEach.call(axis.querySelectorAll('g[id*="xtick_"] > g > text, g[id*="ytick_"] > g > text'),
          function (t) {
            var label = t.textContent.trim();
            if (label && seen[label]) out.repeated_tick_labels.push((svg.getAttribute("aria-label") || "?") + ": " + label);
            seen[label] = true;
          });
      });
  });
  var pre = document.createElement("pre");
  pre.id = "page-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def page_metrics(page: Path, tmp: Path, *, screenshot: Path | None = None) -> dict:
    """The laid-out page at 1280 px: its height, first figure's top, the visible text before that figure
    (characters, words), repeated tick labels, and its size in bytes."""
    probe = tmp / f"{page.stem}-measure.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1), encoding="utf-8")
    dom, _, _ = run_chromium(probe.as_uri(), tmp, screenshot=screenshot, window="1280,800")
    found = re.findall(r'<pre id="page-measure">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run to its end"
    return {**json.loads(html.unescape(found[-1])), "bytes": len(text.encode("utf-8"))}


def page_requests(net_log: Path) -> list[dict]:
    """Network requests the page started, from chromium's net log (the browser's own are left out)."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    out = []
    for e in log.get("events", []):
        p = e.get("params") or {}
        if names.get(e["type"]) == "URL_REQUEST_START_JOB" and p.get("url"):
            if p.get("initiator") != BROWSER_OWN or "file://" in str(p.get("network_isolation_key")):
                out.append(p)
    return out


def console_lines(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if "CONSOLE" in l and "file://" in l]


def section(dom: str, section_id: str) -> str:
    m = re.search(rf'<section id="{section_id}">(.*?)</section>', dom, re.S)
    assert m, f"no section {section_id} in the rendered page"
    return m.group(1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    """Every kind of input in one page, with hostile names in each."""
    d = tmp_path_factory.mktemp("browser")
    files = [R.write(d / "fp32.json", R.make_sweep(workload=HOSTILE, error=HOSTILE)),
             R.write(d / "bf16.json", R.make_sweep(workload=HOSTILE, precision="bf16", base_s=0.006, seed=1)),
             R.write(d / "tta.json", R.make_tta(task=HOSTILE))]
    for i, slow in enumerate((1.0, 1.0, 1.3)):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i),
                                {"suites/s.py::test_mlp[4]": 1e-3 * slow, f"suites/s.py::test_{HOSTILE}": 2e-3},
                                extra={"note": HOSTILE})
        files.append(R.write(d / f"run{i}.json", run))
    out = d / "report.html"
    write_report(build_report(load_inputs(files), generated=R.FIXED_TIME), out)
    return out


@pytest.fixture(scope="module")
def rendered(full_report, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    shot = tmp / "shot.png"
    dom, stderr, requests = run_chromium(full_report.as_uri(), tmp, screenshot=shot)
    return {"dom": dom, "stderr": stderr, "requests": requests, "shot": shot}


@pytest.fixture(scope="module")
def store_rendered(tmp_path_factory):
    """A page drawn from a history store (SQLite): a change point, throttled, noisy and failed nights, the
    latest night's verdict, and a hostile benchmark name."""
    from bench.history.simulate import lognormal_samples, night, suite_file
    from bench.history.store import open_store
    from bench.present.report.page import make_report

    d = tmp_path_factory.mktemp("store-browser")
    rng = np.random.default_rng(0)
    hostile = f"b{HOSTILE}"
    paths = []
    for i in range(30):
        samples = {"a-fp32-bs32-cuda": lognormal_samples(rng, 1e-3 * (1.06 if i >= 15 else 1.0) * (1.3 if i == 9 else 1),
                                                         60, 0.005)}
        if i != 20:
            samples[hostile] = lognormal_samples(rng, 2e-3, 60, 0.15 if i == 12 else 0.005)
        data = suite_file(samples, when=night(i), commit=f"{i:040x}", throttled=["a-fp32-bs32-cuda"] if i == 9 else [],
                          failed={hostile: "oom"} if i == 20 else None)
        paths.append(R.write(d / f"night-{i:02d}.json", data))
    db = d / "history.sqlite"
    with open_store(db, create=True) as store:
        store.ingest(paths)
    out = make_report(output=d / "store.html", db=db)
    tmp = tmp_path_factory.mktemp("store-chromium")
    dom, stderr, requests = run_chromium(out.as_uri(), tmp)
    return {"dom": dom, "stderr": stderr, "requests": requests, "html": out.read_text(encoding="utf-8")}


def test_a_store_backed_page_renders_without_errors_or_requests(store_rendered):
    dom = store_rendered["dom"]
    assert 'data-report-ready="1"' in dom
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-js-errors" not in html_tag and "data-pwned" not in html_tag
    assert console_lines(store_rendered["stderr"]) == []
    assert store_rendered["requests"] == []
    trends = section(dom, "trends")
    figs = re.findall(r'<figure class="fig" data-fig="([^"]+)">\s*<svg', trends)
    assert figs.count("trend") == 1 and figs.count("trend-key") == 1  # and one beside the nightly card
    assert re.findall(r'<figure class="fig" data-fig="([^"]+)">\s*<svg', section(dom, "summary")) == ["trend"]
    assert "change point: regression" in trends and "throttled (left out" in trends
    assert "&lt;script&gt;document.documentElement" in trends  # the hostile name, as text


def test_the_report_runs_its_script_to_the_end_without_console_errors(rendered):
    dom = rendered["dom"]
    assert 'data-report-ready="1"' in dom  # the page script got to its last line
    assert 'data-source-ok="1"' in dom  # and the embedded data decompressed and parsed in the browser
    assert "data-js-errors" not in re.search(r"<html[^>]*>", dom).group(0)
    assert console_lines(rendered["stderr"]) == []


def test_the_report_requests_nothing_from_the_network(rendered, full_report):
    assert rendered["requests"] == []
    html = full_report.read_text()
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', html, re.I)
    assert not re.search(r'url\(\s*["\']?\s*(?:https?:)?//', html, re.I)


def test_hostile_names_stay_text_in_a_real_browser(rendered):
    html_tag = re.search(r"<html[^>]*>", rendered["dom"]).group(0)
    assert "data-pwned" not in html_tag
    assert "&lt;script&gt;document.documentElement" in rendered["dom"]  # shown as text instead


def test_every_section_shows_its_figures(rendered):
    dom = rendered["dom"]

    def figs(part: str) -> list[str]:
        return re.findall(r'<figure class="fig" data-fig="([^"]+)">\s*<svg', part)

    # Each input's headline figure beside its verdict card, the rest in its section; none drawn twice.
    assert figs(section(dom, "summary")) == ["step-time", "step-time", "tta", "trend"]
    assert set(figs(section(dom, "step-time"))) == {"step-time", "throughput", "memory", "telemetry"}
    assert set(figs(section(dom, "tta"))) == {"convergence", "steps"}
    assert figs(section(dom, "suites")) == ["suite"]  # with nightly trends, the suite run has no card of its own
    assert figs(section(dom, "trends")).count("trend") == 1


def test_the_screenshot_is_not_blank(rendered):
    from PIL import Image

    img = np.asarray(Image.open(rendered["shot"]).convert("RGB"))
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img.astype(float).std() > 20  # a blank or single-colour page has (almost) none
    packed = (img[..., 0].astype(np.uint32) << 16) | (img[..., 1].astype(np.uint32) << 8) | img[..., 2]
    _, counts = np.unique(packed, return_counts=True)
    assert len(counts) > 50 and counts.max() / counts.sum() < 0.9


def test_the_checks_catch_a_page_that_errs_and_fetches(tmp_path):
    """The detectors above are not vacuous: a page with a script error and a remote image trips both."""
    capture = (TEMPLATES / "capture.js").read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(f"<!DOCTYPE html><html><head><script>{capture}</script></head><body><div id='page-errors' hidden>"
                   "</div><img src='http://127.0.0.1:9/x.png'><script>undefinedFunction();</script></body></html>")
    dom, stderr, requests = run_chromium(bad.as_uri(), tmp_path)
    assert 'data-js-errors="1"' in dom and "undefinedFunction" in dom
    assert console_lines(stderr)
    assert [r["url"] for r in requests] == ["http://127.0.0.1:9/x.png"]


def test_clicking_a_heading_sorts_numbers_as_numbers_with_missing_values_last(tmp_path):
    """The shipped table script, driven in the browser: one click ascending, two descending."""
    templates = TEMPLATES
    rows = "".join(f'<tr><td data-v="{v}">{t}</td><td>{name}</td></tr>' if v is not None else
                   f"<tr><td>—</td><td>{name}</td></tr>"
                   for v, t, name in ((10, "10", "b"), (9.5e-05, "95 µs", "a"), (None, "—", "c"), (200, "200", "B")))
    page = tmp_path / "sort.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{(templates / 'capture.js').read_text()}</script>"
        f"</head><body><table class='sortable'><thead><tr><th>v</th><th>name</th></tr></thead><tbody>{rows}</tbody>"
        f"</table><script type='application/octet-stream' id='source-data'>{embed_json({})}</script>"
        f"<script>{(templates / 'report.js').read_text()}</script><script>"
        "var th = document.querySelectorAll('th'), order = function (i) { return Array.prototype.map.call("
        "document.querySelectorAll('tbody tr'), function (r) { return r.children[i].textContent; }).join(','); };"
        "th[0].click(); document.body.setAttribute('data-asc', order(1));"
        "th[0].click(); document.body.setAttribute('data-desc', order(1));"
        "th[1].click(); document.body.setAttribute('data-text', order(1));"
        "</script></body></html>", encoding="utf-8")
    dom, stderr, _ = run_chromium(page.as_uri(), tmp_path)
    assert 'data-asc="a,b,B,c"' in dom  # 95 µs < 10 < 200, the missing value last
    assert 'data-desc="B,b,a,c"' in dom  # missing still last
    assert 'data-text="a,b,B,c"' in dom or 'data-text="a,B,b,c"' in dom  # text: locale order
    assert "data-js-errors" not in re.search(r"<html[^>]*>", dom).group(0) and console_lines(stderr) == []


@pytest.fixture(scope="module")
def default_three(tmp_path_factory) -> dict:
    """The page of the README's first three results, laid out at 1280x800: a default CPU sweep (batch 1 to
    1,024), one CPU suite run (six groups at three batch sizes, bench's step times inside) and a study."""
    d = tmp_path_factory.mktemp("three")
    medians = {f"suites/test_step_time.py::test_{w}_{p}[{b}]": 4e-4 * k * (1 + b / 64)
               for k, w in enumerate(("mlp", "cnn", "transformer"), 1) for p in ("fp32", "bf16") for b in (4, 16, 64)}
    suite = R.make_pytest_run(R.FIXED_TIME, {k: 30 * v for k, v in medians.items()}, library_medians=medians)
    files = [R.write(d / "sweep.json", R.make_sweep(gpu=False, oom_from=None, batches=tuple(2 ** i for i in range(11)))),
             R.write(d / "suites.json", suite), R.write(d / "tta.json", R.make_tta())]
    out = d / "report.html"
    write_report(build_report(load_inputs(files), generated=R.FIXED_TIME), out)
    return page_metrics(out, tmp_path_factory.mktemp("three-chromium"))


def test_the_default_three_input_report_is_short_small_and_shows_a_figure_on_its_first_screen(default_three):
    m = default_three
    assert m["height"] <= 12_000 and m["bytes"] <= 2_000_000, m
    assert m["first_figure_top"] < 800, m  # within the first screen at 1280x800
    assert m["text_before_figure_words"] <= 120, m  # a heading and one short card, not screens of prose
    assert len(m["card_lines"]) == 3 and max(m["card_lines"]) <= 6, m  # one card per input, six lines at most
    assert m["repeated_tick_labels"] == [], m


def test_the_page_measure_catches_a_tall_page_prose_first_and_repeated_tick_labels(tmp_path):
    """The measuring script is not vacuous: prose before the figure, a tall page and an axis labelling two
    ticks alike are all reported."""
    from matplotlib.figure import Figure

    from bench.present.report.figures.common import to_svg

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, 1, 2])
    ax.set_xticks([0, 1, 2], ["same", "same", "other"])
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body>" + "<p>words words words</p>" * 400
                    + f"<figure class='fig'>{to_svg(fig, 'repeats')}</figure></body></html>", encoding="utf-8")
    m = page_metrics(page, tmp_path)
    assert m["text_before_figure_words"] == 1200 and m["first_figure_top"] > 800 and m["height"] > 8000
    assert m["repeated_tick_labels"] == ["repeats: same"]
