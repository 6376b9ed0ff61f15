"""The report's figures: names from results files drawn as plain text, and long histories decimated so
spikes and dips survive."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import report_inputs as R

from bench.present.report.figures.trends import decimate


def test_names_with_dollar_signs_or_a_leading_underscore_are_drawn_as_plain_text(tmp_path):
    runs = []
    for i, med in enumerate((1.0e-3, 1.0e-3, 1.5e-3)):
        run = R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), {"t.py::test_cost": med})
        run["benchmarks"][0].update(fullname="t.py::test_cost[$^$]", name="test_cost[$^$]")
        runs.append((f"r{i}.json", run))
    sweeps = [("a.json", R.make_sweep(workload="_private", batches=(1, 4), oom_from=None)),
              ("b.json", R.make_sweep(workload="$x^2$", batches=(1, 4), oom_from=None, seed=1))]
    html = R.build(tmp_path, *runs, *sweeps)  # "$^$" is not valid mathtext: this used to raise
    assert "t.py::test_cost[$^$]" in R.section(html, "trends")
    step = re.search(r'data-fig="step-time">(.*?)</figure>', R.section(html, "step-time"), re.S).group(1)
    assert "_private: median, 95% CI" in step  # matplotlib would hide a legend label starting with "_"
    assert "$x^2$: median, 95% CI" in step  # shown as written, not rendered as maths


def test_a_long_history_keeps_the_first_the_last_and_each_buckets_extremes():
    values = [math.sin(i) for i in range(900)]
    idx = decimate(900, values, 400)
    assert len(idx) <= 402 and idx[0] == 0 and idx[-1] == 899
    spike = [0.0] * 900
    spike[451] = 9.0
    assert 451 in decimate(900, spike, 400)
    assert decimate(10, list(range(10)), 400) == list(range(10))


# ------------------------------------------------------------------ drawing errors a reader takes for data
# Each test draws through the figure function the report calls, with `to_svg` replaced so the test gets the
# matplotlib Figure itself and can ask where things are.

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench.analysis.steptime import GROWTH_IRREGULAR, analyse_sweep  # noqa: E402
from bench.present.report.figures import sweeps as FS  # noqa: E402
from bench.present.report.figures import trends as FT  # noqa: E402
from bench.present.report.figures import tta as FTTA  # noqa: E402
from bench.present.report.figures.common import palette  # noqa: E402
from bench.present.report.sweeps import sweep_series  # noqa: E402
from bench.records.curves import Curve, CurvePoint  # noqa: E402
from bench.records.sweep import Case, Measurement, SweepResult  # noqa: E402


@pytest.fixture
def figure_of(monkeypatch):
    """figure_of(module, function, *args): the Figure the function draws, before it becomes SVG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def draw(module, fn, *args, **kw):
        monkeypatch.setattr(module, "to_svg", lambda fig, label="": fig)
        fig = getattr(module, fn)(*args, **kw)
        FigureCanvasAgg(fig)  # a canvas that can lay the figure out and say where things are
        return fig
    return draw


def _texts(fig) -> list[str]:
    fig.canvas.draw()
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible())]
    return [t for t in out if t]


def _legend_labels(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _series(result: dict, label="s", color=None):
    r = SweepResult.from_dict(result)
    return sweep_series(r, label, color or palette(1)[0])


def test_convergence_minor_ticks_are_plain_numbers_never_raw_tex(figure_of):
    # Steps spanning under two decades: matplotlib labels minor ticks, in mathtext the figures never parse.
    curves = [Curve("t", b, 0.1, 0, [CurvePoint(s, s * b, eval_metric=min(0.9, s / 2000)) for s in
                                     range(200, 3001, 200)]) for b in (8, 64)]
    fig = figure_of(FTTA, "convergence_figure", curves, 0.8, "accuracy")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels(minor=True) + fig.axes[0].get_xticklabels()]
    assert labels and not any("$" in t or "mathdefault" in t or "times" in t for t in labels)
    assert any(t in ("2k", "500", "2,000") for t in labels)  # the range still reads


def test_step_time_whiskers_stay_inside_the_axes(figure_of):
    sweep = R.make_sweep(gpu=False, batches=(1, 4, 16), oom_from=None)
    s = _series(sweep)
    s.ci_low_s = [m / 20 for m in s.median_s]  # a budget-limited point: its CI reaches far below the median
    fig = figure_of(FS, "step_time_figure", [s])
    low, high = fig.axes[0].get_ylim()
    assert low <= min(s.ci_low_s) and high >= max(s.ci_high_s)


def _irregular_sweep() -> dict:
    """Step time rising past batch 16 but zig-zagging: the best fit misses by far more than 20%."""
    times = {1: 0.010, 4: 0.010, 16: 0.010, 64: 0.030, 128: 0.012, 256: 0.060, 512: 0.015, 1024: 0.09}
    pts = [Measurement(Case("mlp", b, "cpu", "fp32"), timer="host", samples_s=[t * (1 + 0.001 * i) for i in range(30)],
                       stop_reason="ci_target") for b, t in times.items()]
    r = SweepResult(config={"workload": "mlp", "device": "cpu", "precision": "fp32", "eps": 0.05},
                    points=pts, finished=True)
    r.analysis = analyse_sweep(r).to_dict()
    return r.to_dict()


def test_no_knee_is_drawn_where_the_verdict_names_none(figure_of):
    from bench.present.steptime import steptime_verdict, sweep_analysis

    sweep = _irregular_sweep()
    a = sweep_analysis(sweep["analysis"])
    assert a.growth() == GROWTH_IRREGULAR and a.knee_batch is not None  # the fit has a knee...
    assert not any("knee" in line for line in steptime_verdict(a))  # ...that the verdict does not claim
    fig = figure_of(FS, "step_time_figure", [_series(sweep)])
    assert not any("knee" in t for t in _texts(fig))
    regular = figure_of(FS, "step_time_figure", [_series(R.make_sweep(gpu=False, oom_from=None))])
    assert any(t.strip().startswith("knee ≈") for t in _texts(regular))


def test_the_95_percent_of_peak_line_is_labelled_with_its_own_value(figure_of):
    s = _series(R.make_sweep(gpu=False, oom_from=None))
    peak = s.analysis.peak_throughput_samples_per_s
    fig = figure_of(FS, "throughput_figure", [s])
    (label,) = [t for t in _legend_labels(fig) if "of peak" in t]
    line = next(l for l in fig.axes[0].get_lines() if l.get_label() == label)
    assert line.get_ydata()[0] == pytest.approx(0.95 * peak)
    from bench.present.fmt import number

    assert label == f"95% of peak: {number(0.95 * peak)} samples/s (peak {number(peak)})"


def _four_sweeps():
    colors = palette(4)
    specs = [("mlp", "fp32", 2e-4, 5e-7), ("mlp", "bf16", 1.5e-4, 2.5e-7), ("resnet", "fp32", 0.02, 1e-4),
             ("resnet", "bf16", 0.012, 5e-5)]
    out = []
    for i, (w, p, base, slope) in enumerate(specs):
        batches = (64, 256, 1024, 4096, 16384) if w == "mlp" else (1, 4, 16, 64, 256, 1024)
        d = R.make_sweep(w, p, base_s=base, slope_s=slope, batches=batches, oom_from=None if w == "mlp" else 1024, seed=i)
        out.append(_series(d, f"{w} · {p}", colors[i]))
    return out


def test_several_sweeps_keep_equal_time_bars_knee_lines_and_labels_off_the_data(figure_of):
    series = _four_sweeps()
    step = figure_of(FS, "step_time_figure", series)
    ax = step.axes[0]
    assert not [l for l in ax.get_lines() if l.get_linewidth() >= 3]  # no thick equal-time bars among the lines
    assert not [t for t in ax.texts if "knee" in t.get_text()]  # knees are markers on their own curves
    knee_marks = [l for l in ax.get_lines() if l.get_marker() == "D"]
    assert knee_marks and all(len(l.get_xdata()) == 1 for l in knee_marks)
    vertical = [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1 and len(l.get_xdata()) == 2]
    assert {l.get_xdata()[0] for l in vertical} == {1024}  # only the out-of-memory boundary
    through = figure_of(FS, "throughput_figure", series)
    assert not [t for t in through.axes[0].texts if t.get_text()]  # no "saturates at" or "OOM from" text on lines


def test_a_throughput_axis_never_mixes_e_notation_with_separated_thousands(figure_of):
    fig = figure_of(FS, "throughput_figure", _four_sweeps())
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and not any("e+" in t for t in labels)
    assert "1M" in labels and not any("," in t for t in labels)  # one style: 500k, 1M, 2M


def test_the_suite_chart_legend_covers_no_marker(figure_of):
    names = [f"suites/step.py::test_mlp_step[{b}]" for b in (16, 64, 256)]
    med = [5.7e-3, 6.8e-3, 1.08e-2]
    fig = figure_of(FT, "suite_figure", names, med, [m * 0.99 for m in med], [m * 1.01 for m in med])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    ax = fig.axes[0]
    points = ax.transData.transform(np.column_stack([med, np.arange(len(med))[::-1]]))
    for lg in legends:
        box = lg.get_window_extent(renderer)
        assert not any(box.x0 - 6 <= x <= box.x1 + 6 and box.y0 - 6 <= y <= box.y1 + 6 for x, y in points)


def test_the_time_to_target_legend_lists_only_what_is_drawn_and_names_the_rest_as_outside(figure_of):
    from bench.records.tta import TTAResult

    a = TTAResult.from_dict(R.make_tta()).analysis
    a.b_star = 1e6  # far beyond the batch sizes plotted
    fig = figure_of(FTTA, "tta_figure", a)
    ax = fig.axes[0]
    labels = _legend_labels(fig)
    (b_star,) = [t for t in labels if t.startswith("B*")]
    assert "beyond the batch sizes plotted" in b_star
    assert not [l for l in ax.get_lines() if list(l.get_xdata()) == [1e6, 1e6]]
    lo, hi = ax.get_ylim()
    model = [l for l in ax.get_lines() if l.get_label().startswith("model")]
    assert all(lo <= y <= hi for l in model for y in l.get_ydata())


@pytest.mark.parametrize("step, n", [(timedelta(seconds=20), 4), (timedelta(minutes=3), 12), (timedelta(hours=12), 7),
                                     (timedelta(days=1), 12), (timedelta(days=6), 12)])
def test_each_tick_of_a_trend_figure_has_a_label_of_its_own(step, n):
    """Suite runs seconds apart were all labelled '01-02 03:04', a few days of nights had each date twice, and
    a couple of months of nights each month twice."""
    from bench.present.report.figures.trends import TrendSeries, trend_figure

    times = [R.FIXED_TIME.replace(tzinfo=None) + i * step for i in range(n)]
    s = TrendSeries("m", times, [1e-3 * (1 + 0.01 * (i % 3)) for i in range(n)], [None] * n, [None] * n, [0] * n)
    svg, _ = trend_figure("b", [s], marks=set())
    axis = re.search(r'id="[^"]*matplotlib\.axis_1">(.*?)id="[^"]*matplotlib\.axis_2"', svg, re.S).group(1)
    labels = [re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", axis, re.S)]
    labels = [lab for lab in labels if lab and lab != "night (UTC)"]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
