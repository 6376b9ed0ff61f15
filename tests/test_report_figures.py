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
    step = re.search(r'data-fig="step-time">(.*?)</figure>', html, re.S).group(1)
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
