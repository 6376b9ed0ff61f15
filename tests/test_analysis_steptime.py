"""Specification of the step-time analysis on synthetic curves with known answers."""

from __future__ import annotations

import json

import pytest

from bench.analysis.steptime import (
    BEYOND,
    FIT_HINGE,
    FIT_LINEAR,
    GROWTH_IRREGULAR,
    GROWTH_LINEAR,
    GROWTH_NONE,
    UNDECIDED,
    WITHIN,
    PointSummary,
    StepTimeAnalysis,
    analyse_step_times,
    analyse_sweep,
    fit_hinge,
    fit_linear,
    summaries_from_measurements,
)
from bench.core.errors import BenchError, InvalidResultsFile
from bench.records.sweep import Case, Measurement, SweepResult

BATCHES = [2**i for i in range(11)]  # 1 .. 1024


def point(batch: int, t_s: float, rel_ci: float = 0.002, spread: float | None = 0.001) -> PointSummary:
    return PointSummary(batch, t_s, t_s * (1 - rel_ci), t_s * (1 + rel_ci), spread)


def hinge_curve(batch: int) -> float:
    """1 ms up to batch 64, then +0.02 ms per sample."""
    return 1e-3 if batch <= 64 else 1e-3 + 2e-5 * (batch - 64)


def linear_curve(batch: int) -> float:
    """1 ms fixed + 0.01 ms per sample: a/b = 100."""
    return 1e-3 + 1e-5 * batch


def strict_json(analysis) -> str:
    return json.dumps(analysis.to_dict(), allow_nan=False)


# ------------------------------------------------------------------------------- exact hinge data


def test_hinge_data_knee_is_recovered_near_64():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES])
    assert a.best_fit == FIT_HINGE
    assert a.hinge_fit.knee_position == "inside"
    assert a.hinge_fit.knee_batch == pytest.approx(64, rel=0.03)
    assert a.knee_batch == pytest.approx(64, rel=0.03)
    assert a.hinge_fit.plateau_s == pytest.approx(1e-3, rel=1e-6)
    assert a.hinge_fit.slope_s_per_sample == pytest.approx(2e-5, rel=1e-4)
    assert a.hinge_fit.rel_rms_residual < 1e-6
    assert a.hinge_fit.rel_rms_residual < a.linear_fit.rel_rms_residual


def test_hinge_data_with_tight_cis_is_equal_time_up_to_64_and_beyond_at_128():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES])
    assert a.equal_time_max_batch == 64
    assert a.equal_time_max_batch_possible == 64
    assert a.first_beyond_batch == 128
    assert a.equal_time_reaches_largest is False
    calls = {p.batch_size: p.equal_time for p in a.points}
    assert all(calls[b] == WITHIN for b in BATCHES if b <= 64)
    assert all(calls[b] == BEYOND for b in BATCHES if b > 64)


def test_hinge_data_regimes_are_flat_then_linear():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES])
    regimes = {p.batch_size: p.regime for p in a.points}
    assert {regimes[b] for b in BATCHES if b <= 64} == {"flat"}
    assert {regimes[b] for b in BATCHES if b > 64} == {"linear"}


# ----------------------------------------------------------------------------- purely linear data


def test_linear_data_fit_recovers_intercept_slope_and_saturation_batch():
    a = analyse_step_times([point(b, linear_curve(b)) for b in BATCHES])
    lin = a.linear_fit
    assert lin.intercept_s == pytest.approx(1e-3, rel=1e-6)
    assert lin.slope_s_per_sample == pytest.approx(1e-5, rel=1e-6)
    assert lin.saturation_batch == pytest.approx(100, rel=1e-6)
    assert a.saturation_batch_linear == pytest.approx(100, rel=1e-6)
    assert a.best_fit == FIT_LINEAR  # the hinge (3 parameters) is no better, so the line wins
    assert a.knee_batch == pytest.approx(100, rel=1e-6)
    assert a.knee_source == "linear a/b"


def test_linear_fit_recovers_parameters_from_noisy_points_within_their_standard_errors():
    factors = [1.01, 0.99, 1.005, 0.995, 1.0, 1.01, 0.99, 1.0]
    bs = [1, 2, 4, 8, 16, 32, 64, 128]
    lin = fit_linear(bs, [linear_curve(b) * f for b, f in zip(bs, factors)])
    assert lin.slope_se_s_per_sample is not None and lin.slope_se_s_per_sample > 0
    assert abs(lin.slope_s_per_sample - 1e-5) < 4 * lin.slope_se_s_per_sample
    assert abs(lin.intercept_s - 1e-3) < 4 * lin.intercept_se_s


def test_linear_data_is_equal_time_up_to_4_and_grows_about_linearly_from_8():
    a = analyse_step_times([point(b, linear_curve(b)) for b in BATCHES])
    assert a.equal_time_max_batch == 4  # t(8)/t(1) = 1.08/1.01 > 1.05
    assert a.first_beyond_batch == 8
    assert a.growth() == GROWTH_LINEAR


def test_linear_fit_never_reports_a_negative_slope():
    lin = fit_linear([1, 2, 4, 8], [2e-3, 1.8e-3, 1.5e-3, 1.2e-3])
    assert lin.slope_s_per_sample == 0.0
    assert lin.slope_clamped is True
    assert lin.saturation_batch is None and "slope 0" in lin.saturation_batch_reason


# -------------------------------------------------------------------------------------- all flat


def test_all_flat_data_is_equal_time_everywhere_and_knee_is_beyond_the_range():
    a = analyse_step_times([point(b, 1e-3) for b in BATCHES])
    assert a.equal_time_max_batch == 1024
    assert a.equal_time_reaches_largest is True
    assert a.first_beyond_batch is None and "first_beyond_batch" in a.null_reasons
    assert a.knee_batch is None and a.knee_beyond_range is True
    assert "beyond" in a.null_reasons["knee_batch"]
    assert a.hinge_fit.knee_position == "beyond_range"
    assert {p.regime for p in a.points} == {"flat"}


def test_all_beyond_says_step_time_already_grows_at_the_next_batch():
    a = analyse_step_times([point(b, b * 1e-3) for b in [1, 2, 4, 8]])
    assert a.equal_time_max_batch == 1
    assert a.first_beyond_batch == 2
    assert [p.equal_time for p in a.points] == [WITHIN, BEYOND, BEYOND, BEYOND]


# ---------------------------------------------------------------------------- CIs decide, not medians


def test_wide_ci_makes_a_borderline_point_undecided_not_within():
    # Median ratio 1.04 (< 1.05) but the CI of batch 2 reaches 1.08: the data cannot promise 5%.
    pts = [point(1, 1e-3, rel_ci=0.01), point(2, 1.04e-3, rel_ci=0.04), point(4, 1.3e-3)]
    a = analyse_step_times(pts)
    p2 = a.points[1]
    assert p2.ratio_to_reference == pytest.approx(1.04)
    assert p2.ratio_high > 1.05 > p2.ratio_low
    assert p2.equal_time == UNDECIDED
    assert a.equal_time_max_batch == 1
    assert a.equal_time_max_batch_possible == 2
    assert a.first_beyond_batch == 4


def test_same_borderline_point_with_tight_ci_is_within():
    pts = [point(1, 1e-3, rel_ci=0.002), point(2, 1.04e-3, rel_ci=0.002), point(4, 1.3e-3)]
    a = analyse_step_times(pts)
    assert a.points[1].equal_time == WITHIN
    assert a.equal_time_max_batch == 2


def test_ratio_interval_is_conservative_combination_of_both_cis():
    ref = PointSummary(1, 1.0e-3, 0.98e-3, 1.02e-3)
    p = PointSummary(2, 1.1e-3, 1.05e-3, 1.2e-3)
    a = analyse_step_times([ref, p])
    q = a.points[1]
    assert q.ratio_low == pytest.approx(1.05 / 1.02)
    assert q.ratio_high == pytest.approx(1.2 / 0.98)
    assert q.ratio_basis == "ci"


def test_missing_ci_falls_back_to_medians_and_the_point_is_listed():
    pts = [PointSummary(1, 1e-3, None, None), point(2, 1.01e-3), point(4, 1.5e-3)]
    a = analyse_step_times(pts)
    assert a.points_without_ci == [1]
    assert a.points[1].ratio_basis == "median_fallback"
    assert a.points[1].ratio_high == pytest.approx(1.01 * 1.002)
    assert a.points[0].throughput_low_samples_per_s is None


def test_throughput_interval_comes_from_the_ci_bounds():
    a = analyse_step_times([PointSummary(100, 1e-2, 0.9e-2, 1.25e-2), point(200, 1e-2)])
    p = a.points[0]
    assert p.throughput_samples_per_s == pytest.approx(10_000)
    assert p.throughput_low_samples_per_s == pytest.approx(8_000)
    assert p.throughput_high_samples_per_s == pytest.approx(100 / 0.9e-2)


# ----------------------------------------------------------------------------- throughput, noise


def test_peak_throughput_and_smallest_batch_reaching_95_percent():
    # t = a + b*B with a/b = 16: throughput B/(1 + B/16) approaches 16/a.
    a = analyse_step_times([point(b, 1e-3 * (1 + b / 16)) for b in BATCHES])
    assert a.peak_throughput_batch == 1024
    assert a.peak_at_largest_batch is True
    assert a.peak_throughput_samples_per_s == pytest.approx(1024 / (1e-3 * 65))
    assert a.throughput_saturation_batch == 256  # 256/17 is 95.6% of 1024/65; 128/9 is 90.3%


def test_saturation_fraction_is_a_parameter():
    a = analyse_step_times([point(b, 1e-3 * (1 + b / 16)) for b in BATCHES], saturation_fraction=0.9)
    assert a.throughput_saturation_batch == 128


def test_points_whose_blocks_disagree_beyond_the_target_are_noisy():
    pts = [point(b, 1e-3, spread=0.2 if b in (2, 4, 8) else 0.002) for b in BATCHES]
    pts[0] = PointSummary(1, 1e-3, 0.998e-3, 1.002e-3, None)
    a = analyse_step_times(pts, diagnoses={2: "launch-bound", 4: "launch-bound", 8: "launch-bound"})
    assert a.noisy_batches == [2, 4, 8]
    assert a.points[0].noisy is None  # no blocks to compare: unknown, not "quiet"
    assert a.points[4].noisy is False


def test_noise_target_is_a_parameter():
    pts = [point(b, 1e-3, spread=0.02) for b in [1, 2, 4]]
    assert analyse_step_times(pts).noisy_batches == [1, 2, 4]
    assert analyse_step_times(pts, noise_target=0.05).noisy_batches == []


def test_diagnoses_are_carried_per_point():
    diag = {b: "launch-bound" if b <= 64 else "compute-bound" for b in BATCHES}
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES], diagnoses=diag)
    assert a.points[0].diagnosis == "launch-bound" and a.points[-1].diagnosis == "compute-bound"


def test_non_monotone_noisy_data_is_analysed_without_crashing_and_flagged():
    times = [1e-3, 1.3e-3, 0.8e-3, 1.2e-3, 1.0e-3, 1.1e-3, 2e-3, 4e-3, 3e-3, 8e-3, 16e-3]
    pts = [PointSummary(b, t, t * 0.9, t * 1.1, 0.25) for b, t in zip(BATCHES, times)]
    a = analyse_step_times(pts)
    assert a.linear_fit.slope_s_per_sample >= 0
    assert (2, 4) in a.faster_at_larger_batch and (128, 256) in a.faster_at_larger_batch
    assert a.noisy_batches == BATCHES
    strict_json(a)


# ---------------------------------------------------------------------------------- few points


def test_fewer_than_three_points_gives_no_fits_with_a_reason():
    a = analyse_step_times([point(1, 1e-3), point(2, 1.5e-3)])
    assert a.linear_fit is None and a.hinge_fit is None and a.best_fit is None
    for name in ("linear_fit", "hinge_fit", "best_fit"):
        assert "at least 3" in a.null_reasons[name]
    assert a.first_beyond_batch == 2
    assert {p.regime for p in a.points} == {"flat", None}
    assert a.fitted_step_time_s(4) is None
    strict_json(a)


def test_one_point_is_described_without_comparisons():
    a = analyse_step_times([point(8, 2e-3)])
    assert a.equal_time_max_batch is None and "only one batch size" in a.null_reasons["equal_time_max_batch"]
    assert a.peak_throughput_samples_per_s == pytest.approx(4000)
    strict_json(a)


def test_no_points_gives_an_analysis_that_says_nothing_was_measured():
    a = analyse_step_times([], largest_batch_that_fits=4)
    assert a.points == [] and a.reference_batch is None and a.largest_batch_that_fits == 4
    assert "no batch size" in a.null_reasons["equal_time_max_batch"]
    strict_json(a)


# ------------------------------------------------------------------------------------ output form


def test_to_dict_is_strict_json_with_per_point_calls_and_no_prose():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES], largest_batch_that_fits=1536)
    d = json.loads(strict_json(a))
    assert d["equal_time_max_batch"] == 64
    assert d["best_fit"] == "hinge"
    assert d["hinge_fit"]["knee_batch"] == pytest.approx(64, rel=0.03)
    assert [p["equal_time"] for p in d["points"]][:8] == ["within"] * 7 + ["beyond"]
    assert "verdict" not in d and d["schema_version"] == 3  # sentences are made in bench.present.steptime
    assert d["parameters"] == {"eps": 0.05, "noise_target": 0.01, "saturation_fraction": 0.95}


def test_fitted_step_time_follows_the_best_fit():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES])
    assert a.fitted_step_time_s(16) == pytest.approx(1e-3, rel=1e-6)
    assert a.fitted_step_time_s(512) == pytest.approx(hinge_curve(512), rel=1e-4)


def test_hinge_fit_alone_finds_an_interior_knee_between_measured_batches():
    bs = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    h = fit_hinge(bs, [1e-3 + 1e-5 * max(0, b - 40) for b in bs])
    assert h.knee_batch == pytest.approx(40, rel=0.02)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 0}, "eps"),
    ({"noise_target": -1}, "noise_target"),
    ({"saturation_fraction": 1.5}, "saturation_fraction"),
    ({"largest_batch_that_fits": 0}, "largest_batch_that_fits"),
])
def test_bad_parameters_raise_bench_error(kwargs, message):
    with pytest.raises(BenchError, match=message):
        analyse_step_times([point(1, 1e-3)], **kwargs)


@pytest.mark.parametrize("pts, message", [
    ([point(1, 1e-3), point(1, 2e-3)], "more than once"),
    ([PointSummary(1, 0.0, None, None)], "median"),
    ([PointSummary(1, float("nan"), None, None)], "median"),
    ([PointSummary(1, 1e-3, 2e-3, 3e-3)], "ci_low_s"),
    ([PointSummary(0, 1e-3, None, None)], "positive integer"),
])
def test_bad_points_raise_bench_error(pts, message):
    with pytest.raises(BenchError, match=message):
        analyse_step_times(pts)


# ------------------------------------------------------------------------------- from measurements


def measurement(batch: int, status: str = "ok", t_s: float = 1e-3, blocks=(1e-3, 1.1e-3)) -> Measurement:
    samples = [t_s * (1 + 0.001 * ((i * 7) % 11 - 5)) for i in range(21)] if status == "ok" else []
    return Measurement(case=Case("mlp", batch), status=status, samples_s=samples,
                       block_medians_s=list(blocks) if status == "ok" else [],
                       error=None if status == "ok" else "CUDA out of memory")


def test_summaries_from_measurements_keep_ok_points_sorted_with_stats_and_block_spread():
    ms = [measurement(4, t_s=2e-3), measurement(1), measurement(8, status="oom"),
          measurement(2, status="error"), measurement(16, blocks=())]
    s = summaries_from_measurements(ms)
    assert [p.batch_size for p in s] == [1, 4, 16]
    stats = ms[0].stats
    assert s[1].median_s == stats.median_s
    assert (s[1].ci_low_s, s[1].ci_high_s) == (stats.ci_low_s, stats.ci_high_s)
    assert s[0].block_spread_rel == pytest.approx(0.1e-3 / 2 / 1.05e-3)
    assert s[2].block_spread_rel is None


def test_summaries_refuse_points_from_different_configurations():
    other = Measurement(case=Case("resnet", 2), samples_s=[1e-3] * 10)
    with pytest.raises(BenchError, match="one configuration"):
        summaries_from_measurements([measurement(1), other])


def test_analyse_sweep_uses_ok_points_and_the_largest_batch_that_fits():
    sweep = SweepResult(config={}, points=[measurement(b, t_s=hinge_curve(b), blocks=()) for b in BATCHES]
                        + [measurement(2048, status="oom")], largest_batch_that_fits=1536)
    a = analyse_sweep(sweep)
    assert a.n_points == len(BATCHES)
    assert a.equal_time_max_batch == 64
    assert a.largest_batch_that_fits == 1536


def test_analyse_sweep_diagnoses_each_ok_point_and_quotes_the_diagnoses():
    sweep = SweepResult(config={"eps": 0.05, "ci_target": 0.01},
                        points=[measurement(b, t_s=hinge_curve(b), blocks=()) for b in BATCHES])
    a = analyse_sweep(sweep)
    labels = [p.telemetry["diagnosis"]["label"] for p in sweep.points]
    assert all(labels) and [p.diagnosis for p in a.points] == labels
    assert all(p.diagnosis is None for p in analyse_sweep(sweep, diagnose=False).points)


def test_analyse_sweep_takes_its_tolerances_from_the_sweeps_config():
    sweep = SweepResult(config={"eps": 0.5, "ci_target": 0.2},
                        points=[measurement(b, t_s=hinge_curve(b), blocks=()) for b in BATCHES])
    a = analyse_sweep(sweep)
    assert (a.eps, a.noise_target) == (0.5, 0.2)
    assert analyse_sweep(sweep, eps=0.05).eps == 0.05


def test_add_analysis_keeps_the_reason_when_the_points_cannot_be_analysed():
    from bench.analysis.steptime import add_analysis

    twice = SweepResult(config={}, points=[measurement(4), measurement(4), measurement(8)])
    assert add_analysis(twice).analysis is None
    assert "batch size 4 appears more than once" in twice.config["analysis_reason"]
    once = add_analysis(SweepResult(config={}, points=[measurement(4), measurement(8)]))
    assert once.analysis["n_points"] == 2 and "analysis_reason" not in once.config


def test_linear_knee_past_the_largest_batch_is_reported_as_beyond_the_range():
    # a/b = 10,000 but only batches up to 1024 measured, and the small slope leaves batch 1024 "undecided".
    pts = [PointSummary(b, 1e-3 * (1 + b / 10_000), 1e-3 * (1 + b / 10_000) * 0.95, 1e-3 * (1 + b / 10_000) * 1.05)
           for b in BATCHES]
    a = analyse_step_times(pts)
    assert a.equal_time_reaches_largest is False
    assert a.best_fit == FIT_LINEAR
    assert a.knee_batch == pytest.approx(10_000, rel=1e-6)
    assert a.knee_beyond_range is True


# ------------------------------------------------------------------------------------ reading back


def test_an_analysis_reads_back_from_its_dict_into_the_same_record():
    diag = {b: "launch-bound" if b <= 64 else "compute-bound" for b in BATCHES}
    pts = [point(b, hinge_curve(b), spread=0.02 if b == 4 else 0.001) for b in BATCHES]
    pts[2] = PointSummary(4, hinge_curve(4), None, None, 0.02)
    a = analyse_step_times(pts, largest_batch_that_fits=1536, diagnoses=diag)
    d = json.loads(strict_json(a))
    back = StepTimeAnalysis.from_dict(d)
    assert back.to_dict() == d
    assert back.points == a.points and back.hinge_fit == a.hinge_fit and back.linear_fit == a.linear_fit
    assert back.noisy_batches == [4] and back.points_without_ci == [4]


def test_a_version_1_analysis_with_its_verdict_sentences_still_reads():
    d = analyse_step_times([point(b, linear_curve(b)) for b in BATCHES]).to_dict()
    old = {**d, "schema_version": 1, "verdict": ["Step time stays within 5% of batch 1's (1.01 ms) up to batch 4."]}
    assert StepTimeAnalysis.from_dict(old).to_dict() == d


@pytest.mark.parametrize("change, message", [
    ({"schema": "something.else"}, "not a step-time analysis"),
    ({"schema_version": 4}, "version 4"),
    ({"parameters": None}, "malformed"),
])
def test_an_analysis_dict_that_cannot_be_read_is_a_one_line_error(change, message):
    d = {**analyse_step_times([point(1, 1e-3), point(2, 1e-3)]).to_dict(), **change}
    with pytest.raises(InvalidResultsFile, match=message):
        StepTimeAnalysis.from_dict(d)


def test_growth_past_the_equal_time_range_is_judged_on_the_best_fit():
    assert analyse_step_times([point(b, linear_curve(b)) for b in BATCHES]).growth() == GROWTH_LINEAR
    jagged = [1e-3, 1.5e-3, 1.1e-3, 2.5e-3, 1.3e-3, 4e-3]
    assert analyse_step_times([point(b, t) for b, t in zip(BATCHES, jagged)]).growth() == GROWTH_IRREGULAR
    falling = [2e-3, 1.8e-3, 1.5e-3, 1.2e-3]
    assert analyse_step_times([point(b, t) for b, t in zip(BATCHES, falling)]).growth() == GROWTH_NONE
    assert analyse_step_times([point(1, 1e-3), point(2, 2e-3)]).growth() is None  # no fit from two points


# ------------------------------------------- calls on medians, throughput from the mean, tails, load (issue 10)


def test_a_fall_between_points_without_cis_is_never_put_beyond_the_cis():
    # Batch 512 and 1024 took too long for a CI; 1024's median is 0.5% below 512's.
    pts = [point(b, 1e-3) for b in (1, 2, 4)] + [PointSummary(512, 0.2, None, None),
                                                  PointSummary(1024, 0.199, None, None)]
    a = analyse_step_times(pts)
    assert a.faster_at_larger_batch == []
    assert a.faster_on_medians == []  # 0.5% is within the ±1% the points are measured to
    steep = pts[:-1] + [PointSummary(1024, 0.18, None, None)]
    b = analyse_step_times(steep)
    assert b.faster_at_larger_batch == [] and b.faster_on_medians == [(512, 1024)]


def test_each_point_records_whether_its_call_rests_on_cis_or_on_medians():
    pts = [point(1, 1e-3), point(2, 1.01e-3), PointSummary(4, 1.5e-3, None, None)]
    assert [p.ratio_basis for p in analyse_step_times(pts).points] == ["reference", "ci", "median_fallback"]
    bare = [PointSummary(1, 1e-3, None, None), PointSummary(2, 1.2e-3, None, None)]
    assert [p.ratio_basis for p in analyse_step_times(bare).points] == ["reference", "median"]


def test_throughput_is_batch_over_the_mean_step_with_the_mean_cis_interval():
    p = PointSummary(100, 1e-2, 0.99e-2, 1.01e-2, mean_s=1.25e-2, mean_ci_low_s=1.2e-2, mean_ci_high_s=1.3e-2)
    (q,) = analyse_step_times([p]).points
    assert q.throughput_basis == "mean"
    assert q.throughput_samples_per_s == pytest.approx(100 / 1.25e-2)
    assert q.throughput_low_samples_per_s == pytest.approx(100 / 1.3e-2)
    assert q.throughput_high_samples_per_s == pytest.approx(100 / 1.2e-2)


def test_the_throughput_peak_and_saturation_come_from_the_means_not_the_medians():
    # Batch 64 has the better median throughput, but a heavy tail: per epoch, batch 32 delivers more.
    pts = [PointSummary(32, 1.0e-3, 0.99e-3, 1.01e-3, mean_s=1.0e-3),
           PointSummary(64, 1.6e-3, 1.58e-3, 1.62e-3, mean_s=2.4e-3)]
    a = analyse_step_times(pts)
    assert a.peak_throughput_batch == 32 and a.peak_throughput_samples_per_s == pytest.approx(32_000)
    assert a.heavy_tail_batches == [64]
    assert [p.heavy_tail for p in a.points] == [False, True]
    median_only = analyse_step_times([PointSummary(32, 1.0e-3, None, None), PointSummary(64, 1.6e-3, None, None)])
    assert median_only.peak_throughput_batch == 64 and median_only.points[0].heavy_tail is None


def test_a_mean_within_the_noise_target_of_the_median_is_no_heavy_tail():
    pts = [PointSummary(8, 1e-3, None, None, mean_s=1.009e-3), PointSummary(16, 1e-3, None, None, mean_s=1.02e-3)]
    assert analyse_step_times(pts).heavy_tail_batches == [16]
    assert analyse_step_times(pts, noise_target=0.05).heavy_tail_batches == []


def test_summaries_carry_the_mean_its_ci_and_the_block_shortfall_of_each_point():
    from bench.core.budget import BlockShortfall

    short = BlockShortfall(blocks=2, needed=6, budget_s=2.0, step_s=0.5, budget_needed_s=4.0, samples=4)
    m = measurement(4)
    m.block_shortfall = short
    (s,) = summaries_from_measurements([m])
    stats = m.stats
    assert s.mean_s == stats.mean_s and (s.mean_ci_low_s, s.mean_ci_high_s) == (stats.mean_ci_low_s, stats.mean_ci_high_s)
    assert s.block_shortfall == short
    a = analyse_sweep(SweepResult(config={}, points=[m, measurement(8)]))
    assert a.block_shortfall_batches == [4] and a.points[0].block_shortfall == short
    back = StepTimeAnalysis.from_dict(json.loads(strict_json(a)))
    assert back.points[0].block_shortfall == short and back.block_shortfall_batches == [4]


def conditions(at: float, load_1m: float, threads: int = 2, cpus: int = 2) -> dict:
    return {"at": at, "load_avg": [load_1m, load_1m, load_1m], "cpus": cpus, "torch_num_threads": threads}


def test_analyse_sweep_reads_how_busy_the_machine_was_from_the_points_conditions():
    pts = [measurement(b) for b in (1, 2, 4)]
    # 60 s of points on 2 CPUs with 2 torch threads, the 1-minute load average rising from 4 toward 6.
    for i, p in enumerate(pts):
        p.conditions = {"start": conditions(1000.0 + 20 * i, 4.0), "end": conditions(1020.0 + 20 * i, 4.0)}
    pts[-1].conditions["end"] = conditions(1060.0, 4.0 + 2.0 * (1 - 2.718281828 ** -1))
    a = analyse_sweep(SweepResult(config={}, points=pts))
    load = a.machine_load
    assert load.basis == "window" and load.window_s == pytest.approx(60.0)
    assert load.mean_load == pytest.approx(6.0, rel=1e-6) and load.other_load == pytest.approx(4.0, rel=1e-6)
    assert load.busy is True
    back = StepTimeAnalysis.from_dict(json.loads(strict_json(a)))
    assert back.machine_load == load
    quiet = analyse_sweep(SweepResult(config={}, points=[measurement(b) for b in (1, 2)]))
    assert quiet.machine_load is None and "no load-average readings" in quiet.null_reasons["machine_load"]


def test_an_old_analysis_that_put_a_fall_on_medians_beyond_the_cis_reads_with_it_on_medians():
    pts = [point(1, 1e-3), PointSummary(8, 3e-3, None, None), point(64, 1.8e-3)]
    d = analyse_step_times(pts).to_dict()
    assert d["faster_on_medians"] == [[8, 64]] and d["faster_at_larger_batch"] == []
    old = {**d, "schema_version": 2, "faster_at_larger_batch": [[8, 64]]}
    del old["faster_on_medians"]
    back = StepTimeAnalysis.from_dict(old)
    assert back.faster_at_larger_batch == [] and back.faster_on_medians == [(8, 64)]
