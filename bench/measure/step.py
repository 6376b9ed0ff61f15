"""One training step of a workload at a batch size, with a precision, optimizer, memory format and compile.

The step is what the timers time: it never synchronises with the host, and reuses one synthetic batch
so that step time excludes data loading.
"""

from __future__ import annotations

import gc
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from bench.core.devices import is_oom
from bench.core.errors import BenchError
from bench.core.vocabulary import PRECISIONS, STEP_OPTIMIZERS
from bench.measure.optim import implementation, make_optimizer
from bench.measure.workloads import Workload

OPTIMIZERS = STEP_OPTIMIZERS  # the sweep's step uses the optimizers with fused CUDA kernels

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# torch CPU builds whose oneDNN channels_last convolution backward corrupts the heap on some CPUs
# ("double free or corruption", SIGABRT; seen with torch 2.13.0+cpu and one thread): the process
# dies without a results file, so such a step is refused before it runs.
CPU_CHANNELS_LAST_CRASHES = ("2.13.",)
ALLOW_CPU_CHANNELS_LAST_ENV = "BENCH_ALLOW_CPU_CHANNELS_LAST"


def cpu_channels_last_problem(torch_version: str | None = None, environ=None) -> str | None:
    """Why channels_last must not run on this torch CPU build, or None when it may."""
    import os

    version = torch.__version__ if torch_version is None else torch_version
    env = os.environ if environ is None else environ
    if env.get(ALLOW_CPU_CHANNELS_LAST_ENV) == "1":
        return None
    if any(version.startswith(v) for v in CPU_CHANNELS_LAST_CRASHES):
        return (f"channels_last on the CPU is refused with torch {version}: its oneDNN convolution backward "
                f"corrupts the heap and kills the process on some CPUs; use a CUDA device or another torch "
                f"build (or set {ALLOW_CPU_CHANNELS_LAST_ENV}=1 where it is known not to crash)")
    return None


@dataclass(frozen=True)
class StepOptions:
    """How the step runs, apart from the workload and batch size."""

    precision: str = "fp32"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True  # let cuDNN autotune convolutions on CUDA (warm-up absorbs the tuning)

    def to_dict(self) -> dict:
        return asdict(self)


def check_options(options: StepOptions, device: torch.device | str) -> None:
    """Raise BenchError when the options are unknown or the device cannot run them."""
    device = torch.device(device)
    if options.precision not in PRECISIONS:
        raise BenchError(f"unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if options.optimizer not in OPTIMIZERS:
        raise BenchError(f"unknown optimizer {options.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not options.lr > 0:
        raise BenchError(f"learning rate must be positive, got {options.lr}")
    if options.momentum < 0 or options.weight_decay < 0:
        raise BenchError("momentum and weight decay must not be negative")
    if options.precision == "fp16" and device.type != "cuda":
        raise BenchError(
            f"fp16 training needs a CUDA device (no fast fp16 training path on {device.type}); use bf16 or fp32"
        )
    if options.precision == "tf32":
        if device.type != "cuda":
            raise BenchError(f"tf32 needs a CUDA device with compute capability 8.0 or later, not {device.type}")
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise BenchError(
                f"tf32 needs compute capability 8.0 or later; this GPU has {major}.{minor}: use fp32"
            )
    if options.channels_last and device.type == "cpu":
        problem = cpu_channels_last_problem()
        if problem:
            raise BenchError(problem)
    if options.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BenchError("bf16 is not supported on this GPU; use fp16 or fp32")


class Tf32Switches:
    """Pins the CUDA matmul and cuDNN TF32 switches and puts back what was there before.

    PyTorch has two APIs for these switches and refuses to read the old one after the new one was
    used, so each switch is read and written through whichever API reads cleanly.
    """

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] | None = None

    @staticmethod
    def _switches() -> list[tuple[Any, Any]]:
        # (legacy holder with allow_tf32, holder with fp32_precision in the newer API)
        return [
            (torch.backends.cuda.matmul, torch.backends.cuda.matmul),
            (torch.backends.cudnn, getattr(torch.backends.cudnn, "conv", None)),
        ]

    def set(self, enabled: bool) -> None:
        saved = []
        for legacy, new in self._switches():
            try:
                previous = legacy.allow_tf32
            except RuntimeError:  # the newer API is in use
                if new is None:
                    raise
                saved.append((new, "fp32_precision", new.fp32_precision))
                new.fp32_precision = "tf32" if enabled else "ieee"
            else:
                saved.append((legacy, "allow_tf32", previous))
                legacy.allow_tf32 = enabled
        if self._saved is None:
            self._saved = saved

    def restore(self) -> None:
        if self._saved is None:
            return
        for holder, attr, value in reversed(self._saved):
            setattr(holder, attr, value)
        self._saved = None


class ScaleDropCounter:
    """Counts the steps the GradScaler skipped, without a host sync per step.

    A skipped step (inf/nan gradients) lowers the loss scale, and nothing else does (growth only
    raises it), so comparing the scale after each update with the one before counts skips. The
    comparison and the running count stay on the device; only `count` synchronises.
    """

    def __init__(self, initial_scale: float, device: torch.device | str):
        self._previous = torch.full((), float(initial_scale), dtype=torch.float32, device=device)
        self._drops = torch.zeros((), dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Count from zero again (no sync: the counter stays on the device)."""
        self._drops.zero_()

    def observe(self, scale: torch.Tensor) -> None:
        scale = scale.reshape(())
        self._drops += scale < self._previous
        self._previous.copy_(scale)

    @property
    def count(self) -> int:
        return int(self._drops.item())


class TrainStep:
    """A model, optimizer and batch on a device; calling it runs one training step."""

    def __init__(
        self,
        workload: Workload,
        batch_size: int,
        device: torch.device | str,
        options: StepOptions = StepOptions(),
        seed: int = 0,
    ):
        self.workload = workload
        self.device = torch.device(device)
        self.options = options
        self.batch_size = int(batch_size)
        self.model: Callable[..., Any] | None = None
        self.module: nn.Module | None = None
        self.wrapped: nn.Module | None = None  # the module in a wrapper (wrap_model), e.g. DDP
        self.sync_gradients = True  # False: a wrapper's gradient all-reduce is skipped (gradient_sync)
        self.optimizer: torch.optim.Optimizer | None = None
        self.batch: tuple | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.optimizer_impl: str | None = None
        self._scale_drops: ScaleDropCounter | None = None
        self._last_loss: torch.Tensor | None = None
        self._tf32 = Tf32Switches()
        self._saved_cudnn_benchmark: bool | None = None

        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BenchError(f"device {self.device} was asked for, but CUDA is not available here")
        if options.channels_last and not workload.image_input:
            raise BenchError(
                f"channels_last applies to image workloads (4-D inputs); {workload.name} is not one"
            )
        check_options(options, self.device)
        if self.batch_size < 1:
            raise BenchError(f"batch size must be at least 1, got {batch_size}")
        try:
            self._build(seed)
        except BaseException:
            self.release()  # a half-built step (e.g. OOM moving the model) must not hold memory
            raise

    def _build(self, seed: int) -> None:
        options, device = self.options, self.device
        if options.precision in ("fp32", "tf32"):
            # cuDNN allows TF32 by default, so "fp32" pins it off to mean IEEE fp32 everywhere.
            self._tf32.set(options.precision == "tf32")
        if device.type == "cuda":
            # Set per step, and put back on release, so probes and measurements share one setting.
            self._saved_cudnn_benchmark = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = options.cudnn_benchmark
        torch.manual_seed(seed)
        module = self.workload.build_model()
        if not isinstance(module, nn.Module):
            raise BenchError(
                f"workload {self.workload.name}: build_model returned {type(module).__name__}, not an nn.Module"
            )
        module = module.to(device)
        if options.channels_last:
            module = module.to(memory_format=torch.channels_last)
        module.train()
        self.module = module

        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise BenchError(f"workload {self.workload.name}: the model has no trainable parameters")
        self.optimizer = make_optimizer(options.optimizer, module, options.lr, momentum=options.momentum,
                                        weight_decay=options.weight_decay, device=device)
        self.optimizer_impl = implementation(self.optimizer)

        batch = self.workload.make_batch(self.batch_size, device)
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise BenchError(f"workload {self.workload.name}: make_batch must return (inputs, targets)")
        inputs, targets = batch
        if options.channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.batch = (inputs, targets)

        if options.compile:
            # Every step builds a new module of the same class, and dynamo's cache is keyed on the
            # forward code: without a reset the second batch size would get a dynamic-shape graph
            # and, past the recompile limit, silently run eager. Each step compiles afresh, static.
            torch._dynamo.reset()
            self.model = torch.compile(module, dynamic=False)
        else:
            self.model = module

        if options.precision == "fp16":
            self.scaler = torch.amp.GradScaler(device.type)
            self._scale_drops = ScaleDropCounter(self.scaler.get_scale(), device)

    def __call__(self) -> None:
        """One training step: zero grads, forward (autocast), loss, backward, optimizer step."""
        try:
            self._step()
        except Exception as e:
            if is_oom(e):
                # The traceback's frames hold activations and the autograd graph; clearing them lets
                # release() free that memory even while the caller still holds the exception.
                traceback.clear_frames(e.__traceback__)
            raise

    def wrap_model(self, wrapper: Callable[[nn.Module], nn.Module]) -> None:
        """Put the built model in `wrapper` (e.g. DistributedDataParallel) before the first step;
        with `compile`, the wrapped model is what is compiled."""
        wrapped = wrapper(self.module)
        self.wrapped = wrapped
        if self.options.compile:
            torch._dynamo.reset()
            self.model = torch.compile(wrapped, dynamic=False)
        else:
            self.model = wrapped

    @contextmanager
    def eager(self):
        """Steps run inside use the model before `torch.compile` (the same module, so the same
        weights): what FlopCounterMode can count, and no recompilation after the timed steps."""
        before = self.model
        self.model = getattr(self, "wrapped", None) or self.module
        try:
            yield self
        finally:
            self.model = before

    @contextmanager
    def gradient_sync(self, enabled: bool):
        """Steps run inside skip the wrapper's gradient all-reduce (DDP's `no_sync`) when `enabled`
        is False. Without a wrapper that has `no_sync` nothing changes."""
        before = self.sync_gradients
        self.sync_gradients = bool(enabled)
        try:
            yield self
        finally:
            self.sync_gradients = before

    def _step(self) -> None:
        # Deliberately no .item()/.cpu()/printing here: the timer relies on no host sync in the step.
        model, optimizer, loss_fn = self.model, self.optimizer, self.workload.loss_fn
        inputs, targets = self.batch
        optimizer.zero_grad(set_to_none=True)
        precision = self.options.precision
        scaler = self.scaler
        no_sync = None if self.sync_gradients else getattr(self.wrapped, "no_sync", None)
        with no_sync() if no_sync is not None else nullcontext():  # forward and backward, as DDP asks
            if precision in _AUTOCAST_DTYPES:
                with torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[precision]):
                    loss = loss_fn(_forward(model, inputs), targets)
            else:
                loss = loss_fn(_forward(model, inputs), targets)
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
            self._scale_drops.observe(scaler._scale)
        self._last_loss = loss.detach()

    @property
    def skipped_steps(self) -> int | None:
        """fp16: steps the GradScaler skipped since the last `reset_skipped_steps` (syncs); None for
        other precisions."""
        if self._scale_drops is None:
            return None
        return self._scale_drops.count

    def reset_skipped_steps(self) -> None:
        """Count skipped steps from now on (e.g. after warm-up, whose first fp16 steps are typically
        skipped while the loss scale settles); no host sync."""
        if self._scale_drops is not None:
            self._scale_drops.reset()

    def last_loss(self) -> float | None:
        """The loss of the latest step (syncs: for tests and diagnostics, never in timed code)."""
        return None if self._last_loss is None else float(self._last_loss.float().item())

    def release(self) -> None:
        """Drop the model, optimizer and batch, restore the TF32 switches, and free cached memory."""
        self.model = self.module = self.wrapped = self.optimizer = self.batch = self.scaler = None
        self._scale_drops = None
        self._last_loss = None
        self._tf32.restore()
        if self._saved_cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self._saved_cudnn_benchmark
            self._saved_cudnn_benchmark = None
        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> "TrainStep":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _forward(model: Callable[..., Any], inputs: Any) -> Any:
    # A dict is passed as keyword arguments and a tuple/list as positional ones (multi-input models).
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)
