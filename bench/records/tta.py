"""The records of a time-to-accuracy study and their versioned JSON form (the `bench.tta` file): step
times, the step-time and scaling fits, steps to target per batch size, the noise scale, the per-batch
time to target and the whole analysis. Only the schema: the computations live in bench.analysis
(scaling, noise_scale, tta).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.stats import CONFIDENCE
from bench.records.curves import Curve, curve_json_schema
from bench.records.envelope import Schema, header, load_record, read_header, save_record
from bench.records.tables import number, read_csv
from bench.records.validation import (
    BATCH_SIZE,
    dataclass_schema,
    envelope_schema,
    nullable,
)

TTA = Schema("bench.tta", 1, "time-to-accuracy file", json_schema=lambda: tta_json_schema())
TTA_SCHEMA = TTA.name
TTA_SCHEMA_VERSION = TTA.version


# ---------------------------------------------------------------------------------------------
# Step time


@dataclass
class StepTime:
    """Measured time of one training step at one batch size (median with its 95% CI, and mean; seconds).

    The median describes the shape of t(B) (fits, B*); the mean is what a sum over steps, the time to
    target, multiplies: E[sum of S step times] = S·E[t].
    """

    batch_size: int
    median_s: float
    ci_low_s: float | None = None
    ci_high_s: float | None = None
    energy_per_step_j: float | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)
    mean_s: float | None = None
    # 95% CI of the mean (what time to target multiplies); from interleaved rounds, over the round means.
    mean_ci_low_s: float | None = None
    mean_ci_high_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StepTime":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


STEP_TIME_COLUMNS = ("step_time_s", "median_s", "mean_s")


def read_step_times(path: str | os.PathLike) -> list[StepTime]:
    """Step times measured elsewhere (a cluster, a paper) from a CSV: `batch_size` and seconds per step as
    `step_time_s` (one typical value, taken as both median and mean), `median_s` and/or `mean_s`;
    optional `ci_low_s`, `ci_high_s` (a 95% interval of the median) and `energy_per_step_j`.
    One-line BenchError naming the file and row for bad input."""
    p = Path(path)
    if not p.exists():
        raise BenchError(f"{p}: no such file")
    rows = read_csv(p, required=("batch_size",), one_of=(STEP_TIME_COLUMNS,),
                    needs="batch_size and step_time_s (or median_s / mean_s) in seconds per step")
    if not rows:
        raise BenchError(f"{p}: no rows")
    out: dict[int, StepTime] = {}
    for i, r in enumerate(rows):
        where = f"{p}: row {i + 1}"
        b = number(r.get("batch_size"), "batch_size", where, integer=True)
        if b < 1:
            raise BenchError(f"{where}: batch_size must be >= 1, got {b}")
        if b in out:
            raise BenchError(f"{where}: batch size {b} appears twice; give one step time per batch size")
        typical = number(r.get("step_time_s"), "step_time_s", where, required=False)
        median = number(r.get("median_s"), "median_s", where, required=False)
        mean = number(r.get("mean_s"), "mean_s", where, required=False)
        if typical is None and median is None and mean is None:
            raise BenchError(f"{where}: needs step_time_s, median_s or mean_s")
        median = median if median is not None else typical if typical is not None else mean
        mean = mean if mean is not None else typical
        lo = number(r.get("ci_low_s"), "ci_low_s", where, required=False)
        hi = number(r.get("ci_high_s"), "ci_high_s", where, required=False)
        energy = number(r.get("energy_per_step_j"), "energy_per_step_j", where, required=False)
        for name, v in (("step time", median), ("mean", mean), ("ci_low_s", lo), ("ci_high_s", hi)):
            if v is not None and not v > 0:
                raise BenchError(f"{where}: {name} must be > 0 seconds, got {v:g}")
        if (lo is None) != (hi is None):
            raise BenchError(f"{where}: give both ci_low_s and ci_high_s, or neither")
        if lo is not None and not lo <= median <= hi:
            raise BenchError(f"{where}: the interval [{lo:g}, {hi:g}] does not hold the step time {median:g}")
        st = StepTime(b, median, lo, hi, energy, mean_s=mean)
        if lo is None:
            st.null_reasons["ci"] = f"no interval given in {p.name}"
        if energy is None:
            st.null_reasons["energy_per_step_j"] = f"not given in {p.name}"
        out[b] = st
    return [out[b] for b in sorted(out)]


@dataclass
class StepTimeRounds:
    """Step times measured in interleaved rounds: each round times one block of steps at every batch
    size in turn (the order rotated each round), so a change in the machine's load hits every batch size
    alike and the ratio of two batch sizes' step times can be read round by round.

    `samples_s[str(B)][r]` holds round r's step times at batch B (`steps_per_block[str(B)]` of them);
    `round_orders[r]` the order the batch sizes ran in; `conditions[r]` the machine readings
    (bench.measure.conditions.read_conditions) at the start and end of round r; `machine_load` the
    bench.core.load.MachineLoad over all rounds (null with its reason in `null_reasons`).
    """

    batch_sizes: list[int]
    rounds: int
    block_s: float
    steps_per_block: dict[str, int] = field(default_factory=dict)
    samples_s: dict[str, list[list[float]]] = field(default_factory=dict)
    round_orders: list[list[int]] = field(default_factory=list)
    conditions: list[list[dict]] = field(default_factory=list)
    machine_load: dict | None = None
    wall_time_s: float | None = None
    missing: dict[str, str] = field(default_factory=dict)  # batch -> why it has no rounds
    null_reasons: dict[str, str] = field(default_factory=dict)

    def round_means(self, batch_size: int) -> list[float]:
        """The mean step time of each round at `batch_size` (empty where it has no rounds)."""
        return [float(np.mean(r)) for r in self.samples_s.get(str(batch_size), []) if r]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StepTimeRounds":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class StepTimeFit:
    """The step-time model B* is computed from, and where it came from.

    model "linear": t(B) = a + b·B (a in seconds, b in seconds per example).
    model "hinge": t(B) = plateau_s up to knee_batch K, then plateau_s + b·(B − K), i.e. a + b·B beyond
    the knee with a = plateau_s − b·K (so `a_s` is that line's intercept, not the plateau).
    """

    a_s: float
    b_s_per_example: float
    source: str
    model: str = "linear"
    knee_batch: float | None = None
    plateau_s: float | None = None

    def predict_s(self, batch_size: float) -> float:
        t = self.a_s + self.b_s_per_example * float(batch_size)
        return max(self.plateau_s, t) if self.model == "hinge" and self.plateau_s is not None else t

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StepTimeFit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# ---------------------------------------------------------------------------------------------
# Steps to target and the scaling fit S(B) = S_min·(1 + B_crit/B)


@dataclass
class LRCell:
    """Runs at one batch size and one learning rate, one per seed."""

    lr: float | None
    lr_factor: float | None
    seeds: list[int | None]
    steps_per_seed: list[float | None]  # interpolated between evaluations (bench.records.curves)
    steps_to_target: float | None  # mean over seeds; None unless every seed reached the target
    reason: str | None = None
    first_eval_steps: list[int | None] = field(default_factory=list)  # raw: first evaluation at or past it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LRCell":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class BatchSteps:
    """Steps to target at one batch size, at the learning rate that needed the fewest (mean over seeds)."""

    batch_size: int
    best_lr: float | None
    steps_to_target: float | None
    steps_per_seed: list[float | None] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    steps_low: float | None = None  # smallest over seeds at the best LR
    steps_high: float | None = None  # largest over seeds at the best LR
    examples_to_target: float | None = None
    reason: str | None = None
    best_lr_at_grid_edge: bool | None = None
    lr_cells: list[LRCell] = field(default_factory=list)
    final_eval_metric: float | None = None  # mean over the best LR's seeds of each run's last evaluation
    best_eval_metric: float | None = None
    n_runs: int = 0
    # Not reached: a lower bound on its steps (censored data), the fewest steps any learning rate could
    # still have needed; None with `censored_reason` where there is none (every run diverged).
    censored_at: float | None = None
    censored_reason: str | None = None

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr_cells"] = [c.to_dict() for c in self.lr_cells]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BatchSteps":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "lr_cells"}
        b = cls(**known)
        b.lr_cells = [LRCell.from_dict(c) for c in d.get("lr_cells") or []]
        return b


def steps_model(batch_size, s_min: float, b_crit: float):
    """S(B) = S_min·(1 + B_crit/B)."""
    return s_min * (1.0 + b_crit / np.asarray(batch_size, dtype=float))


@dataclass
class ScalingFit:
    """S_min, B_crit and E_min = S_min·B_crit with their intervals (`interval_method` says how they were
    made; a null interval has its reason in `null_reasons`)."""

    s_min: float | None
    b_crit: float | None
    e_min: float | None
    s_min_ci: list[float] | None = None
    b_crit_ci: list[float] | None = None
    e_min_ci: list[float] | None = None
    confidence: float = CONFIDENCE
    n_bootstrap: int = 0
    n_bootstrap_ok: int = 0
    bootstrap_method: str | None = None  # what a bootstrap resampled (interval_method "percentile bootstrap")
    bootstrap_seed: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    rel_rms_residual: float | None = None
    b_crit_position: str | None = None  # "inside", "below" or "beyond" the batch sizes that reached the target
    regimes: dict[str, str | None] = field(default_factory=dict)
    regime_rule: str | None = None  # how `regimes` were decided (bench.analysis.scaling.REGIME_RULE)
    reason: str | None = None  # why there is no fit
    interval_method: str | None = None  # "profile likelihood" or "percentile bootstrap"
    # The B_crit values the data cannot rule out, with null for a side they leave open (B_crit -> 0 or
    # -> infinity fits as well): where `b_crit_ci` is null because the interval is unbounded, this says how far.
    b_crit_range: list[float | None] | None = None
    residual_df: int | None = None  # observations - 2 fitted parameters
    residuals: dict[str, float] = field(default_factory=dict)  # per reached batch size: steps / fitted - 1
    censored_bounds: dict[str, float] = field(default_factory=dict)  # unreached batch -> lower bound on its steps
    censored_used: list[int] = field(default_factory=list)  # the bounds the fit used
    # Does the curve fit? {"test", "statistic", "df", "p_value", "alpha", "fails", "reason"}: an F test of the
    # curve against the per-batch means with the seeds' pure error, or without seeds a runs test on the
    # residuals' signs; null with `null_reasons.lack_of_fit` where neither can be done.
    lack_of_fit: dict[str, Any] | None = None
    # How the seed noise varies with batch size and how the batch sizes are weighted: {"model", "slope",
    # "sd_ratio", "weights"}, "equal" where too few batch sizes have 2 or more seeds to tell.
    noise_model: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def fits(self) -> bool | None:
        """False where the lack-of-fit check rejects the curve; None where it could not be checked."""
        if not self.lack_of_fit or self.lack_of_fit.get("fails") is None:
            return None
        return not self.lack_of_fit["fails"]

    def predict_steps(self, batch_size: float) -> float | None:
        if self.s_min is None or self.b_crit is None:
            return None
        return float(steps_model(batch_size, self.s_min, self.b_crit))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScalingFit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# ---------------------------------------------------------------------------------------------
# Gradient noise scale


@dataclass
class NoiseScaleEstimate:
    """B_simple with a block-bootstrap interval over steps, plus the raw per-step squared norms."""

    b_simple: float | None
    gradient_sq_norm: float | None
    trace_sigma: float | None
    batch_small: int
    batch_big: int
    n_steps: int
    b_simple_ci: list[float] | None = None
    confidence: float = CONFIDENCE
    averaging: str | None = None  # how per-step estimates were combined before dividing
    sq_norm_small: list[float] = field(default_factory=list)  # per step: mean over micro-batches of |g_small|²
    sq_norm_big: list[float] = field(default_factory=list)  # per step: |g_big|²
    train_size: int | None = None  # N of the finite-population correction; None: none applied (infinite data)
    context: dict = field(default_factory=dict)  # how it was measured (task, lr, optimizer, steps, ...)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseScaleEstimate":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# ---------------------------------------------------------------------------------------------
# Time to target


@dataclass
class BatchTTA:
    """One batch size: steps (at its best LR, over seeds) x step time = time to target."""

    batch_size: int
    best_lr: float | None
    steps_to_target: float | None
    steps_low: float | None
    steps_high: float | None
    steps_per_seed: list[float | None]
    examples_to_target: float | None
    fitted_steps: float | None = None
    step_time_s: float | None = None  # median
    step_time_ci_low_s: float | None = None
    step_time_ci_high_s: float | None = None
    step_time_mean_s: float | None = None
    time_to_target_basis: str | None = None  # which step time TTA multiplies: "mean", or "median" without one
    step_time_used_s: float | None = None  # the step time TTA multiplied: time_to_target_s = steps x this
    time_to_target_s: float | None = None
    time_to_target_low_s: float | None = None
    time_to_target_high_s: float | None = None
    energy_per_step_j: float | None = None
    energy_to_target_j: float | None = None
    naive_time_to_target_s: float | None = None
    naive_rel_error: float | None = None  # naive/true − 1: −0.5 means the rule of thumb halves the time
    naive_rel_error_low: float | None = None  # its 95% interval (from per-round step-time ratios where measured)
    naive_rel_error_high: float | None = None
    # t(B)/t(reference batch) from the mean step times, with its 95% interval (paired over interleaved rounds)
    step_time_ratio: float | None = None
    step_time_ratio_low: float | None = None
    step_time_ratio_high: float | None = None
    step_time_mean_ci_low_s: float | None = None
    step_time_mean_ci_high_s: float | None = None
    regime: str | None = None
    measured_scaling_exponent: float | None = None
    final_eval_metric: float | None = None
    best_eval_metric: float | None = None
    best_lr_at_grid_edge: bool | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BatchTTA":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class TTAAnalysis:
    """Everything derived from curves + step times; batch sizes sorted ascending."""

    target: float
    metric: str
    higher_is_better: bool
    batches: list[BatchTTA] = field(default_factory=list)
    lr_selection: list[BatchSteps] = field(default_factory=list)
    scaling_fit: ScalingFit | None = None
    step_time_fit: StepTimeFit | None = None
    best_time_batch: int | None = None
    best_time_s: float | None = None
    best_time_ties: list[int] = field(default_factory=list)  # batches whose interval overlaps the best's
    compute_optimal_batch: int | None = None
    compute_optimal_examples: float | None = None
    pareto_time_examples: list[int] = field(default_factory=list)
    pareto_time_energy: list[int] | None = None
    min_energy_batch: int | None = None
    b_star: float | None = None
    b_star_time_s: float | None = None
    b_star_rule: str | None = None  # the formula used and the step-time fit it came from
    naive: dict[str, Any] = field(default_factory=dict)
    generalisation: dict[str, Any] = field(default_factory=dict)
    noise_scale_vs_b_crit: dict[str, Any] = field(default_factory=dict)
    # The critical batch size by each definition (bench.analysis.scaling.critical_batch_definitions)
    critical_batch: dict[str, Any] = field(default_factory=dict)
    # Where the answer sits at an edge or disagrees with itself: {"best_batch_at_edge": "largest" | "smallest" |
    # None, "best_lr_at_grid_edge": bool | None, "b_star_nearest_batch", "b_star_contradicts_ranking": bool | None}
    edges: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def batch(self, batch_size: int) -> BatchTTA | None:
        return next((b for b in self.batches if b.batch_size == batch_size), None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batches"] = [b.to_dict() for b in self.batches]
        d["lr_selection"] = [b.to_dict() for b in self.lr_selection]
        d["scaling_fit"] = self.scaling_fit.to_dict() if self.scaling_fit else None
        d["step_time_fit"] = self.step_time_fit.to_dict() if self.step_time_fit else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TTAAnalysis":
        plain = {k: d[k] for k in cls.__dataclass_fields__
                 if k in d and k not in ("batches", "lr_selection", "scaling_fit", "step_time_fit")}
        a = cls(**plain)
        a.batches = [BatchTTA.from_dict(b) for b in d.get("batches") or []]
        a.lr_selection = [BatchSteps.from_dict(b) for b in d.get("lr_selection") or []]
        a.scaling_fit = ScalingFit.from_dict(d["scaling_fit"]) if d.get("scaling_fit") else None
        a.step_time_fit = StepTimeFit.from_dict(d["step_time_fit"]) if d.get("step_time_fit") else None
        return a


# ---------------------------------------------------------------------------------------------
# The bench.tta results file


@dataclass
class TTAResult:
    """A time-to-accuracy study: its settings, every curve, step times, noise scale, and the analysis.

    Rewritten after every completed run while `finished` is False; `analysis` is filled at the end.
    """

    config: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    step_times: list[StepTime] = field(default_factory=list)
    step_time_source: str | None = None
    step_time_missing: dict[str, str] = field(default_factory=dict)
    step_time_rounds: StepTimeRounds | None = None  # the raw interleaved rounds the step times came from
    # How busy the machine was while the step times were measured (bench.core.load.MachineLoad as a dict):
    # the rounds' where there are rounds, else the sweep's; null with its reason in null_reasons["step_time_load"]
    step_time_load: dict | None = None
    noise_scale: NoiseScaleEstimate | None = None
    analysis: TTAAnalysis | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    finished: bool = False
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **header(TTA, created=self.created, finished=self.finished, environment=self.environment),
            "config": self.config,
            "task": self.task,
            "step_time_source": self.step_time_source,
            "step_times": [s.to_dict() for s in self.step_times],
            "step_time_missing": dict(self.step_time_missing),
            "step_time_rounds": self.step_time_rounds.to_dict() if self.step_time_rounds else None,
            "step_time_load": self.step_time_load,
            "noise_scale": self.noise_scale.to_dict() if self.noise_scale else None,
            "analysis": self.analysis.to_dict() if self.analysis else None,
            "null_reasons": dict(self.null_reasons),
            "curves": [c.to_dict() for c in self.curves],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TTAResult":
        head, d = read_header(d, TTA)
        try:
            return cls(
                config=dict(d.get("config") or {}), task=dict(d.get("task") or {}),
                curves=[Curve.from_dict(c) for c in d.get("curves") or []],
                step_times=[StepTime.from_dict(s) for s in d.get("step_times") or []],
                step_time_source=d.get("step_time_source"),
                step_time_missing={str(k): v for k, v in (d.get("step_time_missing") or {}).items()},
                step_time_rounds=(StepTimeRounds.from_dict(d["step_time_rounds"]) if d.get("step_time_rounds")
                                  else None),
                step_time_load=d.get("step_time_load"),
                noise_scale=NoiseScaleEstimate.from_dict(d["noise_scale"]) if d.get("noise_scale") else None,
                analysis=TTAAnalysis.from_dict(d["analysis"]) if d.get("analysis") else None,
                environment=head.environment, created=head.created, finished=head.finished,
                null_reasons=dict(d.get("null_reasons") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed bench.tta file: {type(e).__name__}: {e}") from None


@functools.cache
def tta_json_schema() -> dict:
    """The JSON Schema of a bench.tta file (the current version), checked at every load: every record
    of the study and of its analysis, typed from the dataclasses above."""
    batch = BATCH_SIZE
    steps = dataclass_schema(BatchSteps, {"batch_size": batch, "lr_cells": {"type": "array",
                                                                            "items": dataclass_schema(LRCell)}})
    analysis = dataclass_schema(TTAAnalysis, {
        "batches": {"type": "array", "items": dataclass_schema(BatchTTA, {"batch_size": batch})},
        "lr_selection": {"type": "array", "items": steps},
        "scaling_fit": nullable(dataclass_schema(ScalingFit)),
        "step_time_fit": nullable(dataclass_schema(StepTimeFit)),
    })
    return envelope_schema({
        "config": {"type": ["object", "null"]},
        "task": {"type": ["object", "null"]},
        "step_time_source": {"type": ["string", "null"]},
        "step_times": {"type": ["array", "null"], "items": dataclass_schema(StepTime, {
            "batch_size": batch, "median_s": {"minimum": 0}})},
        "step_time_missing": {"type": ["object", "null"]},
        "step_time_rounds": {"type": ["object", "null"]},
        "step_time_load": {"type": ["object", "null"]},
        "noise_scale": nullable(dataclass_schema(NoiseScaleEstimate)),
        "analysis": nullable(analysis),
        "null_reasons": {"type": ["object", "null"]},
        "curves": {"type": ["array", "null"], "items": curve_json_schema()},
    })


def save_tta(result: TTAResult, path: str | os.PathLike) -> Path:
    return save_record(result, path)


def load_tta(path: str | os.PathLike) -> TTAResult:
    """A `bench.tta` file (any version this tool reads); one-line InvalidResultsFile naming the path."""
    return load_record(path, TTAResult.from_dict)
