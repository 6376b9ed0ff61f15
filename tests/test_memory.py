"""Allocator statistics: CUDA's through a fake torch.cuda on the CPU, the null object elsewhere."""

from types import SimpleNamespace

import pytest
import torch

from bench.measure.memory import AllocatorMemory, CudaAllocatorMemory, allocator_memory


def fake_cuda(**over):
    calls = []
    ns = SimpleNamespace(
        synchronize=lambda d: calls.append(("synchronize", d)),
        reset_peak_memory_stats=lambda d: calls.append(("reset", d)),
        max_memory_allocated=lambda d: 3 << 30,
        max_memory_reserved=lambda d: 4 << 30,
        memory_stats=lambda d: {"num_alloc_retries": 7},
        mem_get_info=lambda d: (70 << 30, 80 << 30),
        memory_reserved=lambda d: 2 << 30,
        calls=calls,
    )
    for k, v in over.items():
        setattr(ns, k, v)
    return ns


def test_cuda_statistics_are_read_from_torch_cuda():
    cuda = fake_cuda()
    mem = allocator_memory("cuda:0", cuda=cuda)
    assert isinstance(mem, CudaAllocatorMemory) and mem.available
    mem.reset_peaks()
    assert cuda.calls == [("synchronize", "cuda:0"), ("reset", "cuda:0")]
    assert mem.peaks() == (3 << 30, 4 << 30)
    assert mem.alloc_retries() == 7
    assert mem.capacity_bytes() == 72 << 30  # free memory plus what the allocator already holds


def test_a_missing_retry_count_or_driver_answer_is_none_not_zero():
    mem = CudaAllocatorMemory("cuda:0", cuda=fake_cuda(memory_stats=lambda d: {}, mem_get_info=_raise))
    assert mem.alloc_retries() is None and mem.capacity_bytes() is None


def _raise(d):
    raise RuntimeError("CUDA driver not initialised")


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "mps"])
def test_other_devices_have_no_allocator_statistics_and_say_why(device):
    mem = allocator_memory(device)
    assert type(mem) is AllocatorMemory and not mem.available
    mem.reset_peaks()
    assert mem.peaks() == (None, None) and mem.alloc_retries() is None and mem.capacity_bytes() is None
    assert "only on CUDA devices" in mem.reason


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_peaks_reset_and_capacity():
    mem = allocator_memory("cuda")
    x = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    del x
    mem.reset_peaks()
    allocated, reserved = mem.peaks()
    assert allocated < 256 << 20 <= reserved + (256 << 20)
    assert mem.alloc_retries() >= 0
    free, total = torch.cuda.mem_get_info()
    assert free <= mem.capacity_bytes() <= total


def test_on_the_card_like_fake_the_capacity_read_is_what_the_oom_text_says_the_allocator_can_reach():
    from bench.run.largest import parse_oom
    from bench.testing.fake_cuda import GIB, MIB, FakeCachingAllocator, FakeCuda

    cuda = FakeCuda(alloc=FakeCachingAllocator(int(79.5 * GIB), outside_bytes=int(1.25 * GIB)))
    mem = allocator_memory("cuda:0", cuda=cuda)
    held = cuda.alloc.malloc(30 * GIB)
    cuda.alloc.free(cuda.alloc.malloc(5 * MIB))  # a cached 20 MiB segment
    assert mem.capacity_bytes() == int(78.25 * GIB)  # free plus what the allocator holds
    with pytest.raises(torch.cuda.OutOfMemoryError) as e:
        cuda.alloc.malloc(60 * GIB)
    assert parse_oom(str(e.value)).ceiling_bytes == pytest.approx(mem.capacity_bytes(), abs=10 * MIB)
    assert mem.alloc_retries() == 1  # it emptied its cache and tried again before giving up
    cuda.alloc.free(held)
