"""The environment section of the report: each input's hardware and software fingerprint side by side,
rows that differ between inputs marked, and the one-line fingerprint shown beside each verdict."""

from __future__ import annotations

import json
from typing import Any, Sequence

import bench.present.fmt as fmt
from bench.core.numbers import is_number

FINGERPRINT_ORDER = (
    "device", "gpu_name", "gpu_compute_capability", "gpu_memory_total_bytes", "gpu_power_limit_w",
    "gpu_max_sm_clock_mhz", "gpu_max_memory_clock_mhz", "gpu_ecc_enabled", "gpu_mig_enabled", "gpu_persistence_mode",
    "driver_version", "cuda_driver_version", "cuda_runtime_version", "cudnn_version", "torch_version", "torch",
    "python_version", "python", "python_implementation", "bench_version", "cpu_model", "cpu", "cpu_count",
    "torch_threads", "os", "os_release", "platform", "machine", "git_commit", "git_dirty", "hash", "model_hash",
    "hardware_hash", "software_hash",
)
_FINGERPRINT_SKIP = {"null_reasons", "hashed_fields", "fingerprint_version", "pytest_benchmark_machine_info"}


def _env_value(key: str, v: Any) -> str:
    if v is None:
        return "—"
    if key.endswith("_bytes") and is_number(v):
        return fmt.nbytes(v)
    if key.endswith("_w") and is_number(v):
        return f"{v:g} W"
    if key.endswith("_mhz") and is_number(v):
        return f"{v:g} MHz"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def environment_table(columns: Sequence[tuple[str, dict]]) -> dict | None:
    """Fingerprint fields (rows) per source (columns); rows whose values differ are marked."""
    envs = [(name, e) for name, e in columns if isinstance(e, dict) and e]
    if not envs:
        return None
    keys = [k for k in FINGERPRINT_ORDER if any(k in e for _, e in envs)]
    keys += sorted({k for _, e in envs for k in e} - set(keys) - _FINGERPRINT_SKIP)
    rows = []
    missing: dict[str, list[str]] = {}  # reason -> fields recorded by no input: listed, not tabled
    for k in keys:
        vals = [e.get(k) for _, e in envs]
        if all(v is None for v in vals):
            reason = next(((e.get("null_reasons") or {}).get(k) for _, e in envs
                           if (e.get("null_reasons") or {}).get(k)), "not recorded")
            missing.setdefault(reason, []).append(k)
            continue
        shown = [_env_value(k, v) for v in vals]
        differs = len(envs) > 1 and len(set(shown)) > 1
        rows.append({"key": k, "differs": differs,
                     "values": [{"text": s, "title": (e.get("null_reasons") or {}).get(k) if v is None else None}
                                for s, v, (_, e) in zip(shown, vals, envs)]})
    return {"columns": [n for n, _ in envs], "rows": rows, "n_differ": sum(1 for r in rows if r["differs"]),
            "missing": [{"reason": r, "fields": ", ".join(f)} for r, f in missing.items()]}


def fingerprint_line(env: dict, brief: bool = False) -> str:
    """The few fields a reader wants first: what ran it, with which software (`brief`: without the hash)."""
    if not env:
        return "no fingerprint recorded"
    mi = env.get("pytest_benchmark_machine_info")
    if isinstance(mi, dict) and not env.get("gpu_name"):
        cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
        env = {**env, "cpu_model": cpu.get("brand_raw") or mi.get("processor"),
               "python_version": mi.get("python_version")}
    dev = env.get("gpu_name") or env.get("gpu") or env.get("cpu_model") or env.get("cpu") or env.get("device") or "?"
    parts = [str(dev)]
    if env.get("gpu_memory_total_bytes"):
        parts.append(fmt.nbytes(env["gpu_memory_total_bytes"]))
    if env.get("driver_version"):
        parts.append(f"driver {env['driver_version']}")
    if env.get("cuda_runtime_version"):
        parts.append(f"CUDA {env['cuda_runtime_version']}")
    torch_v = env.get("torch_version") or env.get("torch")
    if torch_v:
        parts.append(f"torch {torch_v}")
    py = env.get("python_version") or env.get("python")
    if py:
        parts.append(f"Python {py}")
    if env.get("hash") and not brief:
        parts.append(f"fingerprint {env['hash']}")
    return " · ".join(parts)
