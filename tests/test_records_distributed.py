"""The records of a data-parallel sweep and of `bench allreduce`: additive keys that round-trip, and a
single-process sweep file written exactly as before."""

from __future__ import annotations

import json

import pytest

from bench.core.errors import InvalidResultsFile
from bench.records.allreduce import (
    AllreducePoint,
    AllreduceResult,
    load_allreduce,
    save_allreduce,
)
from bench.records.distributed import (
    DistributedPoint,
    DistributedRun,
    Interval,
    RankInfo,
    RankPoint,
    VariantTiming,
)
from bench.records.sweep import Case, Measurement, SweepResult, load_sweep, save_sweep


def dp_measurement() -> Measurement:
    d = DistributedPoint(2, 8, [RankPoint(0, [0.010, 0.011], peak_allocated_bytes=100), RankPoint(1, [0.012, 0.009])],
                         no_sync=VariantTiming(samples_s=[0.006, 0.007], rank_samples_s=[[0.006, 0.007], [0.005, 0.006]]),
                         baseline=VariantTiming(status="oom", error="OutOfMemoryError: x"),
                         null_reasons={"x": "why"})
    return Measurement(Case("mlp", 8), samples_s=[0.012, 0.011], distributed=d)


def test_a_data_parallel_point_round_trips_and_states_its_batch_per_rank_and_in_all(tmp_path):
    result = SweepResult(config={"workload": "mlp", "distributed": {"world_size": 2}}, points=[dp_measurement()],
                         distributed=DistributedRun(2, "nccl", 60.0, ranks=[RankInfo(0, 0, "h", "cuda:0", "H100", "GPU-1",
                                                                                   interconnect={"link": "nvlink"})],
                                                    failure="rank 1 died"))
    path = save_sweep(result, tmp_path / "s.json")
    data = json.loads(path.read_text())
    point = data["points"][0]["distributed"]
    assert (point["per_rank_batch_size"], point["global_batch_size"], point["world_size"]) == (8, 16, 2)
    assert point["ranks"][0]["median_s"] == pytest.approx(0.0105)
    back = load_sweep(path)
    assert back.world_size == 2 and back.points[0].global_batch_size == 16
    assert back.points[0].distributed == result.points[0].distributed
    assert back.distributed.ranks == result.distributed.ranks and back.distributed.failure == "rank 1 died"
    assert back.points[0].distributed.baseline.status == "oom" and not back.points[0].distributed.baseline.ok


def test_a_single_process_sweep_file_has_no_distributed_keys():
    result = SweepResult(config={}, points=[Measurement(Case("mlp", 8), samples_s=[0.1, 0.2])])
    d = result.to_dict()
    assert "distributed" not in d and "distributed" not in d["points"][0]
    back = SweepResult.from_dict(d)
    assert back.distributed is None and back.world_size == 1 and back.points[0].global_batch_size == 8


def test_an_interval_and_a_run_without_analysis_read_back():
    assert Interval.from_dict({"value": 0.5, "low": None, "high": 0.6}) == Interval(0.5, None, 0.6)
    assert DistributedRun.from_dict({"world_size": 4, "backend": "gloo"}).analysis is None


def test_an_allreduce_file_round_trips_through_its_versioned_envelope(tmp_path):
    p = AllreducePoint(size_bytes=4096, count=1024, dtype="float32", samples_s=[1e-4, 2e-4, 1.5e-4], rank_samples_s=[[1e-4] * 3, [2e-4] * 3],
                       algbw_bytes_per_s=4096 / 1.5e-4, busbw_bytes_per_s=4096 / 1.5e-4)
    result = AllreduceResult({"world_size": 2, "dtype": "float32"}, ranks=[RankInfo(0, 0), RankInfo(1, 1)], points=[p],
                             finished=True)
    path = save_allreduce(result, tmp_path / "a.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "bench.allreduce" and data["schema_version"] == 1
    back = load_allreduce(path)
    assert back.points == [p] and back.world_size == 2 and back.points[0].stats.median_s == pytest.approx(1.5e-4)


def test_a_sweep_file_is_not_an_allreduce_file(tmp_path):
    path = save_sweep(SweepResult(config={}), tmp_path / "s.json")
    with pytest.raises(InvalidResultsFile, match="not a results file of bench allreduce"):
        load_allreduce(path)
