"""The record types (Case, Measurement, SweepResult), their versioned JSON form, and atomic writes.

Everything downstream (tables, reports, history, regression checks) reads these records; nothing
downstream re-measures. The JSON layout is documented in docs/schema.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from bench.core.errors import InvalidResultsFile
from bench.core.io import read_json, write_json_atomic
from bench.core.vocabulary import STATUS_OK, STATUSES
from bench.measure.stats import SampleStats, summarize
from bench.measure.timing import BlockShortfall

SWEEP_SCHEMA = "bench.run.sweep"
SCHEMA_VERSION = 1



@dataclass(frozen=True)
class Case:
    """Identity of one measurement: what ran, at which batch size, where, with which options."""

    workload: str
    batch_size: int
    device: str = "cpu"
    precision: str = "fp32"
    optimizer: str = "sgd"
    channels_last: bool = False
    compile: bool = False

    @property
    def key(self) -> str:
        opts = [self.optimizer]
        if self.channels_last:
            opts.append("channels_last")
        if self.compile:
            opts.append("compile")
        return f"{self.workload}/{self.precision}/{self.device}/{'+'.join(opts)}/bs{self.batch_size}"

    @property
    def group_key(self) -> str:
        """The key without the batch size: points of one sweep share it."""
        return self.key.rsplit("/bs", 1)[0]

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
    fitted the budget. A value that could not be measured is None and `null_reasons[name]` says why.
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

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def batch_size(self) -> int:
        return self.case.batch_size

    @property
    def stats(self) -> SampleStats | None:
        return summarize(self.samples_s, block_medians=self.block_medians_s) if self.samples_s else None

    @property
    def throughput(self) -> float | None:
        """Samples per second at the median step time."""
        s = self.stats
        return self.case.batch_size / s.median_s if s and s.median_s > 0 else None

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
        }
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
class SweepResult:
    """A sweep of one workload configuration over batch sizes, plus its analysis."""

    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    points: list[Measurement] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    largest_batch_that_fits: int | None = None
    largest_batch_reason: str | None = None
    analysis: dict[str, Any] | None = None
    created: str | None = None
    finished: bool = False

    def point(self, batch_size: int) -> Measurement | None:
        for p in self.points:
            if p.case.batch_size == batch_size:
                return p
        return None

    def ok_points(self) -> list[Measurement]:
        return sorted((p for p in self.points if p.ok), key=lambda p: p.case.batch_size)

    def to_dict(self) -> dict:
        from bench import __version__

        return {
            "schema": SWEEP_SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "bench", "version": __version__},
            "created": self.created,
            "finished": self.finished,
            "config": self.config,
            "environment": self.environment,
            "points": [p.to_dict() for p in sorted(self.points, key=lambda p: p.case.batch_size)],
            "largest_batch": {
                "batch_size": self.largest_batch_that_fits,
                "reason": self.largest_batch_reason,
                "probes": [p.to_dict() for p in self.probes],
            },
            "analysis": self.analysis,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SweepResult":
        if not isinstance(d, dict) or d.get("schema") != SWEEP_SCHEMA:
            raise InvalidResultsFile(f"not a sweep results file (schema is {d.get('schema') if isinstance(d, dict) else None!r}, expected {SWEEP_SCHEMA!r})")
        version = d.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise InvalidResultsFile(f"sweep schema version {version!r} is newer than this tool reads ({SCHEMA_VERSION})")
        lb = d.get("largest_batch") or {}
        try:
            return cls(
                config=dict(d.get("config") or {}),
                environment=dict(d.get("environment") or {}),
                points=[Measurement.from_dict(p) for p in d.get("points") or []],
                probes=[Probe.from_dict(p) for p in lb.get("probes") or []],
                largest_batch_that_fits=lb.get("batch_size"),
                largest_batch_reason=lb.get("reason"),
                analysis=d.get("analysis"),
                created=d.get("created"),
                finished=bool(d.get("finished", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed sweep results: {type(e).__name__}: {e}") from None

    def to_dataframe(self):
        return points_dataframe(self.points)


def points_dataframe(points: Iterable[Measurement]):
    """One tidy row per point: case fields, status, stats in seconds, throughput, memory."""
    import pandas as pd

    rows = []
    for p in points:
        s = p.stats
        row = {**p.case.to_dict(), "key": p.case.key, "status": p.status, "error": p.error,
               "timer": p.timer, "stop_reason": p.stop_reason}
        for name in ("n", "median_s", "mean_s", "stdev_s", "min_s", "max_s", "iqr_s",
                     "ci_low_s", "ci_high_s", "ci_rel_halfwidth", "outliers"):
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
    return write_json_atomic(path, result.to_dict())


def load_sweep(path: str | os.PathLike) -> SweepResult:
    data = read_json(path)
    try:
        return SweepResult.from_dict(data)
    except InvalidResultsFile as e:
        raise InvalidResultsFile(f"{path}: {e}") from None
