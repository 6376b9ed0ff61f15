"""The card-like fakes: PyTorch's caching allocator in miniature, torch's out-of-memory text, and an
asynchronous device whose events the CUDA-event timer reads."""

from __future__ import annotations

import pytest
import torch

from bench.run.largest import parse_oom
from bench.testing.fake_cuda import (
    GIB,
    MIB,
    FakeCachingAllocator,
    FakeConvNet,
    FakeCuda,
    FakeDevice,
    format_size,
    probe_on_card,
    round_size,
    segment_size,
)


def test_requests_round_to_512_bytes_and_segments_follow_the_allocators_pools():
    assert round_size(1) == 512 and round_size(513) == 1024
    assert segment_size(round_size(100)) == 2 * MIB  # small pool
    assert segment_size(5 * MIB) == 20 * MIB  # under 10 MiB: a 20 MiB segment
    assert segment_size(11 * MIB + 1) == 12 * MIB  # larger: rounded up to 2 MiB


def test_small_requests_share_a_2_mib_segment_and_a_freed_block_is_reused():
    a = FakeCachingAllocator(GIB, outside_bytes=0)
    blocks = [a.malloc(1000) for _ in range(4)]
    assert a.reserved == 2 * MIB and a.allocated == 4 * 1024
    a.free(blocks[1])
    again = a.malloc(1000)
    assert again.offset == blocks[1].offset and a.reserved == 2 * MIB


def test_fragmentation_leaves_reserved_memory_that_a_larger_request_cannot_use():
    a = FakeCachingAllocator(200 * MIB, outside_bytes=0)
    a.free(a.malloc(180 * MIB))  # one 180 MiB segment, cached
    held = [a.malloc(30 * MIB) for _ in range(6)]  # split out of it
    for b in held[::2]:
        a.free(b)  # 90 MiB free in the cache, in 30 MiB holes of a segment that cannot be released
    with pytest.raises(torch.cuda.OutOfMemoryError):
        a.malloc(40 * MIB)  # fits in no hole, and the device has only 20 MiB left
    assert a.reserved - a.allocated == 90 * MIB and a.alloc_retries == 1


def test_it_runs_out_before_the_nominal_capacity_by_the_memory_outside_the_allocator():
    a = FakeCachingAllocator(10 * GIB, outside_bytes=int(1.5 * GIB))
    a.malloc(8 * GIB)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        a.malloc(1 * GIB)  # 2 GiB short of the capacity, yet out of memory


def test_the_out_of_memory_text_is_torchs_and_tells_the_allocators_reach():
    a = FakeCachingAllocator(int(79.5 * GIB), outside_bytes=2 * GIB)
    a.malloc(70 * GIB)
    with pytest.raises(torch.cuda.OutOfMemoryError) as e:
        a.malloc(9 * GIB)
    text = str(e.value)
    assert text.startswith("CUDA out of memory. Tried to allocate 9.00 GiB. GPU 0 has a total capacity of 79.50 GiB "
                           "of which 7.50 GiB is free. Including non-PyTorch memory, this process has 72.00 GiB")
    assert "Of the allocated memory 70.00 GiB is allocated by PyTorch, and 0 bytes is reserved by PyTorch but " \
           "unallocated." in text
    report = parse_oom(text)
    assert report.ceiling_bytes == pytest.approx(77.5 * GIB) and report.outside_bytes == pytest.approx(2 * GIB)


def test_format_size_follows_c10():
    assert format_size(1024) == "1024 bytes" and format_size(1536) == "1.50 KiB"
    assert format_size(20 * MIB) == "20.00 MiB" and format_size(GIB + 1) == "1.00 GiB"


def test_emptying_the_cache_returns_free_segments_to_the_device():
    a = FakeCachingAllocator(GIB, outside_bytes=0)
    a.free(a.malloc(100 * MIB))
    assert a.reserved == 100 * MIB
    a.empty_cache()
    assert a.reserved == 0 and a.free_bytes() == GIB


def test_autotuning_workspace_is_dropped_near_the_limit_and_never_fails_a_step():
    net = FakeConvNet(autotune_workspace_bytes=3 * GIB)
    fits, steady, error, warm = probe_on_card(int(79.5 * GIB), GIB, net, 1500)
    assert fits and warm == steady + 3 * GIB  # room for it: the warm-up peak holds the workspace
    fits, steady, error, warm = probe_on_card(int(79.5 * GIB), GIB, net, 1640)
    assert fits and warm < steady + 3 * GIB  # near the limit: the workspace-hungry algorithms are skipped
    fits, _, error, _ = probe_on_card(int(79.5 * GIB), GIB, net, 1700)
    assert not fits and "CUDA out of memory" in error


def test_the_async_device_queues_kernels_behind_the_host_and_events_take_device_time():
    dev = FakeDevice(launch_overhead_s=1e-5, launch_latency_s=0.0)
    cuda = FakeCuda(dev)
    start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dev.launch(1e-3)  # compute-bound: the queue grows ahead of the host
    end.record()
    assert dev.host_s == pytest.approx(1e-4)  # the host only paid the launches
    with pytest.raises(RuntimeError):
        start.elapsed_time(end)  # not complete yet
    end.synchronize()
    assert start.elapsed_time(end) == pytest.approx(10.01)  # ms: the first kernel waited for its launch
    assert dev.host_s == pytest.approx(1.001e-2)


def test_a_launch_bound_step_is_timed_at_the_hosts_pace():
    dev = FakeDevice(launch_overhead_s=1e-4, launch_latency_s=0.0)
    cuda = FakeCuda(dev)
    start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dev.launch(1e-6)  # tiny kernels: the device waits for the host
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) == pytest.approx(1.0, rel=0.01)  # 10 launches x 0.1 ms


# ---------------------------------------------------------------------------------- timers and the sync check on it


def _step(dev, kernels=20, kernel_s=1e-4, sync_every=0):
    """A training step as the device sees it: `kernels` launches; every `sync_every`-th step reads a
    value back to the host (a logged loss)."""
    calls = [0]

    def step():
        calls[0] += 1
        for _ in range(kernels):
            dev.launch(kernel_s)
        if sync_every and calls[0] % sync_every == 0:
            dev.item()

    return step


def test_the_cuda_event_timer_reads_device_time_with_one_host_sync_per_block():
    from bench.measure.timing import CudaEventTimer

    dev = FakeDevice(launch_overhead_s=5e-6, launch_latency_s=0.0)
    cuda = FakeCuda(dev)
    timer = CudaEventTimer(cuda=cuda, pool_size=8)
    timer.time_block(_step(dev), 1)  # makes the pool (warm-up)
    made = len(cuda.events)
    host_before = dev.host_s
    times = timer.time_block(_step(dev), 8)
    assert len(cuda.events) == made  # no event made inside the timed window
    # Compute-bound: device time, not launch time; the first step of a block also waits for its first launch.
    assert times[1:] == pytest.approx([20 * 1e-4] * 7, rel=1e-6)
    assert times[0] == pytest.approx(20 * 1e-4 + 5e-6, rel=1e-6)
    assert dev.host_s - host_before == pytest.approx(8 * 20 * 1e-4, rel=0.01)  # the host waited once, at the end


def test_a_sync_every_third_step_is_missed_by_one_step_and_found_by_the_default_check():
    from bench.measure.timing import SYNC_CHECK_STEPS, find_host_syncs, sync_check_for

    dev = FakeDevice()
    cuda = FakeCuda(dev)
    assert find_host_syncs(_step(dev, sync_every=3), cuda=cuda) == []  # the old check: one step
    check = sync_check_for("cuda:0")
    found = check(_step(dev, sync_every=3), cuda=cuda, clock=dev.clock)  # the device's clock: no wall-time race
    assert len(found) == 1 and f"(1x in {SYNC_CHECK_STEPS} steps)" in found[0]
    assert cuda.get_sync_debug_mode() == 0 and sync_check_for("cpu") is None


def test_the_sync_check_stops_adding_steps_once_its_time_is_spent_and_says_how_many_it_checked():
    from bench.measure.timing import find_host_syncs

    dev = FakeDevice()
    cuda = FakeCuda(dev)
    step = _step(dev, kernels=1, kernel_s=0.4, sync_every=1)  # a 0.4 s step that syncs each time
    found = find_host_syncs(step, cuda=cuda, steps=5, max_s=1.0, clock=dev.clock)
    assert found and "(3x in 3 steps)" in found[0]  # 0.4, 0.8, 1.2 s: the third passes the limit


def test_the_sync_check_lets_ddps_bucket_rebuild_pass_before_it_looks():
    from bench.measure.timing import sync_check_for
    from bench.run.distributed import DataParallelHooks

    dev = FakeDevice()
    cuda = FakeCuda(dev)
    calls = [0]

    def ddp_step():  # the first step the check sees rebuilds DDP's buckets: one synchronising copy
        calls[0] += 1
        dev.launch(1e-3)
        if calls[0] == 1:
            dev.item()

    assert sync_check_for("cuda", skip=0)(ddp_step, cuda=cuda, clock=dev.clock) != []  # it would warn on every DDP point
    calls[0] = 0
    assert sync_check_for("cuda", skip=DataParallelHooks.sync_check_skip)(ddp_step, cuda=cuda, clock=dev.clock) == []
