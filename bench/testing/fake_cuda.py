"""A card-like stand-in for `torch.cuda`, so GPU paths run in CPU tests as hard as a card would make them.

- `FakeCachingAllocator`: PyTorch's caching allocator in miniature (c10/cuda/CUDACachingAllocator.cpp):
  requests rounded up to 512-byte blocks, a small pool of 2 MiB segments for requests up to 1 MiB,
  20 MiB segments for requests under 10 MiB, larger ones rounded up to 2 MiB; best-fit reuse of
  cached blocks, splitting and merging inside a segment (so fragmentation), freeing cached segments and
  retrying before giving up, and an out-of-memory error with torch's text, raised as
  `torch.cuda.OutOfMemoryError`. Memory outside the allocator (CUDA context, library workspaces)
  comes off the top, so it runs out before the nominal capacity, as a card does.
- `FakeDevice`: an asynchronous device: a host clock that pays a launch overhead per kernel, a FIFO
  queue of kernels on the device, and events stamped with the device's time when the queue reaches
  them; `synchronize` makes the host wait for the queue.
- `FakeCuda`: the namespace the code under test takes as `cuda=` (Event, device, synchronize,
  memory statistics, mem_get_info, sync debug mode).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import torch

KIB, MIB, GIB = 1024, 1024**2, 1024**3

# The caching allocator's constants (CUDACachingAllocator.h).
MIN_BLOCK_SIZE = 512  # every request is rounded up to a multiple of this
SMALL_SIZE = 1 * MIB  # largest request served from the small pool
SMALL_BUFFER = 2 * MIB  # small-pool segment
MIN_LARGE_ALLOC = 10 * MIB  # requests under this (and over SMALL_SIZE) get a LARGE_BUFFER segment
LARGE_BUFFER = 20 * MIB
ROUND_LARGE = 2 * MIB  # larger requests: a segment of their size rounded up to this

CUDA_CONTEXT_BYTES = 500 * MIB  # a CUDA context on a recent driver, before any library is loaded


def round_size(n: int) -> int:
    """A request's block size: at least 512 bytes, rounded up to a multiple of 512."""
    return MIN_BLOCK_SIZE if n < MIN_BLOCK_SIZE else MIN_BLOCK_SIZE * math.ceil(n / MIN_BLOCK_SIZE)


def segment_size(n: int) -> int:
    """The size of the segment cudaMalloc'd for a request of `n` (rounded) bytes."""
    if n <= SMALL_SIZE:
        return SMALL_BUFFER
    if n < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * math.ceil(n / ROUND_LARGE)


def format_size(n: int) -> str:
    """c10's format_size: bytes up to 1 KiB, then KiB, MiB, GiB with two decimals."""
    if n <= 1024:
        return f"{n} bytes"
    if n <= MIB:
        return f"{n / KIB:.2f} KiB"
    if n <= GIB:
        return f"{n / MIB:.2f} MiB"
    return f"{n / GIB:.2f} GiB"


@dataclass
class _Block:
    segment: "_Segment"
    offset: int
    size: int
    allocated: bool = False


@dataclass
class _Segment:
    size: int
    small: bool
    blocks: list = field(default_factory=list)

    def empty(self) -> bool:
        return len(self.blocks) == 1 and not self.blocks[0].allocated


class FakeCachingAllocator:
    """One device's caching allocator. `total_bytes`: the card's capacity (what torch reports as
    total); `outside_bytes`: memory the allocator cannot have (context, cuBLAS/cuDNN workspaces,
    other processes). `malloc(n)` returns a handle for `free`; it raises torch.cuda.OutOfMemoryError
    with torch's message when even an emptied cache leaves too little."""

    def __init__(self, total_bytes: int, outside_bytes: int = CUDA_CONTEXT_BYTES, device_index: int = 0):
        if outside_bytes >= total_bytes:
            raise ValueError("memory outside the allocator must be less than the card's capacity")
        self.total_bytes, self.outside_bytes, self.device_index = int(total_bytes), int(outside_bytes), device_index
        self.segments: list[_Segment] = []
        self.allocated = self.reserved = 0
        self.peak_allocated = self.peak_reserved = 0
        self.alloc_retries = 0
        self.ooms = 0

    # ------------------------------------------------------------------ what the device says
    def free_bytes(self) -> int:
        """cudaMemGetInfo's free: the capacity less the allocator's segments and everything outside it."""
        return self.total_bytes - self.outside_bytes - self.reserved

    def mem_get_info(self) -> tuple[int, int]:
        return self.free_bytes(), self.total_bytes

    # ------------------------------------------------------------------ allocate and free
    def malloc(self, nbytes: int) -> _Block:
        size = round_size(int(nbytes))
        small = size <= SMALL_SIZE
        block = self._best_fit(size, small)
        if block is None:
            block = self._new_segment(size, small, nbytes)
        self._split(block, size)
        block.allocated = True
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def free(self, block: _Block) -> None:
        if not block.allocated:
            raise ValueError("block freed twice")
        block.allocated = False
        self.allocated -= block.size
        blocks = block.segment.blocks
        i = blocks.index(block)
        if i + 1 < len(blocks) and not blocks[i + 1].allocated:  # merge with the free block after
            block.size += blocks.pop(i + 1).size
        if i > 0 and not blocks[i - 1].allocated:  # and the one before
            blocks[i - 1].size += blocks.pop(i).size

    def empty_cache(self) -> None:
        """torch.cuda.empty_cache: give every wholly free segment back to the device."""
        keep = [s for s in self.segments if not s.empty()]
        self.reserved -= sum(s.size for s in self.segments if s.empty())
        self.segments = keep

    def _best_fit(self, size: int, small: bool) -> _Block | None:
        best = None
        for seg in self.segments:
            if seg.small != small:
                continue
            for b in seg.blocks:
                if not b.allocated and b.size >= size and (best is None or b.size < best.size):
                    best = b
        return best

    def _split(self, block: _Block, size: int) -> None:
        rest = block.size - size
        # The small pool splits off any remainder; the large pool only one over SMALL_SIZE (the rest
        # stays inside the block: allocated but unused, as on a card).
        if (block.segment.small and rest >= MIN_BLOCK_SIZE) or (not block.segment.small and rest > SMALL_SIZE):
            blocks = block.segment.blocks
            blocks.insert(blocks.index(block) + 1, _Block(block.segment, block.offset + size, rest))
            block.size = size

    def _new_segment(self, size: int, small: bool, requested: int) -> _Block:
        seg_bytes = segment_size(size)
        if seg_bytes > self.free_bytes():
            self.alloc_retries += 1
            self.empty_cache()  # free cached segments and try again, as the allocator does
            if seg_bytes > self.free_bytes():
                self.ooms += 1
                raise torch.cuda.OutOfMemoryError(self.oom_message(size))
        seg = _Segment(seg_bytes, small)
        seg.blocks.append(_Block(seg, 0, seg_bytes))
        self.segments.append(seg)
        self.reserved += seg_bytes
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return seg.blocks[0]

    def oom_message(self, size: int) -> str:
        """torch's message (CUDACachingAllocator.cpp, malloc), for a request of `size` bytes now."""
        in_use = self.total_bytes - self.free_bytes()
        return (f"CUDA out of memory. Tried to allocate {format_size(size)}. GPU {self.device_index} has a total "
                f"capacity of {format_size(self.total_bytes)} of which {format_size(self.free_bytes())} is free. "
                f"Including non-PyTorch memory, this process has {format_size(in_use)} memory in use. Of the "
                f"allocated memory {format_size(self.allocated)} is allocated by PyTorch, and "
                f"{format_size(self.reserved - self.allocated)} is reserved by PyTorch but unallocated. If reserved "
                "but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to "
                "avoid fragmentation.  See documentation for Memory Management  "
                "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")

    def reset_peaks(self) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def memory_stats(self) -> dict:
        return {"allocated_bytes.all.current": self.allocated, "reserved_bytes.all.current": self.reserved,
                "allocated_bytes.all.peak": self.peak_allocated, "reserved_bytes.all.peak": self.peak_reserved,
                "num_alloc_retries": self.alloc_retries, "num_ooms": self.ooms}


# ---------------------------------------------------------------------------------- a training step


@dataclass
class FakeConvNet:
    """A training step's memory as a card sees it: weights, gradients and optimizer state that stay,
    activations saved layer by layer in the forward pass and freed in the backward, and a cuDNN
    autotuning workspace tried once (soft: near the limit the algorithms that want it are dropped,
    as cuDNN's benchmark mode does, so it never makes a step fail).

    `per_sample_bytes` is split over `layers` saved activations and one gradient (each rounded by the
    allocator)."""

    state_bytes: int = 400 * MIB
    per_sample_bytes: float = 47.95 * MIB
    layers: int = 24
    autotune_workspace_bytes: int = 0

    def step(self, alloc: FakeCachingAllocator, batch_size: int, *, autotune: bool) -> int:
        """One step on `alloc` (state already resident); returns the workspace autotuning got."""
        got = 0
        # Activations differ in size from layer to layer (as a network's stages do), so the allocator's
        # rounding does not add up in step; each layer also keeps a small tensor (normalisation statistics).
        shares = [1.0 + 0.37 * (i % 5) + 0.11 * (i % 3) for i in range(self.layers + 1)]
        total = sum(shares)
        saved = []
        try:
            for share in shares[:-1]:
                saved.append(alloc.malloc(int(self.per_sample_bytes * batch_size * share / total)))
                saved.append(alloc.malloc(4 * KIB * (1 + len(saved) % 7)))
            # the backward pass's first input gradient
            saved.append(alloc.malloc(int(self.per_sample_bytes * batch_size * shares[-1] / total)))
            # cuDNN's benchmark mode tries its algorithms in the backward, every activation alive.
            if autotune and self.autotune_workspace_bytes:
                try:
                    ws = alloc.malloc(self.autotune_workspace_bytes)
                    got = ws.size
                    alloc.free(ws)
                except torch.cuda.OutOfMemoryError:
                    got = 0  # the workspace-hungry algorithms are skipped
        finally:
            for b in reversed(saved):
                alloc.free(b)
        return got


def probe_on_card(card_bytes: int, outside_bytes: int, net: FakeConvNet, batch_size: int, steps: int = 2):
    """A fresh process on a fake card runs `steps` steps at `batch_size` (autotuning in the first);
    returns (fits, steady-state peak reserved bytes or None, error text or None, warm-up peak)."""
    alloc = FakeCachingAllocator(card_bytes, outside_bytes)
    try:
        state = alloc.malloc(net.state_bytes)
        net.step(alloc, batch_size, autotune=True)
        warm_peak = alloc.peak_reserved
        alloc.empty_cache()  # the autotuning workspace's cached segment would hide the steady peak
        alloc.reset_peaks()
        for _ in range(steps - 1):
            net.step(alloc, batch_size, autotune=False)
        alloc.free(state)
    except torch.cuda.OutOfMemoryError as e:
        return False, None, f"OutOfMemoryError: {e}", None
    return True, alloc.peak_reserved, None, warm_peak


# ---------------------------------------------------------------------------------- an asynchronous device


class FakeDevice:
    """Host and device clocks (seconds). `launch(duration_s)` costs the host `launch_overhead_s` and
    queues a kernel that starts when the device is free and the launch has arrived; events take the
    device time at which the queue reaches them. Nothing here sleeps."""

    def __init__(self, launch_overhead_s: float = 5e-6, launch_latency_s: float = 2e-6):
        self.host_s = 0.0
        self.device_free_at_s = 0.0
        self.launch_overhead_s, self.launch_latency_s = launch_overhead_s, launch_latency_s
        self.launches = 0
        self.idle_s = 0.0  # time the device sat with an empty queue between kernels
        self.host_syncs = 0
        self.sync_debug_mode = 0

    def host_work(self, seconds: float) -> None:
        self.host_s += seconds

    def launch(self, duration_s: float) -> None:
        self.host_s += self.launch_overhead_s
        start = max(self.device_free_at_s, self.host_s + self.launch_latency_s)
        if self.launches:
            self.idle_s += start - self.device_free_at_s
        self.device_free_at_s = start + duration_s
        self.launches += 1

    def stamp(self) -> float:
        """Where an event recorded now lands: after the queued work, or when the host records it."""
        t = max(self.device_free_at_s, self.host_s + self.launch_latency_s)
        if self.launches:
            self.idle_s += t - self.device_free_at_s
        self.device_free_at_s = t
        return t

    def synchronize(self) -> None:
        self.host_s = max(self.host_s, self.device_free_at_s)

    def item(self) -> None:
        """A value read back to the host (`.item()`): a hidden synchronisation."""
        if self.sync_debug_mode == 1:
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=2)
        self.host_syncs += 1
        self.synchronize()

    def clock(self) -> float:
        """The host's clock, for a HostTimer."""
        return self.host_s


class FakeEvent:
    def __init__(self, dev: FakeDevice, enable_timing: bool = False):
        self.dev, self.enable_timing = dev, enable_timing
        self.t_s: float | None = None
        self.records = 0

    def record(self, stream=None) -> None:
        self.t_s = self.dev.stamp()
        self.records += 1

    def synchronize(self) -> None:
        if self.t_s is None:
            raise RuntimeError("event synchronized before it was recorded")
        self.dev.host_s = max(self.dev.host_s, self.t_s)

    def query(self) -> bool:
        return self.t_s is not None and self.dev.host_s >= self.t_s

    def elapsed_time(self, end: "FakeEvent") -> float:
        """Milliseconds between this event and `end`, as torch.cuda.Event.elapsed_time."""
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
        if self.t_s is None or end.t_s is None or self.dev.host_s < end.t_s:
            raise RuntimeError("Both events must be recorded and completed before calculating elapsed time")
        return (end.t_s - self.t_s) * 1e3


class FakeCuda:
    """The parts of `torch.cuda` the timers, the memory statistics and the sync check use, over one
    FakeDevice and one FakeCachingAllocator."""

    OutOfMemoryError = torch.cuda.OutOfMemoryError

    def __init__(self, dev: FakeDevice | None = None, alloc: FakeCachingAllocator | None = None):
        self.dev = dev or FakeDevice()
        self.alloc = alloc or FakeCachingAllocator(80 * GIB)
        self.events: list[FakeEvent] = []

    def Event(self, enable_timing: bool = False) -> FakeEvent:  # noqa: N802 - torch's name
        e = FakeEvent(self.dev, enable_timing)
        self.events.append(e)
        return e

    @contextlib.contextmanager
    def device(self, device=None):
        yield

    def is_available(self) -> bool:
        return True

    def synchronize(self, device=None) -> None:
        self.dev.synchronize()

    def get_sync_debug_mode(self) -> int:
        return self.dev.sync_debug_mode

    def set_sync_debug_mode(self, mode) -> None:
        self.dev.sync_debug_mode = {"default": 0, "warn": 1, "error": 2}.get(mode, mode)

    def mem_get_info(self, device=None) -> tuple[int, int]:
        return self.alloc.mem_get_info()

    def memory_allocated(self, device=None) -> int:
        return self.alloc.allocated

    def memory_reserved(self, device=None) -> int:
        return self.alloc.reserved

    def max_memory_allocated(self, device=None) -> int:
        return self.alloc.peak_allocated

    def max_memory_reserved(self, device=None) -> int:
        return self.alloc.peak_reserved

    def reset_peak_memory_stats(self, device=None) -> None:
        self.alloc.reset_peaks()

    def memory_stats(self, device=None) -> dict:
        return self.alloc.memory_stats()

    def empty_cache(self) -> None:
        self.alloc.empty_cache()
