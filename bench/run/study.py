"""End-to-end time-to-accuracy study on one task: LR-tuned runs per batch size, the gradient noise
scale, step times of the same model (a sweep file, or the sweep library on the spot), then the analysis.

The results file (bench.tta) is rewritten after every completed run; `resume=True` skips what it holds.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from bench.analysis.tta import (
    analyse_tta,
    step_time_fit_from_sweep,
    step_times_from_rounds,
    step_times_from_sweep,
    sweep_machine_load,
)
from bench.core.budget import MEASURE_DEFAULTS
from bench.core.devices import resolve_device
from bench.core.errors import BenchError
from bench.core.vocabulary import TIMED_AS
from bench.measure.tasks import Task, load_task
from bench.measure.telemetry.fingerprint import fingerprint
from bench.measure.workloads import task_workload
from bench.records.curves import Curve
from bench.records.sweep import load_sweep
from bench.records.tta import TTAResult, load_tta, save_tta
from bench.run.bounds import check_task_fits
from bench.run.rounds import DEFAULT_BLOCK_S, DEFAULT_ROUNDS, measure_rounds
from bench.run.runner import Resumable
from bench.run.train.lr import log_spaced_factors
from bench.run.train.noise import measure_noise_scale
from bench.run.train.runner import (
    GridSpec,
    RunConfig,
    grid_identity,
    grid_resume_identity,
    run_specs,
)

ProgressFn = Callable[[str, dict], None]
# The sweep times sgd or adamw; the layer-wise optimizers cost about the same as their base.


@dataclass
class StudyConfig:
    """Settings of an end-to-end study. None means "the task's default" (Task.defaults)."""

    task: str = "digits"
    task_params: dict[str, Any] = field(default_factory=dict)
    target: float | None = None
    batch_sizes: list[int] | None = None
    base_lr: float | None = None
    base_batch_size: int | None = None
    lr_rule: str | None = None
    lr_factors: list[float] = field(default_factory=lambda: log_spaced_factors(3, 2.0))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    precision: str = "fp32"
    trust_coefficient: float = 0.001
    max_lr: float | None = None  # cap on every LR tried (default: the task's, if it has one)
    max_steps: int | None = None
    eval_every: int | None = None
    max_time_s: float | None = None
    continue_after_target: float = 1.0  # train as long again after the target, to compare final metrics
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads for the study (None: leave torch's setting)
    noise_scale: bool = True
    noise_batch_small: int | None = None  # default: the smallest batch size
    noise_batch_big: int | None = None  # default: 16x the small one, at most the largest batch size
    noise_steps: int | None = None  # default: the steps batch_big needed to reach the target
    sweep_path: str | None = None  # step times from this sweep file instead of measuring
    measure_step_time: bool = True
    sweep_budget_s: float = MEASURE_DEFAULTS["budget_s"]  # step timing per batch size, at most
    sweep_min_time_s: float | None = None  # None: the default minimum time, or the budget if smaller
    # Step times for TTA from interleaved rounds across the batch sizes (bench.run.rounds); 0: the sweep's own.
    step_time_rounds: int = DEFAULT_ROUNDS
    round_block_s: float = DEFAULT_BLOCK_S
    n_bootstrap: int = 1000
    reference_batch: int | None = None  # of the tolerance definition of the critical batch (default: the smallest)
    tolerance: float = 0.2

    def resolved(self, task: Task) -> "StudyConfig":
        d = dict(task.defaults)
        c = StudyConfig(**asdict(self))
        for name in ("batch_sizes", "base_lr", "base_batch_size", "lr_rule", "optimizer", "momentum",
                     "max_lr", "max_steps", "eval_every"):
            if getattr(c, name) is None:
                setattr(c, name, d.get(name, {"base_lr": 0.1, "base_batch_size": 32, "lr_rule": "linear",
                                               "optimizer": "sgd", "momentum": 0.9, "max_steps": 1000,
                                               "eval_every": 10}.get(name)))
        if c.batch_sizes is None:
            raise BenchError(f"task {task.name} has no default batch sizes; give them")
        c.batch_sizes = sorted(set(int(b) for b in c.batch_sizes))
        if c.target is None:
            if task.default_target is None:
                raise BenchError(f"task {task.name} has no default target; give one")
            c.target = float(task.default_target)
        return c

    def grid(self) -> GridSpec:
        return GridSpec(batch_sizes=list(self.batch_sizes), base_lr=self.base_lr, base_batch_size=self.base_batch_size,
                        lr_rule=self.lr_rule, lr_factors=list(self.lr_factors), seeds=list(self.seeds),
                        optimizer=self.optimizer, momentum=self.momentum, weight_decay=self.weight_decay,
                        warmup_steps=self.warmup_steps, warmup_epochs=self.warmup_epochs, precision=self.precision,
                        trust_coefficient=self.trust_coefficient, max_lr=self.max_lr)

    def run_config(self) -> RunConfig:
        return RunConfig(target=self.target, max_steps=self.max_steps, eval_every=self.eval_every,
                         max_time_s=self.max_time_s, continue_after_target=self.continue_after_target,
                         device=self.device)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """One-line BenchError for the study's own settings (the grid and the runs check theirs), so a
        bad setting fails before hours of training rather than after them."""
        for name in ("noise_batch_small", "noise_batch_big", "noise_steps"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise BenchError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {v!r}")
        if not isinstance(self.n_bootstrap, int) or isinstance(self.n_bootstrap, bool) or self.n_bootstrap < 0:
            raise BenchError(f"bootstrap resamples must be a whole number >= 0, got {self.n_bootstrap!r}")
        r = self.step_time_rounds
        if not isinstance(r, int) or isinstance(r, bool) or r < 0 or r == 1:
            raise BenchError(f"interleaved rounds must be 0 (off) or a whole number >= 2, got {r!r}")
        if not (isinstance(self.round_block_s, (int, float)) and self.round_block_s > 0):
            raise BenchError(f"the block time of a round must be > 0 seconds, got {self.round_block_s!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BenchError(f"threads must be >= 1, got {self.threads}")
        if self.measure_step_time and self.sweep_path is None:
            self.sweep_config(seed=self.seeds[0] if self.seeds else 0).validate()

    def sweep_config(self, *, seed: int, workload: str = "task", batch_sizes: list[int] | None = None):
        """The settings the study times steps with (bench.run.sweep.SweepConfig)."""
        from bench.run.sweep import SweepConfig

        return SweepConfig(workload=workload, device=self.device, precision=self.precision,
                           optimizer=TIMED_AS.get(self.optimizer or "sgd", "sgd"),
                           batch_sizes=list(batch_sizes or self.batch_sizes or [1]),
                           budget_s=self.sweep_budget_s, min_time_s=self.sweep_min_time_s, find_largest=False,
                           seed=seed)


def _noise_settings(cfg: StudyConfig, curves: list[Curve]) -> tuple[int, int, float, int, str]:
    small = cfg.noise_batch_small or cfg.batch_sizes[0]
    big = cfg.noise_batch_big or min(16 * small, max(cfg.batch_sizes))
    if big < 2 * small:
        big = 2 * small
    big = (big // small) * small
    from bench.analysis.scaling import steps_by_batch

    sel = {b.batch_size: b for b in steps_by_batch(curves, cfg.target)} if curves else {}
    at_big = sel.get(big)
    if at_big is not None and at_big.reached:
        lr, steps = at_big.best_lr, int(round(at_big.steps_to_target))
        why = f"the best LR at batch {big} and the steps it needed to reach the target"
    else:
        from bench.run.train.lr import scaled_lr

        lr, steps = scaled_lr(cfg.base_lr, big, cfg.base_batch_size, cfg.lr_rule), 100
        if cfg.max_lr is not None:
            lr = min(lr, cfg.max_lr)
        why = f"the LR rule's value at batch {big} (no tuned run there reached the target)"
    if cfg.noise_steps:
        steps = cfg.noise_steps
    return small, big, lr, max(steps, 2), why


def run_study(cfg: StudyConfig, *, output: str | os.PathLike | None = None, resume: bool = False,
              overwrite: bool = False, progress: ProgressFn | None = None, task: Task | None = None) -> TTAResult:
    """Run (or resume) the whole study and return its result, analysis included."""
    notify = progress or (lambda event, info: None)
    cfg.validate()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    task = task or load_task(cfg.task, cfg.task_params)
    cfg = cfg.resolved(task)
    cfg.validate()  # again, with the task's defaults filled in
    grid, rc = cfg.grid(), cfg.run_config()
    specs = grid.runs(task)
    rc.validate()
    check_task_fits(task, resolve_device(cfg.device), cfg.batch_sizes)
    identity = {**grid_identity(task, grid, rc), "study": cfg.to_dict()}
    environment = fingerprint(cfg.device)
    if cfg.sweep_path is not None:
        sweep = load_sweep(cfg.sweep_path)  # fail before hours of training, not after
    run = Resumable.open(
        output, resume=resume, overwrite=overwrite,
        create=lambda: TTAResult(config=identity, task=task.info(), environment=environment,
                                 created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        load=load_tta, save=save_tta, entries=lambda r: r.curves, key=lambda c: c.run_key,
        identity=grid_resume_identity(identity, environment.get("hash")),
        identity_of=lambda r: grid_resume_identity(r.config, (r.environment or {}).get("hash")),
        failed=lambda c: c.failed)
    result, save = run.result, run.save

    run_specs(task, specs, rc, done=run.done, on_curve=run.add, progress=progress)

    if cfg.noise_scale and result.noise_scale is None:
        small, big, lr, steps, why = _noise_settings(cfg, result.curves)
        notify("noise", {"batch_small": small, "batch_big": big, "steps": steps, "lr": lr})
        t0 = time.perf_counter()
        est = measure_noise_scale(task, batch_small=small, batch_big=big, steps=steps, lr=lr,
                                  optimizer=cfg.optimizer, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  trust_coefficient=cfg.trust_coefficient,
                                  seed=cfg.seeds[0], device=cfg.device, precision=cfg.precision,
                                  n_bootstrap=cfg.n_bootstrap)
        est.context["settings_from"] = why
        est.context["seconds"] = time.perf_counter() - t0
        result.noise_scale = est
        save()
        notify("noise_done", {"estimate": est})
    elif not cfg.noise_scale:
        result.null_reasons["noise_scale"] = "not measured (turned off)"

    fit = None
    if not result.step_times and cfg.sweep_path is not None:
        times, missing = step_times_from_sweep(sweep)
        result.step_times, result.step_time_missing = times, {str(k): v for k, v in missing.items()}
        result.step_time_source = f"sweep file {cfg.sweep_path} (workload {sweep.config.get('workload')!r})"
        fit = step_time_fit_from_sweep(sweep)
        result.step_time_load, why = sweep_machine_load(sweep)
        if why:
            result.null_reasons["step_time_load"] = why
        save()
    elif not result.step_times and cfg.measure_step_time:
        notify("sweep", {"batch_sizes": cfg.batch_sizes})
        sweep = measure_step_times(task, cfg, progress=progress)
        times, missing = step_times_from_sweep(sweep)
        result.step_times, result.step_time_missing = times, {str(k): v for k, v in missing.items()}
        result.step_time_source = (f"measured on the spot by bench.run.sweep on {cfg.device} ({cfg.precision}, "
                                   f"optimizer {TIMED_AS.get(cfg.optimizer, cfg.optimizer)}, same model)")
        fit = step_time_fit_from_sweep(sweep)
        result.step_time_load, why = sweep_machine_load(sweep)
        if cfg.step_time_rounds and len(times) >= 2:
            sc = cfg.sweep_config(seed=cfg.seeds[0], workload=f"task:{task.name}")
            notify("rounds", {"batch_sizes": [t.batch_size for t in times], "rounds": cfg.step_time_rounds})
            rounds = measure_rounds(task_workload(task), [t.batch_size for t in times], device=cfg.device,
                                    step_options=sc.step_options(), seed=cfg.seeds[0],
                                    rounds=cfg.step_time_rounds, block_s=cfg.round_block_s)
            result.step_time_rounds = rounds
            by_batch = {t.batch_size: t for t in times}
            from_rounds = {t.batch_size: t for t in step_times_from_rounds(rounds, by_batch)}
            result.step_times = [from_rounds.get(t.batch_size, t) for t in times]
            result.step_time_source += (f"; the step times TTA uses from {rounds.rounds} interleaved rounds across "
                                        "the batch sizes (bench.run.rounds)")
            result.step_time_load = rounds.machine_load
            why = rounds.null_reasons.get("machine_load")
        if why:
            result.null_reasons["step_time_load"] = why
        save()
    elif not result.step_times:
        result.null_reasons["step_times"] = "not measured (turned off) and no sweep file given"

    result.analysis = analyse_tta(result.curves, result.step_times, cfg.target, step_time_fit=fit,
                                  step_time_missing={int(k): v for k, v in result.step_time_missing.items()},
                                  noise_scale=result.noise_scale, n_bootstrap=cfg.n_bootstrap,
                                  rounds=result.step_time_rounds, reference_batch=cfg.reference_batch,
                                  tolerance=cfg.tolerance)
    if cfg.sweep_path is not None and sweep.config.get("workload") not in (f"task:{task.name}", task.name):
        result.analysis.warnings.append(
            f"the sweep timed workload {sweep.config.get('workload')!r}, not task {task.name!r}: "
            "its step times may not be those of this model")
    return run.finish()


def measure_step_times(task: Task, cfg: StudyConfig, progress: ProgressFn | None = None):
    """Time a training step of the task's own model at each batch size with the sweep library."""
    from bench.run.sweep import run_sweep

    sc = cfg.sweep_config(seed=cfg.seeds[0], workload=f"task:{task.name}", batch_sizes=list(cfg.batch_sizes))
    return run_sweep(sc, workload=task_workload(task), progress=None)
