"""The combination rules for a data-parallel job (bench.analysis.distributed), on synthetic per-rank
timings: a step's time is the slowest rank's, the ranks' spread and slowest rank, the communication
share, weak-scaling efficiency, and bandwidth as nccl-tests defines it."""

from __future__ import annotations

import pytest

from bench.analysis.distributed import (
    algorithm_bandwidth,
    analyse_distributed,
    bus_bandwidth,
    bus_factor,
    comm_share,
    rank_spread,
    weak_scaling_efficiency,
)
from bench.core.errors import BenchError
from bench.core.stats import slowest_per_step, summarize
from bench.records.distributed import (
    DistributedPoint,
    DistributedRun,
    RankPoint,
    VariantTiming,
)
from bench.records.sweep import Case, Measurement, SweepResult


def around(center: float, n: int = 40, spread: float = 0.01) -> list[float]:
    """n samples evenly spread ±spread around center (a tight, known median)."""
    return [center * (1 + spread * (2 * i / (n - 1) - 1)) for i in range(n)]


def dp_point(batch: int, ranks: list[list[float]], no_sync: list[float] | None = None,
             baseline: list[float] | None = None, status: str = "ok") -> Measurement:
    combined = slowest_per_step(ranks) if status == "ok" else []
    d = DistributedPoint(len(ranks), batch, [RankPoint(r, s) for r, s in enumerate(ranks)] if status == "ok" else [])
    if no_sync is not None:
        d.no_sync = VariantTiming(samples_s=no_sync)
    if baseline is not None:
        d.baseline = VariantTiming(samples_s=baseline)
    return Measurement(Case("mlp", batch), status=status, samples_s=combined, distributed=d,
                       error=None if status == "ok" else "rank 1: OutOfMemoryError: CUDA out of memory")


def dp_sweep(points: list[Measurement], world_size: int = 2) -> SweepResult:
    return SweepResult(config={"workload": "mlp"}, points=points, distributed=DistributedRun(world_size, "gloo"))


def test_rank_spread_names_the_slowest_rank_and_how_often_it_was_slowest():
    s = rank_spread([[1.0, 1.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    assert s.rank_medians_s == [1.0, 2.0] and s.slowest_rank == 1
    assert s.spread_rel == pytest.approx((2.0 - 1.0) / 1.5)
    assert s.slowest_share == pytest.approx(3 / 4)
    assert rank_spread([]) is None and rank_spread([[1.0], []]) is None


def test_equal_ranks_have_no_spread():
    s = rank_spread([around(0.01), around(0.01)])
    assert s.spread_rel == 0.0


def test_the_communication_share_is_what_the_all_reduce_adds_to_the_step():
    share = comm_share(summarize(around(0.010)), summarize(around(0.006)))
    assert share.value == pytest.approx(0.4)
    assert share.low < 0.4 < share.high


def test_a_step_without_all_reduce_measured_slower_gives_a_negative_share_not_a_clipped_one():
    share = comm_share(summarize(around(0.010)), summarize(around(0.011)))
    assert share.value == pytest.approx(-0.1) and share.high < 0


def test_weak_scaling_efficiency_is_one_rank_time_over_n_rank_time_at_the_same_per_rank_batch():
    e = weak_scaling_efficiency(summarize(around(0.008)), summarize(around(0.010)))
    assert e.value == pytest.approx(0.8) and e.low < 0.8 < e.high


def test_without_a_ci_the_ratio_has_no_interval():
    e = weak_scaling_efficiency(summarize([0.008, 0.008]), summarize([0.01, 0.01]))
    assert e.value == pytest.approx(0.8) and e.low is None and e.high is None


@pytest.mark.parametrize("n, factor", [(1, 0.0), (2, 1.0), (4, 1.5), (8, 1.75)])
def test_bus_bandwidth_is_algorithm_bandwidth_times_2_n_minus_1_over_n(n, factor):
    assert bus_factor(n) == pytest.approx(factor)
    assert bus_bandwidth(10e9, n) == pytest.approx(10e9 * factor)


def test_algorithm_bandwidth_is_bytes_over_time():
    assert algorithm_bandwidth(64 * 2**20, 0.004) == pytest.approx(64 * 2**20 / 0.004)
    assert algorithm_bandwidth(1024, 0.0) is None and bus_bandwidth(None, 2) is None


def test_a_world_size_must_be_a_positive_integer():
    with pytest.raises(BenchError, match="world size"):
        bus_factor(0)


def test_the_analysis_combines_every_point_of_a_data_parallel_sweep():
    fast, slow = around(0.010), around(0.012)
    result = dp_sweep([dp_point(8, [fast, slow], no_sync=around(0.006), baseline=around(0.009)),
                       dp_point(16, [], status="oom")])
    a = analyse_distributed(result)
    p8, p16 = a.points
    assert (p8.per_rank_batch_size, p8.global_batch_size) == (8, 16)
    assert p8.step_time_s == pytest.approx(0.012) and p8.spread.slowest_rank == 1
    assert p8.comm_share.value == pytest.approx(0.5) and p8.efficiency.value == pytest.approx(0.75)
    assert p16.step_time_s is None and "oom" in p16.null_reasons["step_time_s"]


def test_what_was_not_measured_beside_a_point_is_null_with_the_reason():
    point = dp_point(8, [around(0.01), around(0.01)])
    point.distributed.null_reasons["no_sync"] = "not measured: turned off (--no-comm-share)"
    a = analyse_distributed(dp_sweep([point]))
    row = a.points[0]
    assert row.comm_share is None and row.null_reasons["comm_share"] == "not measured: turned off (--no-comm-share)"
    assert row.efficiency is None and row.null_reasons["efficiency"] == "no one-rank baseline was measured"


def test_a_single_process_sweep_has_no_distributed_analysis():
    assert analyse_distributed(SweepResult(config={}, points=[Measurement(Case("mlp", 8), samples_s=[0.1])])) is None
