import itertools

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.vocabulary import (
    STOP_BUDGET,
    STOP_CI,
    STOP_COUNT,
    STOP_MAX_SAMPLES,
    WARM_MAX_STEPS,
    WARM_STABLE,
)
from bench.measure.timing import (
    MEASURE_DEFAULTS,
    CIStoppingRule,
    FixedCountRule,
    HostTimer,
    MeasureLimits,
    WarmupRule,
    make_stopping_rule,
    measure,
)


def drive(rule, stream, limits=MeasureLimits()):
    """Feed samples one by one to the limits' decision, with elapsed time = measured time; return (reason, n)."""
    samples = []
    for x in stream:
        samples.append(x)
        reason = limits.stop_reason(rule, samples, sum(samples))
        if reason:
            return reason, len(samples)
    raise AssertionError("stream ended before the rule stopped")


def test_quiet_stream_stops_early_on_the_ci_target():
    rng = np.random.default_rng(0)
    limits = MeasureLimits(min_samples=10, min_time_s=0.05, budget_s=5.0)
    reason, n = drive(CIStoppingRule(ci_target=0.01), 0.001 * (1 + 0.001 * rng.standard_normal(100_000)), limits)
    assert reason == STOP_CI
    assert n == 50  # 50 samples of 1 ms reach the 0.05 s minimum time; the CI is already tight


def test_noisy_stream_runs_to_the_budget():
    rng = np.random.default_rng(0)
    limits = MeasureLimits(min_samples=10, min_time_s=0.05, budget_s=1.0)
    reason, n = drive(CIStoppingRule(ci_target=0.001), rng.lognormal(np.log(0.01), 0.8, size=100_000), limits)
    assert reason == STOP_BUDGET
    assert n > 10


def test_minimum_samples_hold_even_when_the_ci_is_tight():
    limits = MeasureLimits(min_samples=30, min_time_s=0.0, budget_s=100.0)
    reason, n = drive(CIStoppingRule(ci_target=0.5), itertools.repeat(0.01), limits)
    assert (reason, n) == (STOP_CI, 30)


def test_fixed_count_rule_takes_exactly_count_samples():
    assert drive(FixedCountRule(7), itertools.repeat(1.0), MeasureLimits(budget_s=100.0)) == (STOP_COUNT, 7)


def test_a_fixed_count_below_the_minimum_samples_still_stops_at_its_count():
    # The rule says it wants no more samples, so it is asked although the floors are not met.
    assert drive(FixedCountRule(3), itertools.repeat(0.01), MeasureLimits(min_samples=10)) == (STOP_COUNT, 3)


def test_the_sample_cap_stops_any_rule():
    limits = MeasureLimits(min_samples=5, max_samples=12, min_time_s=0.0, budget_s=100.0)
    assert drive(FixedCountRule(50), itertools.repeat(0.01), limits) == (STOP_MAX_SAMPLES, 12)


def test_invalid_rule_parameters_are_rejected():
    with pytest.raises(BenchError, match="CI target"):
        CIStoppingRule(ci_target=0)
    with pytest.raises(BenchError, match="sample count"):
        FixedCountRule(0)


# --------------------------------------------------------------------------- the limits


def test_the_defaults_live_in_one_table():
    limits = MeasureLimits()
    assert limits.budget_s == MEASURE_DEFAULTS["budget_s"] == 2.0  # the README's "How a point is measured"
    assert limits.effective_min_time_s == MEASURE_DEFAULTS["min_time_s"] == 0.5
    assert limits.min_samples == MEASURE_DEFAULTS["min_samples"] == 10
    assert limits.max_samples == MEASURE_DEFAULTS["max_samples"]
    assert CIStoppingRule().ci_target == MEASURE_DEFAULTS["ci_target"] == 0.01
    assert WarmupRule().max_time_s == MEASURE_DEFAULTS["warmup_max_s"]


def test_a_small_budget_alone_lowers_the_default_minimum_time_to_it():
    assert MeasureLimits(budget_s=0.2).effective_min_time_s == 0.2
    assert MeasureLimits(budget_s=0.2).to_dict()["min_time_s"] == 0.2  # recorded as used
    assert MeasureLimits(budget_s=5.0).effective_min_time_s == MEASURE_DEFAULTS["min_time_s"]
    assert MeasureLimits(budget_s=0.2, min_time_s=0.1).effective_min_time_s == 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_time_s=5.0, budget_s=2.0), "minimum time 5 s exceeds the time budget 2 s"),
    (dict(budget_s=0), "time budget must be a positive number"),
    (dict(budget_s=float("nan")), "time budget must be a positive number"),
    (dict(min_time_s=-1), "minimum time must be"),
    (dict(min_samples=0), "minimum samples must be"),
    (dict(min_samples=20, max_samples=10), "maximum samples must be an integer >= the minimum samples (20)"),
    (dict(target_block_s=0), "block duration"),
])
def test_contradictory_or_bad_limits_are_rejected_in_one_line(kwargs, message):
    with pytest.raises(BenchError) as e:
        MeasureLimits(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_blocks_are_sized_for_enough_blocks_within_the_minimum_time():
    assert MeasureLimits(min_time_s=0.6).block_target_s == pytest.approx(0.1)
    assert MeasureLimits(budget_s=0.06).block_target_s == pytest.approx(0.01)
    assert MeasureLimits(target_block_s=0.3).block_target_s == 0.3


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
                  rule=CIStoppingRule(ci_target=0.01), limits=MeasureLimits(min_samples=10, min_time_s=0.1, budget_s=5))
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
                  rule=CIStoppingRule(ci_target=0.01), limits=MeasureLimits(min_samples=10, min_time_s=0.1, budget_s=5))
    assert len(entered) == len(res.block_sizes) >= 2


def test_measure_records_a_warning_when_the_budget_runs_out():
    rng = np.random.default_rng(3)
    timer = ScriptedTimer(rng.lognormal(np.log(0.01), 1.0, size=100_000))
    res = measure(lambda: None, timer=timer, clock=timer.clock,
                  rule=CIStoppingRule(ci_target=0.001), limits=MeasureLimits(min_samples=10, min_time_s=0.1, budget_s=0.5),
                  warmup=WarmupRule(max_steps=12))
    assert res.stop_reason == STOP_BUDGET
    assert any(w.startswith("time budget ran out before the 95% CI of the median reached ±0.1%") for w in res.warnings)


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
    res = measure(lambda: None, timer=timer, clock=timer.clock, rule=CIStoppingRule(ci_target=0.01),
                  limits=MeasureLimits(min_samples=10, min_time_s=0.2, budget_s=3.0, target_block_s=0.2),
                  warmup=WarmupRule(max_steps=6))
    assert res.stop_reason == STOP_BUDGET


def test_a_long_first_step_does_not_cut_warm_up_short():
    decaying = [0.02 * (1 + 0.5 * 0.6 ** i) for i in range(200)]
    timer = ScriptedTimer(itertools.chain([60.0], decaying, itertools.repeat(0.02)))
    res = measure(lambda: None, timer=timer, clock=timer.clock,
                  rule=CIStoppingRule(ci_target=0.01), limits=MeasureLimits(min_samples=10, min_time_s=0.1, budget_s=5),
                  warmup=WarmupRule(max_time_s=30.0))
    assert res.warmup_reason == WARM_STABLE
    assert len(res.warmup_samples_s) > 3


def test_a_minimum_time_above_the_budget_is_rejected():
    with pytest.raises(BenchError, match="exceeds the time budget"):
        MeasureLimits(min_time_s=5.0, budget_s=2.0)


# --------------------------------------------------------------------------- the rule protocol


class OnlyTheRequiredMembers:
    """A rule written against the protocol's required members alone: no ci_target, no count, no to_dict."""

    name = "ten"

    def should_stop(self, samples, elapsed_s, block_medians=None):
        return "ten" if len(samples) >= 10 else None


def test_a_rule_with_only_the_required_members_runs_in_the_loop():
    timer = ScriptedTimer(itertools.repeat(0.01))
    res = measure(lambda: None, timer=timer, clock=timer.clock, rule=OnlyTheRequiredMembers(),
                  limits=MeasureLimits(min_samples=1, min_time_s=0.0, budget_s=100.0))
    assert res.stop_reason == "ten" and len(res.samples_s) >= 10


def test_the_budget_stops_every_rule_and_the_warning_names_what_the_rule_waited_for():
    class Never(OnlyTheRequiredMembers):
        name = "never"

        def should_stop(self, samples, elapsed_s, block_medians=None):
            return None

    timer = ScriptedTimer(itertools.repeat(0.01))
    res = measure(lambda: None, timer=timer, clock=timer.clock, rule=Never(), limits=MeasureLimits(budget_s=1.0))
    assert res.stop_reason == STOP_BUDGET
    assert "time budget ran out before the 'never' stopping rule was met" in res.warnings


def test_a_fixed_count_is_timed_in_blocks_that_end_exactly_at_the_count():
    timer = ScriptedTimer(itertools.repeat(0.001))
    res = measure(lambda: None, timer=timer, clock=timer.clock, rule=FixedCountRule(37),
                  limits=MeasureLimits(budget_s=100.0))
    assert res.stop_reason == STOP_COUNT and len(res.samples_s) == 37


@pytest.mark.parametrize("rule", [object(), "ci", type("NoName", (), {"should_stop": lambda self, *a: None})()])
def test_an_object_that_is_not_a_rule_is_rejected_in_one_line(rule):
    timer = ScriptedTimer(itertools.repeat(0.01))
    with pytest.raises(BenchError, match="a stopping rule needs a `name` and a should_stop"):
        measure(lambda: None, timer=timer, clock=timer.clock, rule=rule)
