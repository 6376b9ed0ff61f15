"""Which machine a result came from: the hardware identity a benchmark's history is kept under.

One home for the rule, so that when the fingerprint's key names change only this module follows:
a bench fingerprint gives its hardware hash (same model of card and CPU, whatever the software);
a plain pytest-benchmark file gives its CPU and OS, never the host name (CI runners get a new one each night).
"""

from __future__ import annotations

from typing import Any

from bench.core.fingerprint import HARDWARE_FIELDS, hardware_hash, software_hash

# Software of a run without a bench fingerprint, from pytest-benchmark's own machine_info.
PYTEST_SOFTWARE_FIELDS = ("python_implementation", "python_version", "python_compiler", "release")


def is_bench_fingerprint(fp: Any) -> bool:
    return isinstance(fp, dict) and bool(fp.get("model_hash") or fp.get("hash"))


def hardware_identity(fingerprint: dict | None = None, machine_info: dict | None = None) -> tuple[str, str]:
    """(key, label) of the machine: from a bench fingerprint when there is one (also the one inside
    pytest-benchmark's `machine_info["bench_fingerprint"]`), else from pytest-benchmark's machine_info."""
    machine_info = machine_info if isinstance(machine_info, dict) else {}
    fp = fingerprint if is_bench_fingerprint(fingerprint) else machine_info.get("bench_fingerprint")
    if is_bench_fingerprint(fp):
        name = fp.get("gpu_name") or fp.get("cpu_model") or fp.get("device") or "machine"
        if any(fp.get(k) is not None for k in HARDWARE_FIELDS):
            key = hardware_hash(fp)
        else:  # a fingerprint that names no hardware: only its whole hash can tell machines apart
            key = str(fp.get("model_hash") or fp.get("hash"))
        env = fp.get("timing_env") or {}
        under = (" under " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))) if isinstance(env, dict) and env else ""
        return key, f"{name} [{key[:8]}]{under}"
    cpu = machine_info.get("cpu") if isinstance(machine_info.get("cpu"), dict) else {}
    name = str(cpu.get("brand_raw") or machine_info.get("processor") or machine_info.get("machine") or "machine")
    key = f"{name}|{machine_info.get('system')}|{machine_info.get('machine')}"
    return key, name


def software_identity(fingerprint: dict | None = None, machine_info: dict | None = None) -> tuple[str | None, dict]:
    """(hash or None, fields) of the software a run used: the fingerprint's software hash and fields,
    else pytest-benchmark's Python and OS release (no hash)."""
    machine_info = machine_info if isinstance(machine_info, dict) else {}
    fp = fingerprint if is_bench_fingerprint(fingerprint) else machine_info.get("bench_fingerprint")
    if is_bench_fingerprint(fp):
        from bench.core.fingerprint import SOFTWARE_ENV_FIELDS

        return software_hash(fp), {k: fp.get(k) for k in SOFTWARE_ENV_FIELDS}
    return None, {k: machine_info.get(k) for k in PYTEST_SOFTWARE_FIELDS}
