"""The machine's state around a measurement, as pyperf records it: load average, CPU governor and
frequency, torch's thread count, the machine's and this process's CPU time; and from readings at the
start and end of points, how busy the machine was with other work while they ran.

These are volatile readings: they belong with each measurement (`Measurement.conditions`), never in
the fingerprint, which is the stable identity that decides whether two results may be compared. The
thread count is a setting of the run (like the precision), not an identity of the machine, so it is
recorded here and in the sweep's config (`threads`), not hashed: a sweep at 1 thread and one at 2 on
the same machine are two settings on the same hardware and software, not two machines.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

CPU_ROOT = "/sys/devices/system/cpu"
LOADAVG_PATH = "/proc/loadavg"
CPUINFO_PATH = "/proc/cpuinfo"
STAT_PATH = "/proc/stat"
# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal ... ; busy is all but
# idle and iowait (guest time is already inside user). Steal is time the hypervisor gave to other guests.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def cpus_available() -> int | None:
    """The CPUs this process may run on (its affinity mask), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def read_loadavg(path: str | os.PathLike = LOADAVG_PATH) -> tuple[list[float] | None, str | None]:
    """([1-min, 5-min, 15-min] load averages], None) or (None, reason)."""
    try:
        parts = Path(path).read_text().split()
        return [float(v) for v in parts[:3]], None
    except (OSError, ValueError, IndexError) as e:
        try:
            return [float(v) for v in os.getloadavg()], None
        except (AttributeError, OSError):
            return None, f"load average unreadable ({path}: {type(e).__name__}; os.getloadavg() unavailable)"


def read_cpu_busy(path: str | os.PathLike = STAT_PATH) -> tuple[float | None, str | None]:
    """(CPU-seconds the whole machine has spent busy since boot, summed over its CPUs, None), or
    (None, reason): /proc/stat's aggregate line, every state but idle and iowait (steal included)."""
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "cpu":
                ticks = [int(v) for v in parts[1:]]
                return sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK"), None
        return None, f"no aggregate 'cpu' line in {path}"
    except (OSError, ValueError, AttributeError) as e:
        return None, f"machine CPU time unreadable ({path}: {type(e).__name__})"


def read_cpu_frequency(root: str | os.PathLike = CPU_ROOT,
                       cpuinfo: str | os.PathLike = CPUINFO_PATH) -> tuple[dict[str, Any], dict[str, str]]:
    """The CPU frequency governors (name -> CPUs) and current frequencies (min/median/max MHz over
    the CPUs) from cpufreq, falling back to /proc/cpuinfo's "cpu MHz" for the frequency; each value
    that cannot be read is left out with a reason."""
    out: dict[str, Any] = {}
    null: dict[str, str] = {}
    governors: Counter = Counter()
    freqs: list[float] = []
    max_freqs: list[float] = []
    for d in sorted(Path(root).glob("cpu[0-9]*/cpufreq")):
        try:
            governors[(d / "scaling_governor").read_text().strip()] += 1
        except OSError:
            pass
        for name, into in (("scaling_cur_freq", freqs), ("cpuinfo_max_freq", max_freqs)):
            try:
                into.append(int((d / name).read_text().strip()) / 1000.0)  # kHz -> MHz
            except (OSError, ValueError):
                pass
    if governors:
        out["cpu_governors"] = dict(governors)
    else:
        null["cpu_governors"] = f"no cpufreq scaling_governor under {root} (no cpufreq driver, or a VM)"
    source = "cpufreq scaling_cur_freq"
    if not freqs:
        try:
            for line in Path(cpuinfo).read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "cpu MHz":
                    freqs.append(float(value))
            source = "/proc/cpuinfo cpu MHz"
        except (OSError, ValueError):
            pass
    if freqs:
        out["cpu_freq_mhz"] = {"min": min(freqs), "median": statistics.median(freqs), "max": max(freqs)}
        out["cpu_freq_source"] = source
    else:
        null["cpu_freq_mhz"] = f"no scaling_cur_freq under {root} and no 'cpu MHz' in {cpuinfo}"
    if max_freqs:
        out["cpu_max_freq_mhz"] = max(max_freqs)
    return out, null


# Environment settings that change how long a step takes or how much memory it holds. Recorded in every
# reading (`env_settings`); all but NOT_HASHED_ENV also enter the fingerprint's comparability key
# (`timing_env`), so results measured under different values are never compared as like for like.
# CUDA_VISIBLE_DEVICES and the thread counts are recorded, not hashed: the GPU's UUID already says which
# card ran, and the thread count is a setting of the run (torch_num_threads, the sweep's `threads`).
ENV_SETTINGS: dict[str, str] = {
    "CUDA_LAUNCH_BLOCKING": "every kernel launch waits for the kernel to finish: launch-bound steps slow down",
    "NVIDIA_TF32_OVERRIDE": "forces TF32 on (1) or off (0) in cuBLAS/cuDNN whatever torch asks: fp32 matmul speed",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "forces TF32 in cuBLAS fp32 matmuls",
    "PYTORCH_CUDA_ALLOC_CONF": "caching-allocator settings: memory held, fragmentation, allocation stalls",
    "PYTORCH_ALLOC_CONF": "caching-allocator settings: memory held, fragmentation, allocation stalls",
    "PYTORCH_NO_CUDA_MEMORY_CACHING": "no caching allocator: every allocation calls cudaMalloc (slow steps)",
    "CUBLAS_WORKSPACE_CONFIG": "cuBLAS workspace size: which kernels cuBLAS may choose",
    "CUBLASLT_WORKSPACE_SIZE": "cuBLASLt workspace size: which kernels cuBLASLt may choose",
    "CUDA_MODULE_LOADING": "lazy or eager kernel loading: first-step time and memory",
    "CUDA_DEVICE_MAX_CONNECTIONS": "hardware work queues: overlap of streams (communication and compute)",
    "TORCH_USE_CUDA_DSA": "device-side assertions compiled in: slower kernels",
    "PYTORCH_TUNABLEOP_ENABLED": "TunableOp searches GEMM kernels at run time",
    "TORCH_CUDNN_V8_API_DISABLED": "cuDNN v7 API instead of v8: other convolution kernels",
    "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT": "cuDNN v8 execution-plan cache size",
    "NCCL_P2P_DISABLE": "NCCL without peer-to-peer: slower all-reduce",
    "NCCL_IB_DISABLE": "NCCL without InfiniBand: slower all-reduce across hosts",
    "NCCL_ALGO": "NCCL collective algorithm forced",
    "NCCL_PROTO": "NCCL protocol forced",
    "CUDA_VISIBLE_DEVICES": "which GPUs this process sees, in which order",
    "OMP_NUM_THREADS": "OpenMP threads: CPU step time",
    "MKL_NUM_THREADS": "MKL threads: CPU step time",
}
# Any other variable with one of these prefixes is recorded (and hashed) too.
ENV_PREFIXES = ("TORCH_CUDNN_V8_API_",)
NOT_HASHED_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Settings under which step times do not describe ordinary training: (name, values that distort, why).
DISTORTING_ENV: dict[str, tuple[tuple[str, ...], str]] = {
    "CUDA_LAUNCH_BLOCKING": (("1",), "each launch waits for its kernel: launch-bound step times are inflated"),
    "PYTORCH_NO_CUDA_MEMORY_CACHING": (("1",), "the caching allocator is off: every allocation synchronises"),
    "TORCH_USE_CUDA_DSA": (("1",), "device-side assertions slow every kernel"),
}


def read_env_settings(environ: Any = None) -> dict[str, str]:
    """The set environment variables of ENV_SETTINGS (and ENV_PREFIXES), name -> value, sorted by name."""
    env = os.environ if environ is None else environ
    return {k: str(env[k]) for k in sorted(env) if k in ENV_SETTINGS or k.startswith(ENV_PREFIXES)}


def hashed_env_settings(settings: dict[str, str]) -> dict[str, str]:
    """The settings that enter the fingerprint's comparability key (`timing_env`)."""
    return {k: v for k, v in settings.items() if k not in NOT_HASHED_ENV}


def distorting_env_settings(settings: dict[str, str]) -> list[dict[str, str]]:
    """[{name, value, why}] of the settings that make step times unrepresentative of ordinary training."""
    out = []
    for name, value in settings.items():
        values, why = DISTORTING_ENV.get(name, ((), ""))
        if value.strip() in values:
            out.append({"name": name, "value": value, "why": why})
    return out


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # noqa: BLE001 - a reading, never a failure
        return None


def read_conditions(*, clock: Callable[[], float] = time.time, loadavg_path: str | os.PathLike = LOADAVG_PATH,
                    cpu_root: str | os.PathLike = CPU_ROOT, cpuinfo: str | os.PathLike = CPUINFO_PATH,
                    torch_threads: Callable[[], int | None] = _torch_threads,
                    stat_path: str | os.PathLike = STAT_PATH,
                    process_cpu: Callable[[], float] = time.process_time,
                    environ: Any = None) -> dict[str, Any]:
    """One reading of the machine's state: `at` (seconds since the epoch), `load_avg` ([1, 5, 15]-minute),
    `cpus` (CPUs this process may use), `torch_num_threads`, `cpu_busy_s` (the machine's busy CPU time
    since boot, `read_cpu_busy`), `own_cpu_s` (this process's CPU time, all its threads) with its `pid`,
    `cpu_governors`, `cpu_freq_mhz` (min/median/max), `cpu_freq_source`, `cpu_max_freq_mhz`,
    `env_settings` (the set variables of ENV_SETTINGS that change timing or memory);
    `null_reasons` for what is unreadable."""
    null: dict[str, str] = {}
    load, why = read_loadavg(loadavg_path)
    if why:
        null["load_avg"] = why
    busy, why = read_cpu_busy(stat_path)
    if why:
        null["cpu_busy_s"] = why
    freq, freq_null = read_cpu_frequency(cpu_root, cpuinfo)
    null.update(freq_null)
    threads = torch_threads()
    if threads is None:
        null["torch_num_threads"] = "torch is not importable"
    return {"at": clock(), "load_avg": load, "cpus": cpus_available(), "torch_num_threads": threads,
            "cpu_busy_s": busy, "own_cpu_s": process_cpu(), "pid": os.getpid(), **freq,
            "env_settings": read_env_settings(environ),
            "null_reasons": null}
