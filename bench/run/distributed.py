"""A data-parallel point: every rank of a torchrun job measures the same per-rank batch under DDP, in
lockstep, and the point records, block by block, the steps of the rank whose block took longest, with each
rank's own times.

Beside each point, at the same per-rank batch:
- the step without gradient all-reduce (DDP's `no_sync`, every rank), for the communication share;
- the one-rank baseline, for weak-scaling efficiency: rank 0 alone runs the plain step (no DDP, no
  process group in the step: exactly what `bench sweep` measures without torchrun) while the other
  ranks wait. It is measured in the same job, on the same kind of device, so no second file is needed.

A point is built on every rank, then every rank says whether it built (`prepared`), then the model
is wrapped in DDP and every rank runs a few steps without all-reduce (a pre-flight, with no
collective inside) and says how they went: a rank that runs out of memory or raises there ends the
point on every rank at once, as a result (`oom` or `error`, naming the rank). A rank that fails
later, inside a timed step, is waited for by the others until the collective timeout; the point then
fails on every rank the same way, and the next point gets a fresh data group.
"""

from __future__ import annotations

from typing import Callable

from bench.core.devices import synchronizer
from bench.core.errors import BenchError
from bench.measure.distributed import (
    DistributedError,
    DistributedTimer,
    Ranks,
    RanksFailed,
    wrap_ddp,
)
from bench.measure.timing import timer_for
from bench.records.distributed import (
    BASELINE_RANK0,
    DistributedPoint,
    RankInfo,
    RankPoint,
    VariantTiming,
)
from bench.records.sweep import Measurement

PREFLIGHT_STEPS = 2  # local steps before any all-reduce: the second has the optimizer state allocated too


class DataParallelHooks:
    """`measure_point`'s hooks (bench.run.sweep.PointHooks) for one rank of a data-parallel point.

    `sync=False` measures the step under DDP's `no_sync` (no gradient all-reduce)."""

    # DDP rebuilds its gradient buckets in the forward after the first synchronised step, with one
    # synchronising copy: the host-sync check starts after it, or it would warn on every point.
    sync_check_skip = 1

    def __init__(self, ranks: Ranks, *, sync: bool = True):
        self.ranks = ranks
        self.sync = sync
        self._timer: DistributedTimer | None = None

    def clock(self) -> float:
        return self.ranks.clock()

    def timer(self, device) -> DistributedTimer:
        self._timer = DistributedTimer(timer_for(device), self.ranks)
        return self._timer

    def prepared(self, step) -> None:
        ranks = self.ranks
        ranks.exchange("built")
        step.wrap_model(lambda module: wrap_ddp(module, step.device, ranks))
        try:
            with step.gradient_sync(False):
                for _ in range(PREFLIGHT_STEPS):
                    step()
            sync = synchronizer(step.device)
            if sync is not None:
                sync()
        except Exception as e:  # noqa: BLE001 - every rank hears of it at once, before any all-reduce
            raise ranks.announce(e) from None
        ranks.exchange("preflight")
        step.sync_gradients = self.sync

    def measured(self, m: Measurement, timing, step) -> None:
        ranks = self.ranks
        rank_samples = self._timer.rank_samples(len(timing.samples_s)) if self._timer else []
        own = {"peak_allocated_bytes": m.peak_allocated_bytes, "peak_reserved_bytes": m.peak_reserved_bytes,
               "telemetry": m.telemetry, "warnings": list(m.warnings), "null_reasons": dict(m.null_reasons)}
        everyone = ranks.exchange("measured", own)
        points = [RankPoint(r, rank_samples[r] if r < len(rank_samples) else [], **everyone[r])
                  for r in range(ranks.world_size)]
        m.distributed = DistributedPoint(ranks.world_size, m.case.batch_size, points)
        # The job's peak per device is the largest any rank reached.
        for name in ("peak_allocated_bytes", "peak_reserved_bytes"):
            values = [getattr(p, name) for p in points if getattr(p, name) is not None]
            if values:
                setattr(m, name, max(values))

    def failure(self, exc: Exception) -> tuple[str, str]:
        failed = exc if isinstance(exc, RanksFailed) else self.ranks.announce(exc)
        return failed.status, failed.message


MeasureFn = Callable[..., Measurement]


def variant(m: Measurement) -> VariantTiming:
    """The timing of a measurement made beside a point (no_sync, or the one-rank baseline)."""
    ranks = m.distributed.rank_samples_s if m.distributed is not None else []
    return VariantTiming(m.status, m.error, m.timer, list(m.samples_s), list(m.block_medians_s), m.stop_reason,
                         list(m.warnings), [list(r) for r in ranks])


def measure_data_parallel_point(measure_point: MeasureFn, workload, config, batch_size: int, device,
                                ranks: Ranks) -> Measurement:
    """One point on every rank (the same Measurement status everywhere; rank 0's is the one saved):
    the step with all-reduce, then, when it ran, the step without (`config.comm_share`) and the
    one-rank baseline (`config.scaling_baseline`). `measure_point` is bench.run.sweep's."""
    m = measure_point(workload, config, batch_size, device, hooks=DataParallelHooks(ranks, sync=True))
    if not m.ok:
        ranks.renew_data_group()
        m.distributed = DistributedPoint(ranks.world_size, batch_size)
        return m
    d = m.distributed
    if config.comm_share:
        ns = measure_point(workload, config, batch_size, device, hooks=DataParallelHooks(ranks, sync=False))
        if not ns.ok:
            ranks.renew_data_group()
        d.no_sync = variant(ns)
    else:
        d.null_reasons["no_sync"] = "not measured: turned off (--no-comm-share)"
    if config.scaling_baseline:
        d.baseline = measure_baseline(measure_point, workload, config, batch_size, device, ranks)
    else:
        d.null_reasons["baseline"] = "not measured: turned off (--no-scaling-baseline)"
    return m


def measure_baseline(measure_point: MeasureFn, workload, config, batch_size: int, device,
                     ranks: Ranks) -> VariantTiming:
    """Rank 0 alone measures the plain step at `batch_size` (no DDP) while the other ranks wait; every
    rank gets its timing. A configuration error on rank 0 is raised on every rank."""
    payload = None
    if ranks.is_main:
        try:
            payload = {"timing": variant(measure_point(workload, config, batch_size, device)).to_dict()}
        except BenchError as e:
            if isinstance(e, DistributedError):
                raise
            payload = {"config_error": str(e)}
    got = ranks.broadcast("baseline", payload)
    if "config_error" in got:
        raise BenchError(got["config_error"])
    return VariantTiming.from_dict(got["timing"])


def rank_infos(ranks: Ranks, device, environment: dict, interconnect: dict) -> list[RankInfo]:
    """Where every rank runs (host, device, GPU, interconnect, fingerprint hash), in rank order."""
    null = dict(environment.get("null_reasons") or {})
    own = RankInfo(rank=ranks.rank, local_rank=ranks.local_rank, host=ranks.host, device=str(device),
                   gpu_name=environment.get("gpu_name"), gpu_uuid=environment.get("gpu_uuid"),
                   fingerprint_hash=environment.get("hash"), interconnect=dict(interconnect),
                   null_reasons={k: v for k, v in null.items() if k in ("gpu_name", "gpu_uuid")})
    return [RankInfo.from_dict(d) for d in ranks.exchange("rank-info", own.to_dict())]


def baseline_name(config) -> str | None:
    return BASELINE_RANK0 if config.scaling_baseline else None
