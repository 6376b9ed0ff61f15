"""Steps to target vs batch size: LR selection, the fit S(B) = S_min(1 + B_crit/B) and its bootstrap, regimes."""

import numpy as np
import pytest

from bench.analysis.scaling import (
    DIMINISHING,
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
from bench.records.tta import steps_model

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
    fit = fit_scaling(steps_by_batch(model_curves(), target=0.5), n_bootstrap=300, seed=0)
    assert fit.s_min == pytest.approx(S_MIN, rel=0.05)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.05)
    assert fit.e_min == pytest.approx(S_MIN * B_CRIT, rel=0.07)
    assert fit.s_min_ci[0] <= S_MIN <= fit.s_min_ci[1]
    assert fit.b_crit_ci[0] <= B_CRIT <= fit.b_crit_ci[1]
    assert fit.bootstrap_method == "seeds within each (batch, LR) cell" and fit.n_bootstrap_ok == 300
    assert fit.b_crit_position == "inside"


def test_bootstrap_is_reproducible_with_its_fixed_seed():
    sel = steps_by_batch(model_curves(), target=0.5)
    assert fit_scaling(sel, n_bootstrap=50, seed=3).b_crit_ci == fit_scaling(sel, n_bootstrap=50, seed=3).b_crit_ci


def test_single_seed_curves_bootstrap_over_batch_sizes():
    fit = fit_scaling(steps_by_batch(model_curves(seeds=1), target=0.5), n_bootstrap=100)
    assert fit.bootstrap_method == "batch sizes" and fit.b_crit_ci is not None


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
    fit = fit_scaling(sel, n_bootstrap=200, seed=0)
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
