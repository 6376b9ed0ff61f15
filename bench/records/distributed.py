"""The records of a data-parallel sweep (torchrun, DDP): each rank's side of a point, the run without
gradient all-reduce and the one-rank baseline beside it, the job's ranks, and the analysis that
combines them (max over ranks, per-rank spread, communication share, weak-scaling efficiency).

They hang off the sweep's records as additive keys (`points[].distributed`, the top-level
`distributed`): a single-process sweep file has neither. The layout is documented in docs/schema.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.core.stats import SampleStats, summarize
from bench.core.vocabulary import STATUS_OK

BASELINE_RANK0 = "rank0"  # rank 0 alone, the plain step (no DDP), while the other ranks wait


def floats(values: Any) -> list[float]:
    return [float(v) for v in values or []]


@dataclass
class RankPoint:
    """One rank's side of a point: its own times of the timed steps (the point's `samples_s` are, block by
    block, the steps of the rank whose block took longest), its memory peaks and telemetry."""

    rank: int
    samples_s: list[float] = field(default_factory=list)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    telemetry: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def stats(self) -> SampleStats | None:
        return summarize(self.samples_s) if self.samples_s else None

    def to_dict(self) -> dict:
        s = self.stats
        return {"rank": self.rank, "median_s": s.median_s if s else None, "samples_s": list(self.samples_s),
                "peak_allocated_bytes": self.peak_allocated_bytes, "peak_reserved_bytes": self.peak_reserved_bytes,
                "telemetry": dict(self.telemetry), "warnings": list(self.warnings),
                "null_reasons": dict(self.null_reasons)}

    @classmethod
    def from_dict(cls, d: dict) -> "RankPoint":
        return cls(int(d["rank"]), floats(d.get("samples_s")), d.get("peak_allocated_bytes"),
                   d.get("peak_reserved_bytes"), dict(d.get("telemetry") or {}), list(d.get("warnings") or []),
                   dict(d.get("null_reasons") or {}))


@dataclass
class RankTimedSamples:
    """Timed samples of a job of several ranks: block by block the steps or calls of the rank
    whose block took longest (`samples_s`), each rank's own (`rank_samples_s`), and how the measuring ended. Shared by the
    variants beside a data-parallel point and by the all-reduce probe's points."""

    status: str = STATUS_OK
    error: str | None = None
    timer: str | None = None
    samples_s: list[float] = field(default_factory=list)
    block_medians_s: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    rank_samples_s: list[list[float]] = field(default_factory=list)

    @property
    def stats(self) -> SampleStats | None:
        return summarize(self.samples_s, block_medians=self.block_medians_s) if self.samples_s else None

    def timing_dict(self) -> dict:
        s = self.stats
        return {"status": self.status, "error": self.error, "timer": self.timer, "stop_reason": self.stop_reason,
                "stats": s.to_dict() if s else None, "samples_s": list(self.samples_s),
                "block_medians_s": list(self.block_medians_s), "warnings": list(self.warnings),
                "rank_samples_s": [list(r) for r in self.rank_samples_s]}

    @staticmethod
    def timing_fields(d: dict) -> dict:
        """The shared fields from a record's dict, for the subclass's constructor."""
        return {"status": str(d.get("status") or STATUS_OK), "error": d.get("error"), "timer": d.get("timer"),
                "samples_s": floats(d.get("samples_s")), "block_medians_s": floats(d.get("block_medians_s")),
                "stop_reason": d.get("stop_reason"), "warnings": list(d.get("warnings") or []),
                "rank_samples_s": [floats(r) for r in d.get("rank_samples_s") or []]}


@dataclass
class VariantTiming(RankTimedSamples):
    """The same per-rank batch measured another way beside a point: `no_sync` (DDP without gradient
    all-reduce, every rank) or `baseline` (one rank alone, the plain step). Raw samples kept;
    `rank_samples_s` is each rank's own times (empty for the one-rank baseline)."""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK and bool(self.samples_s)

    def to_dict(self) -> dict:
        return self.timing_dict()

    @classmethod
    def from_dict(cls, d: dict | None) -> "VariantTiming | None":
        return cls(**cls.timing_fields(d)) if isinstance(d, dict) else None


@dataclass
class DistributedPoint:
    """A point measured by every rank of a data-parallel job: the batch per rank and for the job,
    each rank's side, and the two measurements beside it (None: not made, `null_reasons` says why)."""

    world_size: int
    per_rank_batch_size: int
    ranks: list[RankPoint] = field(default_factory=list)
    no_sync: VariantTiming | None = None
    baseline: VariantTiming | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def global_batch_size(self) -> int:
        return self.per_rank_batch_size * self.world_size

    @property
    def rank_samples_s(self) -> list[list[float]]:
        return [r.samples_s for r in sorted(self.ranks, key=lambda r: r.rank)]

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "per_rank_batch_size": self.per_rank_batch_size,
                "global_batch_size": self.global_batch_size, "ranks": [r.to_dict() for r in self.ranks],
                "no_sync": self.no_sync.to_dict() if self.no_sync else None,
                "baseline": self.baseline.to_dict() if self.baseline else None,
                "null_reasons": dict(self.null_reasons)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DistributedPoint | None":
        if not isinstance(d, dict):
            return None
        return cls(int(d["world_size"]), int(d["per_rank_batch_size"]),
                   [RankPoint.from_dict(r) for r in d.get("ranks") or []], VariantTiming.from_dict(d.get("no_sync")),
                   VariantTiming.from_dict(d.get("baseline")), dict(d.get("null_reasons") or {}))


@dataclass
class RankInfo:
    """Where one rank ran: its host and device, the GPU's identity and how it is connected (NVLink or
    PCIe, where NVML tells it; docs/telemetry.md), and its fingerprint's hash."""

    rank: int
    local_rank: int
    host: str | None = None
    device: str | None = None
    gpu_name: str | None = None
    gpu_uuid: str | None = None
    fingerprint_hash: str | None = None
    interconnect: dict[str, Any] = field(default_factory=dict)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RankInfo":
        return cls(**{k: d.get(k) for k in ("rank", "local_rank", "host", "device", "gpu_name", "gpu_uuid",
                                             "fingerprint_hash")},
                   interconnect=dict(d.get("interconnect") or {}), null_reasons=dict(d.get("null_reasons") or {}))


@dataclass
class Interval:
    """A ratio and its interval from the two medians' 95% CIs (None bounds: a CI was missing)."""

    value: float
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Interval | None":
        return cls(float(d["value"]), d.get("low"), d.get("high")) if isinstance(d, dict) else None


@dataclass
class RankSpread:
    """How far the ranks' own median step times lie apart, and which rank was slowest."""

    rank_medians_s: list[float]
    spread_rel: float  # (slowest median − fastest median) / median of the medians
    slowest_rank: int  # the rank with the largest median
    slowest_share: float  # fraction of steps in which that rank was the slowest

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RankSpread | None":
        if not isinstance(d, dict):
            return None
        return cls(floats(d.get("rank_medians_s")), float(d["spread_rel"]), int(d["slowest_rank"]),
                   float(d["slowest_share"]))


@dataclass
class DistributedPointAnalysis:
    """One point of a data-parallel sweep, combined: the step time (block by block the slowest rank's), the ranks'
    spread, the share of the step spent on gradient all-reduce, and the weak-scaling efficiency."""

    per_rank_batch_size: int
    global_batch_size: int
    step_time_s: float | None = None
    spread: RankSpread | None = None
    no_sync_step_time_s: float | None = None
    comm_share: Interval | None = None  # 1 − t(no_sync) / t(with all-reduce)
    baseline_step_time_s: float | None = None
    efficiency: Interval | None = None  # t(one rank) / t(n ranks), same per-rank batch
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"per_rank_batch_size": self.per_rank_batch_size, "global_batch_size": self.global_batch_size,
                "step_time_s": self.step_time_s, "spread": self.spread.to_dict() if self.spread else None,
                "no_sync_step_time_s": self.no_sync_step_time_s,
                "comm_share": self.comm_share.to_dict() if self.comm_share else None,
                "baseline_step_time_s": self.baseline_step_time_s,
                "efficiency": self.efficiency.to_dict() if self.efficiency else None,
                "null_reasons": dict(self.null_reasons)}

    @classmethod
    def from_dict(cls, d: dict) -> "DistributedPointAnalysis":
        return cls(int(d["per_rank_batch_size"]), int(d["global_batch_size"]), d.get("step_time_s"),
                   RankSpread.from_dict(d.get("spread")), d.get("no_sync_step_time_s"),
                   Interval.from_dict(d.get("comm_share")), d.get("baseline_step_time_s"),
                   Interval.from_dict(d.get("efficiency")), dict(d.get("null_reasons") or {}))


@dataclass
class DistributedAnalysis:
    """The combined view of a data-parallel sweep, point by point (bench.analysis.distributed)."""

    world_size: int
    points: list[DistributedPointAnalysis] = field(default_factory=list)

    def point(self, per_rank_batch_size: int) -> DistributedPointAnalysis | None:
        return next((p for p in self.points if p.per_rank_batch_size == per_rank_batch_size), None)

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "points": [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DistributedAnalysis | None":
        if not isinstance(d, dict):
            return None
        return cls(int(d["world_size"]), [DistributedPointAnalysis.from_dict(p) for p in d.get("points") or []])


@dataclass
class DistributedRun:
    """The data-parallel job a sweep ran in: its size and backend, the collective timeout, what was
    measured beside each point, where each rank ran, the failure that ended the job early (None:
    none) and the combined analysis."""

    world_size: int
    backend: str
    timeout_s: float | None = None
    comm_share: bool = True  # each point also measured without gradient all-reduce (DDP no_sync)
    baseline: str | None = BASELINE_RANK0  # how the one-rank baseline was measured (None: it was not)
    ranks: list[RankInfo] = field(default_factory=list)
    failure: str | None = None
    analysis: DistributedAnalysis | None = None

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "timeout_s": self.timeout_s,
                "comm_share": self.comm_share, "baseline": self.baseline,
                "ranks": [r.to_dict() for r in self.ranks], "failure": self.failure,
                "analysis": self.analysis.to_dict() if self.analysis else None}

    @classmethod
    def from_dict(cls, d: dict | None) -> "DistributedRun | None":
        if not isinstance(d, dict):
            return None
        return cls(int(d["world_size"]), str(d.get("backend") or ""), d.get("timeout_s"),
                   bool(d.get("comm_share", True)), d.get("baseline"),
                   [RankInfo.from_dict(r) for r in d.get("ranks") or []], d.get("failure"),
                   DistributedAnalysis.from_dict(d.get("analysis")))
