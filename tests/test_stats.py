import numpy as np
import pytest

from bench.core.stats import median_ci_indices, relative_spread, summarize


def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_median = 1.0  # lognormal(0, s) has median exp(0) = 1
    hits = 0
    trials = 2000
    for _ in range(trials):
        s = summarize(rng.lognormal(0.0, 0.3, size=25))
        hits += s.ci_low_s <= true_median <= s.ci_high_s
    assert hits / trials >= 0.94


def test_median_ci_is_undefined_below_six_samples_and_defined_from_six():
    assert median_ci_indices(5) is None
    assert median_ci_indices(6) == (0, 5)
    s = summarize([1.0, 2.0, 3.0])
    assert s.ci_low_s is None and s.ci_rel_halfwidth is None and s.median_s == 2.0


def test_summary_of_known_samples():
    s = summarize([1, 2, 3, 4, 100])
    assert s.median_s == 3 and s.min_s == 1 and s.max_s == 100 and s.n == 5
    assert s.outliers == 1  # 100 lies beyond Q3 + 1.5 IQR


def test_summarize_rejects_empty_input():
    with pytest.raises(ValueError):
        summarize([])


def test_relative_spread_is_half_range_over_median():
    assert relative_spread([0.9, 1.0, 1.1]) == pytest.approx(0.1)
    assert relative_spread([1.0]) is None


def test_block_medians_widen_the_ci_when_blocks_sit_at_different_levels():
    # five long blocks at 1.0 and one at 1.3: the pooled samples pin the median at 1.0 exactly, but
    # with six blocks the level of a block is only known to lie within [1.0, 1.3]
    samples = [1.0] * 500 + [1.3] * 100
    pooled = summarize(samples)
    blocked = summarize(samples, block_medians=[1.0, 1.0, 1.0, 1.0, 1.0, 1.3])
    assert pooled.ci_basis == "samples" and (pooled.ci_low_s, pooled.ci_high_s) == (1.0, 1.0)
    assert blocked.ci_basis == "samples+blocks" and (blocked.ci_low_s, blocked.ci_high_s) == (1.0, 1.3)
    assert blocked.ci_rel_halfwidth > pooled.ci_rel_halfwidth


def test_too_few_blocks_leave_the_sample_ci_alone():
    samples = [1.0, 1.1, 1.2, 1.0, 1.1, 1.2, 1.0, 1.1]
    assert summarize(samples, block_medians=[1.0, 2.0]).ci_basis == "samples"


def test_the_mean_ci_covers_the_true_mean_at_least_95_percent_of_the_time():
    from bench.core.stats import mean_ci

    rng = np.random.default_rng(2)
    true_mean = float(np.exp(0.3**2 / 2))  # lognormal(0, 0.3)
    hits = sum(lo <= true_mean <= hi for lo, hi in (mean_ci(rng.lognormal(0.0, 0.3, size=60)) for _ in range(2000)))
    assert hits / 2000 >= 0.93


def test_the_mean_ci_widens_to_the_block_means_when_blocks_sit_at_different_levels():
    from bench.core.stats import mean_ci

    # six blocks of 100 steps, each block at its own level: the pooled t interval believes 600 draws
    levels = [1.0, 1.1, 0.95, 1.05, 1.2, 0.9]
    samples = [lv + 0.001 * (i % 3) for lv in levels for i in range(100)]
    pooled = mean_ci(samples)
    blocked = mean_ci(samples, block_sizes=[100] * 6)
    assert blocked[1] - blocked[0] > 3 * (pooled[1] - pooled[0])
    assert mean_ci(samples, block_sizes=[300, 300]) == pooled  # too few blocks: left alone
    assert mean_ci([1.0]) is None


def test_summarize_gives_the_mean_and_its_ci():
    s = summarize([1.0, 2.0, 3.0, 4.0], block_sizes=[2, 2])
    assert s.mean_s == 2.5 and s.mean_ci_low_s < 2.5 < s.mean_ci_high_s
