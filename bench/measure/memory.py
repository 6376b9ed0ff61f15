"""The caching allocator's memory statistics for one device: peaks, allocation retries, capacity.

CUDA's caching allocator keeps peak allocated/reserved bytes (resettable) and a count of allocations
it retried after freeing its cache (`num_alloc_retries`); `torch.cuda.mem_get_info` says how much the
device holds. Other devices have none of these: `AllocatorMemory` is then the null object whose every
reading is None, with the reason.
"""

from __future__ import annotations

from typing import Any

from bench.core.devices import device_type


class AllocatorMemory:
    """No allocator statistics on this device: every reading is None and `reason` says why."""

    available = False

    def __init__(self, reason: str):
        self.reason = reason

    def reset_peaks(self) -> None:
        """Start the peak statistics afresh from what is allocated now."""

    def peaks(self) -> tuple[int | None, int | None]:
        """(peak allocated bytes, peak reserved bytes) since the last reset."""
        return None, None

    def alloc_retries(self) -> int | None:
        """Allocations the allocator retried after freeing its cache, since the process started."""
        return None

    def capacity_bytes(self) -> int | None:
        """What this process's allocator could reserve now: the device's free memory plus what the
        allocator already holds (None when not known)."""
        return None


class CudaAllocatorMemory(AllocatorMemory):
    """CUDA's caching allocator through `torch.cuda` (`cuda`: the namespace; tests pass a fake one)."""

    available = True

    def __init__(self, device: Any, cuda: Any = None):
        super().__init__(reason=None)
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.cuda = cuda
        self.device = device

    def reset_peaks(self) -> None:
        # The allocator's bookkeeping is host-side, but a reset between queued steps would split them.
        self.cuda.synchronize(self.device)
        self.cuda.reset_peak_memory_stats(self.device)

    def peaks(self) -> tuple[int | None, int | None]:
        return int(self.cuda.max_memory_allocated(self.device)), int(self.cuda.max_memory_reserved(self.device))

    def alloc_retries(self) -> int | None:
        value = self.cuda.memory_stats(self.device).get("num_alloc_retries")
        return None if value is None else int(value)

    def capacity_bytes(self) -> int | None:
        try:
            free, _total = self.cuda.mem_get_info(self.device)
            return int(free) + int(self.cuda.memory_reserved(self.device))
        except Exception:  # noqa: BLE001 - no driver answer: the search falls back to bisection
            return None


def allocator_memory(device: Any, cuda: Any = None) -> AllocatorMemory:
    """The allocator statistics of `device`: CUDA's, or the null object saying why there are none."""
    kind = device_type(device)
    if kind == "cuda":
        return CudaAllocatorMemory(device, cuda)
    return AllocatorMemory(f"allocator peak statistics exist only on CUDA devices (this point ran on {kind})")
