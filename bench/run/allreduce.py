"""`bench allreduce`: time torch.distributed.all_reduce over message sizes in a torchrun job, and report
algorithm and bus bandwidth as NCCL's own tests define them (bench.analysis.distributed).

Each size is one measuring point like a sweep's: warm-up until stable, then blocks of calls with a
barrier before each block and the ranks' times exchanged after it (a call's time is the slowest
rank's), stopping on the CI of the median or the budget. CUDA events bracket each call on a GPU
(NCCL), the host clock on the CPU (Gloo). Only rank 0 writes the file, after every size.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable

from bench.analysis.distributed import algorithm_bandwidth, bus_bandwidth
from bench.core.budget import MEASURE_DEFAULTS
from bench.core.devices import resolve_device
from bench.core.errors import BenchError
from bench.core.io import check_output_file
from bench.measure.distributed import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    DistributedTimer,
    Ranks,
    RanksFailed,
    check_timeout,
    join,
    rank_device,
)
from bench.measure.telemetry.fingerprint import fingerprint
from bench.measure.telemetry.interconnect import interconnect
from bench.measure.timing import (
    CIStoppingRule,
    MeasureLimits,
    WarmupRule,
    measure,
    timer_for,
)
from bench.records.allreduce import AllreducePoint, AllreduceResult, save_allreduce
from bench.run.distributed import rank_infos

DTYPES = ("float32", "float16", "bfloat16", "float64")
KIB, MIB = 1024, 1024 * 1024
# Powers of 4 from 4 KiB: up to 64 MiB on a GPU, 4 MiB on a CPU (Gloo over loopback is slow).
DEFAULT_MAX_BYTES = {"cuda": 64 * MIB, "cpu": 4 * MIB}
LAUNCH_HINT = "launch it with torchrun, e.g. torchrun --standalone --nproc_per_node=2 -m bench allreduce"


@dataclass
class AllreduceConfig:
    """What to all-reduce and how to measure each size (the measuring defaults are a sweep's, with a
    smaller budget: a collective is short)."""

    device: str = "cpu"
    sizes_bytes: list[int] | None = None  # None: powers of 4 from 4 KiB to DEFAULT_MAX_BYTES
    dtype: str = "float32"
    budget_s: float = 1.0
    min_samples: int = MEASURE_DEFAULTS["min_samples"]
    min_time_s: float | None = None
    ci_target: float = MEASURE_DEFAULTS["ci_target"]
    warmup_max_s: float = 5.0
    timeout_s: float = DEFAULT_TIMEOUT_S

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise BenchError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        for s in self.sizes_bytes or []:
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise BenchError(f"message sizes must be positive whole numbers of bytes, got {s!r}")
        check_timeout(self.timeout_s)
        if not (isinstance(self.ci_target, (int, float)) and 0 < self.ci_target < 1):
            raise BenchError(f"CI target must be a fraction between 0 and 1, got {self.ci_target!r}")
        self.limits()
        WarmupRule(max_time_s=self.warmup_max_s)

    def limits(self) -> MeasureLimits:
        return MeasureLimits(budget_s=self.budget_s, min_time_s=self.min_time_s, min_samples=self.min_samples)

    def itemsize(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[self.dtype]

    def planned_sizes(self, device_type: str) -> list[int]:
        """Sizes in bytes, each a whole number of elements (rounded down, at least one)."""
        if self.sizes_bytes:
            sizes = self.sizes_bytes
        else:
            sizes, s = [], 4 * KIB
            while s <= DEFAULT_MAX_BYTES.get(device_type, DEFAULT_MAX_BYTES["cpu"]):
                sizes.append(s)
                s *= 4
        k = self.itemsize()
        return sorted({max(1, s // k) * k for s in sizes})

    def to_dict(self) -> dict:
        return asdict(self)


ProgressFn = Callable[[str, dict], None]


def _measure_size(ranks: Ranks, device, config: AllreduceConfig, size: int) -> AllreducePoint:
    import torch
    import torch.distributed as dist

    count = size // config.itemsize()
    point = AllreducePoint(size_bytes=size, count=count, dtype=config.dtype)
    buf = None
    try:
        try:
            buf = torch.ones(count, dtype=getattr(torch, config.dtype), device=device)
        except Exception as e:  # noqa: BLE001 - out of memory on one rank is that size's result
            raise ranks.announce(e) from None
        ranks.exchange("allocated")
        group = ranks.data_group
        timer = DistributedTimer(timer_for(device), ranks)
        timing = measure(lambda: dist.all_reduce(buf, group=group), timer=timer,
                         rule=CIStoppingRule(config.ci_target), limits=config.limits(),
                         warmup=WarmupRule(max_time_s=config.warmup_max_s), clock=ranks.clock)
    except RanksFailed as e:
        point.status, point.error = e.status, e.message
        for k in ("algbw_bytes_per_s", "busbw_bytes_per_s"):
            point.null_reasons[k] = f"the all-reduce failed: {e.message}"
        ranks.renew_data_group()
        return point
    finally:
        buf = None  # drop the tensor before the next size is allocated
    point.timer, point.samples_s, point.block_medians_s = timing.timer, timing.samples_s, timing.block_medians_s
    point.stop_reason, point.warnings = timing.stop_reason, list(timing.warnings)
    point.rank_samples_s = timer.rank_samples(len(timing.samples_s))
    point.algbw_bytes_per_s = algorithm_bandwidth(size, point.stats.median_s)
    point.busbw_bytes_per_s = bus_bandwidth(point.algbw_bytes_per_s, ranks.world_size)
    if ranks.world_size == 1:
        point.null_reasons["busbw_bytes_per_s"] = "one rank: an all-reduce moves no data between ranks"
        point.busbw_bytes_per_s = None
    return point


def run_allreduce(config: AllreduceConfig, *, output: str | os.PathLike | None = None, overwrite: bool = False,
                  progress: ProgressFn | None = None) -> AllreduceResult:
    """Measure every size on every rank of the torchrun job this process belongs to; rank 0 writes
    `output` after each size. BenchError outside a torchrun job."""
    config.validate()
    device = resolve_device(rank_device(config.device))
    ranks = join(device, config.timeout_s)
    if ranks is None:
        raise BenchError(f"bench allreduce times a collective between processes: {LAUNCH_HINT}")
    notify = (progress or (lambda event, info: None)) if ranks.is_main else (lambda event, info: None)
    environment = fingerprint(device)
    infos = rank_infos(ranks, device, environment, interconnect(device))
    path, problem = None, None
    if ranks.is_main and output is not None:
        try:
            path = check_output_file(output, resume=None, overwrite=overwrite)
        except BenchError as e:
            problem = str(e)
    problem = ranks.broadcast("output", problem)
    if problem:
        raise BenchError(problem)
    settings = {**config.to_dict(), "device": str(config.device), "world_size": ranks.world_size,
                "backend": ranks.backend}
    result = AllreduceResult(config=settings, environment=environment, ranks=infos,
                             created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    sizes = config.planned_sizes(device.type)
    notify("start", {"planned": sizes})

    def save() -> None:
        if path is not None:
            save_allreduce(result, path)

    try:
        for size in sizes:
            notify("point", {"size_bytes": size})
            p = _measure_size(ranks, device, config, size)
            result.points.append(p)
            save()
            notify("done", {"point": p})
    except DistributedError as e:
        result.config["failure"] = str(e)
        save()
        raise DistributedError(f"{e}" + (f"; the sizes measured before are in {path}" if path else "")) from None
    result.finished = True
    save()
    return result

