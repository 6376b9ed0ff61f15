"""Devices: resolve a name to a torch device with one-line errors, wait for queued work, free memory,
and tell an out-of-memory failure from any other."""

from __future__ import annotations

import gc
from typing import Any, Callable

from bench.core.errors import BenchError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(name: Any = None, *, allowed: tuple[str, ...] = DEVICE_TYPES):
    """A torch.device for `name` ("cpu", "cuda", "cuda:1", a torch.device); None means CUDA when
    present, else the CPU. Raises BenchError for an unknown, absent or unsupported device."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise BenchError(f"unknown device {name!r} (try {' or '.join(allowed)})") from None
    if device.type not in allowed:
        raise BenchError(f"device type {device.type!r} is not supported here ({', '.join(allowed)})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device {str(name)!r} asked for, but CUDA is not available here (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"device {str(name)!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BenchError(f"device {str(name)!r} asked for, but MPS is not available here")
    return device


def device_type(device: Any) -> str:
    """'cuda' for torch.device('cuda:1') or the string 'cuda:1'."""
    return getattr(device, "type", None) or str(device).split(":")[0]


def synchronizer(device: Any) -> Callable[[], None] | None:
    """What makes the host wait for the device's queued work; None on the CPU, where a step has
    finished its work when it returns."""
    import torch

    kind = device_type(device)
    if kind == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if kind == "mps":
        return torch.mps.synchronize
    return None


def free_memory(device: Any) -> None:
    """Collect garbage and hand cached CUDA blocks back, so the next point starts from a clean allocator."""
    gc.collect()
    if device_type(device) == "cuda":
        import torch

        torch.cuda.empty_cache()


# Lower-cased pieces of the messages that mean "a device or host allocation failed". cuBLAS, cuDNN,
# cuFFT, cuSOLVER and cuSPARSE report a failed workspace allocation near the memory limit with their
# own statuses: CUBLAS_STATUS_ALLOC_FAILED, cuDNN 8's CUDNN_STATUS_ALLOC_FAILED / NOT_ALLOCATED, cuDNN
# 9's CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED (and _HOST_ALLOCATION_FAILED), CUFFT_ALLOC_FAILED.
OOM_MARKERS = ("out of memory", "can't allocate memory", "alloc_failed", "allocation_failed",
               "cudnn_status_not_allocated", "cudaerrormemoryallocation", "hiperroroutofmemory")
CUDA_ERROR_MEMORY_ALLOCATION = 2  # cudaErrorMemoryAllocation (and hipErrorOutOfMemory): AcceleratorError.error_code


def is_oom(exc: BaseException) -> bool:
    """An allocation failure, not any other error: CUDA's OutOfMemoryError; a torch.AcceleratorError
    carrying cudaErrorMemoryAllocation; or a RuntimeError whose message is an allocator's or a CUDA
    library's out-of-memory status (OOM_MARKERS)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        if getattr(exc, "error_code", None) == CUDA_ERROR_MEMORY_ALLOCATION:
            return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in msg for m in OOM_MARKERS)
