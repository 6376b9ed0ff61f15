"""Sizes bounded before anything is allocated: a model or a batch that cannot fit in the device's
memory by arithmetic alone is refused in one line, instead of climbing through many gigabytes first.

The model is built once on PyTorch's `meta` device (shapes, no storage) while a parameter
registration hook counts what it would hold, and stops the build as soon as the count passes what
the device can hold or MAX_PARAMETER_TENSORS (a model with more is a typo: `depth=1000000`). The
inputs of one example are made on `meta` too, and multiplied by the batch size. Both are lower
bounds of what a step needs (weights and gradients, inputs alone), so only what surely cannot fit
is refused; whatever they cannot judge (a model that does not build on `meta`) is let through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from bench.core.errors import BenchError

# No model bench times has anywhere near this many parameter tensors (a 96-layer GPT has ~1,200).
MAX_PARAMETER_TENSORS = 20_000
BYTES_PER_PARAMETER = 8  # fp32 weight + its gradient: a lower bound of a training step's memory


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class ModelSize:
    """What building the model would hold: parameter tensors and elements (at least, if `stopped`)."""

    tensors: int
    parameters: int
    stopped: bool = False  # the build was stopped early: the true numbers are larger


def device_memory_bytes(device: Any) -> tuple[int | None, str]:
    """(total memory of `device` in bytes, its name in words); None where it cannot be read."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            return int(torch.cuda.get_device_properties(index).total_memory), f"{dev} ({torch.cuda.get_device_name(index)})"
        except Exception:  # noqa: BLE001 - no answer is no bound
            return None, str(dev)
    if dev.type == "cpu":
        total = None
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
        for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                text = open(limit_file).read().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < (total or 2 ** 62):
                total = int(text)
        return total, "this machine's memory"
    return None, str(dev)


def model_size(build: Callable[[], Any], limit_parameters: int | None = None) -> ModelSize | None:
    """Count the parameters `build()` would allocate, building on the meta device; stop early past
    `limit_parameters` elements or MAX_PARAMETER_TENSORS tensors. None if it does not build on meta."""
    import torch
    from torch.nn.modules.module import register_module_parameter_registration_hook

    counts = {"tensors": 0, "parameters": 0}

    def count(module, name, param):
        if param is None:
            return None
        counts["tensors"] += 1
        counts["parameters"] += int(param.numel())
        if counts["tensors"] > MAX_PARAMETER_TENSORS or (limit_parameters is not None
                                                         and counts["parameters"] > limit_parameters):
            raise _TooLarge
        return None

    handle = register_module_parameter_registration_hook(count)
    try:
        with torch.device("meta"):
            build()
    except _TooLarge:
        return ModelSize(counts["tensors"], counts["parameters"], stopped=True)
    except Exception:  # noqa: BLE001 - a model that needs real storage to build: no bound from here
        return None
    finally:
        handle.remove()
    return ModelSize(counts["tensors"], counts["parameters"])


def example_bytes(make: Callable[[], Iterable[Any]]) -> int | None:
    """Bytes of the tensors `make()` returns (one example's inputs and targets), or None if unknown."""
    import torch

    try:
        parts = make()
        total = 0
        for t in parts:
            if not isinstance(t, torch.Tensor):
                return None
            total += t.nelement() * t.element_size()
        return total
    except Exception:  # noqa: BLE001
        return None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:,.1f} GiB" if n < 2 ** 50 else f"{n / 2 ** 50:,.1f} PiB"


def check_model_fits(what: str, build: Callable[[], Any], device: Any, *, hint: str = "") -> ModelSize | None:
    """BenchError, before anything is allocated, if `build()` makes more parameter tensors than
    MAX_PARAMETER_TENSORS, or more parameters than `device` could hold with their gradients."""
    memory, where = device_memory_bytes(device)
    limit = memory // BYTES_PER_PARAMETER if memory else None
    size = model_size(build, limit)
    if size is None or not size.stopped:
        return size
    tail = f" ({hint})" if hint else ""
    if size.tensors > MAX_PARAMETER_TENSORS:
        raise BenchError(f"{what} has more than {MAX_PARAMETER_TENSORS:,} parameter tensors{tail}: "
                         "no model bench times is that large; check its size parameters")
    raise BenchError(f"{what} has more than {size.parameters:,} parameters{tail}: their fp32 weights and gradients "
                     f"alone need over {_gib(size.parameters * BYTES_PER_PARAMETER)}, more than "
                     f"{where} ({_gib(memory)})")


def check_batch_fits(what: str, per_example_bytes: int | None, batch_sizes: Iterable[int], device: Any) -> None:
    """BenchError if the largest of `batch_sizes` needs more bytes for its inputs alone than `device` has."""
    sizes = list(batch_sizes)
    if not per_example_bytes or not sizes:
        return
    memory, where = device_memory_bytes(device)
    if not memory:
        return
    largest = max(sizes)
    need = largest * per_example_bytes
    if need > memory:
        fits = max(1, memory // per_example_bytes)
        raise BenchError(f"batch size {largest:,} cannot fit: the inputs of {what} alone would need "
                         f"{_gib(need)} ({per_example_bytes:,} bytes per example), more than {where} "
                         f"({_gib(memory)}); at most about {fits:,} examples' inputs fit")


def check_workload_fits(workload: Any, device: Any, batch_sizes: Iterable[int] = ()) -> None:
    """Bound a sweep's workload (bench.measure.workloads.Workload) before its first point: the model
    on `device`, and the largest of `batch_sizes` (sizes the user named; the default plan is left to
    find its own out-of-memory boundary)."""
    params = getattr(workload, "params", None) or {}
    hint = ", ".join(f"{k}={v}" for k, v in params.items() if isinstance(v, int) and not isinstance(v, bool))
    check_model_fits(f"workload {workload.name}", workload.build_model, device, hint=hint)
    sizes = list(batch_sizes)
    if sizes:
        import torch

        per_example = example_bytes(lambda: workload.make_batch(1, torch.device("meta")))
        check_batch_fits(f"workload {workload.name}", per_example, sizes, device)


def check_task_fits(task: Any, device: Any, batch_sizes: Iterable[int]) -> None:
    """Bound a training grid before its first run: the task's model on `device`, and the inputs of the
    largest batch (measured from one example of the task's own batch stream)."""
    check_model_fits(f"task {task.name}", task.build_model, device)
    per_example = example_bytes(lambda: next(task.batch_stream(1, 0)))
    check_batch_fits(f"task {task.name}", per_example, batch_sizes, device)
