"""Step time against batch size: up to which batch a step takes the same time, where it bends, where
throughput saturates. Pure functions over summaries returning typed records; measures nothing and says
nothing (the sentences are made from these records in `bench.present.steptime`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as _sps

from bench.core.budget import BlockShortfall
from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import json_safe
from bench.core.load import MachineLoad, machine_load
from bench.core.numbers import is_number
from bench.core.stats import relative_spread

if TYPE_CHECKING:
    from bench.records.sweep import Measurement, SweepResult

SCHEMA = "bench.steptime"
# 2: the stored analysis holds no prose (version 1 carried a `verdict` list, which readers ignore).
# 3: throughput from the mean step time (B / mean; versions 1 and 2: B / median, read with
#    `throughput_basis` "median"); heavy tails, block shortfalls, calls on medians, the machine's load.
SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)

WITHIN = "within"
BEYOND = "beyond"
UNDECIDED = "undecided"

# What a point's equal-time call (`StepTimePoint.ratio_basis`) rests on.
BASIS_REFERENCE = "reference"  # the reference itself: "within" by definition
BASIS_CI = "ci"  # the 95% CIs of both the point and the reference
BASIS_MEDIAN_FALLBACK = "median_fallback"  # one of them has no CI: its median stands in for its bounds
BASIS_MEDIAN = "median"  # neither has a CI: the call rests on the two medians alone

# What a point's throughput is computed from (`StepTimePoint.throughput_basis`).
THROUGHPUT_MEAN = "mean"  # B / mean step time = n·B / Σt (what a run of these steps delivers)
THROUGHPUT_MEDIAN = "median"  # B / median (files analysed before version 3, or a summary without a mean)

REGIME_FLAT = "flat"
REGIME_TRANSITION = "transition"
REGIME_LINEAR = "linear"

FIT_LINEAR = "linear"
FIT_HINGE = "hinge"

MIN_POINTS_FOR_FIT = 3
# The hinge has three parameters; with three points it always fits exactly, so it cannot win then.
MIN_POINTS_FOR_HINGE_CHOICE = 4
# The knee is searched for, which makes the nested-model F-test optimistic: ask for strong evidence.
HINGE_P_VALUE = 0.01
# A straight line already within this relative RMS leaves nothing a knee could meaningfully explain.
NEGLIGIBLE_REL_RESIDUAL = 2e-3
# Above this relative RMS residual the growth past the equal-time range is irregular, not about linear.
IRREGULAR_REL_RESIDUAL = 0.10
# A point is "linear" once at least half its fitted step time scales with the batch (d ln t / d ln B >= 0.5).
LINEAR_ELASTICITY = 0.5
KNEE_GRID_POINTS = 512

# How step time grows past the equal-time range, judged on the best fit (`StepTimeAnalysis.growth`).
GROWTH_NONE = "none"  # the fits find no positive slope
GROWTH_IRREGULAR = "irregular"  # a slope, but the fit misses by more than IRREGULAR_REL_RESIDUAL RMS
GROWTH_LINEAR = "linear"  # about linearly, as the fit says


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PointSummary:
    """What the analysis needs from one measured batch size (times in seconds).

    `ci_low_s`/`ci_high_s` bound the median with 95% confidence (None when there were too few samples);
    `block_spread_rel` is (max - min) / 2 / median over the medians of repeated timing blocks;
    `mean_s` with `mean_ci_low_s`/`mean_ci_high_s` the mean step time and its 95% CI (None: not given,
    and throughput falls back to the median); `block_shortfall` is set when fewer timed blocks than a
    CI across blocks needs fitted the point's budget.
    """

    batch_size: int
    median_s: float
    ci_low_s: float | None
    ci_high_s: float | None
    block_spread_rel: float | None = None
    mean_s: float | None = None
    mean_ci_low_s: float | None = None
    mean_ci_high_s: float | None = None
    block_shortfall: BlockShortfall | None = None

    def to_dict(self) -> dict:
        return json_safe({
            "batch_size": self.batch_size,
            "median_s": self.median_s,
            "ci_low_s": self.ci_low_s,
            "ci_high_s": self.ci_high_s,
            "block_spread_rel": self.block_spread_rel,
            "mean_s": self.mean_s,
            "mean_ci_low_s": self.mean_ci_low_s,
            "mean_ci_high_s": self.mean_ci_high_s,
            "block_shortfall": self.block_shortfall.to_dict() if self.block_shortfall else None,
        })


@dataclass(frozen=True)
class StepTimePoint:
    """One batch size as the analysis sees it.

    - `throughput_samples_per_s` = B / mean step time (n·B / Σt, `throughput_basis` "mean"); its
      interval is [B / mean_ci_high, B / mean_ci_low]. Without a mean (analyses before version 3, or a
      summary that gave none) B / median and [B / ci_high, B / ci_low] (`throughput_basis` "median").
    - `heavy_tail`: the mean step exceeds the median by more than the noise target (slow steps that a
      median hides but an epoch pays for); None without a mean.
    - `ratio_to_reference` = t(B) / t(B_ref) (medians); the conservative interval is
      [ci_low(B) / ci_high(ref), ci_high(B) / ci_low(ref)], with the median standing in for a missing
      bound. `ratio_basis` says what the call rests on: "ci" (both CIs), "median_fallback" (one of
      the two has no CI), "median" (neither: the two medians alone), "reference" (the reference).
    - `equal_time`: "within" if the interval's upper end <= 1 + eps, "beyond" if its lower end > 1 + eps,
      else "undecided". The reference is "within" by definition.
    - `block_shortfall`: fewer timed blocks than a CI across blocks needs fitted the point's budget
      (its CI rests on the pooled samples, or it has none).
    - `noisy`: repeated timing blocks disagree by more than the noise target (None: no blocks to compare).
    - `regime`: "flat", "transition" or "linear" (see `analyse_step_times`); None with
      `regime_reason` when it cannot be told.
    - `fitted_s`: the best fit's step time at this batch (None without a fit).
    """

    batch_size: int
    median_s: float
    ci_low_s: float | None
    ci_high_s: float | None
    throughput_samples_per_s: float
    throughput_low_samples_per_s: float | None
    throughput_high_samples_per_s: float | None
    ratio_to_reference: float
    ratio_low: float
    ratio_high: float
    ratio_basis: str
    equal_time: str
    block_spread_rel: float | None
    noisy: bool | None
    regime: str | None = None
    regime_reason: str | None = None
    fitted_s: float | None = None
    diagnosis: str | None = None
    throughput_basis: str = THROUGHPUT_MEDIAN
    mean_s: float | None = None
    heavy_tail: bool | None = None
    block_shortfall: BlockShortfall | None = None

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["block_shortfall"] = self.block_shortfall.to_dict() if self.block_shortfall else None
        return json_safe(d)

    @classmethod
    def from_dict(cls, d: dict) -> "StepTimePoint":
        fields = {name: d[name] for name in cls.__dataclass_fields__ if name in d}
        fields["block_shortfall"] = BlockShortfall.from_dict(d.get("block_shortfall"))
        return cls(**fields)


@dataclass(frozen=True)
class LinearFit:
    """t(B) = intercept_s + slope_s_per_sample * B, weighted least squares on relative errors.

    `saturation_batch` = intercept / slope (DESIGN's B_sat ~ a/b: the batch at which the per-sample
    work equals the fixed per-step cost, i.e. the step takes twice its fixed part); None with
    `saturation_batch_reason` when the slope is 0 or the intercept is not positive.
    `slope_clamped` is True when the unconstrained slope came out negative and was held at 0.
    """

    intercept_s: float
    slope_s_per_sample: float
    intercept_se_s: float | None
    slope_se_s_per_sample: float | None
    saturation_batch: float | None
    saturation_batch_reason: str | None
    rel_rms_residual: float
    n_points: int
    slope_clamped: bool

    def predict_s(self, batch_size: float) -> float:
        return self.intercept_s + self.slope_s_per_sample * float(batch_size)

    def elasticity(self, batch_size: float) -> float:
        t = self.predict_s(batch_size)
        return self.slope_s_per_sample * float(batch_size) / t if t > 0 else math.inf

    def to_dict(self) -> dict:
        return json_safe({"model": "t = intercept_s + slope_s_per_sample * B",
                       **{name: getattr(self, name) for name in self.__dataclass_fields__}})


@dataclass(frozen=True)
class HingeFit:
    """t(B) = plateau_s for B <= K, plateau_s + slope_s_per_sample * (B - K) beyond (a plateau, then a line).

    `knee_position`: "inside" (a plateau and a rise both seen), "at_smallest" (no plateau resolved: the
    fit is the straight line), "beyond_range" (no rise: `knee_batch` is None and the slope is 0).
    """

    plateau_s: float
    slope_s_per_sample: float
    knee_batch: float | None
    knee_position: str
    rel_rms_residual: float
    n_points: int

    def predict_s(self, batch_size: float) -> float:
        if self.knee_batch is None:
            return self.plateau_s
        return self.plateau_s + self.slope_s_per_sample * max(0.0, float(batch_size) - self.knee_batch)

    def elasticity(self, batch_size: float) -> float:
        if self.knee_batch is None or batch_size <= self.knee_batch:
            return 0.0
        t = self.predict_s(batch_size)
        return self.slope_s_per_sample * float(batch_size) / t if t > 0 else math.inf

    def to_dict(self) -> dict:
        model = "t = plateau_s for B <= knee_batch, plateau_s + slope_s_per_sample * (B - knee_batch) beyond"
        return json_safe({"model": model,
                       **{name: getattr(self, name) for name in self.__dataclass_fields__}})


@dataclass
class StepTimeAnalysis:
    """Everything `analyse_step_times` concludes, as typed fields (`bench.present.steptime` says it in words).

    Values that could not be determined are None, and `null_reasons[name]` says why.
    """

    eps: float
    noise_target: float
    saturation_fraction: float
    points: list[StepTimePoint] = field(default_factory=list)
    reference_batch: int | None = None
    reference_median_s: float | None = None
    equal_time_max_batch: int | None = None
    equal_time_max_batch_possible: int | None = None
    first_beyond_batch: int | None = None
    equal_time_reaches_largest: bool | None = None
    points_without_ci: list[int] = field(default_factory=list)
    linear_fit: LinearFit | None = None
    hinge_fit: HingeFit | None = None
    best_fit: str | None = None
    best_fit_reason: str | None = None
    saturation_batch_linear: float | None = None
    knee_batch: float | None = None
    knee_source: str | None = None
    knee_beyond_range: bool | None = None
    peak_throughput_samples_per_s: float | None = None
    peak_throughput_batch: int | None = None
    peak_at_largest_batch: bool | None = None
    throughput_saturation_batch: int | None = None
    noisy_batches: list[int] = field(default_factory=list)
    faster_at_larger_batch: list[tuple[int, int]] = field(default_factory=list)
    faster_on_medians: list[tuple[int, int]] = field(default_factory=list)
    heavy_tail_batches: list[int] = field(default_factory=list)
    block_shortfall_batches: list[int] = field(default_factory=list)
    machine_load: MachineLoad | None = None
    largest_batch_that_fits: int | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def largest_measured_batch(self) -> int | None:
        return self.points[-1].batch_size if self.points else None

    def growth(self) -> str | None:
        """How step time grows past the equal-time range, on the best fit: GROWTH_NONE (no positive
        slope), GROWTH_IRREGULAR (the fit's relative RMS residual is above IRREGULAR_REL_RESIDUAL) or
        GROWTH_LINEAR; None without a fit."""
        f = self.fit()
        if f is None:
            return None
        if f.slope_s_per_sample <= 0:
            return GROWTH_NONE
        return GROWTH_IRREGULAR if f.rel_rms_residual > IRREGULAR_REL_RESIDUAL else GROWTH_LINEAR

    def fit(self) -> LinearFit | HingeFit | None:
        """The fit `best_fit` names (None without one)."""
        if self.best_fit == FIT_HINGE:
            return self.hinge_fit
        if self.best_fit == FIT_LINEAR:
            return self.linear_fit
        return None

    def fitted_step_time_s(self, batch_size: float) -> float | None:
        """The best fit's step time at `batch_size` (for drawing the curve); None without a fit."""
        f = self.fit()
        return f.predict_s(batch_size) if f is not None else None

    def to_dict(self) -> dict:
        return json_safe({
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "parameters": {"eps": self.eps, "noise_target": self.noise_target,
                           "saturation_fraction": self.saturation_fraction},
            "n_points": self.n_points,
            "reference_batch": self.reference_batch,
            "reference_median_s": self.reference_median_s,
            "equal_time_max_batch": self.equal_time_max_batch,
            "equal_time_max_batch_possible": self.equal_time_max_batch_possible,
            "first_beyond_batch": self.first_beyond_batch,
            "equal_time_reaches_largest": self.equal_time_reaches_largest,
            "points_without_ci": list(self.points_without_ci),
            "best_fit": self.best_fit,
            "best_fit_reason": self.best_fit_reason,
            "linear_fit": self.linear_fit.to_dict() if self.linear_fit else None,
            "hinge_fit": self.hinge_fit.to_dict() if self.hinge_fit else None,
            "saturation_batch_linear": self.saturation_batch_linear,
            "knee_batch": self.knee_batch,
            "knee_source": self.knee_source,
            "knee_beyond_range": self.knee_beyond_range,
            "peak_throughput_samples_per_s": self.peak_throughput_samples_per_s,
            "peak_throughput_batch": self.peak_throughput_batch,
            "peak_at_largest_batch": self.peak_at_largest_batch,
            "throughput_saturation_batch": self.throughput_saturation_batch,
            "noisy_batches": list(self.noisy_batches),
            "faster_at_larger_batch": [list(pair) for pair in self.faster_at_larger_batch],
            "faster_on_medians": [list(pair) for pair in self.faster_on_medians],
            "heavy_tail_batches": list(self.heavy_tail_batches),
            "block_shortfall_batches": list(self.block_shortfall_batches),
            "machine_load": self.machine_load.to_dict() if self.machine_load else None,
            "largest_batch_that_fits": self.largest_batch_that_fits,
            "points": [p.to_dict() for p in self.points],
            "null_reasons": dict(self.null_reasons),
        })

    @classmethod
    def from_dict(cls, d: dict) -> "StepTimeAnalysis":
        """The record back from `to_dict`'s form (a sweep file's `analysis`). Version 1 dicts load too:
        their `verdict` sentences are ignored, since sentences are made from the fields. Raises
        InvalidResultsFile for a dict of another schema, a newer version, or missing fields."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise InvalidResultsFile(f"not a step-time analysis (schema is {got!r}, expected {SCHEMA!r})")
        if d.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise InvalidResultsFile(f"{SCHEMA} schema version {d.get('schema_version')!r} is not one this tool "
                                     f"reads ({', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
        try:
            params = d["parameters"]
            lin, hinge = d.get("linear_fit"), d.get("hinge_fit")
            if d["schema_version"] < 3:
                d = _upgraded_calls(d)
            return cls(
                eps=float(params["eps"]), noise_target=float(params["noise_target"]),
                saturation_fraction=float(params["saturation_fraction"]),
                points=[StepTimePoint.from_dict(p) for p in d.get("points") or []],
                linear_fit=_from_fields(LinearFit, lin) if lin else None,
                hinge_fit=_from_fields(HingeFit, hinge) if hinge else None,
                points_without_ci=[int(b) for b in d.get("points_without_ci") or []],
                noisy_batches=[int(b) for b in d.get("noisy_batches") or []],
                faster_at_larger_batch=[(int(a), int(b)) for a, b in d.get("faster_at_larger_batch") or []],
                faster_on_medians=[(int(a), int(b)) for a, b in d.get("faster_on_medians") or []],
                heavy_tail_batches=[int(b) for b in d.get("heavy_tail_batches") or []],
                block_shortfall_batches=[int(b) for b in d.get("block_shortfall_batches") or []],
                machine_load=MachineLoad.from_dict(d.get("machine_load")),
                null_reasons={str(k): str(v) for k, v in (d.get("null_reasons") or {}).items()},
                **{name: d.get(name) for name in _PLAIN_FIELDS},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed {SCHEMA} analysis: {type(e).__name__}: {e}") from None


def _upgraded_calls(d: dict) -> dict:
    """A version 1 or 2 analysis with its calls said as version 3 says them: a fall between neighbours
    of which one has no CI moves from `faster_at_larger_batch` (where those versions put it, as if
    beyond CIs) to `faster_on_medians`, and `ratio_basis` says "median" where neither side has a CI."""
    points = [dict(p) for p in d.get("points") or []]
    no_ci = {int(p["batch_size"]) for p in points if p.get("ci_low_s") is None or p.get("ci_high_s") is None}
    pairs = [(int(a), int(b)) for a, b in d.get("faster_at_larger_batch") or []]
    ref_has_ci = bool(points) and int(points[0]["batch_size"]) not in no_ci
    for p in points:
        if p.get("ratio_basis") not in (None, BASIS_REFERENCE):
            p["ratio_basis"] = {2: BASIS_CI, 1: BASIS_MEDIAN_FALLBACK, 0: BASIS_MEDIAN}[
                ref_has_ci + (int(p["batch_size"]) not in no_ci)]
    by_batch = {int(p["batch_size"]): p for p in points}
    noise = float(d["parameters"]["noise_target"])

    def falls_beyond_noise(small: int, large: int) -> bool:
        p, q = by_batch.get(small), by_batch.get(large)
        if p is None or q is None:
            return False
        q_hi = q["ci_high_s"] if q.get("ci_high_s") is not None else q["median_s"]
        p_lo = p["ci_low_s"] if p.get("ci_low_s") is not None else p["median_s"]
        return q_hi < p_lo - noise * p["median_s"]

    return {**d, "points": points,
            "faster_at_larger_batch": [pr for pr in pairs if not set(pr) & no_ci],
            "faster_on_medians": [pr for pr in pairs if set(pr) & no_ci and falls_beyond_noise(*pr)]}


# Fields of StepTimeAnalysis stored as plain JSON values under their own names.
_PLAIN_FIELDS = (
    "reference_batch", "reference_median_s", "equal_time_max_batch", "equal_time_max_batch_possible",
    "first_beyond_batch", "equal_time_reaches_largest", "best_fit", "best_fit_reason", "saturation_batch_linear",
    "knee_batch", "knee_source", "knee_beyond_range", "peak_throughput_samples_per_s", "peak_throughput_batch",
    "peak_at_largest_batch", "throughput_saturation_batch", "largest_batch_that_fits",
)


def _from_fields(cls, d: dict):
    """A frozen record from its to_dict form: its own fields only (`model` and the like are labels)."""
    return cls(**{name: d[name] for name in cls.__dataclass_fields__ if name in d})


# ------------------------------------------------------------------------------------------ inputs


def summaries_from_measurements(points: Iterable["Measurement"]) -> list[PointSummary]:
    """PointSummary per ok Measurement (oom and error points are skipped), sorted by batch size.

    `block_spread_rel` is `bench.core.stats.relative_spread(m.block_medians_s)` (None with fewer than two
    blocks); the mean and its CI and the block shortfall come from the point too. Raises BenchError for an ok point without samples or for points of more than one
    configuration (their step times cannot be compared on one curve).
    """
    out: list[PointSummary] = []
    groups: set[str] = set()
    for m in points:
        if not m.ok:
            continue
        s = m.stats
        if s is None:
            raise BenchError(f"point {m.case.key} is marked ok but has no step-time samples")
        groups.add(m.case.group_key)
        out.append(PointSummary(
            batch_size=int(m.case.batch_size),
            median_s=s.median_s,
            ci_low_s=s.ci_low_s,
            ci_high_s=s.ci_high_s,
            block_spread_rel=relative_spread(m.block_medians_s),
            mean_s=s.mean_s,
            mean_ci_low_s=s.mean_ci_low_s,
            mean_ci_high_s=s.mean_ci_high_s,
            block_shortfall=m.block_shortfall,
        ))
    if len(groups) > 1:
        raise BenchError(f"step-time analysis needs points of one configuration, got {len(groups)}: "
                         f"{', '.join(sorted(groups))}")
    return sorted(out, key=lambda p: p.batch_size)


def analyse_sweep(result: "SweepResult", *, eps: float | None = None, noise_target: float | None = None,
                  diagnose: bool = True, **kwargs: Any) -> StepTimeAnalysis:
    """The step-time analysis of a sweep (from a sweep file or a pytest-benchmark run alike): the one
    entry point, so the same points always give the same analysis.

    `eps` and `noise_target` default to the sweep's own settings (`config["eps"]`, `config["ci_target"]`),
    the largest batch that fits to the sweep's, the machine's load to what the points' `conditions`
    readings say (`bench.core.load.machine_load`). With `diagnose` each ok point is diagnosed from its
    telemetry and its regime, in two passes: the first labels each point's regime (flat, transition,
    linear) from step times alone, the diagnosis combines it with the telemetry (stored in the point's
    `telemetry["diagnosis"]`), and the second pass writes the verdict with it. BenchError when the
    points cannot be analysed (of several configurations, or repeating a batch size).
    """
    from bench.analysis.diagnosis import diagnose as diagnose_point

    config = result.config or {}
    ok = result.ok_points()
    load, load_reason = machine_load(
        [(p.conditions.get("start") or {}, p.conditions.get("end") or {}) for p in ok],
        ok[0].case.device.split(":")[0] if ok else "cpu")
    kw = dict(eps=float(eps if eps is not None else config.get("eps", 0.05)),
              noise_target=float(noise_target if noise_target is not None else config.get("ci_target", 0.01)),
              largest_batch_that_fits=result.largest_batch_that_fits, machine_load=load,
              machine_load_reason=load_reason)
    kw.update(kwargs)
    summaries = summaries_from_measurements(result.points)
    if not diagnose:
        return analyse_step_times(summaries, **kw)
    regimes = {p.batch_size: p.regime for p in analyse_step_times(summaries, **kw).points}
    diagnoses = {}
    for p in result.ok_points():
        d = diagnose_point({**p.telemetry, "null_reasons": p.null_reasons}, regimes.get(p.batch_size),
                           mfu=p.telemetry.get("mfu"), device_type=p.case.device.split(":")[0])
        p.telemetry["diagnosis"] = d.to_dict()
        diagnoses[p.batch_size] = d.label
    return analyse_step_times(summaries, diagnoses=diagnoses, **kw)


def add_analysis(result: "SweepResult", **kwargs: Any) -> "SweepResult":
    """`result` with `analysis` set to `analyse_sweep(result, **kwargs)` as a dict, or to None with the
    reason in `config["analysis_reason"]` when its points cannot be analysed (e.g. a pytest-benchmark
    run that saved one benchmark twice)."""
    try:
        result.analysis = analyse_sweep(result, **kwargs).to_dict()
        result.config.pop("analysis_reason", None)
    except (BenchError, ValueError) as e:
        result.analysis = None
        result.config["analysis_reason"] = f"step-time analysis failed: {e}"
    return result


# ---------------------------------------------------------------------------------------- analysis


def analyse_step_times(
    points: Sequence[PointSummary],
    *,
    eps: float = 0.05,
    noise_target: float = 0.01,
    saturation_fraction: float = 0.95,
    largest_batch_that_fits: int | None = None,
    diagnoses: dict[int, str] | None = None,
    machine_load: MachineLoad | None = None,
    machine_load_reason: str | None = None,
) -> StepTimeAnalysis:
    """Analyse step time against batch size. The rules:

    1. Throughput per point: B / mean step time (n·B / Σt, what an epoch of such steps delivers),
       interval [B / mean_ci_high, B / mean_ci_low]; B / median with [B / ci_high, B / ci_low] for a
       point given without a mean. A point whose mean exceeds its median by more than `noise_target`
       has a heavy tail (`heavy_tail_batches`): its typical step (the median, which the equal-time
       test uses) is faster than its steps on average.
    2. Equal-time range, judged with CIs rather than medians. Reference = the smallest batch. Each
       point's ratio t(B)/t(ref) gets the conservative interval [ci_low(B)/ci_high(ref),
       ci_high(B)/ci_low(ref)] (the median replaces a missing bound; such points are listed in
       `points_without_ci`). "within": upper end <= 1+eps; "beyond": lower end
       > 1+eps; else "undecided". `equal_time_max_batch` = largest B such that it and every smaller
       point are "within"; `equal_time_max_batch_possible` = largest B before the first "beyond" (the
       range could reach it if the undecided points turned out within); `first_beyond_batch`. Each
       point's `ratio_basis` records whether its call rests on CIs ("ci") or on a median in place of a
       missing CI ("median_fallback": one side; "median": both, the medians alone).
    3. Fits (at least 3 points): `fit_linear` (t = a + b*B, b >= 0, B_sat = a/b) and `fit_hinge`
       (plateau, then a line from knee K). `best_fit` is the line unless the hinge is clearly better:
       at least 4 points, the line's relative RMS residual above 0.2%, and a nested-model F-test on
       the relative residuals with p < 0.01.
    4. Peak throughput (the largest of rule 1's) and `throughput_saturation_batch`, the smallest
       batch whose throughput reaches `saturation_fraction` of the peak.
    5. Noise: a point is noisy when `block_spread_rel` > `noise_target` (repeated blocks disagree).
       `faster_at_larger_batch` lists neighbours, both with CIs, where the larger batch is faster
       beyond both CIs; `faster_on_medians` those where one or both lack a CI and the larger batch's
       median (or upper bound) lies below the smaller's median (or lower bound) by more than
       `noise_target` of it: a fall on medians, not beyond CIs. `block_shortfall_batches`: points
       where fewer timed blocks than a CI across blocks needs fitted the budget. `machine_load`
       (given; from the points' readings in `analyse_sweep`) says whether other work kept the
       run from a core.
    6. Regime per point: "flat" if "within" with no "beyond" at or below it; otherwise, from the best
       fit, "linear" when past the knee with d ln t / d ln B >= 0.5 (at least half the step time
       scales with the batch; for the line that is B >= a/b), else "transition".
       `diagnoses` (batch -> short phrase such as "launch-bound") are carried per point.
    7. `knee_batch`: None with `knee_beyond_range` when every point is within (the knee lies beyond
       the largest batch measured); else the hinge's knee when the hinge is the best fit, else a/b
       (`knee_beyond_range` also when the line has no slope or a/b exceeds the largest batch).
    """
    _check_parameters(eps, noise_target, saturation_fraction, largest_batch_that_fits)
    pts = _checked_points(points)
    diagnoses = {int(k): str(v) for k, v in (diagnoses or {}).items() if v}
    a = StepTimeAnalysis(eps=float(eps), noise_target=float(noise_target),
                         saturation_fraction=float(saturation_fraction),
                         largest_batch_that_fits=largest_batch_that_fits, machine_load=machine_load)
    if largest_batch_that_fits is None:
        a.null_reasons["largest_batch_that_fits"] = "not given (no search for the largest batch)"
    if machine_load is None:
        a.null_reasons["machine_load"] = machine_load_reason or "not given (no load readings)"

    if not pts:
        reason = "no batch size was measured successfully"
        for name in ("reference_batch", "equal_time_max_batch", "equal_time_max_batch_possible",
                     "first_beyond_batch", "linear_fit", "hinge_fit", "best_fit", "knee_batch",
                     "saturation_batch_linear", "peak_throughput_samples_per_s", "throughput_saturation_batch"):
            a.null_reasons[name] = reason
        return a

    ref = pts[0]
    a.reference_batch = ref.batch_size
    a.reference_median_s = ref.median_s
    a.points_without_ci = [p.batch_size for p in pts if p.ci_low_s is None or p.ci_high_s is None]

    rows = []
    for p in pts:
        if p is ref:
            r_lo = r_hi = 1.0
            basis = BASIS_REFERENCE
            equal_time = WITHIN
        else:
            r_lo, r_hi, basis = _ratio_interval(p, ref)
            equal_time = WITHIN if r_hi <= 1.0 + eps else BEYOND if r_lo > 1.0 + eps else UNDECIDED
        if p.mean_s is not None:
            t_basis, t_mid, t_lo, t_hi = THROUGHPUT_MEAN, p.mean_s, p.mean_ci_low_s, p.mean_ci_high_s
        else:
            t_basis, t_mid, t_lo, t_hi = THROUGHPUT_MEDIAN, p.median_s, p.ci_low_s, p.ci_high_s
        rows.append(dict(
            batch_size=p.batch_size, median_s=p.median_s, ci_low_s=p.ci_low_s, ci_high_s=p.ci_high_s,
            throughput_samples_per_s=p.batch_size / t_mid, throughput_basis=t_basis,
            throughput_low_samples_per_s=p.batch_size / t_hi if t_hi else None,
            throughput_high_samples_per_s=p.batch_size / t_lo if t_lo and t_lo > 0 else None,
            ratio_to_reference=p.median_s / ref.median_s, ratio_low=r_lo, ratio_high=r_hi,
            ratio_basis=basis, equal_time=equal_time, block_spread_rel=p.block_spread_rel,
            noisy=None if p.block_spread_rel is None else p.block_spread_rel > noise_target,
            diagnosis=diagnoses.get(p.batch_size), mean_s=p.mean_s,
            heavy_tail=None if p.mean_s is None else p.mean_s > p.median_s * (1.0 + noise_target),
            block_shortfall=p.block_shortfall,
        ))

    _equal_time_range(a, rows)

    # Fits.
    b_arr = np.array([p.batch_size for p in pts], dtype=float)
    t_arr = np.array([p.median_s for p in pts], dtype=float)
    if len(pts) >= MIN_POINTS_FOR_FIT:
        a.linear_fit = fit_linear(b_arr, t_arr)
        a.hinge_fit = fit_hinge(b_arr, t_arr)
        a.best_fit, a.best_fit_reason = choose_fit(a.linear_fit, a.hinge_fit)
        a.saturation_batch_linear = a.linear_fit.saturation_batch
        if a.saturation_batch_linear is None:
            a.null_reasons["saturation_batch_linear"] = a.linear_fit.saturation_batch_reason or "undefined"
    else:
        reason = f"fits need at least {MIN_POINTS_FOR_FIT} ok points, got {len(pts)}"
        for name in ("linear_fit", "hinge_fit", "best_fit", "saturation_batch_linear"):
            a.null_reasons[name] = reason
    _knee(a, pts[-1].batch_size)

    # Regimes.
    fit = a.fit()
    seen_beyond = False
    for row in rows:
        seen_beyond = seen_beyond or row["equal_time"] == BEYOND
        row["fitted_s"] = fit.predict_s(row["batch_size"]) if fit is not None else None
        if len(rows) < 2:
            row["regime"], row["regime_reason"] = None, "only one batch size measured"
        elif row["equal_time"] == WITHIN and not seen_beyond:
            row["regime"], row["regime_reason"] = REGIME_FLAT, None
        elif fit is None:
            row["regime"], row["regime_reason"] = None, a.null_reasons.get("best_fit", "no fit")
        elif fit.elasticity(row["batch_size"]) >= LINEAR_ELASTICITY:
            row["regime"], row["regime_reason"] = REGIME_LINEAR, None
        else:
            row["regime"], row["regime_reason"] = REGIME_TRANSITION, None
    a.points = [StepTimePoint(**row) for row in rows]

    # Throughput.
    thr = [r["throughput_samples_per_s"] for r in rows]
    i_peak = int(np.argmax(thr))
    a.peak_throughput_samples_per_s = thr[i_peak]
    a.peak_throughput_batch = rows[i_peak]["batch_size"]
    a.peak_at_largest_batch = i_peak == len(rows) - 1
    a.throughput_saturation_batch = next(r["batch_size"] for r, v in zip(rows, thr)
                                         if v >= saturation_fraction * thr[i_peak])

    # Noise, tails, shortfalls and monotonicity.
    a.noisy_batches = [p.batch_size for p in a.points if p.noisy]
    a.heavy_tail_batches = [p.batch_size for p in a.points if p.heavy_tail]
    a.block_shortfall_batches = [p.batch_size for p in a.points if p.block_shortfall is not None]
    for p, q in zip(pts, pts[1:]):
        q_hi = q.ci_high_s if q.ci_high_s is not None else q.median_s
        p_lo = p.ci_low_s if p.ci_low_s is not None else p.median_s
        if q_hi >= p_lo:
            continue
        if _has_ci(p) and _has_ci(q):
            a.faster_at_larger_batch.append((p.batch_size, q.batch_size))
        elif q_hi < p_lo - noise_target * p.median_s:
            # Without a CI on one side the comparison rests on a median: it counts only beyond the
            # precision the points were measured to.
            a.faster_on_medians.append((p.batch_size, q.batch_size))

    return a


def _has_ci(p: PointSummary) -> bool:
    return p.ci_low_s is not None and p.ci_high_s is not None


def _ratio_interval(p: PointSummary, ref: PointSummary) -> tuple[float, float, str]:
    lo_num = p.ci_low_s if p.ci_low_s is not None else p.median_s
    hi_num = p.ci_high_s if p.ci_high_s is not None else p.median_s
    lo_den = ref.ci_low_s if ref.ci_low_s is not None else ref.median_s
    hi_den = ref.ci_high_s if ref.ci_high_s is not None else ref.median_s
    basis = {2: BASIS_CI, 1: BASIS_MEDIAN_FALLBACK, 0: BASIS_MEDIAN}[_has_ci(p) + _has_ci(ref)]
    return lo_num / hi_den, hi_num / lo_den, basis


def _equal_time_range(a: StepTimeAnalysis, rows: list[dict]) -> None:
    if len(rows) < 2:
        reason = "only one batch size measured: nothing to compare its step time with"
        for name in ("equal_time_max_batch", "equal_time_max_batch_possible", "first_beyond_batch"):
            a.null_reasons[name] = reason
        return
    for r in rows:
        if r["equal_time"] != WITHIN:
            break
        a.equal_time_max_batch = r["batch_size"]
    first_beyond = next((i for i, r in enumerate(rows) if r["equal_time"] == BEYOND), None)
    if first_beyond is None:
        a.first_beyond_batch = None
        a.null_reasons["first_beyond_batch"] = (f"no batch measured is clearly slower than the reference by "
                                                f"more than eps = {a.eps:g}")
        a.equal_time_max_batch_possible = rows[-1]["batch_size"]
    else:
        a.first_beyond_batch = rows[first_beyond]["batch_size"]
        a.equal_time_max_batch_possible = rows[first_beyond - 1]["batch_size"]
    a.equal_time_reaches_largest = a.equal_time_max_batch == rows[-1]["batch_size"]


def _knee(a: StepTimeAnalysis, largest_batch: int) -> None:
    if a.equal_time_reaches_largest:
        a.knee_beyond_range = True
        a.null_reasons["knee_batch"] = (f"step time stays within eps = {a.eps:g} of the reference up to the "
                                        "largest batch measured: the knee lies beyond it")
        return
    if a.best_fit is None:
        a.null_reasons["knee_batch"] = a.null_reasons.get("best_fit", "no fit")
        return
    if a.best_fit == FIT_HINGE:
        h = a.hinge_fit
        a.knee_batch, a.knee_source = h.knee_batch, "hinge"
        a.knee_beyond_range = h.knee_position == "beyond_range"
        if h.knee_batch is None:
            a.null_reasons["knee_batch"] = ("the hinge fit finds no rise: "
                                            "the knee lies beyond the largest batch measured")
    else:
        lin = a.linear_fit
        a.knee_batch, a.knee_source = lin.saturation_batch, "linear a/b"
        # No slope, or a/b past the largest batch: the per-sample work never reaches the fixed cost here.
        a.knee_beyond_range = lin.slope_s_per_sample <= 0 or (lin.saturation_batch is not None
                                                              and lin.saturation_batch > largest_batch)
        if lin.saturation_batch is None:
            a.null_reasons["knee_batch"] = lin.saturation_batch_reason or "undefined"
            a.knee_source = None


# -------------------------------------------------------------------------------------------- fits


def _wls_line(x: np.ndarray, t: np.ndarray) -> tuple[float, float, bool]:
    """(intercept, slope, clamped) minimising sum(((t - c - s*x) / t)^2) with s >= 0."""
    w = 1.0 / t**2
    sw, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    st, sxt = (w * t).sum(), (w * x * t).sum()
    det = sw * sxx - sx * sx
    # det ~ 0: all x equal (for the hinge, every point on the plateau), so no slope is identified.
    if det <= 1e-12 * sw * max(sxx, 1e-300):
        return st / sw, 0.0, False
    s = (sw * sxt - sx * st) / det
    if s < 0:
        return st / sw, 0.0, True
    return (st - s * sx) / sw, s, False


def _rel_residuals(t: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    return (t - fitted) / t


def fit_linear(batch_sizes: Sequence[float], step_times_s: Sequence[float]) -> LinearFit:
    """Fit t = a + b*B by weighted least squares with weights 1/t^2 (relative errors count equally
    at every batch size), with b >= 0: a negative slope is held at 0 and a becomes the weighted mean.
    Standard errors come from the weighted normal equations scaled by the residual variance
    (None when the slope was clamped or there are only two points).
    """
    x = np.asarray(batch_sizes, dtype=float)
    t = np.asarray(step_times_s, dtype=float)
    n = int(x.size)
    if n < 2:
        raise BenchError(f"a linear fit needs at least 2 points, got {n}")
    c, s, clamped = _wls_line(x, t)
    r = _rel_residuals(t, c + s * x)
    rms = float(np.sqrt(np.mean(r**2)))
    c_se = s_se = None
    if n > 2 and not clamped and s > 0:
        design = np.column_stack([np.ones_like(x), x]) / t[:, None]
        try:
            cov = np.linalg.inv(design.T @ design) * float(np.sum(r**2)) / (n - 2)
            c_se, s_se = float(math.sqrt(max(cov[0, 0], 0.0))), float(math.sqrt(max(cov[1, 1], 0.0)))
        except np.linalg.LinAlgError:
            pass
    if s <= 0:
        sat, reason = None, "step time does not grow with batch size in the measured range (slope 0)"
    elif c <= 0:
        sat, reason = None, "intercept <= 0: no fixed per-step cost resolved"
    else:
        sat, reason = float(c / s), None
    return LinearFit(intercept_s=float(c), slope_s_per_sample=float(s), intercept_se_s=c_se,
                     slope_se_s_per_sample=s_se, saturation_batch=sat, saturation_batch_reason=reason,
                     rel_rms_residual=rms, n_points=n, slope_clamped=clamped)


def _hinge_ssr(k: float, x: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    h = np.maximum(0.0, x - k)
    t0, s, _ = _wls_line(h, t)
    r = _rel_residuals(t, t0 + s * h)
    return float(np.sum(r**2)), t0, s


def fit_hinge(batch_sizes: Sequence[float], step_times_s: Sequence[float]) -> HingeFit:
    """Fit a plateau then a line: t = t0 for B <= K, t0 + b*(B - K) beyond, b >= 0.

    For a fixed knee K the model is linear in (t0, b), solved in closed form by the same weighted
    least squares as `fit_linear`. K is scanned over a fine log grid between the smallest and the
    largest batch (plus the batches themselves), then refined by a bounded scalar search around the
    best grid value. A knee at the smallest batch is the straight line (no plateau resolved); a zero
    slope means no rise was seen (knee beyond the range).
    """
    x = np.asarray(batch_sizes, dtype=float)
    t = np.asarray(step_times_s, dtype=float)
    n = int(x.size)
    if n < 3:
        raise BenchError(f"a hinge fit needs at least 3 points, got {n}")
    lo, hi = float(x.min()), float(x.max())
    grid = np.unique(np.concatenate([np.geomspace(lo, hi, KNEE_GRID_POINTS), x]))
    ssr = np.array([_hinge_ssr(k, x, t)[0] for k in grid])
    i = int(np.argmin(ssr))
    best_k, best_ssr = float(grid[i]), float(ssr[i])
    left, right = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, grid.size - 1)])
    if right > left:
        res = optimize.minimize_scalar(lambda k: _hinge_ssr(k, x, t)[0], bounds=(left, right),
                                       method="bounded", options={"xatol": 1e-6 * max(left, 1.0)})
        if res.success and float(res.fun) < best_ssr:
            best_k, best_ssr = float(res.x), float(res.fun)
    _, t0, s = _hinge_ssr(best_k, x, t)
    rms = float(math.sqrt(best_ssr / n))
    if s <= 0 or best_k >= hi * (1 - 1e-9):
        return HingeFit(plateau_s=float(t0), slope_s_per_sample=0.0, knee_batch=None,
                        knee_position="beyond_range", rel_rms_residual=rms, n_points=n)
    position = "at_smallest" if best_k <= lo * (1 + 1e-9) else "inside"
    return HingeFit(plateau_s=float(t0), slope_s_per_sample=float(s), knee_batch=best_k,
                    knee_position=position, rel_rms_residual=rms, n_points=n)


def choose_fit(linear: LinearFit, hinge: HingeFit | None) -> tuple[str, str]:
    """Which fit describes the data, and why: the line (2 parameters) unless the hinge (3) is clearly better.

    The hinge wins only with >= 4 points, a line that misses by more than 0.2% RMS, and a nested
    F-test on the relative residuals, F = (SSR_line - SSR_hinge) / (SSR_hinge / (n - 3)), with p < 0.01.
    """
    n = linear.n_points
    if hinge is None:
        return FIT_LINEAR, "no hinge fit"
    if n < MIN_POINTS_FOR_HINGE_CHOICE:
        return FIT_LINEAR, f"with {n} points a 3-parameter hinge fits exactly, so it cannot be judged better"
    if linear.rel_rms_residual <= NEGLIGIBLE_REL_RESIDUAL:
        return FIT_LINEAR, f"the line already fits within {linear.rel_rms_residual:.2%} RMS"
    ssr_lin = linear.rel_rms_residual**2 * n
    ssr_h = hinge.rel_rms_residual**2 * n
    if ssr_h >= ssr_lin:
        return FIT_LINEAR, "the hinge fits no better than the line"
    if ssr_h <= 1e-12 * ssr_lin:
        p = 0.0
    else:
        f_stat = (ssr_lin - ssr_h) / (ssr_h / (n - 3))
        p = float(_sps.f.sf(f_stat, 1, n - 3))
    if p < HINGE_P_VALUE:
        return FIT_HINGE, (f"the hinge cuts the relative RMS residual from {linear.rel_rms_residual:.2%} to "
                           f"{hinge.rel_rms_residual:.2%} (F-test p = {p:.2g})")
    return FIT_LINEAR, f"the hinge is not clearly better (F-test p = {p:.2g} >= {HINGE_P_VALUE})"


# ---------------------------------------------------------------------------------------- checking


def _check_parameters(eps, noise_target, saturation_fraction, largest_batch_that_fits) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise BenchError(f"eps must be a positive number (e.g. 0.05 for 5%), got {eps!r}")
    if not (isinstance(noise_target, (int, float)) and math.isfinite(noise_target) and noise_target > 0):
        raise BenchError(f"noise_target must be a positive number (e.g. 0.01 for ±1%), got {noise_target!r}")
    if not (isinstance(saturation_fraction, (int, float)) and 0 < saturation_fraction <= 1):
        raise BenchError(f"saturation_fraction must lie in (0, 1], got {saturation_fraction!r}")
    if largest_batch_that_fits is not None and (isinstance(largest_batch_that_fits, bool)
                                                or not isinstance(largest_batch_that_fits, int)
                                                or largest_batch_that_fits < 1):
        raise BenchError(f"largest_batch_that_fits must be a positive integer, got {largest_batch_that_fits!r}")


def _checked_points(points: Sequence[PointSummary]) -> list[PointSummary]:
    pts = sorted(points, key=lambda p: p.batch_size)
    seen: set[int] = set()
    for p in pts:
        b = p.batch_size
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise BenchError(f"batch size must be a positive integer, got {b!r}")
        if b in seen:
            raise BenchError(f"batch size {b} appears more than once")
        seen.add(b)
        if not (is_number(p.median_s) and p.median_s > 0):
            raise BenchError(f"batch {b}: median step time must be a positive number of seconds, got {p.median_s!r}")
        for name in ("ci_low_s", "ci_high_s"):
            v = getattr(p, name)
            if v is not None and not (is_number(v) and v > 0):
                raise BenchError(f"batch {b}: {name} must be a positive number of seconds or None, got {v!r}")
        tol = 1e-9 * p.median_s
        if p.ci_low_s is not None and p.ci_low_s > p.median_s + tol:
            raise BenchError(f"batch {b}: ci_low_s {p.ci_low_s!r} is above the median {p.median_s!r}")
        if p.ci_high_s is not None and p.ci_high_s < p.median_s - tol:
            raise BenchError(f"batch {b}: ci_high_s {p.ci_high_s!r} is below the median {p.median_s!r}")
        if p.block_spread_rel is not None and not (is_number(p.block_spread_rel) and p.block_spread_rel >= 0):
            raise BenchError(f"batch {b}: block_spread_rel must be a non-negative number or None, "
                             f"got {p.block_spread_rel!r}")
        if p.mean_s is not None and not (is_number(p.mean_s) and p.mean_s > 0):
            raise BenchError(f"batch {b}: mean_s must be a positive number of seconds or None, got {p.mean_s!r}")
        for name in ("mean_ci_low_s", "mean_ci_high_s"):
            v = getattr(p, name)
            if v is not None and not is_number(v):
                raise BenchError(f"batch {b}: {name} must be a number of seconds or None, got {v!r}")
    return [p if isinstance(p.batch_size, int) else replace(p, batch_size=int(p.batch_size)) for p in pts]
