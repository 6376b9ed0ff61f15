"""Offline tasks: digits, MNIST-1D, the noisy quadratic model (against its analytic recurrence), user tasks."""

import random
import sys
import textwrap

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.measure.tasks import (
    digits,
    epoch_stream,
    load_task,
    nqm,
    nqm_expected_risk,
    nqm_spectrum,
)
from bench.measure.workloads import task_workload
from bench.run.train.runner import RunConfig, RunSpec, train_run


def test_epoch_stream_shows_every_example_once_per_epoch_across_batch_boundaries():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    stream = epoch_stream(x, y, 4, seed=0)
    seen = torch.cat([next(stream)[1] for _ in range(5)])  # 20 examples = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))


def test_epoch_stream_serves_batches_larger_than_the_data():
    x, y = torch.zeros(3, 1), torch.arange(3)
    bx, by = next(epoch_stream(x, y, 7, seed=1))
    counts = sorted(by.tolist().count(i) for i in range(3))
    assert bx.shape == (7, 1) and counts == [2, 2, 3]  # two whole epochs and one example of the third


def test_digits_is_an_offline_held_out_classification_task():
    t = digits(train_examples=100)
    assert t.train_size == 100 and t.metric == "accuracy" and t.higher_is_better
    x, y = next(t.batch_stream(16, 0))
    assert x.shape == (16, 64) and y.dtype == torch.long
    torch.manual_seed(0)
    acc = t.evaluate(t.build_model().eval(), torch.device("cpu"))
    assert 0.0 <= acc <= 1.0


def test_task_workload_times_the_same_model_with_real_batches():
    from bench.measure.workloads import Workload

    t = digits(hidden=16, train_examples=50)
    w = task_workload(t, {"note": "x"})
    assert isinstance(w, Workload) and w.name == "task:digits" and w.params["hidden"] == 16
    x, y = w.make_batch(80, torch.device("cpu"))  # larger than the 50 examples
    model = w.build_model()
    loss = w.loss_fn(model(x), y)
    assert x.shape == (80, 64) and loss.ndim == 0
    assert sum(p.numel() for p in model.parameters()) == 64 * 16 + 16 + 16 * 10 + 10


def test_mnist1d_generates_locally_and_leaves_global_rngs_alone():
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    random.seed(123)
    t = load_task("mnist1d", {"num_samples": "200"})
    assert (np.random.rand(), random.random()) == pytest.approx((np.random.RandomState(123).rand(), random.Random(123).random()))
    x, y = next(t.batch_stream(8, 0))
    assert x.shape == (8, 40) and t.train_size == 160


def test_mnist1d_missing_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(BenchError, match="needs the optional package mnist1d"):
        load_task("mnist1d")


def test_nqm_batch_gradient_is_curvature_times_theta_plus_averaged_noise():
    t = nqm(dim=3, noise_scale=0.0)
    model = t.build_model()
    x, y = next(t.batch_stream(5, 0))
    t.loss_fn(model(x), y).backward()
    assert model.theta.grad.tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert t.evaluate(model, torch.device("cpu")) == pytest.approx(0.5 * (1 + 0.5 + 1 / 3))


def test_nqm_expected_risk_recurrence_matches_monte_carlo_with_momentum():
    rng = np.random.default_rng(0)
    h, c = nqm_spectrum(10)
    lr, beta, b, steps, runs = 0.3, 0.8, 4, 30, 6000
    th, v = np.ones((runs, 10)), np.zeros((runs, 10))
    mc = [0.5 * np.mean(np.sum(h * th ** 2, 1))]
    for _ in range(steps):
        v = beta * v + h * th + rng.standard_normal((runs, 10)) * np.sqrt(c / b)
        th = th - lr * v
        mc.append(0.5 * np.mean(np.sum(h * th ** 2, 1)))
    assert nqm_expected_risk(h, c, np.ones(10), lr, b, steps, momentum=beta) == pytest.approx(mc, rel=0.03)


@pytest.mark.parametrize("momentum,lr", [(0.0, 0.5), (0.9, 0.05)])
def test_nqm_steps_to_target_match_the_analytic_expected_risk(momentum, lr):
    dim, b = 500, 4
    task = nqm(dim=dim, kappa_power=0.5)
    h, c = nqm_spectrum(dim, 0.5)
    expected = nqm_expected_risk(h, c, np.ones(dim), lr, b, 200, momentum=momentum)
    target = 0.3 * expected[0]
    analytic = int(np.argmax(expected <= target))
    steps = [train_run(task, RunSpec(task="nqm", batch_size=b, lr=lr, seed=s, momentum=momentum),
                       RunConfig(target=target, max_steps=200, eval_every=1)).steps_to_target(target).steps
             for s in range(4)]
    assert abs(np.mean(steps) - analytic) <= max(1.0, 0.1 * analytic)


def test_user_task_loads_from_package_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(textwrap.dedent("""
        from bench.measure.tasks import nqm
        def small(dim: int = 2):
            return nqm(dim=dim)
        def wrong():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_task("my_tasks:small", {"dim": "3"}).params["dim"] == 3
    with pytest.raises(BenchError, match="returned int; expected"):
        load_task("my_tasks:wrong")
    with pytest.raises(BenchError, match="no attribute 'nope'"):
        load_task("my_tasks:nope")
    with pytest.raises(BenchError, match="has no parameter 'width'"):
        load_task("my_tasks:small", {"width": "3"})


def test_unknown_task_and_bad_parameter_are_one_line_errors():
    with pytest.raises(BenchError, match="unknown task 'cifar'"):
        load_task("cifar")
    with pytest.raises(BenchError, match="parameter 'hidden' must be an integer"):
        load_task("digits", {"hidden": "wide"})


def test_nqm_interpolated_steps_to_target_track_the_analytic_crossing_with_coarse_evaluations():
    # Evaluating every 5 steps, the first evaluation past the target overshoots the analytic crossing by
    # over a step on average; interpolating between the evaluations either side of it does not.
    dim, b, lr = 500, 4, 0.5
    task = nqm(dim=dim, kappa_power=0.5)
    h, c = nqm_spectrum(dim, 0.5)
    expected = nqm_expected_risk(h, c, np.ones(dim), lr, b, 60)
    target = 0.3 * expected[0]
    k = int(np.argmax(expected <= target))
    crossing = k - 1 + (target - expected[k - 1]) / (expected[k] - expected[k - 1])
    reads = [train_run(task, RunSpec(task="nqm", batch_size=b, lr=lr, seed=s, momentum=0.0),
                       RunConfig(target=target, max_steps=60, eval_every=5)).steps_to_target(target)
             for s in range(4)]
    assert abs(np.mean([r.steps for r in reads]) - crossing) <= 0.5
    assert np.mean([r.first_eval_step for r in reads]) - crossing >= 1.0


def test_nqm_default_lr_grid_stays_under_the_sgd_stability_limit_and_its_best_steps_fall_with_batch_size():
    # SGD on a quadratic diverges once lr >= 2/h_max; the defaults' grid (3 points, ratio 2, as the
    # study uses) must stay below it at every default batch size, so larger batches never need more steps.
    from bench.run.train.runner import GridSpec

    task = nqm()
    d = task.defaults
    h, c = nqm_spectrum(100)
    grid = GridSpec(batch_sizes=d["batch_sizes"], base_lr=d["base_lr"], base_batch_size=d["base_batch_size"],
                    lr_rule=d["lr_rule"], lr_factors=[0.5, 1.0, 2.0], momentum=d["momentum"], max_lr=d["max_lr"])
    runs = grid.runs(task)
    assert max(r.lr for r in runs) < 2.0 / h.max()
    target = task.default_target
    best = []
    for b in d["batch_sizes"]:
        steps = []
        for r in (r for r in runs if r.batch_size == b):
            risk = nqm_expected_risk(h, c, np.ones(100), r.lr, b, 600)
            steps.append(int(np.argmax(risk <= target)) if np.any(risk <= target) else np.inf)
        best.append(min(steps))
    assert all(np.isfinite(best)) and best == sorted(best, reverse=True)


def test_an_lr_cap_keeps_the_grid_shape_under_it():
    from bench.run.train.runner import GridSpec

    grid = GridSpec(batch_sizes=[4, 64], base_lr=0.1, base_batch_size=4, lr_rule="linear",
                    lr_factors=[0.5, 1.0, 2.0], max_lr=1.0)
    lrs = {b: sorted(r.lr for r in grid.runs(nqm(dim=2)) if r.batch_size == b) for b in (4, 64)}
    assert lrs == {4: pytest.approx([0.05, 0.1, 0.2]), 64: pytest.approx([0.25, 0.5, 1.0])}
    with pytest.raises(BenchError, match="LR cap must be a positive number"):
        GridSpec(batch_sizes=[4], base_lr=0.1, base_batch_size=4, max_lr=0.0).runs(nqm(dim=2))
