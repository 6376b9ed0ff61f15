"""Gradient noise scale B_simple = tr(Σ)/|G|² from squared norms at two batch sizes."""

import numpy as np
import pytest

from bench.analysis.noise_scale import (
    AGREE_BEYOND_10X,
    AGREE_WITHIN_2X,
    AGREE_WITHIN_10X,
    compare_with_critical_batch,
    estimate_noise_scale,
    unbiased_norm_estimates,
)
from bench.core.errors import BenchError
from bench.measure.tasks import nqm, nqm_spectrum
from bench.run.train.noise import measure_noise_scale


def test_the_two_batch_estimators_are_exact_on_expected_norms():
    g2, tr = 2.0, 30.0
    small, big = 4, 64
    g2_hat, tr_hat = unbiased_norm_estimates(g2 + tr / small, g2 + tr / big, small, big)
    assert (g2_hat, tr_hat) == (pytest.approx(g2), pytest.approx(tr))


def test_estimate_recovers_a_known_noise_scale_from_synthetic_per_example_gradients():
    # g_i = G + noise with covariance diag(sigma^2): B_simple = sum(sigma^2) / |G|^2 = 16 exactly.
    rng = np.random.default_rng(0)
    d, small, k, steps = 20, 4, 8, 400
    G = np.full(d, 0.5)  # |G|^2 = 5
    sigma = np.sqrt(np.linspace(1.0, 7.0, d))  # tr = 80
    truth = np.sum(sigma ** 2) / np.sum(G ** 2)
    sq_small, sq_big = [], []
    for _ in range(steps):
        per_example = G + sigma * rng.standard_normal((small * k, d))
        micro = per_example.reshape(k, small, d).mean(axis=1)
        sq_small.append(np.mean(np.sum(micro ** 2, axis=1)))
        sq_big.append(np.sum(micro.mean(axis=0) ** 2))
    est = estimate_noise_scale(sq_small, sq_big, small, small * k, n_bootstrap=200)
    assert truth == pytest.approx(16.0)
    assert est.b_simple == pytest.approx(truth, rel=0.03)
    assert est.gradient_sq_norm == pytest.approx(5.0, rel=0.05)
    assert est.trace_sigma == pytest.approx(80.0, rel=0.03)
    assert est.b_simple_ci[0] <= truth <= est.b_simple_ci[1]


def test_a_gradient_lost_in_noise_gives_null_with_a_reason():
    est = estimate_noise_scale([10.0, 10.0], [1.0, 1.2], 4, 32)  # |G|^2 = (32*1.1 - 40)/28 < 0
    assert est.b_simple is None and "lost in the noise" in est.null_reasons["b_simple"]


def test_measured_noise_scale_on_the_nqm_matches_its_closed_form():
    # lr = 0 holds theta at 1: G = h, per-example covariance C = diag(h), so B_simple = sum(h) / sum(h^2).
    h, c = nqm_spectrum(50)
    truth = c.sum() / np.sum(h ** 2)
    est = measure_noise_scale(nqm(dim=50), batch_small=2, batch_big=32, steps=300, lr=0.0, momentum=0.0)
    assert est.b_simple == pytest.approx(truth, rel=0.05)
    assert est.b_simple_ci[0] <= truth <= est.b_simple_ci[1]
    assert est.n_steps == 300 and len(est.sq_norm_small) == 300 and est.context["lr"] == 0.0


def test_noise_scale_needs_the_big_batch_to_be_a_multiple_of_the_small():
    with pytest.raises(BenchError, match="multiple"):
        measure_noise_scale(nqm(dim=2), batch_small=3, batch_big=8, steps=2, lr=0.0)


def test_comparison_with_b_crit_says_how_far_apart_they_are():
    c = compare_with_critical_batch(40.0, 100.0)
    assert (c["agreement"], c["factor"], c["ratio_b_simple_to_b_crit"]) == (AGREE_WITHIN_10X, pytest.approx(2.5), 0.4)
    assert compare_with_critical_batch(90.0, 100.0)["agreement"] == AGREE_WITHIN_2X
    assert compare_with_critical_batch(5.0, 100.0)["agreement"] == AGREE_BEYOND_10X
    missing = compare_with_critical_batch(None, 100.0)
    assert missing["ratio_b_simple_to_b_crit"] is None and missing["agreement"] is None and missing["reason"]


def test_finite_population_correction_is_exact_on_expected_norms_without_replacement():
    # Drawn without replacement from N examples: E|G_B|^2 = |G|^2 + tr(Sigma)/B * (N - B)/(N - 1).
    g2, tr, n = 2.0, 300.0, 500
    small, big = 4, 64

    def expected(b):
        return g2 + tr / b * (n - b) / (n - 1)

    assert unbiased_norm_estimates(expected(small), expected(big), small, big, train_size=n) == \
        (pytest.approx(g2), pytest.approx(tr))
    g2_raw, tr_raw = unbiased_norm_estimates(expected(small), expected(big), small, big)
    b_simple = tr / g2
    assert (tr_raw / g2_raw) / b_simple == pytest.approx(1 / (1 - b_simple / n), rel=0.01)  # the bias it removes


def _finite_task(n=60, d=10):
    """Per-example gradient theta + xi_i over a fixed, centred population of n vectors xi_i (h = 1)."""
    import torch

    from bench.measure.tasks import NQMModel, Task, epoch_stream

    rng = np.random.default_rng(0)
    xi = rng.standard_normal((n, d))
    xi -= xi.mean(axis=0)
    theta0 = np.full(d, np.sqrt(0.05))
    truth = np.mean(np.sum(xi ** 2, axis=1)) / np.sum(theta0 ** 2)  # population tr(Sigma) / |G|^2, about 19
    xt = torch.as_tensor(xi)
    task = Task(name="finite", build_model=lambda: NQMModel(np.ones(d), theta0),
                batch_stream=lambda b, seed: epoch_stream(xt, torch.zeros(n), b, seed),
                loss_fn=lambda out, y: out.mean(), evaluate=lambda m, dev: m.risk(), train_size=n)
    return task, truth


def test_measured_noise_scale_on_a_finite_training_set_is_corrected_for_sampling_without_replacement():
    task, truth = _finite_task()
    est = measure_noise_scale(task, batch_small=2, batch_big=20, steps=200, lr=0.0, momentum=0.0, n_bootstrap=200)
    assert est.train_size == 60 and est.context["finite_population_correction"].startswith("applied")
    assert est.b_simple == pytest.approx(truth, rel=0.06)
    assert est.b_simple_ci[0] <= truth <= est.b_simple_ci[1]
    # Uncorrected, the same squared norms say about 1/(1 - 19/60) = 1.5 times more.
    raw = estimate_noise_scale(est.sq_norm_small, est.sq_norm_big, 2, 20, n_bootstrap=0)
    assert raw.b_simple > 1.3 * truth


def test_resamples_without_measurable_noise_count_as_zero_not_as_unbounded():
    # |G|^2 is about 1 in every resample; the small-batch excess, hence tr(Sigma), is barely positive
    # overall and negative in many resamples: B_simple <= 0 there, which bounds the interval below by 0.
    sq_big = [1.0] * 20
    sq_small = [1.1] * 11 + [0.9] * 9
    est = estimate_noise_scale(sq_small, sq_big, 4, 32, n_bootstrap=400)
    assert est.b_simple is not None and est.b_simple > 0
    assert est.b_simple_ci is not None and est.b_simple_ci[0] == 0.0 and est.b_simple_ci[1] > est.b_simple
    assert "b_simple_ci" not in est.null_reasons


def test_an_unbounded_interval_says_how_many_resamples_lost_the_gradient():
    sq_big = [1.0] * 16 + [0.0] * 4  # |G|^2 = 2 * mean - 1.5 = 0.1 overall, <= 0 in many resamples
    sq_small = [1.5] * 20
    est = estimate_noise_scale(sq_small, sq_big, 4, 8, n_bootstrap=200)
    assert est.b_simple is not None and est.b_simple_ci is None
    assert "resamples had |G|^2 <= 0 (no measurable gradient)" in est.null_reasons["b_simple_ci"]
