"""Stable identity of the hardware and software a result was measured on, and its hash: the one
fingerprint record (one set of key names) of sweeps, suites (machine_info), curves and TTA files.

Two results are comparable when their `hash` matches. Volatile readings (temperature, current
clocks, memory in use) are not part of the fingerprint: they belong to each measurement. Files
written before the names were unified used others (`torch`, `python`, `cpu`, ...):
`canonical_fingerprint` maps them when a file is read.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from bench.core.fingerprint import (
    FINGERPRINT_VERSION,
    GPU_FIELDS,
    STABLE_FIELDS,
    UNIT_FIELDS,
    canonical_hash,
    hardware_hash,
    software_hash,
)
from bench.measure.telemetry.nvml import (
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NvmlUnavailable,
    as_text,
    describe_error,
    device_handle,
    load_nvml,
    parse_device,
    shutdown_nvml,
)


def cpu_model() -> tuple[str | None, str | None]:
    """(CPU model name, None) or (None, reason)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
                    return value.strip(), None
    except OSError:
        pass
    name = platform.processor()
    if name:
        return name, None
    return None, "CPU model not found in /proc/cpuinfo or platform.processor()"


def git_state(repo_dir: str | os.PathLike | None = None) -> tuple[str | None, bool | None, str | None]:
    """(commit, dirty, None) of the git work tree at `repo_dir` (default: the current directory),
    or (None, None, reason)."""
    cwd = os.fspath(repo_dir) if repo_dir is not None else os.getcwd()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            msg = (head.stderr.strip().splitlines() or ["git rev-parse failed"])[0]
            return None, None, f"not a git work tree with a commit ({cwd}): {msg}"
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return head.stdout.strip(), dirty, None
    except FileNotFoundError:
        return None, None, "git is not installed"
    except (OSError, subprocess.SubprocessError) as e:
        return None, None, f"git failed: {type(e).__name__}: {e}"


def _software(fp: dict, null: dict) -> None:
    from bench import __version__

    fp["python_version"] = platform.python_version()
    fp["python_implementation"] = platform.python_implementation()
    fp["bench_version"] = __version__
    try:
        import torch
    except ImportError:
        for k in ("torch_version", "cuda_runtime_version", "cudnn_version"):
            null[k] = "torch is not installed"
        return
    fp["torch_version"] = torch.__version__
    fp["cuda_runtime_version"] = torch.version.cuda
    if torch.version.cuda is None:
        null["cuda_runtime_version"] = "this torch build has no CUDA"
    try:
        fp["cudnn_version"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception as e:
        null["cudnn_version"] = f"cudnn version unreadable: {type(e).__name__}: {e}"
    if fp.get("cudnn_version") is None:
        null.setdefault("cudnn_version", "cuDNN not available to this torch build")


def _host(fp: dict, null: dict) -> None:
    fp["cpu_model"], why = cpu_model()
    if why:
        null["cpu_model"] = why
    fp["cpu_count"] = os.cpu_count()
    if fp["cpu_count"] is None:
        null["cpu_count"] = "os.cpu_count() could not tell"
    fp["os"] = platform.system() or None
    fp["os_release"] = platform.release() or None
    fp["machine"] = platform.machine() or None


def _gpu_from_nvml(nvml: Any, handle: Any, fp: dict, null: dict) -> None:
    def read(key: str, call: str, fn, convert=lambda v: v):
        try:
            fp[key] = convert(fn())
        except Exception as e:
            null[key] = describe_error(nvml, call, e)

    read("gpu_name", "nvmlDeviceGetName", lambda: nvml.nvmlDeviceGetName(handle), as_text)
    read("gpu_uuid", "nvmlDeviceGetUUID", lambda: nvml.nvmlDeviceGetUUID(handle), as_text)
    read("gpu_compute_capability", "nvmlDeviceGetCudaComputeCapability",
         lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle), lambda v: f"{v[0]}.{v[1]}")
    read("gpu_memory_total_bytes", "nvmlDeviceGetMemoryInfo", lambda: nvml.nvmlDeviceGetMemoryInfo(handle),
         lambda v: int(v.total))

    def power_limit():
        try:
            return nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
        except Exception:
            return nvml.nvmlDeviceGetPowerManagementLimit(handle)

    read("gpu_power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", power_limit, lambda mw: mw / 1000.0)
    read("gpu_max_sm_clock_mhz", "nvmlDeviceGetMaxClockInfo(SM)",
         lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", NVML_CLOCK_SM)), int)
    read("gpu_max_memory_clock_mhz", "nvmlDeviceGetMaxClockInfo(MEM)",
         lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, getattr(nvml, "NVML_CLOCK_MEM", NVML_CLOCK_MEM)), int)
    read("gpu_ecc_enabled", "nvmlDeviceGetEccMode", lambda: nvml.nvmlDeviceGetEccMode(handle), lambda v: bool(v[0]))
    read("gpu_persistence_mode", "nvmlDeviceGetPersistenceMode", lambda: nvml.nvmlDeviceGetPersistenceMode(handle),
         bool)
    try:
        fp["gpu_mig_enabled"] = bool(nvml.nvmlDeviceGetMigMode(handle)[0])
    except Exception as e:
        from bench.measure.telemetry.nvml import is_not_supported

        if is_not_supported(nvml, e):
            fp["gpu_mig_enabled"] = False  # a GPU that cannot do MIG is not in MIG mode
        else:
            null["gpu_mig_enabled"] = describe_error(nvml, "nvmlDeviceGetMigMode", e)
    read("driver_version", "nvmlSystemGetDriverVersion", nvml.nvmlSystemGetDriverVersion, as_text)

    def cuda_version(v: int) -> str:
        return f"{v // 1000}.{(v % 1000) // 10}"

    read("cuda_driver_version", "nvmlSystemGetCudaDriverVersion", nvml.nvmlSystemGetCudaDriverVersion, cuda_version)


def _gpu_from_torch(index: int, fp: dict, null: dict, nvml_reason: str) -> None:
    """What torch alone can tell about the GPU when NVML cannot be used."""
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        props = torch.cuda.get_device_properties(index)
        fp["gpu_name"] = props.name
        fp["gpu_compute_capability"] = f"{props.major}.{props.minor}"
        fp["gpu_memory_total_bytes"] = int(props.total_memory)
        uuid = getattr(props, "uuid", None)
        if uuid is not None:
            fp["gpu_uuid"] = f"GPU-{uuid}" if not str(uuid).startswith("GPU-") else str(uuid)
    except Exception as e:
        nvml_reason = f"{nvml_reason}; torch: {e}"
    for k in GPU_FIELDS:
        if fp.get(k) is None:
            null.setdefault(k, nvml_reason)


def fingerprint(device: Any = "cpu", *, nvml: Any = None, repo_dir: str | os.PathLike | None = None,
                environ: Any = None) -> dict[str, Any]:
    """Identity of the machine and software for `device`: flat dict, `hash`, and `null_reasons`.

    `hash` covers STABLE_FIELDS (hardware, driver, CUDA, cuDNN, torch, Python, OS, CPU);
    `model_hash` the same without the GPU's UUID (another card of the same model and setup);
    `hardware_hash` the hardware identity alone and `software_hash` the rest (see HARDWARE_FIELDS);
    the project's git commit is recorded but hashed by neither. `env_settings` records the environment
    variables that change timing or memory; `timing_env`, those of them that are hashed (into `hash` and
    `hardware_hash`, only when some are set). `environ` replaces os.environ (tests). `nvml` is the module to use
    (tests inject a fake); None imports pynvml if present. Never raises for a missing GPU.
    """
    fp: dict[str, Any] = {"fingerprint_version": FINGERPRINT_VERSION}
    null: dict[str, str] = {}
    kind, index = parse_device(device)
    fp["device_type"] = kind
    fp["device"] = f"{kind}:{index}" if index is not None else kind
    for k in GPU_FIELDS:
        fp[k] = None
    if kind != "cuda":
        for k in GPU_FIELDS:
            null[k] = f"device is {kind}, not a CUDA GPU"
    else:
        try:
            module = load_nvml(nvml)
        except NvmlUnavailable as e:
            _gpu_from_torch(index or 0, fp, null, str(e))
        else:
            try:
                _gpu_from_nvml(module, device_handle(module, device), fp, null)
            except NvmlUnavailable as e:
                _gpu_from_torch(index or 0, fp, null, str(e))
            finally:
                shutdown_nvml(module)
    _software(fp, null)
    _host(fp, null)
    from bench.measure.conditions import hashed_env_settings, read_env_settings

    fp["env_settings"] = read_env_settings(environ)
    fp["timing_env"] = hashed_env_settings(fp["env_settings"])
    commit, dirty, why = git_state(repo_dir)
    fp["git_commit"], fp["git_dirty"] = commit, dirty
    if why:
        null["git_commit"] = null["git_dirty"] = why
    elif dirty is None:
        null["git_dirty"] = "git status failed"
    fp["hash"] = canonical_hash(fp, STABLE_FIELDS)
    fp["model_hash"] = canonical_hash(fp, tuple(k for k in STABLE_FIELDS if k not in UNIT_FIELDS))
    fp["hardware_hash"] = hardware_hash(fp)
    fp["software_hash"] = software_hash(fp)
    fp["hashed_fields"] = list(STABLE_FIELDS)
    fp["null_reasons"] = {k: v for k, v in null.items() if fp.get(k) is None}
    return fp


