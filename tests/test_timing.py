import itertools

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.vocabulary import (
    STOP_BUDGET,
    STOP_CI,
    STOP_COUNT,
    WARM_MAX_STEPS,
    WARM_STABLE,
)
from bench.measure.timing import (
    CIStoppingRule,
    FixedCountRule,
    HostTimer,
    WarmupRule,
    make_stopping_rule,
    measure,
)


def drive(rule, stream):
    """Feed samples to a rule one by one, with elapsed time = measured time; return (reason, n)."""
    samples = []
    for x in stream:
        samples.append(x)
        reason = rule.should_stop(samples, sum(samples))
        if reason:
            return reason, len(samples)
    raise AssertionError("stream ended before the rule stopped")


def test_quiet_stream_stops_early_on_the_ci_target():
    rng = np.random.default_rng(0)
    rule = CIStoppingRule(ci_target=0.01, min_samples=10, min_time_s=0.05, budget_s=5.0)
    reason, n = drive(rule, 0.001 * (1 + 0.001 * rng.standard_normal(100_000)))
    assert reason == STOP_CI
    assert n == 50  # 50 samples of 1 ms reach the 0.05 s minimum time; the CI is already tight


def test_noisy_stream_runs_to_the_budget():
    rng = np.random.default_rng(0)
    rule = CIStoppingRule(ci_target=0.001, min_samples=10, min_time_s=0.05, budget_s=1.0)
    reason, n = drive(rule, rng.lognormal(np.log(0.01), 0.8, size=100_000))
    assert reason == STOP_BUDGET
    assert n > 10


def test_minimum_samples_hold_even_when_the_ci_is_tight():
    rule = CIStoppingRule(ci_target=0.5, min_samples=30, min_time_s=0.0, budget_s=100.0)
    reason, n = drive(rule, itertools.repeat(0.01))
    assert (reason, n) == (STOP_CI, 30)


def test_fixed_count_rule_takes_exactly_count_samples():
    assert drive(FixedCountRule(7), itertools.repeat(1.0)) == (STOP_COUNT, 7)


@pytest.mark.parametrize("kwargs", [dict(ci_target=0), dict(min_samples=0), dict(budget_s=-1), dict(min_time_s=-1)])
def test_invalid_rule_parameters_are_rejected(kwargs):
    with pytest.raises(BenchError):
        CIStoppingRule(**kwargs)


def test_unknown_rule_name_is_rejected():
    with pytest.raises(BenchError, match="unknown stopping rule"):
        make_stopping_rule("nope")


def test_warmup_waits_until_times_stop_trending_down():
    rule = WarmupRule(min_steps=2, window=3, tolerance=0.05, max_steps=100)
    decaying = [1.0 * 0.7 ** i + 0.1 for i in range(40)]
    warm_at = None
    for i in range(1, len(decaying) + 1):
        if rule.is_warm(decaying[:i], 0.0):
            warm_at = i
            break
    assert warm_at is not None
    # once warm, the last window is within 5% of the previous one
    assert decaying[warm_at - 1] > 0.1 and warm_at > 8


def test_warmup_of_a_flat_stream_ends_at_the_minimum():
    rule = WarmupRule(min_steps=2, window=3)
    assert rule.is_warm([1.0] * 8, 0.0) == WARM_STABLE
    assert rule.is_warm([1.0] * 7, 0.0) is None


def test_warmup_is_capped():
    rule = WarmupRule(max_steps=10)
    assert rule.is_warm([10.0 * 0.5 ** i for i in range(10)], 0.0) == WARM_MAX_STEPS


class ScriptedTimer:
    """Returns pre-set step times and advances a fake clock by them."""

    name = "scripted"

    def __init__(self, stream):
        self.stream = iter(stream)
        self.now = 0.0
        self.calls = 0

    def clock(self):
        return self.now

    def time_block(self, step, n):
        out = [next(self.stream) for _ in range(n)]
        for _ in range(n):
            step()
            self.calls += 1
        self.now += sum(out)
        return out


def test_measure_discards_warmup_and_keeps_raw_samples():
    warm = [0.05, 0.03, 0.02, 0.011, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]
    timer = ScriptedTimer(itertools.chain(warm, itertools.repeat(0.01)))
    steps = []
    res = measure(lambda: steps.append(1), timer=timer, clock=timer.clock,
                  rule=CIStoppingRule(ci_target=0.01, min_samples=10, min_time_s=0.1, budget_s=5))
    assert res.warmup_reason == WARM_STABLE
    assert res.stop_reason == STOP_CI
    assert all(s == 0.01 for s in res.samples_s)  # the slow first steps went to warm-up
    assert res.warmup_samples_s[0] == 0.05
    assert len(steps) == len(res.samples_s) + len(res.warmup_samples_s)
    assert len(res.block_medians_s) >= 2 and sum(res.samples_s) >= 0.1


def test_measure_enters_the_block_context_around_each_block():
    timer = ScriptedTimer(itertools.repeat(0.01))
    entered = []

    class Ctx:
        def __enter__(self):
            entered.append(timer.calls)

        def __exit__(self, *a):
            return False

    res = measure(lambda: None, timer=timer, clock=timer.clock, around_block=Ctx,
                  rule=CIStoppingRule(ci_target=0.01, min_samples=10, min_time_s=0.1, budget_s=5))
    assert len(entered) == len(res.block_sizes) >= 2


def test_measure_records_a_warning_when_the_budget_runs_out():
    rng = np.random.default_rng(3)
    timer = ScriptedTimer(rng.lognormal(np.log(0.01), 1.0, size=100_000))
    res = measure(lambda: None, timer=timer, clock=timer.clock,
                  rule=CIStoppingRule(ci_target=0.001, min_samples=10, min_time_s=0.1, budget_s=0.5),
                  warmup=WarmupRule(max_steps=12))
    assert res.stop_reason == STOP_BUDGET
    assert any("budget" in w for w in res.warnings)


def test_host_timer_includes_synchronisation_in_the_window():
    clock = itertools.count()  # each call to the clock advances it by one unit
    synced = []
    timer = HostTimer(synchronize=lambda: (synced.append(1), next(clock)), clock=lambda: next(clock))
    out = timer.time_block(lambda: None, 3)
    assert len(synced) == 3
    assert out == [2, 2, 2]  # start, sync, end: the sync's tick falls inside each step


def test_blocks_at_different_levels_do_not_stop_on_the_ci_target():
    # 20 steps per block, blocks alternating between two levels 23% apart: the pooled samples give
    # a tight CI, but the level of a block is not known to +-1%.
    levels = itertools.cycle([0.010] * 20 + [0.0123] * 20)
    timer = ScriptedTimer(levels)
    res = measure(lambda: None, timer=timer, clock=timer.clock, target_block_s=0.2,
                  rule=CIStoppingRule(ci_target=0.01, min_samples=10, min_time_s=0.2, budget_s=3.0),
                  warmup=WarmupRule(max_steps=6))
    assert res.stop_reason == STOP_BUDGET


def test_a_long_first_step_does_not_cut_warm_up_short():
    decaying = [0.02 * (1 + 0.5 * 0.6 ** i) for i in range(200)]
    timer = ScriptedTimer(itertools.chain([60.0], decaying, itertools.repeat(0.02)))
    res = measure(lambda: None, timer=timer, clock=timer.clock,
                  rule=CIStoppingRule(ci_target=0.01, min_samples=10, min_time_s=0.1, budget_s=5),
                  warmup=WarmupRule(max_time_s=30.0))
    assert res.warmup_reason == WARM_STABLE
    assert len(res.warmup_samples_s) > 3


def test_a_minimum_time_above_the_budget_is_rejected():
    with pytest.raises(BenchError, match="exceeds the time budget"):
        CIStoppingRule(min_time_s=5.0, budget_s=2.0)
