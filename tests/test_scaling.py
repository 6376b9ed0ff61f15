"""Steps to target vs batch size: LR selection, the fit S(B) = S_min(1 + B_crit/B) and its bootstrap, regimes."""

import numpy as np
import pytest

from bench.analysis.scaling import (
    DIMINISHING,
    INTERVAL_BOOTSTRAP,
    INTERVAL_PROFILE,
    MAXIMAL,
    PERFECT,
    fit_scaling,
    fit_steps_model,
    measured_scaling_exponents,
    regime,
    steps_by_batch,
)
from bench.core.errors import BenchError
from bench.records.curves import Curve, CurvePoint
from bench.records.tta import BatchSteps, LRCell, steps_model

S_MIN, B_CRIT = 100.0, 256.0
SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


def run_curve(batch_size, steps, lr=0.1, seed=0, budget=None):
    """A curve whose metric reaches the target 0.5 exactly at `steps`, or never (steps None)."""
    pts = [CurvePoint(0, 0, eval_metric=0.0)]
    if steps is None:
        pts.append(CurvePoint(budget, budget * batch_size, eval_metric=0.2))
    else:
        if steps > 1:
            pts.append(CurvePoint(steps - 1, (steps - 1) * batch_size, eval_metric=0.4))
        pts.append(CurvePoint(steps, steps * batch_size, eval_metric=0.5))
    return Curve(task="synthetic", batch_size=batch_size, lr=lr, seed=seed, points=pts, stop_reason="target reached")


def model_curves(noise=0.05, seeds=4, rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    curves = []
    for b in SIZES:
        for s in range(seeds):
            true = steps_model(b, S_MIN, B_CRIT)
            curves.append(run_curve(b, max(1, int(round(true * np.exp(noise * rng.standard_normal())))), lr=0.1, seed=s))
            # a worse learning rate at every batch size, which the selection must pass over
            curves.append(run_curve(b, int(round(1.5 * true)), lr=0.05, seed=s))
    return curves


def test_fit_recovers_exact_parameters_from_model_values():
    s_min, b_crit = fit_steps_model(SIZES, steps_model(SIZES, S_MIN, B_CRIT))
    assert (s_min, b_crit) == (pytest.approx(S_MIN, rel=1e-6), pytest.approx(B_CRIT, rel=1e-6))


def test_fit_recovers_s_min_and_b_crit_from_noisy_seeded_curves_and_its_interval_covers_the_truth():
    fit = fit_scaling(steps_by_batch(model_curves(), target=0.5))
    assert fit.s_min == pytest.approx(S_MIN, rel=0.05)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.05)
    assert fit.e_min == pytest.approx(S_MIN * B_CRIT, rel=0.07)
    assert fit.interval_method == INTERVAL_PROFILE and fit.residual_df == len(SIZES) - 2
    assert fit.s_min_ci[0] <= S_MIN <= fit.s_min_ci[1]
    assert fit.b_crit_ci[0] <= B_CRIT <= fit.b_crit_ci[1]
    assert fit.e_min_ci[0] <= S_MIN * B_CRIT <= fit.e_min_ci[1]
    assert fit.b_crit_ci[0] < fit.b_crit < fit.b_crit_ci[1] and fit.b_crit_range == fit.b_crit_ci
    assert fit.null_reasons == {}
    assert fit.b_crit_position == "inside"


def test_the_profile_interval_is_where_the_best_fit_at_each_b_crit_costs_at_most_f_times_the_residual_variance():
    from scipy import stats

    sel = steps_by_batch(model_curves(), target=0.5)
    fit = fit_scaling(sel)
    b = np.array(SIZES, dtype=float)
    ls = np.log([x.steps_to_target for x in sel])

    # Each batch size weighs by n/σ²(B) from the seeds' spread (fit.noise_model), which costs the
    # interval one degree of freedom.
    w = np.array(fit.noise_model["weights"])

    def rss(b_crit):  # S_min at its best for this B_crit: weighted least squares in logs, in closed form
        m = ls - np.log1p(b_crit / b)
        return float(np.sum(w * (m - np.average(m, weights=w)) ** 2))

    df = len(SIZES) - 2
    assert fit.noise_model["slope"]
    limit = rss(fit.b_crit) * (1 + stats.f.ppf(0.95, 1, df - 1) / df)
    for end in fit.b_crit_ci:
        assert rss(end) == pytest.approx(limit, rel=1e-6)
    assert rss(fit.b_crit_ci[0] * 0.99) > limit and rss(fit.b_crit_ci[1] * 1.01) > limit


def test_the_profile_interval_covers_the_truth_near_95_percent_in_a_fixed_simulation():
    # The full table (thousands of trials, 1/3/5 seeds) comes from scripts/tta_coverage.py; this runs its
    # simulation on a fixed RNG, so it cannot flake, and would catch an interval far too narrow.
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "tta_coverage.py"
    spec = importlib.util.spec_from_file_location("tta_coverage", path)
    cov = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cov  # its dataclasses look their module up there
    spec.loader.exec_module(cov)
    profile = cov.run("profile", "nine", seeds=3, trials=40, noise=0.1, rng_seed=0, resamples=0)
    # A refusal here is the lack-of-fit test's false alarm (1% nominal; 2 of these 40 fixed draws have
    # p < 0.01), counted as a miss; the script measures the coverage over thousands of trials.
    assert profile.trials == 40 and profile.null["b_crit"] <= 2
    assert profile.covered["b_crit"] >= 36


def test_an_interval_the_data_leave_open_is_null_with_a_reason_and_the_supported_bound():
    # Steps halve at every doubling over the whole range: B_crit could be anything beyond it.
    sizes = [8, 16, 32, 64, 128]
    noise = [1.03, 0.97, 1.02, 0.99, 1.01]
    fit = fit_scaling([_batch(b, 12800.0 / b * n) for b, n in zip(sizes, noise)])
    assert fit.b_crit is not None and fit.b_crit_ci is None
    assert fit.b_crit_range[0] > 0 and fit.b_crit_range[1] is None
    assert fit.null_reasons["b_crit_ci"].startswith("unreliable: the 95% profile likelihood leaves B_crit unbounded above")
    assert f"B_crit >= {fit.b_crit_range[0]:.3g}" in fit.null_reasons["b_crit_ci"]
    assert fit.s_min_ci is None and "S_min may be near 0" in fit.null_reasons["s_min_ci"]


def _batch(b, steps, seeds=None):
    per_seed = list(seeds) if seeds is not None else [steps]
    return BatchSteps(b, 0.1, float(np.mean(per_seed)), steps_per_seed=per_seed,
                      lr_cells=[LRCell(0.1, 1.0, list(range(len(per_seed))), per_seed, float(np.mean(per_seed)))])


def test_bootstrap_is_reproducible_with_its_fixed_seed():
    sel = steps_by_batch(model_curves(), target=0.5)
    one = fit_scaling(sel, n_bootstrap=50, seed=3, interval=INTERVAL_BOOTSTRAP)
    assert one.b_crit_ci == fit_scaling(sel, n_bootstrap=50, seed=3, interval=INTERVAL_BOOTSTRAP).b_crit_ci
    assert one.bootstrap_method == "seeds within each (batch, LR) cell" and one.n_bootstrap_ok == 50
    assert one.interval_method == INTERVAL_BOOTSTRAP


def test_single_seed_curves_bootstrap_over_batch_sizes():
    fit = fit_scaling(steps_by_batch(model_curves(seeds=1), target=0.5), n_bootstrap=100, interval=INTERVAL_BOOTSTRAP)
    assert fit.bootstrap_method == "batch sizes" and fit.b_crit_ci is not None


def test_batch_steps_without_lr_cells_bootstrap_over_batch_sizes_instead_of_finding_no_seeds():
    # BatchSteps built by hand (a table, an older file) carry no per-LR cells: there are no seeds to resample.
    sel = [BatchSteps(b, None, float(steps_model(b, S_MIN, B_CRIT)) * f)
           for b, f in zip(SIZES, [1.02, 0.97, 1.04, 0.99, 1.0, 1.03, 0.96, 1.01, 0.98])]
    fit = fit_scaling(sel, n_bootstrap=200, interval=INTERVAL_BOOTSTRAP)
    assert fit.bootstrap_method == "batch sizes" and fit.n_bootstrap_ok > 190
    assert fit.b_crit_ci is not None and fit.null_reasons == {}


def test_every_null_interval_has_a_reason():
    few = fit_scaling([_batch(8, 300), _batch(16, 160)])
    assert few.b_crit_ci is None and few.null_reasons["b_crit_ci"].startswith("no fit: needs steps to target at 3")
    none = fit_scaling(steps_by_batch(model_curves(seeds=1), target=0.5), n_bootstrap=0, interval=INTERVAL_BOOTSTRAP)
    assert none.b_crit_ci is None and none.null_reasons["b_crit_ci"] == "no bootstrap resamples requested (n_bootstrap = 0)"
    # Five batch sizes, one seed each: most resamples of batch sizes hold fewer than 3 distinct ones.
    wide = [_batch(b, float(steps_model(b, 100, 859)) * f) for b, f in zip([8, 128, 2048, 32768, 524288],
                                                                          [1.05, 0.95, 1.1, 0.97, 1.02])]
    boot = fit_scaling(wide, n_bootstrap=200, interval=INTERVAL_BOOTSTRAP)
    assert boot.b_crit_ci is None and boot.null_reasons["b_crit_ci"].startswith("unreliable: ")
    assert "resamples" in boot.null_reasons["b_crit_ci"]


def test_selection_takes_the_lr_with_fewest_mean_steps_and_keeps_seed_spread():
    curves = [run_curve(32, 100, lr=0.1, seed=0), run_curve(32, 120, lr=0.1, seed=1),
              run_curve(32, 80, lr=0.2, seed=0), run_curve(32, 90, lr=0.2, seed=1),
              run_curve(32, 50, lr=0.4, seed=0), run_curve(32, None, lr=0.4, seed=1, budget=500)]
    (b,) = steps_by_batch(curves, target=0.5)
    assert b.best_lr == 0.2 and b.steps_to_target == 85 and (b.steps_low, b.steps_high) == (80, 90)
    assert b.examples_to_target == 85 * 32 and b.best_lr_at_grid_edge is False
    lr04 = next(c for c in b.lr_cells if c.lr == 0.4)
    assert lr04.steps_to_target is None and lr04.reason == "1 of 2 seeds not reached within 500 steps"


def test_a_batch_size_that_never_reaches_the_target_is_kept_with_a_reason():
    curves = [run_curve(8, 300), run_curve(16, None, lr=0.1, budget=400), run_curve(16, None, lr=0.2, budget=400)]
    sel = steps_by_batch(curves, target=0.5)
    assert [b.batch_size for b in sel] == [8, 16]
    assert sel[1].steps_to_target is None
    assert sel[1].reason == "not reached within 400 steps at any of 2 learning rates"


def test_fewer_than_three_reached_batch_sizes_give_no_fit_but_a_reason():
    fit = fit_scaling(steps_by_batch([run_curve(8, 300), run_curve(16, 160)], target=0.5))
    assert fit.b_crit is None and "3 or more batch sizes; 2 reached" in fit.reason


def test_regimes_follow_the_stated_rule():
    assert regime(16, 128) == PERFECT  # 16 <= 128/4
    assert regime(32, 128) == PERFECT
    assert regime(33, 128) == DIMINISHING
    assert regime(511, 128) == DIMINISHING
    assert regime(512, 128) == MAXIMAL  # >= 4 x 128
    assert regime(64, None) is None


def test_fit_labels_every_batch_size_with_its_regime():
    fit = fit_scaling(steps_by_batch(model_curves(noise=0.0, seeds=1), target=0.5), n_bootstrap=0)
    assert fit.regimes["16"] == PERFECT and fit.regimes["256"] == DIMINISHING and fit.regimes["4096"] == MAXIMAL


def test_measured_exponent_is_minus_one_under_perfect_scaling():
    sel = steps_by_batch([run_curve(8, 800), run_curve(16, 400), run_curve(32, 400)], target=0.5)
    assert measured_scaling_exponents(sel) == {"8": pytest.approx(-1.0), "16": pytest.approx(0.0), "32": None}


def test_fit_rejects_nonpositive_steps():
    with pytest.raises(BenchError):
        fit_steps_model([8, 16, 32], [10, 0, 5])


def test_bootstrap_never_resamples_cells_the_point_estimate_excluded():
    # Noise-free seeds, so the only spread a resample could show comes from cells it should not use:
    # a 2x-faster LR at batch 256 that failed on one seed, and a batch whose every LR failed on a seed.
    curves = []
    for b in [16, 32, 64, 128, 256, 512, 1024]:
        steps = int(steps_model(b, 100, 256))
        for s in range(3):
            curves.append(run_curve(b, steps, lr=0.1, seed=s))
            if b == 256:
                curves.append(run_curve(b, None if s == 0 else steps // 2, lr=0.2, seed=s, budget=5000))
    curves += [run_curve(4096, None if s == 0 else 10, lr=0.1, seed=s, budget=5000) for s in range(3)]
    sel = steps_by_batch(curves, target=0.5)
    assert [b.batch_size for b in sel if not b.reached] == [4096]
    fit = fit_scaling(sel, n_bootstrap=200, seed=0, interval=INTERVAL_BOOTSTRAP)
    assert fit.b_crit_ci == [pytest.approx(256.0, rel=1e-6)] * 2
    assert fit.s_min_ci == [pytest.approx(100.0, rel=1e-6)] * 2


def linear_metric_curve(batch_size, true_steps, eval_every):
    """Metric = step / true_steps (target 1.0 crossed at true_steps), evaluated every `eval_every` steps."""
    last = int(np.ceil(true_steps / eval_every)) * eval_every
    pts = [CurvePoint(s, s * batch_size, eval_metric=s / true_steps) for s in range(0, last + 1, eval_every)]
    return Curve(task="synthetic", batch_size=batch_size, lr=0.1, seed=0, points=pts)


def test_interpolated_steps_remove_the_evaluation_interval_bias_from_b_crit():
    sizes = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    curves = [linear_metric_curve(b, float(steps_model(b, S_MIN, B_CRIT)), eval_every=20) for b in sizes]
    sel = steps_by_batch(curves, target=1.0)
    s_min, b_crit = fit_steps_model(sizes, [b.steps_to_target for b in sel])
    assert (s_min, b_crit) == (pytest.approx(S_MIN, rel=1e-6), pytest.approx(B_CRIT, rel=1e-6))
    # The raw first evaluation at or past the target is kept, and rounding up to it biases the fit.
    raw = [b.lr_cells[0].first_eval_steps[0] for b in sel]
    assert all(r % 20 == 0 for r in raw)
    assert abs(fit_steps_model(sizes, raw)[1] / B_CRIT - 1) > 0.05


def test_a_target_met_before_training_is_a_one_line_error():
    curves = [run_curve(b, 100 // b * 4, seed=0) for b in (4, 8, 16)]
    curves[1].points[0].eval_metric = 0.6  # already at or past 0.5 at step 0
    with pytest.raises(BenchError, match=r"target 0.5 is already met before training \(step 0\) by 1 of 3 runs "
                                         r"\(batch size 8\)"):
        steps_by_batch(curves, target=0.5)


# ---------------------------------------------------------------------------------------------- censoring


def test_an_unreached_batch_size_is_a_lower_bound_on_its_steps_from_every_lr_that_did_not_diverge():
    diverged = run_curve(64, None, lr=0.8, seed=0, budget=30)
    diverged.stop_reason = "diverged: loss 1e12"
    curves = [run_curve(64, 300, lr=0.1, seed=0), run_curve(64, None, lr=0.1, seed=1, budget=500),  # mean >= 400
              run_curve(64, None, lr=0.2, seed=0, budget=600), run_curve(64, None, lr=0.2, seed=1, budget=600),
              diverged, run_curve(64, 20, lr=0.8, seed=1)]  # an LR that diverged on one seed bounds nothing
    (b,) = steps_by_batch(curves, target=0.5)
    assert not b.reached and b.censored_at == 400.0 and b.censored_reason is None
    only_diverged = steps_by_batch([diverged], target=0.5)[0]
    assert only_diverged.censored_at is None and only_diverged.censored_reason.startswith("every learning rate diverged")


def _censored(b, bound):
    return BatchSteps(b, None, None, reason=f"not reached within {bound} steps", censored_at=float(bound))


def _noisy_model(sizes, noise=(1.03, 0.97, 1.02, 0.99, 1.01, 0.98, 1.02, 0.97, 1.03)):
    return [_batch(b, float(steps_model(b, S_MIN, B_CRIT)) * f) for b, f in zip(sizes, noise)]


def test_a_censored_batch_size_enters_the_fit_as_a_bound_and_pulls_the_prediction_up_to_it():
    reached = _noisy_model(SIZES[:6])  # 16..512 reached
    alone = fit_scaling(reached)
    bound = 1.6 * alone.predict_steps(4096)  # within CENSOR_CONFLICT of the prediction: a usable bound
    fit = fit_scaling(reached + [_censored(4096, bound)])
    assert fit.censored_used == [4096] and fit.censored_bounds == {"4096": pytest.approx(bound)}
    assert alone.predict_steps(4096) < fit.predict_steps(4096) < bound * 1.2
    assert fit.warnings == []
    assert fit.regimes["4096"] is None  # no regime for a batch size that never got there
    ignored = fit_scaling(reached + [_censored(4096, bound)], use_censored=False)
    assert ignored.b_crit == pytest.approx(alone.b_crit) and ignored.censored_used == []


def test_a_bound_the_fit_undercuts_twice_over_is_a_warning_and_stays_out_of_the_fit():
    reached = _noisy_model(SIZES[:6])
    alone = fit_scaling(reached)
    bound = 3.0 * alone.predict_steps(4096)
    fit = fit_scaling(reached + [_censored(4096, bound)])
    assert fit.censored_used == [] and fit.b_crit == pytest.approx(alone.b_crit)
    (w,) = fit.warnings
    assert w.startswith(f"batch size 4096 did not reach the target in {bound:.4g} steps, yet the fit to the batch "
                        f"sizes that did predicts {alone.predict_steps(4096):.3g}")
    assert "the fit or those runs are wrong" in w


def test_a_run_stopped_short_of_the_truth_leaves_the_fit_and_its_interval_on_the_truth():
    # Batch 4096 needs about 106 steps; its runs stopped at 95. The bound is true and uninformative.
    reached = _noisy_model(SIZES[:8])
    fit = fit_scaling(reached + [_censored(4096, 0.9 * float(steps_model(4096, S_MIN, B_CRIT)))])
    assert fit.censored_used == [4096] and fit.warnings == []
    assert fit.b_crit == pytest.approx(fit_scaling(reached).b_crit, rel=0.02)
    assert fit.interval_method == INTERVAL_PROFILE
    assert fit.b_crit_ci[0] < fit.b_crit < fit.b_crit_ci[1]
    assert fit.b_crit_ci[0] <= B_CRIT <= fit.b_crit_ci[1]
