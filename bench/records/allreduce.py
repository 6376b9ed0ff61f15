"""The record of `bench allreduce` (the `bench.allreduce` file): all-reduce time and bandwidth across
message sizes in a torchrun job, with every rank's raw samples. Layout: docs/schema.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import InvalidResultsFile
from bench.core.vocabulary import STATUS_OK, STATUSES
from bench.records.distributed import RankInfo, RankTimedSamples
from bench.records.envelope import Schema, header, load_record, read_header, save_record

ALLREDUCE = Schema("bench.allreduce", 1, "results file of bench allreduce")


@dataclass
class AllreducePoint(RankTimedSamples):
    """One message size: the time of one all-reduce (the slowest rank's, per call), each rank's own
    times, and the bandwidths from the median (nccl-tests' algbw and busbw; None when not measured)."""

    size_bytes: int = 0
    count: int = 0
    dtype: str = "float32"
    algbw_bytes_per_s: float | None = None
    busbw_bytes_per_s: float | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict:
        return {"size_bytes": self.size_bytes, "count": self.count, "dtype": self.dtype, **self.timing_dict(),
                "algbw_bytes_per_s": self.algbw_bytes_per_s, "busbw_bytes_per_s": self.busbw_bytes_per_s,
                "null_reasons": dict(self.null_reasons)}

    @classmethod
    def from_dict(cls, d: dict) -> "AllreducePoint":
        if d.get("status") not in STATUSES:
            raise InvalidResultsFile(f"all-reduce point of {d.get('size_bytes', '?')} bytes: unknown status "
                                     f"{d.get('status')!r}")
        return cls(**cls.timing_fields(d), size_bytes=int(d["size_bytes"]), count=int(d["count"]),
                   dtype=str(d["dtype"]), algbw_bytes_per_s=d.get("algbw_bytes_per_s"),
                   busbw_bytes_per_s=d.get("busbw_bytes_per_s"), null_reasons=dict(d.get("null_reasons") or {}))


@dataclass
class AllreduceResult:
    """An all-reduce probe over message sizes: its settings, rank 0's fingerprint, where every rank
    ran, and one point per size."""

    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    ranks: list[RankInfo] = field(default_factory=list)
    points: list[AllreducePoint] = field(default_factory=list)
    created: str | None = None
    finished: bool = False

    @property
    def world_size(self) -> int:
        return int(self.config.get("world_size") or len(self.ranks) or 1)

    def to_dict(self) -> dict:
        return {**header(ALLREDUCE, created=self.created, finished=self.finished, environment=self.environment),
                "config": self.config, "ranks": [r.to_dict() for r in self.ranks],
                "points": [p.to_dict() for p in sorted(self.points, key=lambda p: p.size_bytes)]}

    @classmethod
    def from_dict(cls, d: dict) -> "AllreduceResult":
        head, d = read_header(d, ALLREDUCE)
        try:
            return cls(dict(d.get("config") or {}), head.environment,
                       [RankInfo.from_dict(r) for r in d.get("ranks") or []],
                       [AllreducePoint.from_dict(p) for p in d.get("points") or []], head.created, head.finished)
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidResultsFile(f"malformed all-reduce results: {type(e).__name__}: {e}") from None


def save_allreduce(result: AllreduceResult, path: str | os.PathLike) -> Path:
    return save_record(result, path)


def load_allreduce(path: str | os.PathLike) -> AllreduceResult:
    """A bench.allreduce file; one-line InvalidResultsFile naming the path for anything else."""
    return load_record(path, AllreduceResult.from_dict)
