"""Peak dense TFLOP/s per precision: a datasheet table matched by device name, and a matmul probe.

The table is the denominator of MFU. `measure_peak` times a large matmul on the device (CUDA
events; on a CPU it measures the CPU and says so) for when the table has no entry or the card
runs below its datasheet (power cap, clocks).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping

from bench.core.devices import resolve_device
from bench.core.errors import BenchError
from bench.core.stats import relative_spread
from bench.core.vocabulary import PRECISIONS, TIMER_CUDA_EVENT, TIMER_HOST

_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "32": "fp32",
    "tf32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16", "amp_bf16": "bf16", "bf16-mixed": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "amp_fp16": "fp16", "16-mixed": "fp16", "16": "fp16",
}


def normalize_precision(precision: str) -> str | None:
    """One of PRECISIONS, or None for a name we do not know."""
    return _ALIASES.get(str(precision).strip().lower())


@dataclass(frozen=True)
class GpuPeak:
    """Dense (no structured sparsity) peak TFLOP/s of one GPU model; None where it has no such unit."""

    key: str
    fp32: float | None
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str

    def tflops(self, precision: str) -> float | None:
        return getattr(self, precision)

    def to_dict(self) -> dict:
        return asdict(self)


# Dense peak TFLOP/s from NVIDIA's product datasheets. Where a datasheet gives Tensor Core numbers
# "with sparsity" (A100 and later, marked *), the dense number is half of it. fp32 is the
# non-tensor (CUDA core) rate; tf32/bf16/fp16 are Tensor Core rates with fp32 accumulate.
# Boost clocks; a card held at its power cap runs below these (see `bench peak`).
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (TF32 156, BF16/FP16 312 dense; 312*/624* with sparsity)"
_H100_SXM = "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM (FP32 67; TF32 989*, BF16/FP16 1979* with sparsity)"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM (FP32 67; TF32 989*, BF16/FP16 1979* with sparsity)"
GPU_PEAKS: dict[str, GpuPeak] = {p.key: p for p in (
    GpuPeak("V100-SXM2", 15.7, None, None, 125.0, "NVIDIA Tesla V100 datasheet, SXM2 (FP32 15.7, Tensor 125)"),
    GpuPeak("V100-PCIe", 14.0, None, None, 112.0, "NVIDIA Tesla V100 datasheet, PCIe (FP32 14, Tensor 112)"),
    GpuPeak("V100S-PCIe", 16.4, None, None, 130.0, "NVIDIA V100S datasheet (FP32 16.4, Tensor 130)"),
    GpuPeak("T4", 8.1, None, None, 65.0, "NVIDIA T4 datasheet (FP32 8.1, FP16 mixed 65)"),
    GpuPeak("A100-SXM", 19.5, 156.0, 312.0, 312.0, _A100 + ", SXM 40/80GB"),
    GpuPeak("A100-PCIe", 19.5, 156.0, 312.0, 312.0, _A100 + ", PCIe 40/80GB"),
    GpuPeak("A10", 31.2, 62.5, 125.0, 125.0, "NVIDIA A10 datasheet (TF32 125*, BF16/FP16 250* with sparsity)"),
    GpuPeak("A30", 10.3, 82.0, 165.0, 165.0, "NVIDIA A30 datasheet (TF32 165*, BF16/FP16 330* with sparsity)"),
    GpuPeak("A40", 37.4, 74.8, 149.7, 149.7, "NVIDIA A40 datasheet (TF32 149.6*, BF16/FP16 299.4* with sparsity)"),
    GpuPeak("L4", 30.3, 60.0, 121.0, 121.0, "NVIDIA L4 datasheet (TF32 120*, BF16/FP16 242* with sparsity)"),
    GpuPeak("L40", 90.5, 90.5, 181.0, 181.0, "NVIDIA L40 datasheet (TF32 181*, BF16/FP16 362* with sparsity)"),
    GpuPeak("L40S", 91.6, 183.0, 362.0, 362.0, "NVIDIA L40S datasheet (TF32 366*, BF16/FP16 733* with sparsity)"),
    GpuPeak("H100-SXM", 67.0, 494.5, 989.5, 989.5, _H100_SXM),
    GpuPeak("H100-PCIe", 51.0, 378.0, 756.5, 756.5,
            "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe (FP32 51; TF32 756*, BF16/FP16 1513* with sparsity)"),
    GpuPeak("H100-NVL", 60.0, 417.5, 835.5, 835.5,
            "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL (FP32 60; TF32 835*, BF16/FP16 1671* with sparsity)"),
    GpuPeak("GH200", 67.0, 494.5, 989.5, 989.5,
            "NVIDIA GH200 Grace Hopper Superchip datasheet, GPU (FP32 67; TF32 989*, BF16/FP16 1979* with sparsity)"),
    GpuPeak("H200-SXM", 67.0, 494.5, 989.5, 989.5, _H200),
    GpuPeak("H200-NVL", 60.0, 417.5, 835.5, 835.5,
            "NVIDIA H200 Tensor Core GPU datasheet, H200 NVL (FP32 60; TF32 835*, BF16/FP16 1671* with sparsity)"),
    GpuPeak("B200", 75.0, 1125.0, 2250.0, 2250.0,
            "NVIDIA HGX B200 datasheet, 8 GPUs (FP32 600; TF32 18 PF*, BF16/FP16 36 PF* with sparsity), per GPU"),
)}

# Matched in order against the lower-cased device name (NVML or torch): specific before general.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"gh200", "GH200"),
    (r"h200.*nvl", "H200-NVL"),
    (r"h200", "H200-SXM"),
    (r"h100.*nvl", "H100-NVL"),
    (r"h100.*pcie", "H100-PCIe"),
    (r"h100", "H100-SXM"),          # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"(?<!g)b200", "B200"),        # not GB200: its per-GPU rates are not in this table
    (r"a100.*pcie", "A100-PCIe"),
    (r"a100", "A100-SXM"),
    (r"\bl40s\b", "L40S"),
    (r"\bl40\b", "L40"),
    (r"\bl4\b", "L4"),
    (r"\ba10\b", "A10"),             # not A10G: NVIDIA publishes no datasheet for it
    (r"\ba30\b", "A30"),
    (r"\ba40\b", "A40"),
    (r"v100s", "V100S-PCIe"),
    (r"v100.*pcie", "V100-PCIe"),
    (r"v100", "V100-SXM2"),
    (r"\bt4\b", "T4"),
)


def lookup_gpu(device_name: str | None) -> GpuPeak | None:
    """The table entry for a device name such as "NVIDIA H100 80GB HBM3", or None."""
    if not device_name:
        return None
    name = device_name.lower()
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, name):
            return GPU_PEAKS[key]
    return None


@dataclass(frozen=True)
class PeakLookup:
    """A peak TFLOP/s for (device, precision), where it came from, or why there is none."""

    tflops: float | None
    source: str | None
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def peak_tflops(device_name: str | None, precision: str,
                overrides: Mapping[str, float] | None = None) -> PeakLookup:
    """Dense peak TFLOP/s for a device name and precision.

    `overrides` (precision -> TFLOP/s, e.g. from `bench peak` or the user) wins over the table.
    """
    p = normalize_precision(precision)
    if p is None:
        return PeakLookup(None, None, f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if overrides:
        for k, v in overrides.items():
            if normalize_precision(k) == p and v is not None:
                if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                    raise BenchError(f"peak TFLOP/s override for {p} must be a positive number, got {v!r}")
                return PeakLookup(float(v), "override")
    if device_name and " mig " in f" {device_name.lower()} ":
        # A MIG slice has a fraction of the card's SMs: the full-card peak would understate MFU several-fold.
        return PeakLookup(None, None, f"MIG instance: {device_name!r} runs on a slice of the GPU, whose peak is not "
                                      "the datasheet's full-card figure; pass a peak override or measure one with "
                                      "`bench peak`")
    gpu = lookup_gpu(device_name)
    if gpu is None:
        return PeakLookup(None, None, f"no datasheet peak for device {device_name!r}: pass a peak override "
                                      "or measure one with `bench peak`")
    value = gpu.tflops(p)
    if value is None:
        return PeakLookup(None, None, f"{gpu.key} has no {p} tensor-core rate in its datasheet")
    return PeakLookup(value, f"table:{gpu.key} ({gpu.source})")


def matmul_precision_for(precision: str) -> str | None:
    """The peak-table precision a training precision's matmuls run at.

    fp32 matmuls use TF32 tensor cores when torch allows it (`torch.set_float32_matmul_precision`
    "high"/"medium", or `torch.backends.cuda.matmul.allow_tf32`), so their peak is the tf32 one.
    """
    p = normalize_precision(precision)
    if p != "fp32":
        return p
    try:
        import torch

        if torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest":
            return "tf32"
    except Exception:
        pass
    return "fp32"


@dataclass
class PeakMeasurement:
    """Achieved TFLOP/s of an n x n x n matmul on one device at one precision."""

    precision: str
    device: str
    device_name: str | None
    measured: str                       # "gpu" or "cpu": what was actually timed
    size: int
    timer: str | None = None            # TIMER_CUDA_EVENT or TIMER_HOST
    repeats: int = 0
    matmuls_per_repeat: int = 0
    tflops_median: float | None = None
    tflops_best: float | None = None
    tflops_worst: float | None = None
    tflops_spread: float | None = None  # half the range of the repeats relative to their median
    seconds_per_matmul_median: float | None = None
    warmup_s: float | None = None  # seconds of matmuls run (and discarded) before the timed repeats
    samples_tflops: list[float] = field(default_factory=list)
    table_tflops: float | None = None
    table_source: str | None = None
    fraction_of_table: float | None = None
    telemetry: dict[str, Any] | None = None
    note: str | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEFAULT_GPU_SIZE = 8192
DEFAULT_CPU_SIZE = 1024
# Sustained, not burst: a GPU's clocks ramp up over hundreds of milliseconds and a long run meets its
# power cap, so warm up for a second and time ten repeats of 0.2 s (2 s of matmuls per precision).
PEAK_DEFAULTS = {"warmup_s": 1.0, "repeats": 10, "min_repeat_s": 0.2}
_MEASURED_FIELDS = ("tflops_median", "tflops_best", "tflops_worst", "tflops_spread", "seconds_per_matmul_median")
_TELEMETRY_KEYS = ("sm_clock_mhz_median", "sm_clock_mhz_min", "power_w_energy_mean", "power_source", "power_w_mean",
                   "power_instant_w_max", "n_gpm_intervals", "tensor_activity_pct_mean", "throttle_reasons",
                   "throttled", "throttled_sample_fraction")


@contextmanager
def _float32_matmul(precision: str) -> Iterator[None]:
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def measure_peak(device: Any = None, precisions: tuple[str, ...] | list[str] | None = None, size: int | None = None,
                 repeats: int = PEAK_DEFAULTS["repeats"], min_repeat_s: float = PEAK_DEFAULTS["min_repeat_s"],
                 nvml: Any = None, warmup_s: float = PEAK_DEFAULTS["warmup_s"]) -> list[PeakMeasurement]:
    """Time n x n x n matmuls per precision and return achieved TFLOP/s (2*n^3 FLOPs per matmul).

    device None -> CUDA if torch sees it, else the CPU (and every result says it measured the CPU).
    First `warmup_s` seconds of back-to-back matmuls are run and discarded (clocks ramp up, the
    library picks its kernel); then each of `repeats` repeats runs enough matmuls to last about
    `min_repeat_s`. The median over the repeats is the result; the best and worst repeats and their
    spread (half the range relative to the median) are kept. On a GPU a long run reaches the power
    cap, so the telemetry fields (SM clock, throttle reasons) say at what clock it was measured.
    """
    import torch

    dev = resolve_device(device, allowed=("cuda", "cpu"))
    if size is None:
        size = DEFAULT_GPU_SIZE if dev.type == "cuda" else DEFAULT_CPU_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BenchError(f"matmul size must be a positive integer, got {size!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise BenchError(f"repeats must be a positive integer, got {repeats!r}")
    for name, value in (("warm-up time", warmup_s), ("repeat time", min_repeat_s)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
            raise BenchError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if precisions is None:
        precisions = PRECISIONS if dev.type == "cuda" else ("fp32", "bf16")
    wanted = []
    for p in precisions:
        n = normalize_precision(p)
        if n is None:
            raise BenchError(f"unknown precision {p!r} (known: {', '.join(PRECISIONS)})")
        wanted.append(n)

    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        dev = torch.device("cuda", index)
        name = torch.cuda.get_device_name(index)
        cc = torch.cuda.get_device_capability(index)
    else:
        from bench.measure.telemetry.fingerprint import cpu_model

        name, cc = cpu_model()[0], None
    results = []
    for p in wanted:
        r = PeakMeasurement(precision=p, device=str(dev), device_name=name, measured=dev.type if dev.type == "cpu" else "gpu",
                            size=size)
        if dev.type == "cpu":
            r.note = "measured the CPU (no CUDA device used): not a GPU peak"
        if dev.type == "cuda":
            lookup = peak_tflops(name, p)
            r.table_tflops, r.table_source = lookup.tflops, lookup.source
            if lookup.tflops is None:
                r.null_reasons["table_tflops"] = lookup.reason
        else:
            r.null_reasons["table_tflops"] = "the datasheet table covers NVIDIA GPUs only"
        skip = None
        if p == "tf32" and (dev.type != "cuda" or cc < (8, 0)):
            skip = "TF32 is a tensor-core mode of NVIDIA GPUs (compute capability 8.0 and later), not of this device"
        elif p == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            skip = "this GPU has no native bf16"
        if skip:
            for k in (*_MEASURED_FIELDS, "fraction_of_table"):
                r.null_reasons[k] = skip
            results.append(r)
            continue
        _time_matmul(r, dev, size, repeats, min_repeat_s, nvml, warmup_s)
        if r.tflops_median is not None and r.table_tflops:
            r.fraction_of_table = r.tflops_median / r.table_tflops
        else:
            r.null_reasons["fraction_of_table"] = r.null_reasons.get("table_tflops") or "not measured"
        results.append(r)
    return results


def timed_repeats(work: Callable[[int], None], repeats: int, count: int, cuda: Any = None,
                  clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of `repeats` runs of `work(count)`. With `cuda` (the torch.cuda namespace), a
    pair of events around each run, all queued back to back and one host synchronisation at the end:
    the device never waits for the host between repeats. Without, a host clock around each run."""
    if cuda is None:
        out = []
        for _ in range(repeats):
            t0 = clock()
            work(count)
            out.append(clock() - t0)
        return out
    events = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        work(count)
        end.record()
    events[-1][1].synchronize()
    return [start.elapsed_time(end) / 1000.0 for start, end in events]


def _time_matmul(r: PeakMeasurement, dev, n: int, repeats: int, min_repeat_s: float, nvml: Any,
                 warmup_s: float) -> None:
    import torch

    dtype = getattr(torch, _DTYPES[r.precision])
    flops = 2.0 * n ** 3
    cuda = dev.type == "cuda"
    try:
        with _float32_matmul(r.precision), torch.no_grad():
            a = torch.randn(n, n, device=dev, dtype=dtype)
            b = torch.randn(n, n, device=dev, dtype=dtype)
            c = torch.empty(n, n, device=dev, dtype=dtype)

            def work(count: int) -> None:
                for _ in range(count):
                    torch.matmul(a, b, out=c)

            # Made before warm-up: its start (NVML) would otherwise idle the GPU between warm-up and
            # the timed repeats, and the clocks would drop.
            telemetry = None
            if cuda:
                from bench.measure.telemetry.sampler import Telemetry

                telemetry = Telemetry.for_device(dev, nvml=nvml)
            cuda_ns = torch.cuda if cuda else None
            try:
                warm = sum(timed_repeats(work, 1, 2, cuda_ns))  # library selection
                one = max(timed_repeats(work, 1, 1, cuda_ns)[0], 1e-9)
                warm += one
                while warm < warmup_s:  # clocks up: at least warmup_s of matmuls, in chunks of about 0.1 s
                    count = max(1, math.ceil(min(0.1, warmup_s - warm) / one))
                    t = timed_repeats(work, 1, count, cuda_ns)[0]
                    warm += t
                    one = max(t / count, 1e-9)
                r.warmup_s = warm
                inner = max(1, math.ceil(min_repeat_s / one))
                if telemetry is not None:
                    with telemetry.measuring():
                        per_matmul = [t / inner for t in timed_repeats(work, repeats, inner, cuda_ns)]
                    s = telemetry.summary(steps=repeats * inner)
                    r.telemetry = {k: s.get(k) for k in _TELEMETRY_KEYS}
                    r.telemetry["null_reasons"] = {k: v for k, v in s["null_reasons"].items() if k in _TELEMETRY_KEYS}
                else:
                    per_matmul = [t / inner for t in timed_repeats(work, repeats, inner, cuda_ns)]
            finally:
                if telemetry is not None:
                    telemetry.close()
    except (RuntimeError, MemoryError) as e:  # OOM or an unsupported dtype kernel on this device
        reason = f"matmul failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        for k in _MEASURED_FIELDS:
            r.null_reasons[k] = reason
        return
    r.timer = TIMER_CUDA_EVENT if cuda else TIMER_HOST
    r.repeats, r.matmuls_per_repeat = repeats, inner
    r.samples_tflops = [flops / t / 1e12 for t in per_matmul]
    med = statistics.median(per_matmul)
    r.seconds_per_matmul_median = med
    r.tflops_median = flops / med / 1e12
    r.tflops_best = max(r.samples_tflops)
    r.tflops_worst = min(r.samples_tflops)
    r.tflops_spread = relative_spread(r.samples_tflops)
    if r.tflops_spread is None:
        r.null_reasons["tflops_spread"] = "one repeat: no spread (use more repeats)"
