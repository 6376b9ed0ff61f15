"""Simulated nightly pytest-benchmark files in the suites' format, for tests and for the detection-quality
and scale scripts (scripts/changepoint_quality.py, scripts/history_scale.py). Nothing here measures.

Each benchmark's samples are real `Measurement` records (bench.records.sweep) in `extra_info`, beside
pytest-benchmark's own `stats`, and the machine's bench fingerprint sits in `machine_info`, as the
plugin writes them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from bench.core.io import json_safe
from bench.records.suite import EXTRA_INFO_SCHEMA, EXTRA_INFO_VERSION, FAILED_CASES_KEY
from bench.records.sweep import Case, Measurement

START = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


def fake_fingerprint(gpu_name: str = "NVIDIA H100 80GB HBM3", *, torch_version: str = "2.13.0") -> dict:
    """A bench fingerprint for a simulated machine (hash fields as `fingerprint()` computes them)."""
    from bench.core.fingerprint import (
        STABLE_FIELDS,
        canonical_hash,
        hardware_hash,
        software_hash,
    )

    fp = {"fingerprint_version": 1, "device_type": "cuda", "device": "cuda:0", "gpu_name": gpu_name,
          "gpu_uuid": None, "gpu_compute_capability": "9.0", "gpu_memory_total_bytes": 85_520_809_984,
          "cpu_model": "simulated CPU", "cpu_count": 32, "torch_version": torch_version, "python_version": "3.11.7",
          "os": "Linux", "machine": "x86_64", "null_reasons": {}}
    fp["hash"] = canonical_hash(fp, STABLE_FIELDS)
    fp["model_hash"] = fp["hash"]
    fp["hardware_hash"] = hardware_hash(fp)
    fp["software_hash"] = software_hash(fp)
    return fp


def suite_file(samples: Mapping[str, Sequence[float]], *, when: datetime = START, commit: str = "0" * 40,
               fingerprint: dict | None = None, throttled: Sequence[str] = (), ci_target: float = 0.01,
               batch_size: int = 32, failed: Mapping[str, str] | None = None) -> dict:
    """A pytest-benchmark JSON document as `pytest suites/ --benchmark-json` writes it.

    `samples`: benchmark name (the test's parameter id, e.g. "mlp-fp32-bs32-cuda") -> step times in seconds;
    `throttled`: names whose telemetry says the clocks were held down; `failed`: name -> "oom"/"error".
    """
    fp = fingerprint or fake_fingerprint()
    benches = []
    for name, xs in samples.items():
        x = [float(v) for v in xs]
        m = Measurement(case=Case(workload=name.split("-")[0], batch_size=batch_size, device="cuda:0"),
                        timer="cuda_event", samples_s=x, stop_reason="ci_target")
        if name in throttled:
            m.telemetry = {"throttled": True, "throttled_sample_fraction": 1.0, "throttle_reasons": ["sw_power_cap"]}
        arr = np.asarray(x)
        q1, med, q3 = (float(v) for v in np.percentile(arr, [25, 50, 75]))
        benches.append({
            "group": None, "name": f"test_step_time[{name}]",
            "fullname": f"suites/test_step_time.py::test_step_time[{name}]",
            "params": {"step_case": name}, "param": name, "options": {},
            "stats": {"min": float(arr.min()), "max": float(arr.max()), "mean": float(arr.mean()),
                      "stddev": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "rounds": int(arr.size),
                      "median": med, "iqr": q3 - q1, "q1": q1, "q3": q3, "iqr_outliers": 0, "stddev_outliers": 0,
                      "outliers": "0;0", "ld15iqr": float(arr.min()), "hd15iqr": float(arr.max()),
                      "ops": 1.0 / float(arr.mean()), "total": float(arr.sum()), "data": x, "iterations": 1},
            "extra_info": {"bench_schema": EXTRA_INFO_SCHEMA, "bench_schema_version": EXTRA_INFO_VERSION,
                           "suite": "step_time", "case_id": name, "config": {"ci_target": ci_target},
                           "measurement": m.to_dict()},
        })
    failed_cases = [{"name": f"test_step_time[{n}]", "fullname": f"suites/test_step_time.py::test_step_time[{n}]",
                     "status": status, "error": f"simulated {status}"} for n, status in (failed or {}).items()]
    return json_safe({
        "machine_info": {"node": "sim", "processor": "x86_64", "machine": "x86_64", "python_version": "3.11.7",
                         "system": "Linux", "release": "6.1", "cpu": {"brand_raw": "simulated CPU"},
                         "bench_fingerprint": fp},
        "commit_info": {"id": commit, "dirty": False, "project": "sim", "branch": "main"},
        "benchmarks": benches, "datetime": when.isoformat(), "version": "5.1.0",
        FAILED_CASES_KEY: failed_cases,
    })


def night(i: int, start: datetime = START) -> datetime:
    """The datetime of simulated night `i` (one a day from `start`)."""
    return start + timedelta(days=i)


def lognormal_samples(rng: np.random.Generator, median_s: float, n: int, spread: float) -> list[float]:
    """`n` step times around `median_s` with log-normal within-run spread `spread` (0.01 = 1%)."""
    return (median_s * np.exp(rng.normal(0.0, spread, n))).tolist()


def write_night(folder: Path, i: int, medians: Mapping[str, float], *, seed: int | None = None, spread: float = 0.005,
                n: int = 60, commit: str | None = None, throttled=(), fingerprint=None, name: str | None = None) -> Path:
    """Write night `i`'s suite file into `folder`: `n` samples per benchmark around the given medians
    (seconds), drawn from a generator seeded with `seed` (default: `i`). Returns its path."""
    rng = np.random.default_rng(i if seed is None else seed)
    data = suite_file({b: lognormal_samples(rng, m, n, spread) for b, m in medians.items()}, when=night(i),
                      commit=commit or f"{i:040x}", throttled=throttled, fingerprint=fingerprint)
    path = Path(folder) / (name or f"night-{i:04d}.json")
    path.write_text(json.dumps(data))
    return path
