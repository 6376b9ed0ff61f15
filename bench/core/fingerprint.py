"""A fingerprint's identity as data: which recorded fields are hashed (and into which hash), the hashes,
and the mapping of older files' key names. Pure: collecting a fingerprint from the machine is
`bench.measure.telemetry.fingerprint`; records, the history store and the analysis read identity here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FINGERPRINT_VERSION = 1

GPU_FIELDS = (
    "gpu_name", "gpu_uuid", "gpu_compute_capability", "gpu_memory_total_bytes", "gpu_power_limit_w",
    "gpu_max_sm_clock_mhz", "gpu_max_memory_clock_mhz", "gpu_ecc_enabled", "gpu_mig_enabled",
    "gpu_persistence_mode", "driver_version", "cuda_driver_version",
)
SOFTWARE_FIELDS = ("torch_version", "cuda_runtime_version", "cudnn_version", "python_version",
                   "python_implementation", "bench_version")
HOST_FIELDS = ("cpu_model", "cpu_count", "os", "os_release", "machine")
# The environment settings that change step time or memory (CUDA_LAUNCH_BLOCKING, PYTORCH_CUDA_ALLOC_CONF,
# ...; `bench.measure.conditions.ENV_SETTINGS`), name -> value. Hashed only when some are set, so a
# fingerprint without any (every one written before the field existed) keeps its hash.
ENV_FIELDS = ("timing_env",)
OPTIONAL_FIELDS = ENV_FIELDS
# Hashed: what decides whether two step times may be compared.
STABLE_FIELDS = ("device_type",) + GPU_FIELDS + SOFTWARE_FIELDS + HOST_FIELDS + ENV_FIELDS
# Recorded, not hashed: the code under test changes between runs that a regression check compares.
PROVENANCE_FIELDS = ("git_commit", "git_dirty")
# Per-unit identity: `model_hash` leaves it out, to compare runs on another card of the same model.
UNIT_FIELDS = ("gpu_uuid",)
# What the machine is, whatever software it runs: a benchmark's history is kept per `hardware_hash`,
# so a slowdown that arrives with a torch/CUDA/driver upgrade is compared with the runs before it.
# The environment settings are part of it: `bench compare` refuses (or, with --cross-hardware, says) to
# compare a run under CUDA_LAUNCH_BLOCKING=1 with one without, and the history keeps them apart.
HARDWARE_FIELDS = ("device_type", "gpu_name", "gpu_memory_total_bytes", "gpu_compute_capability", "cpu_model",
                   "cpu_count") + ENV_FIELDS
# Everything else hashed (software versions, driver, OS, power limit, clocks, ECC, MIG): `software_hash`.
SOFTWARE_ENV_FIELDS = tuple(k for k in STABLE_FIELDS if k not in HARDWARE_FIELDS and k not in UNIT_FIELDS)


def canonical_hash(data: dict[str, Any], fields: tuple[str, ...]) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of `fields` of `data`."""
    payload = {k: data.get(k) for k in fields if not (k in OPTIONAL_FIELDS and not data.get(k))}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hardware_hash(fp: dict[str, Any]) -> str:
    """Hash of a fingerprint's HARDWARE_FIELDS (also for fingerprints written before the field existed)."""
    return canonical_hash(fp, HARDWARE_FIELDS)


def software_hash(fp: dict[str, Any]) -> str:
    """Hash of a fingerprint's SOFTWARE_ENV_FIELDS: changes when the software or the card's setup does."""
    return canonical_hash(fp, SOFTWARE_ENV_FIELDS)


# Names older files used for the same facts (the sweep's fallback environment, the study's environment).
# Their other keys (`platform`, the study's `torch_threads`, a setting rather than the machine's
# identity) are kept as they are.
LEGACY_KEYS = {
    "torch": "torch_version",
    "python": "python_version",
    "cpu": "cpu_model",
    "gpu": "gpu_name",
    "device_name": "gpu_name",
    "cuda": "cuda_runtime_version",
}
NO_HASH_REASON = "written by a bench version that recorded no fingerprint hash for this kind of file"


def canonical_fingerprint(env: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of a recorded fingerprint with today's key names (LEGACY_KEYS mapped, `null_reasons`
    too; a canonical key already present wins). An old environment without a `hash` gets `hash` None
    with the reason, so nothing reads it as comparable to a fingerprinted one. Other keys are kept."""
    if not isinstance(env, dict) or not env:
        return {}
    legacy = [k for k in env if k in LEGACY_KEYS]
    out = {k: v for k, v in env.items() if k not in LEGACY_KEYS}
    for k in legacy:
        out.setdefault(LEGACY_KEYS[k], env[k])
    null = env.get("null_reasons")
    if isinstance(null, dict):
        mapped = {k: v for k, v in null.items() if k not in LEGACY_KEYS}
        for k, v in null.items():
            if k in LEGACY_KEYS:
                mapped.setdefault(LEGACY_KEYS[k], v)
        out["null_reasons"] = mapped
    if legacy:
        if isinstance(out.get("device"), str) and "device_type" not in out:
            out["device_type"] = out["device"].split(":")[0]
        if "hash" not in out:
            out["hash"] = None
            out.setdefault("null_reasons", {})["hash"] = NO_HASH_REASON
    return out


def comparable(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether two fingerprints hash alike, and which stable fields differ."""
    def value(fp: dict[str, Any], k: str) -> Any:
        return (fp.get(k) or None) if k in OPTIONAL_FIELDS else fp.get(k)

    differ = [k for k in STABLE_FIELDS if value(a, k) != value(b, k)]
    return a.get("hash") == b.get("hash") and not differ, differ
