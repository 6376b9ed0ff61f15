"""LR rules relative to a base batch, log-spaced grids, and linear warm-up (in steps or epochs)."""

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.measure.tasks import nqm
from bench.run.train.lr import (
    LRSchedule,
    log_spaced_factors,
    lr_grid,
    scaled_lr,
    warmup_steps_from_epochs,
)
from bench.run.train.runner import RunConfig, RunSpec, train_run


def test_linear_rule_scales_the_rate_with_the_batch():
    assert scaled_lr(0.1, 256, 32, "linear") == pytest.approx(0.8)
    assert scaled_lr(0.1, 8, 32, "linear") == pytest.approx(0.025)


def test_sqrt_rule_scales_the_rate_with_the_square_root_of_the_batch():
    assert scaled_lr(0.1, 128, 32, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 8, 32, "sqrt") == pytest.approx(0.05)


def test_constant_rule_keeps_the_base_rate():
    assert scaled_lr(0.1, 1024, 32, "constant") == 0.1


def test_unknown_rule_and_bad_rate_are_one_line_errors():
    with pytest.raises(BenchError, match="unknown LR rule 'cubic'"):
        scaled_lr(0.1, 64, 32, "cubic")
    with pytest.raises(BenchError, match="positive"):
        scaled_lr(-1.0, 64, 32, "linear")


def test_log_spaced_factors_are_centred_on_one():
    assert log_spaced_factors(3, 2.0) == pytest.approx([0.5, 1.0, 2.0])
    assert log_spaced_factors(2, 4.0) == pytest.approx([0.5, 2.0])
    assert lr_grid(0.2, [0.5, 1, 2]) == pytest.approx([0.1, 0.2, 0.4])
    with pytest.raises(BenchError):
        lr_grid(0.2, [0.5, -1])


def test_linear_warmup_reaches_the_peak_at_the_last_warmup_step():
    s = LRSchedule(peak_lr=1.0, warmup_steps=4)
    assert [s.lr_at(t) for t in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_warmup_from_a_start_factor_goes_linearly_to_the_peak():
    s = LRSchedule(peak_lr=2.0, warmup_steps=4, warmup_start_factor=0.5)
    assert [s.lr_at(t) for t in range(5)] == pytest.approx([1.25, 1.5, 1.75, 2.0, 2.0])


def test_no_warmup_means_the_peak_from_the_first_step():
    assert LRSchedule(0.3).lr_at(0) == 0.3


def test_warmup_in_epochs_converts_to_steps_at_each_batch_size():
    assert warmup_steps_from_epochs(1.0, 1000, 32) == 32  # ceil(31.25)
    assert warmup_steps_from_epochs(5, 1437, 512) == 15
    assert warmup_steps_from_epochs(0, None, 8) == 0
    with pytest.raises(BenchError, match="finite training set"):
        warmup_steps_from_epochs(1, None, 8)


def test_the_runner_applies_the_warmup_schedule_to_every_step():
    # One noiseless coordinate with h = 1: theta_T = prod(1 - lr_t), so the risk pins down every lr_t.
    task = nqm(dim=1, noise_scale=0.0)
    spec = RunSpec(task="nqm", batch_size=1, lr=0.5, momentum=0.0, warmup_steps=4)
    curve = train_run(task, spec, RunConfig(target=None, max_steps=6, eval_every=1))
    sched = LRSchedule(0.5, 4)
    theta = np.cumprod([1 - sched.lr_at(t) for t in range(6)])
    assert [p.eval_metric for p in curve.points[1:]] == pytest.approx(0.5 * theta ** 2, rel=1e-9)
