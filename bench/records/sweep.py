"""The record types of a sweep (Case, Measurement, Probe, LargestBatch, SweepResult) and their
versioned JSON form (the `bench.sweep` file).

Everything downstream (tables, reports, history, regression checks) reads these records; nothing
downstream re-measures. The JSON layout is documented in docs/schema.md.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from bench.core.budget import BlockShortfall
from bench.core.errors import InvalidResultsFile
from bench.core.stats import SampleStats, summarize
from bench.core.vocabulary import (
    OPTIMIZERS,
    PRECISIONS,
    PROBE_KINDS,
    STATUS_OK,
    STATUSES,
)
from bench.records.distributed import DistributedPoint, DistributedRun
from bench.records.envelope import Schema, header, load_record, read_header, save_record
from bench.records.validation import (
    BATCH_SIZE,
    NAME,
    dataclass_schema,
    envelope_schema,
    nullable,
)

# "bench.run.sweep" is the name a development build wrote for a while (a module path rewritten by
# mistake); it is read as this kind, never written.
SWEEP = Schema("bench.sweep", 1, "sweep results file", aliases=("bench.run.sweep",),
               json_schema=lambda: sweep_json_schema())
SWEEP_SCHEMA = SWEEP.name
SCHEMA_VERSION = SWEEP.version


# --------------------------------------------------------------------------- case ids

DEFAULT_OPTIMIZER = "sgd"
_BATCH = re.compile(r"^bs(\d+|max)$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _id_parts(workload: str, precision: str, device: str, optimizer: str, channels_last: bool,
              compile: bool) -> tuple[list[str], list[str]]:
    opts = [optimizer] if optimizer != DEFAULT_OPTIMIZER else []
    opts += ["channels_last"] if channels_last else []
    opts += ["compile"] if compile else []
    return [workload, precision], [device, *opts]


def case_id(workload: str, precision: str, batch_size: int | None, device: str, optimizer: str = DEFAULT_OPTIMIZER,
            channels_last: bool = False, compile: bool = False) -> str:
    """The one id of a case, e.g. `mlp-fp32-bs64-cpu`, options other than the defaults appended
    (`-adamw`, `-channels_last`, `-compile`); a batch size still to be found by search is `bsmax`.
    Sweep points (`Case.key`), suite cases, pytest ids and pytest-benchmark names all use it."""
    head, tail = _id_parts(workload, precision, device, optimizer, channels_last, compile)
    return "-".join([*head, f"bs{batch_size}" if batch_size is not None else "bsmax", *tail])


def parse_case_id(text: str) -> dict[str, Any] | None:
    """The fields of a case id (see `case_id`), or None for anything else.

    Accepts a bare id or a pytest name such as `test_step_time[mlp-fp32-bs64-cpu]`. The workload may
    itself contain dashes: the id is anchored on its precision, batch and device.
    """
    if "[" in text and text.endswith("]"):
        text = text[text.index("[") + 1:-1]
    parts = text.split("-")
    for i in range(1, len(parts) - 2):
        if parts[i] in PRECISIONS and _BATCH.match(parts[i + 1]) and _DEVICE.match(parts[i + 2]):
            break
    else:
        return None
    size = parts[i + 1][2:]
    out: dict[str, Any] = {"workload": "-".join(parts[:i]), "precision": parts[i],
                           "batch_size": int(size) if size.isdigit() else None, "device": parts[i + 2],
                           "optimizer": DEFAULT_OPTIMIZER, "channels_last": False, "compile": False}
    for extra in parts[i + 3:]:
        if extra in OPTIMIZERS:
            out["optimizer"] = extra
        elif extra in ("channels_last", "compile"):
            out[extra] = True
        else:
            return None
    return out


@dataclass(frozen=True)
class Case:
    """Identity of one measurement: what ran, at which batch size, where, with which options."""

    workload: str
    batch_size: int
    device: str = "cpu"
    precision: str = "fp32"
    optimizer: str = DEFAULT_OPTIMIZER
    channels_last: bool = False
    compile: bool = False

    @property
    def key(self) -> str:
        """The case id (`case_id`): stable, and the same string a suite gives this case."""
        return case_id(self.workload, self.precision, self.batch_size, self.device, self.optimizer,
                       self.channels_last, self.compile)

    @property
    def group_key(self) -> str:
        """The id without the batch size: points of one sweep share it."""
        head, tail = _id_parts(self.workload, self.precision, self.device, self.optimizer, self.channels_last,
                               self.compile)
        return "-".join([*head, *tail])

    def with_batch_size(self, batch_size: int) -> "Case":
        return replace(self, batch_size=int(batch_size))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class Measurement:
    """One sweep point: raw step times (seconds) and everything derived from or measured beside them.

    `samples_s` are the timed steps after warm-up; `block_medians_s` are the medians of the blocks
    between host synchronisations, used to see whether repeated blocks agree (`block_sizes`: the steps
    in each timed block, in order). Peak memory is over the timed steps (the statistics are reset
    after warm-up); the warm-up's own peaks (cuDNN autotuning workspaces, compilation, allocator
    growth) are kept apart. `block_shortfall` is set when fewer blocks than a CI across blocks needs
    fitted the budget. `conditions` holds the machine's state read at the point's `start` and `end`
    (`bench.measure.conditions.read_conditions`: load average, CPU governor and frequency, torch's
    threads): volatile readings, kept with the point, not in the fingerprint. A value that could not
    be measured is None and `null_reasons[name]` says why.
    """

    case: Case
    status: str = STATUS_OK
    error: str | None = None
    timer: str | None = None
    samples_s: list[float] = field(default_factory=list)
    warmup_samples_s: list[float] = field(default_factory=list)
    warmup_reason: str | None = None
    block_medians_s: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    wall_time_s: float | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    skipped_steps: int | None = None
    telemetry: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)
    warmup_peak_allocated_bytes: int | None = None
    warmup_peak_reserved_bytes: int | None = None
    num_alloc_retries: int | None = None
    block_sizes: list[int] = field(default_factory=list)
    block_shortfall: BlockShortfall | None = None
    conditions: dict[str, Any] = field(default_factory=dict)
    # Measured by every rank of a data-parallel job (torchrun): then `case.batch_size` is the batch per
    # rank, `samples_s` block by block the slowest rank's steps, and this holds each rank's side.
    distributed: DistributedPoint | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def batch_size(self) -> int:
        return self.case.batch_size

    @property
    def global_batch_size(self) -> int:
        """Samples per step over the whole job: the batch per rank times the ranks (the batch size
        itself outside a data-parallel job)."""
        return self.distributed.global_batch_size if self.distributed is not None else self.case.batch_size

    @property
    def stats(self) -> SampleStats | None:
        if not self.samples_s:
            return None
        return summarize(self.samples_s, block_medians=self.block_medians_s, block_sizes=self.block_sizes)

    @property
    def throughput(self) -> float | None:
        """Samples per second over the timed steps, n·B / Σt = B / mean step time: what a run of these
        steps (an epoch) delivers, slow steps included. The median step time stays the measure of a
        typical step (the equal-time test, the CIs); a heavy tail of slow steps puts the mean above it."""
        s = self.stats
        return self.case.batch_size / s.mean_s if s and s.mean_s > 0 else None

    def to_dict(self) -> dict:
        s = self.stats
        d = {
            "key": self.case.key,
            "case": self.case.to_dict(),
            "status": self.status,
            "error": self.error,
            "timer": self.timer,
            "stop_reason": self.stop_reason,
            "stats": s.to_dict() if s else None,
            "throughput_samples_per_s": self.throughput,
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "skipped_steps": self.skipped_steps,
            "wall_time_s": self.wall_time_s,
            "warmup_reason": self.warmup_reason,
            "telemetry": self.telemetry,
            "warnings": list(self.warnings),
            "null_reasons": dict(self.null_reasons),
            "samples_s": list(self.samples_s),
            "warmup_samples_s": list(self.warmup_samples_s),
            "block_medians_s": list(self.block_medians_s),
            "warmup_peak_allocated_bytes": self.warmup_peak_allocated_bytes,
            "warmup_peak_reserved_bytes": self.warmup_peak_reserved_bytes,
            "num_alloc_retries": self.num_alloc_retries,
            "block_sizes": list(self.block_sizes),
            "block_shortfall": self.block_shortfall.to_dict() if self.block_shortfall else None,
            "conditions": dict(self.conditions),
        }
        if self.distributed is not None:  # additive: single-process files stay as they were
            d["distributed"] = self.distributed.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        status = d.get("status")
        if status not in STATUSES:
            raise InvalidResultsFile(f"point {d.get('key', '?')}: unknown status {status!r}")
        return cls(
            case=Case.from_dict(d["case"]),
            status=status,
            error=d.get("error"),
            timer=d.get("timer"),
            samples_s=[float(v) for v in d.get("samples_s") or []],
            warmup_samples_s=[float(v) for v in d.get("warmup_samples_s") or []],
            warmup_reason=d.get("warmup_reason"),
            block_medians_s=[float(v) for v in d.get("block_medians_s") or []],
            stop_reason=d.get("stop_reason"),
            wall_time_s=d.get("wall_time_s"),
            peak_allocated_bytes=d.get("peak_allocated_bytes"),
            peak_reserved_bytes=d.get("peak_reserved_bytes"),
            skipped_steps=d.get("skipped_steps"),
            telemetry=dict(d.get("telemetry") or {}),
            warnings=list(d.get("warnings") or []),
            null_reasons=dict(d.get("null_reasons") or {}),
            warmup_peak_allocated_bytes=d.get("warmup_peak_allocated_bytes"),
            warmup_peak_reserved_bytes=d.get("warmup_peak_reserved_bytes"),
            num_alloc_retries=d.get("num_alloc_retries"),
            block_sizes=[int(v) for v in d.get("block_sizes") or []],
            block_shortfall=BlockShortfall.from_dict(d.get("block_shortfall")),
            conditions=dict(d.get("conditions") or {}),
            distributed=DistributedPoint.from_dict(d.get("distributed")),
        )


@dataclass
class Probe:
    """One try in the search for the largest batch that fits: did a few steps run at this size?

    `peak_reserved_bytes`: the allocator's peak over the probe (its statistics reset first; None off
    CUDA or when it failed); `kind`: how the search chose this batch (`doubling`, `model` for the
    memory-model prediction, `bisection`; None in files from before it was recorded).
    """

    batch_size: int
    fits: bool
    error: str | None = None
    peak_reserved_bytes: int | None = None
    kind: str | None = None

    NOT_OOM_PREFIX = "not out of memory: "

    @property
    def peak_bytes(self) -> int | None:
        """The peak the largest-batch search's memory model fits (bench.run.largest)."""
        return self.peak_reserved_bytes

    @classmethod
    def from_dict(cls, d: dict) -> "Probe":
        return cls(int(d["batch_size"]), bool(d["fits"]), d.get("error"), d.get("peak_reserved_bytes"), d.get("kind"))

    @property
    def out_of_memory(self) -> bool:
        return not self.fits and not (self.error or "").startswith(self.NOT_OOM_PREFIX)

    @property
    def failed_otherwise(self) -> bool:
        """Failed for a reason other than memory: such a probe does not bound the search."""
        return not self.fits and not self.out_of_memory

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LargestBatch:
    """The largest batch that fits, the probes tried on the way, and how the search ended: one record
    for sweeps (`largest_batch` of a sweep file) and the largest-batch suite (its extra_info).

    `batch_size` is the largest batch known to fit below one that did not; None when even the
    smallest failed, or when nothing failed up to the limit (`limited`: the largest lies beyond it).
    A search stopped by a failure other than memory keeps the largest that fitted before it.
    """

    batch_size: int | None
    reason: str | None = None
    probes: list[Probe] = field(default_factory=list)
    limited: bool = False
    method: str = ""  # every probe counted by how the search chose it, e.g. "3 probe(s) (2 doubling, 1 memory-model)"
    confirmed: bool | None = None  # a full measurement confirmed the answer (None: not tried)
    confirmations: list[dict] = field(default_factory=list)  # those measurements: batch_size, status, error

    @property
    def probe_counts(self) -> dict[str, int]:
        kinds = [p.kind for p in self.probes]
        return {k: kinds.count(k) for k in PROBE_KINDS}

    @property
    def largest_ran(self) -> int | None:
        """The largest probe that ran: with `limited`, how far the search got."""
        fits = [p.batch_size for p in self.probes if p.fits]
        return max(fits) if fits else self.batch_size

    def to_dict(self) -> dict:
        return {"batch_size": self.batch_size, "reason": self.reason, "limited": self.limited,
                "method": self.method, "probe_counts": self.probe_counts, "confirmed": self.confirmed,
                "confirmations": list(self.confirmations), "probes": [p.to_dict() for p in self.probes]}

    @classmethod
    def from_dict(cls, d: dict | None) -> "LargestBatch":
        """From a sweep's `largest_batch` or a suite's; files written before `limited` existed give False,
        and a limited search saved with the largest batch that ran reads as limited with no batch size."""
        d = d if isinstance(d, dict) else {}
        limited = bool(d.get("limited", False))
        size = d.get("batch_size")
        return cls(None if limited or size is None else int(size), d.get("reason"),
                   [Probe.from_dict(p) for p in d.get("probes") or []], limited, str(d.get("method") or ""),
                   d.get("confirmed"), list(d.get("confirmations") or []))


@dataclass
class SweepResult:
    """A sweep of one workload configuration over batch sizes, plus its analysis."""

    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    points: list[Measurement] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    largest_batch_that_fits: int | None = None
    largest_batch_reason: str | None = None
    largest_batch_limited: bool = False  # no out-of-memory up to the largest batch tried
    analysis: dict[str, Any] | None = None
    created: str | None = None
    finished: bool = False
    distributed: DistributedRun | None = None  # the data-parallel job it ran in (None: one process)

    @property
    def world_size(self) -> int:
        return self.distributed.world_size if self.distributed is not None else 1

    def point(self, batch_size: int) -> Measurement | None:
        for p in self.points:
            if p.case.batch_size == batch_size:
                return p
        return None

    def ok_points(self) -> list[Measurement]:
        return sorted((p for p in self.points if p.ok), key=lambda p: p.case.batch_size)

    @property
    def largest_batch(self) -> LargestBatch:
        return LargestBatch(self.largest_batch_that_fits, self.largest_batch_reason, list(self.probes),
                            self.largest_batch_limited)

    def set_largest_batch(self, found: LargestBatch) -> None:
        self.largest_batch_that_fits, self.largest_batch_reason = found.batch_size, found.reason
        self.probes, self.largest_batch_limited = list(found.probes), found.limited

    def to_dict(self) -> dict:
        return {
            **header(SWEEP, created=self.created, finished=self.finished, environment=self.environment),
            "config": self.config,
            "points": [p.to_dict() for p in sorted(self.points, key=lambda p: p.case.batch_size)],
            "largest_batch": self.largest_batch.to_dict(),
            "analysis": self.analysis,
            **({"distributed": self.distributed.to_dict()} if self.distributed is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SweepResult":
        head, d = read_header(d, SWEEP)
        try:
            result = cls(
                config=dict(d.get("config") or {}),
                environment=head.environment,
                points=[Measurement.from_dict(p) for p in d.get("points") or []],
                analysis=d.get("analysis"),
                created=head.created,
                finished=head.finished,
                distributed=DistributedRun.from_dict(d.get("distributed")),
            )
            result.set_largest_batch(LargestBatch.from_dict(d.get("largest_batch")))
            return result
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed sweep results: {type(e).__name__}: {e}") from None

    def to_dataframe(self):
        return points_dataframe(self.points)


# --------------------------------------------------------------------------- the JSON Schema


_SECONDS = {"type": "array", "items": {"type": "number", "minimum": 0}}


@functools.cache
def measurement_json_schema() -> dict:
    """The JSON Schema of one point (a Measurement's dict form), also inside the suites' extra_info."""
    case = dataclass_schema(Case, {"batch_size": BATCH_SIZE, "workload": NAME})
    nonneg_int = {"type": ["integer", "null"], "minimum": 0}
    return dataclass_schema(Measurement, {
        "case": case,
        "status": {"enum": list(STATUSES)},
        "samples_s": {**_SECONDS, "type": ["array", "null"]},
        "warmup_samples_s": {**_SECONDS, "type": ["array", "null"]},
        "block_medians_s": {**_SECONDS, "type": ["array", "null"]},
        "wall_time_s": {"type": ["number", "null"], "minimum": 0},
        "peak_allocated_bytes": nonneg_int, "peak_reserved_bytes": nonneg_int, "skipped_steps": nonneg_int,
        "telemetry": {"type": ["object", "null"]},
        "warnings": {"type": ["array", "null"], "items": {"type": "string"}},
        "null_reasons": {"type": ["object", "null"]},
    }, required=["case", "status"])


@functools.cache
def sweep_json_schema() -> dict:
    """The JSON Schema of a bench.sweep file (the current version), checked at every load."""
    probe = dataclass_schema(Probe, {"batch_size": BATCH_SIZE})
    largest = {"type": "object", "properties": {
        "batch_size": {"type": ["integer", "null"], **BATCH_SIZE},
        "reason": {"type": ["string", "null"]},
        "limited": {"type": "boolean"},
        "probes": {"type": ["array", "null"], "items": probe},
    }}
    return envelope_schema({
        "config": {"type": ["object", "null"]},
        "points": {"type": ["array", "null"], "items": measurement_json_schema()},
        "largest_batch": nullable(largest),
        "analysis": {"type": ["object", "null"]},
    })


def points_dataframe(points: Iterable[Measurement]):
    """One tidy row per point: case fields, status, stats in seconds, throughput, memory."""
    import pandas as pd

    rows = []
    for p in points:
        s = p.stats
        row = {**p.case.to_dict(), "key": p.case.key, "status": p.status, "error": p.error,
               "timer": p.timer, "stop_reason": p.stop_reason}
        for name in ("n", "median_s", "mean_s", "stdev_s", "min_s", "max_s", "iqr_s",
                     "ci_low_s", "ci_high_s", "ci_rel_halfwidth", "mean_ci_low_s", "mean_ci_high_s", "outliers"):
            row[name] = getattr(s, name) if s else None
        row["throughput_samples_per_s"] = p.throughput
        row["peak_allocated_bytes"] = p.peak_allocated_bytes
        row["peak_reserved_bytes"] = p.peak_reserved_bytes
        row["skipped_steps"] = p.skipped_steps
        for k, v in (p.telemetry or {}).items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[f"telemetry.{k}"] = v
        diagnosis = (p.telemetry or {}).get("diagnosis")
        row["diagnosis"] = diagnosis.get("label") if isinstance(diagnosis, dict) else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["workload", "precision", "device", "batch_size"]).reset_index(drop=True)
    return df


def save_sweep(result: SweepResult, path: str | os.PathLike) -> Path:
    return save_record(result, path)


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """A `bench.sweep` file (any version this tool reads); one-line InvalidResultsFile naming the path."""
    return load_record(path, SweepResult.from_dict)
