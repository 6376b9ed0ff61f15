"""A data-parallel sweep and `bench allreduce` in a one-process Gloo group made in this process: the same
code path every rank of a torchrun job runs (DDP, the pre-flight, no_sync, the one-rank baseline,
failures), fast enough for every test run. Two-process jobs through torchrun: test_distributed_launch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

import bench.measure.distributed as D
from bench.analysis.tta import step_time_fit_from_sweep, step_times_from_sweep
from bench.core.errors import BenchError
from bench.measure.workloads import Workload
from bench.run.allreduce import AllreduceConfig, run_allreduce
from bench.run.sweep import SweepConfig, run_sweep

FAST = dict(device="cpu", min_samples=6, min_time_s=0.005, budget_s=0.05, warmup_max_s=0.05, telemetry=False,
            dist_timeout_s=20)


@pytest.fixture
def one_rank_group(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        D._JOINED = None  # the group is the test's, so leave() would not destroy it
        dist.destroy_process_group()


class Limited(nn.Module):
    def __init__(self, limit):
        super().__init__()
        self.lin, self.limit = nn.Linear(4, 2), limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} MiB")
        return self.lin(x)


def tiny(limit=1 << 30) -> Workload:
    return Workload("tiny", lambda: Limited(limit),
                    lambda b, d: (torch.randn(b, 4, device=d), torch.randint(0, 2, (b,), device=d)),
                    nn.functional.cross_entropy)


def test_a_sweep_in_a_process_group_measures_each_point_under_ddp_with_what_goes_beside_it(one_rank_group, tmp_path):
    result = run_sweep(SweepConfig(batch_sizes=[2, 4], **FAST), workload=tiny(), output=tmp_path / "s.json")
    assert result.world_size == 1 and result.config["distributed"] == {
        "world_size": 1, "backend": "gloo", "comm_share": True, "scaling_baseline": "rank0"}
    for p in result.points:
        assert p.ok and len(p.distributed.ranks) == 1 and p.distributed.rank_samples_s[0] == p.samples_s
        assert p.distributed.no_sync.ok and p.distributed.baseline.ok
    assert [r.per_rank_batch_size for r in result.distributed.analysis.points] == [2, 4]
    assert "dist_timeout_s" not in result.config and result.distributed.timeout_s == 20


def test_out_of_memory_in_the_pre_flight_steps_is_the_points_result_and_the_sweep_goes_on(one_rank_group):
    result = run_sweep(SweepConfig(batch_sizes=[2, 4, 8], **FAST), workload=tiny(limit=2))
    assert [(p.batch_size, p.status) for p in result.points] == [(2, "ok"), (4, "oom")]
    assert result.point(4).error.startswith("rank 0: OutOfMemoryError: CUDA out of memory")
    assert result.largest_batch_that_fits == 2


def test_what_goes_beside_each_point_can_be_turned_off(one_rank_group):
    result = run_sweep(SweepConfig(batch_sizes=[2], comm_share=False, scaling_baseline=False, **FAST), workload=tiny())
    d = result.points[0].distributed
    assert d.no_sync is None and d.baseline is None and "turned off" in d.null_reasons["no_sync"]
    assert result.distributed.baseline is None


def test_allreduce_measures_each_size_and_one_rank_has_no_bus_bandwidth(one_rank_group, tmp_path):
    result = run_allreduce(AllreduceConfig(sizes_bytes=[4096, 4097], budget_s=0.05, min_time_s=0.005),
                           output=tmp_path / "a.json")
    assert [p.size_bytes for p in result.points] == [4096]  # 4097 rounds down to whole float32 elements
    p = result.points[0]
    assert p.ok and p.algbw_bytes_per_s == pytest.approx(4096 / p.stats.median_s)
    assert p.busbw_bytes_per_s is None and "one rank" in p.null_reasons["busbw_bytes_per_s"]
    assert (tmp_path / "a.json").exists()


def test_allreduce_outside_a_torchrun_job_says_how_to_launch_it(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(BenchError, match="torchrun --standalone --nproc_per_node=2 -m bench allreduce"):
        run_allreduce(AllreduceConfig(sizes_bytes=[4096]))


@pytest.mark.parametrize("kw, message", [({"dtype": "int8"}, "unknown dtype"), ({"sizes_bytes": [0]}, "positive"),
                                          ({"timeout_s": 0}, "collective timeout")])
def test_allreduce_settings_are_checked_before_anything_runs(kw, message):
    with pytest.raises(BenchError, match=message):
        AllreduceConfig(**kw).validate()


def test_time_to_accuracy_reads_a_data_parallel_sweep_by_global_batch_size():
    from bench.records.distributed import DistributedPoint, DistributedRun
    from bench.records.sweep import Case, Measurement, SweepResult

    points = [Measurement(Case("mlp", b), samples_s=[0.01 + 0.002 * b] * 8, distributed=DistributedPoint(4, b))
              for b in (8, 16)]
    result = SweepResult(config={}, points=points, distributed=DistributedRun(4, "nccl"),
                         analysis={"linear_fit": {"intercept_s": 0.01, "slope_s_per_sample": 0.002}})
    times, _ = step_times_from_sweep(result)
    assert [t.batch_size for t in times] == [32, 64]
    fit = step_time_fit_from_sweep(result)  # per global sample: a quarter of the per-rank slope
    assert fit.a_s == pytest.approx(0.01) and fit.b_s_per_example == pytest.approx(0.002 / 4)
    assert fit.predict_s(64) == pytest.approx(times[1].median_s)
    result.analysis = {"best_fit": "hinge", "hinge_fit": {"plateau_s": 0.02, "slope_s_per_sample": 0.002,
                                                          "knee_batch": 5}}
    hinge = step_time_fit_from_sweep(result)
    assert hinge.knee_batch == 20 and hinge.predict_s(64) == pytest.approx(0.02 + 0.002 * (16 - 5))
