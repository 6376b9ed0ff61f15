"""Training curves (one run each), steps-to-target read off them, the bench.curves file, and curves
imported from other tools' files (CSV or JSON rows; `bench.records.loader.load_curves` picks the reader).

Steps to target is interpolated linearly between the last evaluation before the target and the first
at or past it (the raw first-crossing step is kept beside it); a run that never gets there has no steps
(None) and a reason, and is kept, never dropped.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.core.errors import BenchError, InvalidResultsFile
from bench.records.envelope import Schema, header, load_record, read_header, save_record
from bench.records.tables import number, read_csv
from bench.records.validation import BATCH_SIZE, dataclass_schema, envelope_schema

CURVES = Schema("bench.curves", 1, "curves file", json_schema=lambda: curves_json_schema())
CURVES_SCHEMA = CURVES.name
CURVES_SCHEMA_VERSION = CURVES.version

# Metric names whose smaller values are better, used when a file does not say.
_LOWER_IS_BETTER_HINTS = ("loss", "error", "perplexity", "ppl", "risk", "mse", "mae")


def guess_higher_is_better(metric: str) -> bool:
    name = metric.lower()
    return not any(h in name for h in _LOWER_IS_BETTER_HINTS)


@dataclass
class CurvePoint:
    """One evaluation during a run: after `step` optimizer steps and `examples` training examples."""

    step: int
    examples: int
    wall_time_s: float | None = None
    train_loss: float | None = None
    eval_metric: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CurvePoint":
        return cls(step=int(d["step"]), examples=int(d["examples"]), wall_time_s=_opt_float(d.get("wall_time_s")),
                   train_loss=_opt_float(d.get("train_loss")), eval_metric=_opt_float(d.get("eval_metric")))


INTERPOLATED = "interpolated"
FIRST_EVALUATION = "first evaluation"


@dataclass(frozen=True)
class StepsToTarget:
    """Where a curve first reached a target; steps is None (with a reason) if it never did.

    `steps` (and `examples`, `wall_time_s`) are interpolated linearly in the metric between the last
    evaluation before the target and the first at or past it (`method` "interpolated"). Where there
    is no earlier evaluation to interpolate from (the first evaluation already meets the target),
    they are that evaluation's own values (`method` "first evaluation"). `first_eval_step` is always
    the step of the first evaluation at or past the target.
    """

    steps: float | None
    examples: float | None
    wall_time_s: float | None
    reason: str | None = None
    first_eval_step: int | None = None
    method: str | None = None

    @property
    def reached(self) -> bool:
        return self.steps is not None


@dataclass
class Curve:
    """One training run: task, batch size, LR rule and value, seed, and its evaluation points."""

    task: str
    batch_size: int
    lr: float | None
    seed: int | None
    points: list[CurvePoint] = field(default_factory=list)
    metric: str = "metric"
    higher_is_better: bool = True
    lr_rule: str | None = None
    base_lr: float | None = None
    base_batch_size: int | None = None
    lr_factor: float | None = None
    optimizer: str | None = None
    warmup_steps: int | None = None
    precision: str | None = None
    target: float | None = None
    stop_reason: str | None = None
    source: str = "bench train"
    run_key: str | None = None
    # A run that raised (out of memory, a task's own exception): its message. The run is kept, with
    # the evaluations it made, and a resumed grid runs it again.
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target

    def steps_to_target(self, target: float) -> StepsToTarget:
        """Steps to `target`: linear interpolation between the evaluations either side of the first
        crossing (see StepsToTarget). Reading off the first evaluation at or past the target alone
        would round every run up by up to one evaluation interval, a bias that is a larger share of
        the few steps large batches need."""
        evals = [p for p in self.points if p.eval_metric is not None]
        for i, p in enumerate(evals):
            if self.reached(p.eval_metric, target):
                if i == 0:
                    return StepsToTarget(float(p.step), float(p.examples), p.wall_time_s,
                                         first_eval_step=p.step, method=FIRST_EVALUATION)
                q = evals[i - 1]
                # q has not reached the target and p has, so their metrics differ and f is in (0, 1].
                f = (target - q.eval_metric) / (p.eval_metric - q.eval_metric)
                wall = (q.wall_time_s + f * (p.wall_time_s - q.wall_time_s)
                        if q.wall_time_s is not None and p.wall_time_s is not None else None)
                return StepsToTarget(q.step + f * (p.step - q.step), q.examples + f * (p.examples - q.examples),
                                     wall, first_eval_step=p.step, method=INTERPOLATED)
        last = self.points[-1].step if self.points else 0
        reason = f"not reached within {last} steps"
        if self.error is not None:
            reason += f" (the run failed: {self.error})"
        elif not evals:
            reason += " (no evaluations)"
        elif self.stop_reason and self.stop_reason.startswith("diverged"):
            reason += f" ({self.stop_reason})"
        return StepsToTarget(None, None, None, reason)

    @property
    def final_eval_metric(self) -> float | None:
        evals = [p.eval_metric for p in self.points if p.eval_metric is not None]
        return evals[-1] if evals else None

    @property
    def best_eval_metric(self) -> float | None:
        evals = [p.eval_metric for p in self.points if p.eval_metric is not None]
        if not evals:
            return None
        return max(evals) if self.higher_is_better else min(evals)

    @property
    def steps_run(self) -> int:
        return self.points[-1].step if self.points else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["points"] = [p.to_dict() for p in self.points]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Curve":
        try:
            known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "points"}
            c = cls(**known)
            c.batch_size = int(c.batch_size)
            c.points = [CurvePoint.from_dict(p) for p in d.get("points") or []]
            return c
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed curve: {type(e).__name__}: {e}") from None


@functools.cache
def curve_json_schema() -> dict:
    """The JSON Schema of one curve (a Curve's dict form), in bench.curves and bench.tta files."""
    point = dataclass_schema(CurvePoint, {"step": {"minimum": 0}, "examples": {"minimum": 0}})
    return dataclass_schema(Curve, {"batch_size": BATCH_SIZE,
                                    "points": {"type": ["array", "null"], "items": point}},
                            required=["task", "batch_size"])


@functools.cache
def curves_json_schema() -> dict:
    """The JSON Schema of a bench.curves file (the current version), checked at every load."""
    return envelope_schema({"config": {"type": ["object", "null"]}, "task": {"type": ["object", "null"]},
                            "curves": {"type": ["array", "null"], "items": curve_json_schema()}})


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------------
# The bench.curves results file (written by `bench train`, rewritten after every completed run)


@dataclass
class CurvesFile:
    """Curves plus the settings that made them; `finished` is False while runs are still to come."""

    curves: list[Curve] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    finished: bool = False
    environment: dict[str, Any] = field(default_factory=dict)  # the fingerprint of the machine that trained

    def to_dict(self) -> dict:
        return {
            **header(CURVES, created=self.created, finished=self.finished, environment=self.environment),
            "config": self.config,
            "task": self.task,
            "curves": [c.to_dict() for c in self.curves],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CurvesFile":
        head, d = read_header(d, CURVES)
        return cls(curves=[Curve.from_dict(c) for c in d.get("curves") or []], config=dict(d.get("config") or {}),
                   task=dict(d.get("task") or {}), created=head.created, finished=head.finished,
                   environment=head.environment)


def save_curves_file(cf: CurvesFile, path: str | os.PathLike) -> Path:
    return save_record(cf, path)


def load_curves_file(path: str | os.PathLike) -> CurvesFile:
    """A bench.curves file; one-line InvalidResultsFile naming the path for anything else."""
    return load_record(path, CurvesFile.from_dict)


# ---------------------------------------------------------------------------------------------
# Import: CSV / JSON rows with batch_size, step or examples, metric [, seed, lr, train_loss, wall_time_s]

REQUIRED_COLUMNS = ("batch_size", "metric")


def curves_from_foreign(p: Path, data: Any = None, *, task: str | None = None, metric: str | None = None,
                        higher_is_better: bool | None = None) -> list[Curve]:
    """Curves from another tool's file: the CSV at `p` (`data` None), or its parsed JSON `data` (a list
    of rows, an object with `rows`, or an object with `curves`, one run each with its points).

    Rows need batch_size, step or examples, and metric; seed and lr are optional and, with the batch
    size, tell runs apart. Bad input raises a one-line BenchError naming the file and the row.
    """
    name = metric or "metric"
    hib = guess_higher_is_better(name) if higher_is_better is None else higher_is_better
    task = task or p.stem
    if data is None:
        return curves_from_rows(_read_csv(p), source=str(p), task=task, metric=name, higher_is_better=hib)
    if isinstance(data, dict) and isinstance(data.get("curves"), list):
        rows = _rows_from_runs(data["curves"], source=str(p))
        name = metric or data.get("metric") or name
        if higher_is_better is None and "higher_is_better" in data:
            hib = bool(data["higher_is_better"])
        elif higher_is_better is None:
            hib = guess_higher_is_better(name)
        return curves_from_rows(rows, source=str(p), task=data.get("task") or task, metric=name, higher_is_better=hib)
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list):
        raise BenchError(f"{p}: expected a list of rows, an object with 'rows' or 'curves', or a bench.curves file")
    return curves_from_rows(data, source=str(p), task=task, metric=name, higher_is_better=hib)


def _read_csv(p: Path) -> list[dict]:
    return read_csv(p, required=REQUIRED_COLUMNS, one_of=(("step", "examples"),),
                    needs="batch_size, step or examples, metric")


def _check_columns(columns: Iterable[str], source: str) -> None:
    cols = set(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if "step" not in cols and "examples" not in cols:
        missing.append("step or examples")
    if missing:
        raise BenchError(f"{source}: missing column(s) {', '.join(missing)}; need batch_size, step or examples, metric")


def _rows_from_runs(runs: list, source: str) -> list[dict]:
    rows = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or "batch_size" not in run:
            raise BenchError(f"{source}: run {i} has no batch_size")
        pts = run.get("points")
        if not pts:
            raise BenchError(f"{source}: batch size {run['batch_size']} has no points in run {i}")
        for pt in pts:
            if not isinstance(pt, dict):
                raise BenchError(f"{source}: run {i}: points must be objects with step/examples and metric")
            if "metric" not in pt and "eval_metric" in pt:
                pt = {**pt, "metric": pt["eval_metric"]}
            rows.append({"batch_size": run["batch_size"], "seed": run.get("seed"), "lr": run.get("lr"), **pt})
    return rows


_num = number


def curves_from_rows(rows: Sequence[dict], *, source: str, task: str, metric: str = "metric",
                     higher_is_better: bool = True) -> list[Curve]:
    """Group rows into curves by (batch_size, seed, lr), checking every value on the way."""
    if not rows:
        raise BenchError(f"{source}: no rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise BenchError(f"{source}: row {i + 1} is not an object")
    _check_columns(set().union(*(r.keys() for r in rows)), source)
    runs: dict[tuple, Curve] = {}
    for i, r in enumerate(rows):
        where = f"{source}: row {i + 1}"
        b = _num(r.get("batch_size"), "batch_size", where, integer=True)
        if b < 1:
            raise BenchError(f"{where}: batch_size must be >= 1, got {b}")
        step = _num(r.get("step"), "step", where, integer=True, required=False)
        ex = _num(r.get("examples"), "examples", where, integer=True, required=False)
        if step is None and ex is None:
            raise BenchError(f"{where}: needs a step or examples value")
        if step is None:
            step = int(round(ex / b))
        if ex is None:
            ex = step * b
        if step < 0:
            raise BenchError(f"{where}: step must be >= 0, got {step}")
        m = _num(r.get("metric"), "metric", where)
        seed = _num(r.get("seed"), "seed", where, integer=True, required=False)
        lr = _num(r.get("lr"), "lr", where, required=False)
        key = (b, seed, lr)
        c = runs.get(key)
        if c is None:
            c = runs[key] = Curve(task=task, batch_size=b, lr=lr, seed=seed, metric=metric,
                                  higher_is_better=higher_is_better, source=f"imported from {source}")
        if c.points and step <= c.points[-1].step:
            raise BenchError(f"{where}: steps not increasing in run batch_size={b} seed={seed} lr={lr} "
                             f"(step {step} after {c.points[-1].step})")
        c.points.append(CurvePoint(step=step, examples=ex,
                                   wall_time_s=_num(r.get("wall_time_s"), "wall_time_s", where, required=False),
                                   train_loss=_num(r.get("train_loss", r.get("loss")), "train_loss", where, required=False),
                                   eval_metric=m))
    return sorted(runs.values(), key=lambda c: (c.batch_size, c.lr or 0.0, c.seed or 0))


def check_batch_sizes_present(curves: Sequence[Curve], batch_sizes: Iterable[int], source: str = "curves") -> None:
    """BenchError if a requested batch size has no run among `curves`."""
    have = {c.batch_size for c in curves}
    for b in batch_sizes:
        if b not in have:
            raise BenchError(f"{source}: batch size {b} has no runs (have {', '.join(map(str, sorted(have))) or 'none'})")
