"""Train a task at one batch size (one run -> one Curve), and run a grid of batch sizes x LRs x seeds.

A grid's results file is rewritten atomically after each completed run; resuming skips the runs
already in it. The runner measures and returns data; showing it is the command's job.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

import torch

from bench.core.devices import is_oom, resolve_device
from bench.core.errors import BenchError
from bench.core.numbers import is_number
from bench.core.params import one_line
from bench.core.vocabulary import TRAINING_PRECISIONS
from bench.measure.optim import OPTIMIZERS, make_optimizer, set_lr
from bench.measure.tasks import Task
from bench.measure.telemetry.fingerprint import fingerprint
from bench.records.curves import (
    Curve,
    CurvePoint,
    CurvesFile,
    load_curves_file,
    save_curves_file,
)
from bench.run.bounds import check_task_fits
from bench.run.runner import Identity, Resumable
from bench.run.train.lr import (
    LR_RULES,
    LRSchedule,
    lr_grid,
    scaled_lr,
    warmup_steps_from_epochs,
)

PRECISIONS = TRAINING_PRECISIONS
DIVERGENCE_REFERENCE_STEPS = 10
ProgressFn = Callable[[str, dict], None]


@dataclass(frozen=True)
class RunSpec:
    """Identity of one training run: what is trained, at which batch size, LR and seed."""

    task: str
    batch_size: int
    lr: float
    seed: int = 0
    lr_rule: str = "constant"
    base_lr: float | None = None
    base_batch_size: int | None = None
    lr_factor: float = 1.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0
    precision: str = "fp32"
    trust_coefficient: float = 0.001  # LARS only (the paper's η)

    @property
    def key(self) -> str:
        opt = f"{self.optimizer}-tc{self.trust_coefficient:g}" if self.optimizer == "lars" else self.optimizer
        # The start factor matters only with a warm-up; left out at its default so older keys still match.
        wu = f"wu{self.warmup_steps}"
        if self.warmup_steps and self.warmup_start_factor:
            wu += f"s{self.warmup_start_factor:g}"
        return (f"{self.task}/bs{self.batch_size}/lr{self.lr:.6g}/seed{self.seed}/{opt}"
                f"/m{self.momentum:g}/wd{self.weight_decay:g}/{wu}/{self.precision}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunConfig:
    """When to evaluate and when to stop; shared by every run of a grid.

    The run stops at the first evaluation at or past `target` (or `continue_after_target` times the
    steps that took, further), at `max_steps`, once `max_time_s` of wall time has passed, or as
    diverged when the training loss is not finite or, after the first DIVERGENCE_REFERENCE_STEPS
    steps, its mean over an evaluation interval exceeds `divergence_factor` times the largest |loss|
    of those first steps (a noisy loss near zero at step 1 must not count as a scale).
    """

    target: float | None
    max_steps: int
    eval_every: int = 10
    max_time_s: float | None = None
    continue_after_target: float = 0.0
    divergence_factor: float = 10.0
    device: str = "cpu"

    def validate(self) -> None:
        if not _whole(self.max_steps) or self.max_steps < 1:
            raise BenchError(f"max steps must be a whole number >= 1, got {self.max_steps!r}")
        if not _whole(self.eval_every) or self.eval_every < 1:
            raise BenchError(f"evaluation interval must be a whole number >= 1 of steps, got {self.eval_every!r}")
        if self.max_time_s is not None and not (self.max_time_s > 0 and math.isfinite(self.max_time_s)):
            raise BenchError(f"time budget must be a finite number > 0 of seconds, got {self.max_time_s}")
        if not self.divergence_factor > 1:
            raise BenchError(f"divergence factor must be > 1, got {self.divergence_factor}")
        if not (self.continue_after_target >= 0 and math.isfinite(self.continue_after_target)):
            raise BenchError(f"continue-after-target fraction must be a finite number >= 0, got {self.continue_after_target}")
        if self.target is not None and not math.isfinite(self.target):
            raise BenchError(f"target must be a finite number, got {self.target}")

    def to_dict(self) -> dict:
        return asdict(self)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_spec(spec: RunSpec) -> None:
    if spec.batch_size < 1:
        raise BenchError(f"batch size must be >= 1, got {spec.batch_size}")
    if spec.optimizer not in OPTIMIZERS:
        raise BenchError(f"unknown optimizer {spec.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if spec.precision not in PRECISIONS:
        raise BenchError(f"unknown precision {spec.precision!r} for training runs; choose one of {', '.join(PRECISIONS)}")
    if not (spec.lr >= 0 and math.isfinite(spec.lr)):
        raise BenchError(f"learning rate must be a finite number >= 0, got {spec.lr}")


def train_run(task: Task, spec: RunSpec, config: RunConfig) -> Curve:
    """Train `task` as `spec` says; return its curve (evaluations at step 0 and every eval_every steps)."""
    _check_spec(spec)
    config.validate()
    device = resolve_device(config.device)
    torch.manual_seed(spec.seed)  # the same seed gives the same initial weights at every batch size
    model = task.build_model().to(device)
    model.train()
    opt = make_optimizer(spec.optimizer, model, spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                         trust_coefficient=spec.trust_coefficient)
    schedule = LRSchedule(spec.lr, spec.warmup_steps, spec.warmup_start_factor)
    stream = task.batch_stream(spec.batch_size, spec.seed)
    target = config.target
    curve = Curve(task=task.name, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed, metric=task.metric,
                  higher_is_better=task.higher_is_better, lr_rule=spec.lr_rule, base_lr=spec.base_lr,
                  base_batch_size=spec.base_batch_size, lr_factor=spec.lr_factor, optimizer=spec.optimizer,
                  warmup_steps=spec.warmup_steps, precision=spec.precision, target=target, run_key=spec.key)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), autocast(spec.precision, device):
            value = float(task.evaluate(model, device))
        model.train()
        return value

    t0 = time.perf_counter()
    initial = evaluate()
    curve.points.append(CurvePoint(step=0, examples=0, wall_time_s=0.0, train_loss=None, eval_metric=initial))
    reached_at: int | None = None
    stop_at = config.max_steps
    if target is not None and math.isfinite(initial) and curve.reached(initial, target):
        reached_at, stop_at = 0, 0  # nothing to train for
    loss_sum, loss_n = None, 0  # summed on the device: reading it every step would sync a GPU every step
    early_losses: list[float] = []
    stop_reason = f"max steps reached ({config.max_steps})"
    step = 0
    while step < stop_at:
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        set_lr(opt, schedule.lr_at(step))
        opt.zero_grad(set_to_none=True)
        with autocast(spec.precision, device):
            loss = task.loss_fn(model(x), y)
        loss.backward()
        opt.step()
        step += 1
        detached = loss.detach().float()
        loss_sum = detached if loss_sum is None else loss_sum + detached
        loss_n += 1
        if len(early_losses) < DIVERGENCE_REFERENCE_STEPS:
            early_losses.append(abs(float(detached)))
        elapsed = time.perf_counter() - t0
        out_of_time = config.max_time_s is not None and elapsed >= config.max_time_s
        if step % config.eval_every == 0 or step == stop_at or out_of_time:
            mean_loss = float(loss_sum) / loss_n
            loss_sum, loss_n = None, 0
            if not math.isfinite(mean_loss):
                curve.points.append(CurvePoint(step, step * spec.batch_size, time.perf_counter() - t0, None, None))
                stop_reason = f"diverged: training loss is {mean_loss} by step {step}"
                break
            metric = evaluate()
            curve.points.append(CurvePoint(step, step * spec.batch_size, time.perf_counter() - t0,
                                           mean_loss, metric if math.isfinite(metric) else None))
            scale = max(early_losses) if len(early_losses) == DIVERGENCE_REFERENCE_STEPS else 0.0
            if scale > 0 and mean_loss > config.divergence_factor * scale:
                stop_reason = (f"diverged: mean training loss {mean_loss:.3g} at step {step} is over "
                               f"{config.divergence_factor:g}x the largest of the first {DIVERGENCE_REFERENCE_STEPS} "
                               f"steps ({scale:.3g})")
                break
            if not math.isfinite(metric):
                stop_reason = f"diverged: eval metric is {metric} at step {step}"
                break
            if target is not None and reached_at is None and curve.reached(metric, target):
                reached_at = step
                extra = int(math.ceil(config.continue_after_target * step))
                stop_at = min(config.max_steps, step + extra)
                stop_reason = "target reached" if extra == 0 else f"target reached at step {step}; continued to step {stop_at}"
            if out_of_time and step < stop_at:
                stop_reason = f"time budget reached ({config.max_time_s:g} s) at step {step}"
                break
    if reached_at == 0:
        stop_reason = "target already met before training (step 0)"
    elif reached_at is not None and not stop_reason.startswith(("target", "diverged")):
        stop_reason = f"target reached at step {reached_at}; then {stop_reason}"
    curve.stop_reason = stop_reason
    return curve


# ---------------------------------------------------------------------------------------------
# Grids: batch sizes x LR grid x seeds


@dataclass
class GridSpec:
    """Which runs to make: for each batch size, the LR rule's value times each factor, for each seed.

    With `max_lr`, the rule's value is capped at max_lr / (largest factor), so no LR tried exceeds
    max_lr (a task's stability limit) and the grid keeps its shape at every batch size.
    """

    batch_sizes: list[int]
    base_lr: float
    base_batch_size: int
    lr_rule: str = "linear"
    lr_factors: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.0
    precision: str = "fp32"
    trust_coefficient: float = 0.001
    max_lr: float | None = None

    def validate(self) -> None:
        """One-line BenchError for any setting no run could use (checked before any run starts)."""
        if not self.batch_sizes:
            raise BenchError("no batch sizes given")
        if not (is_number(self.base_lr) and self.base_lr > 0):
            raise BenchError(f"base learning rate must be a finite number > 0, got {self.base_lr!r}")
        if not _whole(self.base_batch_size) or self.base_batch_size < 1:
            raise BenchError(f"base batch size must be a whole number >= 1, got {self.base_batch_size!r}")
        if not (is_number(self.momentum) and self.momentum >= 0):
            raise BenchError(f"momentum must be a finite number >= 0, got {self.momentum!r}")
        if not (is_number(self.weight_decay) and self.weight_decay >= 0):
            raise BenchError(f"weight decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not (is_number(self.trust_coefficient) and self.trust_coefficient > 0):
            raise BenchError(f"trust coefficient must be a finite number > 0, got {self.trust_coefficient!r}")
        if not is_number(self.warmup_epochs) or not _whole(self.warmup_steps):
            raise BenchError(f"warm-up length must be a finite number, got {self.warmup_epochs!r} epochs, "
                             f"{self.warmup_steps!r} steps")
        if not (is_number(self.warmup_start_factor) and 0 <= self.warmup_start_factor <= 1):
            raise BenchError(f"warm-up start factor must be between 0 and 1, got {self.warmup_start_factor!r}")
        if self.max_lr is not None and not (self.max_lr > 0 and math.isfinite(self.max_lr)):
            raise BenchError(f"LR cap must be a positive number, got {self.max_lr!r}")
        for b in self.batch_sizes:
            if not isinstance(b, int) or isinstance(b, bool) or b < 1:
                raise BenchError(f"batch sizes must be positive integers, got {b!r}")
        if self.optimizer not in OPTIMIZERS:
            raise BenchError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise BenchError(f"unknown precision {self.precision!r} for training runs; choose one of {', '.join(PRECISIONS)}")
        if self.lr_rule not in LR_RULES:
            raise BenchError(f"unknown LR rule {self.lr_rule!r}; choose one of {', '.join(LR_RULES)}")
        if not self.seeds:
            raise BenchError("no seeds given")
        if self.warmup_steps and self.warmup_epochs:
            raise BenchError("give warm-up in steps or in epochs, not both")
        if self.warmup_steps < 0 or self.warmup_epochs < 0:
            raise BenchError("warm-up length must be >= 0")
        lr_grid(self.base_lr, self.lr_factors)  # validates the factors

    def runs(self, task: Task) -> list[RunSpec]:
        self.validate()
        specs = []
        for b in sorted(set(self.batch_sizes)):
            center = scaled_lr(self.base_lr, b, self.base_batch_size, self.lr_rule)
            if self.max_lr is not None:
                center = min(center, self.max_lr / max(self.lr_factors))
            wu = self.warmup_steps or warmup_steps_from_epochs(self.warmup_epochs, task.train_size, b)
            for f, lr in zip(self.lr_factors, lr_grid(center, self.lr_factors)):
                for s in self.seeds:
                    specs.append(RunSpec(task=task.name, batch_size=b, lr=lr, seed=int(s), lr_rule=self.lr_rule,
                                         base_lr=self.base_lr, base_batch_size=self.base_batch_size,
                                         lr_factor=float(f), optimizer=self.optimizer, momentum=self.momentum,
                                         weight_decay=self.weight_decay, warmup_steps=wu,
                                         warmup_start_factor=self.warmup_start_factor, precision=self.precision,
                                         trust_coefficient=self.trust_coefficient))
        return specs

    def to_dict(self) -> dict:
        return asdict(self)


def failed_curve(task: Task, spec: RunSpec, config: RunConfig, error: BaseException) -> Curve:
    """The record of a run that raised: its identity, no evaluations, and the error in one line
    (out-of-memory errors say so), so the grid goes on and a resumed grid runs it again."""
    message = one_line(error)
    if is_oom(error) and "out of memory" not in message.lower():
        message = f"out of memory: {message}"
    return Curve(task=task.name, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed, metric=task.metric,
                 higher_is_better=task.higher_is_better, lr_rule=spec.lr_rule, base_lr=spec.base_lr,
                 base_batch_size=spec.base_batch_size, lr_factor=spec.lr_factor, optimizer=spec.optimizer,
                 warmup_steps=spec.warmup_steps, precision=spec.precision, target=config.target,
                 stop_reason=f"failed: {message}", run_key=spec.key, error=message)


def run_specs(task: Task, specs: Sequence[RunSpec], config: RunConfig, *, done: Iterable[str] = (),
              on_curve: Callable[[Curve], None] | None = None, progress: ProgressFn | None = None) -> list[Curve]:
    """Train every spec whose key is not in `done`, calling `on_curve` after each; return the new curves.

    A run that raises (out of memory, the task's own exception) is recorded as a failed curve
    (`Curve.error`) and the grid goes on; a BenchError (a setting no run can use) stops it."""
    notify = progress or (lambda event, info: None)
    done = set(done)
    new = []
    todo = [s for s in specs if s.key not in done]
    notify("start", {"planned": len(specs), "skipped": len(specs) - len(todo)})
    for i, spec in enumerate(todo):
        notify("run", {"spec": spec, "index": i, "total": len(todo)})
        t0 = time.perf_counter()
        try:
            curve = train_run(task, spec, config)
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001 - a failure at one batch size is a result, as in a sweep
            curve = failed_curve(task, spec, config, e)
        new.append(curve)
        if on_curve is not None:
            on_curve(curve)
        notify("done", {"spec": spec, "curve": curve, "index": i, "total": len(todo),
                        "seconds": time.perf_counter() - t0})
    return new


def grid_identity(task: Task, grid: GridSpec, config: RunConfig) -> dict:
    """The settings of a grid as saved with its results (`config` of a curves or TTA file)."""
    return {"task": task.info(), "grid": grid.to_dict(), "run": config.to_dict()}


# Grid settings that change a run: a resumed grid must match them. Batch sizes, LR factors and seeds
# may grow on resume.
GRID_IDENTITY_FIELDS = ("base_lr", "base_batch_size", "lr_rule", "optimizer", "momentum", "weight_decay", "precision",
                        "trust_coefficient", "warmup_steps", "warmup_epochs", "warmup_start_factor", "max_lr")


def grid_resume_identity(saved_config: dict, environment_hash: str | None = None) -> Identity:
    """What a resumed grid (or study) must match, from a `grid_identity` dict: the task (but its
    description), how each run goes, and GRID_IDENTITY_FIELDS (a field an older file lacks counts
    as its default); and the fingerprint hash where the file records one."""
    defaults = {f.name: f.default for f in fields(GridSpec) if f.default is not MISSING}
    grid = saved_config.get("grid") or {}
    task = {k: v for k, v in (saved_config.get("task") or {}).items() if k != "description"}
    return Identity({"task": task, "run": dict(saved_config.get("run") or {}),
                     "grid": {k: grid.get(k, defaults.get(k)) for k in GRID_IDENTITY_FIELDS}}, environment_hash)


def run_grid(task: Task, grid: GridSpec, config: RunConfig, *, output: str | os.PathLike | None = None,
             resume: bool = False, overwrite: bool = False, progress: ProgressFn | None = None) -> CurvesFile:
    """Run the grid; with `output`, rewrite a bench.curves file after every run (resume skips done runs)."""
    specs = grid.runs(task)
    config.validate()
    check_task_fits(task, resolve_device(config.device), grid.batch_sizes)
    identity = grid_identity(task, grid, config)
    run = Resumable.open(
        output, resume=resume, overwrite=overwrite,
        create=lambda: CurvesFile(config=identity, task=task.info(), environment=fingerprint(config.device),
                                  created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        load=load_curves_file, save=save_curves_file, entries=lambda cf: cf.curves, key=lambda c: c.run_key,
        identity=grid_resume_identity(identity), identity_of=lambda cf: grid_resume_identity(cf.config),
        failed=lambda c: c.failed)
    run.result.config = identity  # the grid may have grown

    run_specs(task, specs, config, done=run.done, on_curve=run.add, progress=progress)
    return run.finish()
