"""Measuring under torch.distributed (bench.measure.distributed): the control channel every rank answers
in lockstep, the timer that combines the ranks (a step's time is the slowest rank's), one rank's failure
turned into every rank's, and where each rank measures. A second rank is simulated by a fake
torch.distributed whose all_gather_object answers for it."""

from __future__ import annotations

import statistics

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.stats import slowest_per_step
from bench.measure.distributed import (
    FAILED,
    DistributedError,
    DistributedTimer,
    RankFailure,
    Ranks,
    RanksFailed,
    check_timeout,
    failure_of,
    join,
    main_rank,
    rank_device,
)
from bench.measure.timing import (
    FixedCountRule,
    HostTimer,
    MeasureLimits,
    WarmupRule,
    measure,
)


class FakeDist:
    """torch.distributed as rank 0 of two sees it: `other(kind, payload)` is what rank 1 sends."""

    def __init__(self, other=None, broken=None):
        self.other = other or (lambda kind, payload: (kind, payload))
        self.broken = broken
        self.sent: list = []

    def all_gather_object(self, out, item, group=None):
        if self.broken:
            raise RuntimeError(self.broken)
        self.sent.append(item)
        out[0], out[1] = item, self.other(*item)


def ranks(dist) -> Ranks:
    return Ranks(rank=0, world_size=2, local_rank=0, backend="gloo", timeout_s=10, dist=dist)


# --------------------------------------------------------------------------- combination rule


def test_a_steps_time_is_the_slowest_ranks_time_of_that_step():
    assert slowest_per_step([[1.0, 5.0, 2.0], [3.0, 1.0, 2.5]]) == [3.0, 5.0, 2.5]
    assert slowest_per_step([[0.1, 0.2]]) == [0.1, 0.2]
    assert slowest_per_step([]) == []


def test_ranks_with_different_step_counts_cannot_be_combined():
    with pytest.raises(BenchError, match="different numbers of steps"):
        slowest_per_step([[1.0, 2.0], [1.0]])


# --------------------------------------------------------------------------- the control channel


def test_an_exchange_hands_every_ranks_payload_to_every_rank():
    r = ranks(FakeDist(lambda kind, p: (kind, p * 10)))
    assert r.exchange("x", 3) == [3, 30]


def test_rank_0s_clock_is_everyones_clock():
    seen = FakeDist(lambda kind, p: (kind, None))  # rank 1 sends no reading of its own
    r = ranks(seen)
    t = r.clock()
    assert isinstance(t, float) and seen.sent[-1][0] == "clock" and seen.sent[-1][1] == t


def test_a_failure_announced_by_another_rank_is_raised_on_this_one():
    other = RankFailure(1, "oom", "OutOfMemoryError: CUDA out of memory").to_dict()
    r = ranks(FakeDist(lambda kind, p: (FAILED, other)))
    with pytest.raises(RanksFailed) as e:
        r.barrier()
    assert e.value.status == "oom" and e.value.message == "rank 1: OutOfMemoryError: CUDA out of memory"


def test_ranks_at_different_exchanges_mean_their_code_diverged():
    r = ranks(FakeDist(lambda kind, p: ("samples", [1.0])))
    with pytest.raises(DistributedError, match="diverged.*rank 0 at 'barrier', rank 1 at 'samples'"):
        r.barrier()


def test_a_broken_control_channel_ends_the_job_in_one_line():
    r = ranks(FakeDist(broken="[gloo] Connection closed by peer\nmore lines"))
    with pytest.raises(DistributedError) as e:
        r.barrier()
    assert "lost contact with the other ranks" in str(e.value) and "\n" not in str(e.value)


def test_a_collective_that_gave_up_waiting_is_a_consequence_and_the_other_ranks_failure_the_cause():
    waited = failure_of(0, RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv"))
    cause = failure_of(1, ValueError("bad input on rank 1"))
    assert waited.waiting and not cause.waiting and cause.status == "error"
    failed = RanksFailed([waited, cause])
    assert [f.rank for f in failed.causes] == [1]
    assert failed.message == "rank 1: ValueError: bad input on rank 1 (rank 0 gave up waiting for it)"
    assert failed.status == "error"


def test_any_rank_out_of_memory_makes_the_point_out_of_memory():
    failed = RanksFailed([failure_of(0, ValueError("x")), failure_of(1, torch.cuda.OutOfMemoryError("CUDA out of memory"))])
    assert failed.status == "oom" and "rank 0: ValueError: x; rank 1: OutOfMemoryError" in failed.message


# --------------------------------------------------------------------------- the timer


def test_the_timer_puts_a_barrier_before_each_block_and_returns_the_slowest_rank_per_step():
    dist = FakeDist(lambda kind, p: (kind, [v * 3 for v in p] if kind == "samples" else p))
    timer = DistributedTimer(HostTimer(), ranks(dist))
    block = timer.time_block(lambda: None, 4)
    assert [k for k, _ in dist.sent] == ["barrier", "samples"]
    mine = dist.sent[1][1]
    assert block == pytest.approx([3 * v for v in mine])
    assert timer.rank_samples(2) == [mine[2:], [3 * v for v in mine[2:]]]


def test_a_step_that_raises_on_this_rank_is_announced_and_raised_on_every_rank():
    dist = FakeDist(lambda kind, p: (kind, p))  # rank 1 waits at the same exchange

    def step():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    with pytest.raises(RanksFailed) as e:
        DistributedTimer(HostTimer(), ranks(dist)).time_block(step, 3)
    assert dist.sent[-1][0] == FAILED and e.value.status == "oom"
    assert e.value.message.startswith("rank 0: OutOfMemoryError: CUDA out of memory")


def test_the_measuring_loop_runs_on_the_combined_samples_and_the_shared_clock():
    """Every decision (block sizes, when to stop) is made from values all ranks share, so the ranks
    run the same number of steps: here the other rank is always twice as slow."""
    dist = FakeDist(lambda kind, p: (kind, [2 * v for v in p] if kind == "samples" else p))
    r = ranks(dist)
    timer = DistributedTimer(HostTimer(), r)
    res = measure(lambda: sum(range(200)), timer=timer, rule=FixedCountRule(12),
                  limits=MeasureLimits(budget_s=2.0, min_time_s=0.0, min_samples=1),
                  warmup=WarmupRule(min_time_s=0.0, max_time_s=0.05), clock=r.clock)
    assert len(res.samples_s) == 12
    mine, other = timer.rank_samples(12)
    assert res.samples_s == pytest.approx(other) and other == pytest.approx([2 * v for v in mine])
    kinds = [k for k, _ in dist.sent]
    assert kinds.count("barrier") == kinds.count("samples") and "clock" in kinds


# --------------------------------------------------------------------------- where each rank runs


def test_without_torchrun_nothing_changes(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert rank_device("cuda:1") == "cuda:1" and rank_device("cpu") == "cpu"
    assert main_rank() and join("cpu") is None


def test_under_torchrun_each_rank_measures_on_its_own_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("RANK", "7")
    assert rank_device("cuda") == "cuda:3" and rank_device("cpu") == "cpu" and not main_rank()
    with pytest.raises(BenchError, match="each rank uses its own GPU"):
        rank_device("cuda:0")


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "10", True])
def test_a_collective_timeout_must_be_a_positive_number_of_seconds(value):
    with pytest.raises(BenchError, match="collective timeout"):
        check_timeout(value)


def test_per_rank_jitter_biases_the_per_step_maximum_but_not_the_block_totals():
    """Two ranks meet in every step's all-reduce (10 ms apart); each rank's events land with its own
    jitter (0.5 ms), so a rank's late step end is its next step's early start."""
    import numpy as np

    from bench.core.stats import slowest_rank_per_block

    rng = np.random.default_rng(7)
    n = 200
    bounds = np.arange(n + 1) * 0.010
    ranks_ = [list(np.diff(bounds + rng.normal(0, 0.0005, n + 1))) for _ in range(2)]
    per_step = slowest_per_step(ranks_)
    blocks = slowest_rank_per_block(ranks_, [50] * 4)
    assert np.mean(per_step) > 0.0103  # +3% or more from the jitter alone
    assert abs(np.mean(blocks) - 0.010) < 0.0001  # within 1%


def test_the_timer_returns_the_block_of_the_rank_whose_block_took_longest_in_total():
    # rank 1 is slower in step 0 only, but faster in total: its per-step maximum would mix the ranks
    dist = FakeDist(lambda kind, p: (kind, [p[0] + 1.0] + [0.0] * (len(p) - 1) if kind == "samples" else p))
    timer = DistributedTimer(ScriptedBlocks([[1.0, 3.0, 3.0]]), ranks(dist))
    assert timer.time_block(lambda: None, 3) == [1.0, 3.0, 3.0]  # rank 0's: 7 s against 2 s


class ScriptedBlocks:
    name = "scripted"

    def __init__(self, blocks):
        self.blocks = list(blocks)

    def time_block(self, step, n):
        return self.blocks.pop(0)


def test_a_ddp_step_on_two_fake_async_devices_is_timed_by_events_and_combined_by_block_totals():
    """Two ranks' devices (bench.testing.fake_cuda): each step queues its compute, then an all-reduce
    that ends on both devices together; rank 1 computes 10% longer. Rank 0's events include its wait
    for rank 1, so both ranks time the job's pace, and the timer returns it."""
    from bench.measure.timing import CudaEventTimer
    from bench.testing.fake_cuda import FakeCuda, FakeDevice

    devs = [FakeDevice(launch_overhead_s=5e-6, launch_latency_s=0.0) for _ in range(2)]
    cudas = [FakeCuda(d) for d in devs]
    other_events = []
    compute_s, comm_s = (1e-3, 1.1e-3), 2e-4

    def step():
        s1 = cudas[1].Event(enable_timing=True)
        s1.record()
        for d, c in zip(devs, compute_s):
            d.launch(c)
        done = max(d.device_free_at_s for d in devs) + comm_s  # the all-reduce ends when both arrive
        for d in devs:
            d.device_free_at_s = done
        e1 = cudas[1].Event(enable_timing=True)
        e1.record()
        other_events.append((s1, e1))

    def rank1_samples(kind, payload):
        if kind != "samples":
            return kind, payload
        devs[1].synchronize()
        mine = [s.elapsed_time(e) / 1e3 for s, e in other_events[-len(payload):]]
        return kind, mine

    timer = DistributedTimer(CudaEventTimer(cuda=cudas[0], pool_size=16), ranks(FakeDist(rank1_samples)))
    timer.time_block(step, 1)  # the event pool is made in warm-up
    block = timer.time_block(step, 10)
    assert len(block) == 10
    assert statistics.mean(block) == pytest.approx(1.1e-3 + 2e-4, rel=0.02)  # the slower rank's pace
    r0, r1 = timer.rank_samples(10)
    assert statistics.mean(r0) == pytest.approx(statistics.mean(r1), rel=0.02)  # rank 0 waited in the all-reduce
