"""Numbers for people: units, significant figures, percentages and lists, one formatter per kind."""

from __future__ import annotations

import math

import pytest

import bench.present.fmt as fmt
from bench.core.numbers import is_number


@pytest.mark.parametrize("seconds, shown", [
    (0.0012345, "1.23 ms"),
    (0.0009996, "1 ms"),  # rounded before the unit is chosen: not "1e+03 µs"
    (0.00099949, "999 µs"),
    (1.5e-4, "150 µs"),
    (2.5, "2.5 s"),
    (456e-9, "456 ns"),
    (0.0, "0 s"),
    (90.0, "90 s"),  # under 2 minutes, seconds read best
    (150.0, "2.5 min"),
    (5400.0, "1.5 h"),  # hours for hours
    (7.2e5, "8.33 d"),
    (None, "—"),
    (math.nan, "—"),
])
def test_durations_have_three_significant_figures_in_a_readable_unit(seconds, shown):
    assert fmt.duration(seconds) == shown


def test_duration_digits_and_sign():
    assert fmt.duration(0.0123456, digits=2) == "12 ms"
    assert fmt.duration(-0.0015) == "-1.5 ms"


def test_a_slope_is_quoted_in_the_unit_of_its_step_time_unless_that_is_unreadable():
    assert fmt.slope(1e-5, 2e-3) == "+0.01 ms per sample"
    assert fmt.slope(1e-9, 2e-3) == "+1 ns per sample"


def test_numbers_in_sentences_and_tables():
    assert fmt.number(51234.5) == "51,200"
    assert fmt.number(12.345) == "12.3"
    assert fmt.rate(51234.5) == "51,234 samples/s" and fmt.rate(12.345, "") == "12.3 "
    assert fmt.quantity(51234.5) == "51,234" and fmt.quantity(0.012345) == "0.0123" and fmt.quantity(None) == "—"
    assert fmt.compact(2_500_000) == "2.5e+06" and fmt.compact(1536) == "1,536" and fmt.compact(0) == "0"
    assert fmt.batch_estimate(96.4) == "96" and fmt.batch_estimate(1536.2) == "1500" and fmt.batch_estimate(3.14) == "3.1"


def test_percentages_measured_and_set():
    assert fmt.percent(0.013) == "1.3%" and fmt.percent(None) == "—"
    assert fmt.pct(0.05) == "5%" and fmt.pct(0.0333) == "3.33%" and fmt.pct(None) == "?"


def test_lists_of_batch_sizes_and_words():
    assert fmt.batch_list([1, 2, 4]) == "1, 2, 4"
    assert fmt.batch_list([2 ** i for i in range(11)]) == "1, 2, 4, …, 1024 (11 points)"
    assert fmt.batch_list([1024, 4096], thousands=True) == "1,024, 4,096"
    assert fmt.and_list(["a"]) == "a" and fmt.and_list(["a", "b", "c"]) == "a, b and c"
    assert fmt.plural(1, "run") == "1 run" and fmt.plural(2, "batch", "batches") == "2 batches"


def test_only_finite_numbers_count_as_measured():
    assert is_number(1) and is_number(0.5)
    assert not any(is_number(v) for v in (None, True, math.inf, math.nan, "1"))


def test_a_ci_width_is_shown_to_two_figures():
    assert fmt.ci_percent(3.357) == "340%"
    assert fmt.ci_percent(5.18441) == "520%"  # not "518.441%"
    assert fmt.ci_percent(0.809) == "81%" and fmt.ci_percent(0.0137) == "1.4%" and fmt.ci_percent(0.00123) == "0.12%"
    assert fmt.ci_percent(None) == "—"


def test_a_duration_keeps_only_the_figures_its_ci_supports():
    assert fmt.duration_ci(0.01523, 0.00608, 0.0307) == "15 ms"  # ±12 ms: the tenths say nothing
    assert fmt.duration_ci(0.01523, 0.01518, 0.01528) == "15.2 ms"  # ±0.05 ms: three figures
    assert fmt.duration_ci(0.01523, None, None) == "15 ms"  # no interval: two figures, not three
    assert fmt.duration_ci(0.315, None, None) == "320 ms"  # never "3.2e+02 ms"
    assert fmt.interval(0.00608, 0.0307, 0.01523) == "6 ms – 31 ms"  # rounded outward: never narrower
    assert fmt.outward(6.08, 2, up=False) == pytest.approx(6.0) and fmt.outward(30.7, 2, up=True) == pytest.approx(31)
    assert fmt.outward(6.1, 2, up=False) == pytest.approx(6.1)  # already at two figures: unchanged
    assert fmt.interval(None, 0.0307) is None
