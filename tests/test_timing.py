import itertools
import statistics

import numpy as np
import pytest

from bench.core.budget import MEASURE_DEFAULTS
from bench.core.errors import BenchError
from bench.core.vocabulary import (
    STOP_BUDGET,
    STOP_CI,
    STOP_COUNT,
    STOP_MAX_SAMPLES,
    WARM_MAX_STEPS,
    WARM_MAX_TIME,
    WARM_STABLE,
)
from bench.measure.timing import (
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
    assert limits.budget_s == MEASURE_DEFAULTS["budget_s"] == 2.0  # docs/measuring.md, "How a point is measured"
    assert limits.effective_min_time_s == MEASURE_DEFAULTS["min_time_s"] == 0.5
    assert limits.min_samples == MEASURE_DEFAULTS["min_samples"] == 10
    assert limits.max_samples == MEASURE_DEFAULTS["max_samples"]
    assert CIStoppingRule().ci_target == MEASURE_DEFAULTS["ci_target"] == 0.01
    assert WarmupRule().max_time_s == MEASURE_DEFAULTS["warmup_max_s"]
    assert WarmupRule().min_time_s == MEASURE_DEFAULTS["warmup_min_s"] == 0.5


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


class ScriptedTimer:
    """Returns pre-set step times and advances a fake clock by each as it runs; ends a block early
    when `stop` says so, as the real timers do."""

    name = "scripted"

    def __init__(self, stream):
        self.stream = iter(stream)
        self.now = 0.0
        self.calls = 0

    def clock(self):
        return self.now

    def time_block(self, step, n, stop=None):
        out = []
        for _ in range(n):
            step()
            self.calls += 1
            out.append(next(self.stream))
            self.now += out[-1]
            if stop is not None and stop():
                break
        return out


class BlockOnlyTimer(ScriptedTimer):
    """A timer that cannot end a block early (like the data-parallel one): it runs all n steps."""

    def time_block(self, step, n):
        return super().time_block(step, n)


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


# --------------------------------------------------------------------------- warm-up (issue 10, item 3)


def decaying(step_s, kind, excess=0.3, over_steps=1000, noise=0.0, seed=0):
    """Step times `excess` above `step_s` at first, decaying over `over_steps` steps (linearly, or
    exponentially to e^-5 of it), times optional relative noise."""
    rng = np.random.default_rng(seed)
    for i in itertools.count():
        e = excess * max(0.0, 1 - i / over_steps) if kind == "linear" else excess * np.exp(-5 * i / over_steps)
        yield step_s * (1 + e) * (1 + noise * rng.standard_normal())


def run_stream(stream, **kw):
    timer = ScriptedTimer(stream)
    return measure(lambda: None, timer=timer, clock=timer.clock, **kw)


def test_warm_up_lasts_its_minimum_time_however_short_the_steps():
    # Nine steps of 0.3 ms are shorter than a GPU clock ramp: warm-up runs 0.5 s of steps, at least.
    res = run_stream(itertools.repeat(0.0003))
    assert sum(res.warmup_samples_s[1:]) >= MEASURE_DEFAULTS["warmup_min_s"]
    assert res.warmup_reason == WARM_STABLE


@pytest.mark.parametrize("step_s", [0.0003, 0.001, 0.002, 0.005])
@pytest.mark.parametrize("kind", ["linear", "exp"])
def test_a_30pct_excess_decaying_over_1000_steps_is_warmed_out_or_the_point_says_warm_up_was_cut(step_s, kind):
    res = run_stream(decaying(step_s, kind))  # the default 2 s budget
    bias = statistics.median(res.samples_s) / step_s - 1
    if res.warmup_reason == WARM_STABLE:
        assert bias <= CIStoppingRule().ci_target, (res.warmup_reason, bias)
    else:
        assert any(w.startswith("warm-up ended by its time limit") for w in res.warnings)


@pytest.mark.parametrize("step_s", [0.001, 0.002, 0.005])
@pytest.mark.parametrize("kind", ["linear", "exp"])
def test_with_budget_enough_the_decaying_excess_is_warmed_out_to_within_the_ci_target(step_s, kind):
    res = run_stream(decaying(step_s, kind), limits=MeasureLimits(budget_s=20.0))
    assert res.warmup_reason == WARM_STABLE
    assert statistics.median(res.samples_s) / step_s - 1 <= CIStoppingRule().ci_target


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_noise_without_a_trend_does_not_hold_warm_up_to_its_cap(noise):
    res = run_stream(decaying(0.001, "exp", excess=0.0, noise=noise, seed=4))
    assert res.warmup_reason == WARM_STABLE
    assert sum(res.warmup_samples_s[1:]) < 2 * MEASURE_DEFAULTS["warmup_min_s"]


def test_warm_up_compares_blocks_a_minimum_time_apart_not_neighbours():
    rule = WarmupRule(min_time_s=0.5, tolerance=0.01)
    # Blocks of 0.1 s falling 0.5% each: neighbours agree, blocks 0.5 s apart do not.
    starts = [0.1 * i for i in range(8)]
    medians = [1.0 * 0.995 ** i for i in range(8)]
    assert rule.is_warm(medians, starts, 0.8, 500) is None
    assert rule.is_warm([1.0] * 8, starts, 0.8, 500) == WARM_STABLE
    assert rule.is_warm([1.0] * 3, starts[:3], 0.3, 500) is None  # the minimum time is not over


def test_warm_up_is_capped_by_its_steps_and_its_time():
    assert WarmupRule(max_steps=10).is_warm([1.0, 0.5], [0.0, 1.0], 1.5, 10) == WARM_MAX_STEPS
    assert WarmupRule(max_time_s=1.0).is_warm([1.0, 0.5], [0.0, 1.0], 1.5, 3) == WARM_MAX_TIME
    res = run_stream(decaying(0.001, "linear", excess=10.0, over_steps=10**6), warmup=WarmupRule(max_steps=40))
    assert res.warmup_reason == WARM_MAX_STEPS and len(res.warmup_samples_s) == 40
    assert any("its step limit (40)" in w for w in res.warnings)


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_time_s=-1), "warm-up minimum time"),
    (dict(tolerance=0), "warm-up tolerance"),
    (dict(max_steps=1), "warm-up step limit"),
    (dict(max_time_s=0), "warm-up time limit"),
])
def test_bad_warm_up_settings_are_rejected_in_one_line(kwargs, message):
    with pytest.raises(BenchError, match=message):
        WarmupRule(**kwargs)


def test_the_warm_up_tolerance_is_the_stopping_rules_ci_target():
    assert WarmupRule().in_force(MeasureLimits(), CIStoppingRule(ci_target=0.03)).tolerance == 0.03
    assert WarmupRule().in_force(MeasureLimits(), FixedCountRule(5)).tolerance == MEASURE_DEFAULTS["ci_target"]
    assert WarmupRule(tolerance=0.1).in_force(MeasureLimits(), CIStoppingRule()).tolerance == 0.1


# --------------------------------------------------------------------------- the budget bounds the timed steps, warm-up has its own limits (issue 23, issue 21 section 4 items 1-2)


def timed_wall_s(res):
    return res.wall_time_s - res.warmup_wall_time_s


def test_a_3_s_step_with_a_1_s_budget_takes_one_timed_step_after_a_bounded_warm_up():
    res = run_stream(itertools.repeat(3.0), limits=MeasureLimits(budget_s=1.0))
    # The first step (bounded by nothing), two warm-up blocks of three steps (enough to tell drift from
    # noise), one timed step: the budget is spent by it, and no more is run.
    assert len(res.warmup_samples_s) == 7 and len(res.samples_s) == 1
    assert res.warmup_reason == WARM_STABLE and res.stop_reason == STOP_BUDGET
    assert timed_wall_s(res) == pytest.approx(3.0)


@pytest.mark.parametrize("jump_to", [0.01, 0.1, 0.3])
def test_the_budget_holds_when_the_step_time_jumps_inside_a_block(jump_to):
    # 1 ms steps, then each takes 10-300x longer, some way into the timed ones: blocks planned
    # for 1 ms steps would run on for seconds. The timer ends the block when the budget is spent.
    res = run_stream(itertools.chain([0.001] * 1000, itertools.repeat(jump_to)), rule=NeverSatisfied(),
                     limits=MeasureLimits(budget_s=2.0))
    assert res.stop_reason == STOP_BUDGET
    assert len(res.warmup_samples_s) < 850  # the jump fell into the timed steps
    assert max(res.samples_s) == jump_to
    assert timed_wall_s(res) <= 2.0 + jump_to + 1e-9
    assert timed_wall_s(res) <= 1.2 * 2.0


class NeverSatisfied:
    """A rule that runs every point to its budget."""

    name = "never"

    def should_stop(self, samples, elapsed_s, block_medians=None):
        return None


def test_a_timer_that_cannot_stop_early_gets_blocks_sized_by_the_slowest_recent_step():
    # One slow step among fast ones: the next blocks are sized by it, so they cannot overrun by much.
    stream = itertools.chain([0.001] * 700, [0.25], itertools.repeat(0.001))
    timer = BlockOnlyTimer(stream)
    res = measure(lambda: None, timer=timer, clock=timer.clock, rule=NeverSatisfied(),
                  limits=MeasureLimits(budget_s=1.0))
    assert res.stop_reason == STOP_BUDGET
    assert timed_wall_s(res) <= 1.2 * 1.0


@pytest.mark.parametrize("budget_s", [0.2, 0.4, 1.0, 2.0])
def test_warm_up_keeps_its_minimum_time_whatever_the_budget(budget_s):
    res = run_stream(itertools.repeat(0.001), limits=MeasureLimits(budget_s=budget_s))
    assert sum(res.warmup_samples_s[1:]) >= MEASURE_DEFAULTS["warmup_min_s"]
    assert WarmupRule().in_force(MeasureLimits(budget_s=budget_s)).min_time_s == MEASURE_DEFAULTS["warmup_min_s"]


@pytest.mark.parametrize("budget_s", [0.2, 0.4])
@pytest.mark.parametrize("kind", ["linear", "exp"])
def test_a_decaying_start_is_warmed_out_even_under_a_small_budget(budget_s, kind):
    # A +30% start decaying over 1000 steps of 1 ms: warm-up takes as long as it needs, not a share of the budget.
    res = run_stream(decaying(0.001, kind), limits=MeasureLimits(budget_s=budget_s))
    assert res.warmup_reason == WARM_STABLE
    assert statistics.median(res.samples_s) / 0.001 - 1 <= CIStoppingRule().ci_target


def test_a_budget_under_a_second_can_stop_on_the_ci_target():
    res = run_stream(itertools.repeat(0.001), limits=MeasureLimits(budget_s=0.5))
    assert res.stop_reason == STOP_CI
    assert timed_wall_s(res) <= 0.5


def throttling(step_s, rise, over_s, noise=0.0, seed=0):
    """Step times rising from `step_s` by `rise` (relative) linearly over `over_s` seconds of steps, then
    flat: clocks pulled down by a power cap or heat, times optional relative noise."""
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        x = step_s * (1 + rise * min(1.0, t / over_s)) * (1 + noise * rng.standard_normal())
        t += x
        yield x


def test_a_rising_trend_is_not_warm_and_the_point_says_so_when_the_limit_cuts_it():
    # +30% over 10 s (a power cap pulling the clocks down): +1.5% between blocks 0.5 s apart, beyond 1% noise.
    res = run_stream(throttling(0.002, rise=0.3, over_s=10.0, noise=0.01, seed=2), warmup=WarmupRule(max_time_s=3.0))
    assert res.warmup_reason == WARM_MAX_TIME
    cut = [w for w in res.warnings if w.startswith("warm-up ended by its time limit (3 s)")]
    assert cut and "still rising" in cut[0]


def test_a_rising_trend_that_levels_off_ends_warm_up_once_flat():
    res = run_stream(throttling(0.002, rise=0.3, over_s=2.0, noise=0.01, seed=3))
    assert res.warmup_reason == WARM_STABLE
    assert statistics.median(res.samples_s) / (0.002 * 1.3) - 1 == pytest.approx(0.0, abs=0.01)


def test_drift_is_judged_either_way_and_against_the_blocks_noise():
    rule = WarmupRule(min_time_s=0.5, tolerance=0.01)
    starts = [0.0, 0.6]
    assert rule.is_warm([1.0, 1.05], starts, 1.2, 100) is None  # 5% up, no noise given: drifting
    assert rule.is_warm([1.0, 0.95], starts, 1.2, 100) is None  # 5% down
    assert rule.is_warm([1.0, 1.005], starts, 1.2, 100) == WARM_STABLE  # within the tolerance
    overlapping = [(0.9, 1.1), (0.95, 1.15)]
    assert rule.is_warm([1.0, 1.05], starts, 1.2, 100, block_bands=overlapping) == WARM_STABLE  # within the noise
    apart = [(0.99, 1.01), (1.04, 1.06)]
    assert rule.is_warm([1.0, 1.05], starts, 1.2, 100, block_bands=apart) is None


# --------------------------------------------------------------------------- one-step blocks (issue 10, item 4)


def test_slow_steps_are_timed_in_one_step_blocks_and_get_a_ci_across_blocks():
    res = run_stream(decaying(0.15, "exp", excess=0.0, noise=0.002, seed=1))
    assert set(res.block_sizes) == {1}
    assert len(res.block_medians_s) >= 6
    from bench.core.stats import summarize

    assert summarize(res.samples_s, block_medians=res.block_medians_s).ci_basis == "samples+blocks"
    assert res.block_shortfall is None


def test_when_six_blocks_do_not_fit_the_budget_the_point_says_so_with_numbers():
    res = run_stream(itertools.repeat(0.4))
    short = res.block_shortfall
    assert short is not None and short.blocks < short.needed == 6
    assert short.budget_s == 2.0 and short.step_s == 0.4 and short.budget_needed_s > 2.0
    assert short.message in res.warnings and "6 are needed for a CI across blocks" in short.message
    from bench.core.budget import BlockShortfall

    assert BlockShortfall.from_dict(short.to_dict()) == short


def test_the_budget_named_for_six_blocks_is_more_than_the_one_that_fitted_fewer():
    # Median steps of 0.3 s, but every third one slow: six median steps would fit 2 s, yet only five
    # blocks did. The budget named must be one that fits six, not the median's arithmetic.
    res = run_stream(itertools.cycle([0.3, 0.3, 0.7]), limits=MeasureLimits(budget_s=2.0),
                     warmup=WarmupRule(max_time_s=1.0))
    short = res.block_shortfall
    assert short is not None and short.blocks < 6
    assert short.budget_needed_s > 2.0


# --------------------------------------------------------------------------- CUDA events from a pool (issue 10, item 7)


class FakeCuda:
    """torch.cuda's event and sync-debug surface on a fake clock. As in torch, an Event makes its CUDA
    event lazily, on its first record()."""

    def __init__(self, step_s=0.001):
        self.now = 0.0
        self.step_s = step_s
        self.events = 0  # Event objects made
        self.cuda_events = 0  # CUDA events made (first record of each)
        self.records = 0
        self.mode = 0
        self.made_during_steps = []  # cuda_events when each step ran

    def Event(self, enable_timing=False):  # noqa: N802 - torch's name
        fake = self

        class Event:
            def __init__(self):
                fake.events += 1
                self.t = None

            def record(self):
                if self.t is None:
                    fake.cuda_events += 1
                fake.records += 1
                self.t = fake.now

            def synchronize(self):
                pass

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3

        return Event()

    def device(self, device):
        from contextlib import nullcontext

        return nullcontext()

    def step(self):
        self.made_during_steps.append(self.cuda_events)
        self.now += self.step_s

    def get_sync_debug_mode(self):
        return self.mode

    def set_sync_debug_mode(self, mode):
        self.mode = {"default": 0, "warn": 1, "error": 2}.get(mode, mode)


def test_cuda_events_come_from_one_pool_made_and_recorded_before_the_first_timed_step():
    from bench.measure.timing import MAX_BLOCK, CudaEventTimer

    cuda = FakeCuda()
    timer = CudaEventTimer(cuda=cuda)
    res = measure(cuda.step, timer=timer, clock=lambda: cuda.now, limits=MeasureLimits(budget_s=1.0))
    assert len(res.block_sizes) >= 6
    assert cuda.events == cuda.cuda_events == 2 * MAX_BLOCK  # one pool, every event made once
    assert set(cuda.made_during_steps) == {2 * MAX_BLOCK}  # all of them before the point's first step
    assert all(s == pytest.approx(0.001) for s in res.samples_s)


def test_cuda_event_blocks_end_when_the_budget_is_spent_even_if_the_step_time_jumps():
    from bench.measure.timing import CudaEventTimer

    cuda = FakeCuda(step_s=0.001)
    taken = []

    def step():
        taken.append(1)
        if len(taken) == 1500:  # well into the timed steps: each step now takes 100x longer
            cuda.step_s = 0.1
        cuda.step()

    res = measure(step, timer=CudaEventTimer(cuda=cuda), clock=lambda: cuda.now, rule=NeverSatisfied(),
                  limits=MeasureLimits(budget_s=1.0))
    assert max(res.samples_s) == pytest.approx(0.1)
    assert res.wall_time_s - res.warmup_wall_time_s <= 1.0 + 0.1 + 1e-9


# --------------------------------------------------------------------------- hidden host syncs (issue 10, item 9)


def syncing_step(cuda, syncs_per_step=2):
    import warnings

    def step():
        cuda.step()
        for _ in range(syncs_per_step):
            if cuda.mode == 1:
                warnings.warn("called a synchronizing CUDA operation")  # as torch warns in "warn" mode

    return step


def test_find_host_syncs_names_the_line_and_puts_the_debug_mode_back():
    from bench.measure.timing import find_host_syncs

    cuda = FakeCuda()
    found = find_host_syncs(syncing_step(cuda), cuda=cuda)
    assert len(found) == 1 and found[0].startswith("tests/test_timing.py:") and "(2x in one step)" in found[0]
    assert cuda.mode == 0
    assert find_host_syncs(cuda.step, cuda=cuda) == []

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        find_host_syncs(failing, cuda=cuda)
    assert cuda.mode == 0


def test_a_step_that_syncs_the_host_gets_a_warning_from_one_warm_up_step():
    from functools import partial

    from bench.measure.timing import CudaEventTimer, find_host_syncs

    cuda = FakeCuda()
    res = measure(syncing_step(cuda), timer=CudaEventTimer(cuda=cuda), clock=lambda: cuda.now,
                  check_step=partial(find_host_syncs, cuda=cuda), limits=MeasureLimits(budget_s=1.0))
    assert res.host_syncs and any("makes the host wait for the device" in w for w in res.warnings)
    quiet = measure(cuda.step, timer=CudaEventTimer(cuda=cuda), clock=lambda: cuda.now,
                    check_step=partial(find_host_syncs, cuda=cuda), limits=MeasureLimits(budget_s=1.0))
    assert quiet.host_syncs == [] and not any("host wait" in w for w in quiet.warnings)


def test_after_warmup_runs_once_between_warm_up_and_the_first_timed_step():
    timer = ScriptedTimer(itertools.repeat(0.01))
    seen = []
    res = measure(lambda: None, timer=timer, clock=timer.clock, after_warmup=lambda: seen.append(timer.calls),
                  limits=MeasureLimits(budget_s=1.0))
    assert seen == [len(res.warmup_samples_s)]


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_events_are_made_once_per_point_and_never_during_timed_steps(monkeypatch):
    import torch

    from bench.measure.timing import MAX_BLOCK, CudaEventTimer

    made_at = []
    steps = []
    real_event = torch.cuda.Event

    def counting_event(*a, **kw):
        made_at.append(len(steps))
        return real_event(*a, **kw)

    monkeypatch.setattr(torch.cuda, "Event", counting_event)
    a = torch.randn(512, 512, device="cuda")

    def step():
        steps.append(1)
        a @ a

    res = measure(step, timer=CudaEventTimer(torch.device("cuda")), limits=MeasureLimits(budget_s=0.5))
    assert len(made_at) == 2 * MAX_BLOCK and set(made_at) == {0}  # all made before the first step
    assert len(res.block_sizes) >= 6 and all(s > 0 for s in res.samples_s)


def test_the_host_sync_checks_sample_of_several_steps_is_no_warm_up_block():
    # The check runs several steps (under sync-debug mode) inside one timed "step": its sample is time
    # spent warming up, not a step time, so it neither sizes the first block nor enters the drift test.
    timer = ScriptedTimer(itertools.chain([0.02, 0.05], itertools.repeat(0.01)))  # first step, the check (5 steps)
    res = measure(lambda: None, timer=timer, clock=timer.clock, check_step=lambda step: [],
                  limits=MeasureLimits(min_samples=10, min_time_s=0.1, budget_s=1.0))
    assert res.warmup_samples_s[:2] == [0.02, 0.05]
    assert 0.05 not in res.warmup_block_medians_s
    assert all(m == pytest.approx(0.01) for m in res.warmup_block_medians_s)
    assert res.host_syncs == []
