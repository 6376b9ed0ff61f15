"""The suites end to end: `pytest suites/ --benchmark-json` in a subprocess, and pytest-benchmark's own tools on the result.

One module-scoped run (a tiny subset, tiny budgets) is shared by the checks on its JSON file, its JUnit
report and its autosaved copy; a second run compares against that copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.records.loader import load_sweeps

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # two pytest runs and one pytest-benchmark compare: ~15 s on a loaded 2-core CPU

TINY = ["--bench-workloads", "mlp", "--bench-batch-sizes", "1,4", "--bench-budget", "0.05",
        "--bench-cpu-threads", "1", "--bench-device", "cpu"]


def run_suites(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", "-rs", *TINY, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suites")
    proc = run_suites(tmp, f"--benchmark-json={tmp / 'out.json'}", f"--junitxml={tmp / 'junit.xml'}",
                      "--benchmark-autosave", f"--benchmark-storage=file://{tmp / 'storage'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc


def test_the_json_has_every_key_pytest_benchmark_writes(first_run):
    tmp, _ = first_run
    data = json.loads((tmp / "out.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    assert data["bench_failed_cases"] == []  # the plugin's key: nothing ran out of memory or failed
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_step_time[mlp-bf16-bs1-cpu]", "test_step_time[mlp-bf16-bs4-cpu]",
                     "test_step_time[mlp-fp32-bs1-cpu]", "test_step_time[mlp-fp32-bs4-cpu]"]
    for b in data["benchmarks"]:
        stats = b["stats"]
        assert {"min", "max", "mean", "median", "stddev", "rounds", "iterations", "data", "ops"} <= set(stats)
        assert stats["rounds"] == len(stats["data"]) >= 5 and stats["min"] > 0


def test_extra_info_holds_the_library_measurement_and_how_pytest_benchmark_timed_it(first_run):
    tmp, _ = first_run
    data = json.loads((tmp / "out.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    for b in data["benchmarks"]:
        info = b["extra_info"]
        assert info["bench_schema"] == "bench.pytest" and info["case_id"] in b["name"]
        assert info["status"] == "ok" and info["timer"] == "host" and info["device"] == "cpu"
        assert info["step_time_median_s"] > 0 and info["throughput_samples_per_s"] > 0
        assert info["measurement"]["samples_s"] and info["measurement"]["stats"]["n"] == len(info["measurement"]["samples_s"])
        assert info["peak_allocated_bytes"] is None and info["null_reasons"]["peak_allocated_bytes"]
        timing = info["pytest_benchmark_timing"]
        assert timing["rounds"] == b["stats"]["rounds"] and timing["method"].startswith("host clock")


def test_machine_info_carries_the_fingerprint_and_its_hash(first_run):
    tmp, _ = first_run
    fp = json.loads((tmp / "out.json").read_text())["machine_info"]["bench_fingerprint"]
    assert fp["device_type"] == "cpu" and len(fp["hash"]) == 16 and fp["torch_version"]


def test_gpu_cases_are_skipped_with_their_reason(first_run):
    tmp, proc = first_run
    skipped = {}
    for case in ET.parse(tmp / "junit.xml").getroot().iter("testcase"):
        s = case.find("skipped")
        if s is not None:
            skipped[case.get("name")] = s.get("message", "")
    gpu = {n: why for n, why in skipped.items() if n.endswith("-cuda]")}
    assert "test_step_time[mlp-fp32-bs4-cuda]" in gpu
    assert all("needs a CUDA GPU" in why for why in gpu.values())
    assert "needs a CUDA GPU" in proc.stdout  # the -rs summary


def test_pytest_benchmark_compare_reads_the_file(first_run):
    tmp, _ = first_run
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(tmp / "out.json")],
                          cwd=tmp, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test_step_time[mlp-fp32-bs4-cpu]" in proc.stdout


def test_our_adapter_reads_the_file_back(first_run):
    tmp, _ = first_run
    sweeps = load_sweeps(tmp / "out.json")
    assert sorted((s.config["precision"], [p.batch_size for p in s.points]) for s in sweeps) == [
        ("bf16", [1, 4]), ("fp32", [1, 4])]
    assert all(p.ok and p.samples_s for s in sweeps for p in s.points)


def test_a_second_run_compares_against_the_autosaved_first(first_run):
    tmp, _ = first_run
    assert list((tmp / "storage").rglob("0001_*.json"))
    proc = run_suites(tmp, f"--benchmark-storage=file://{tmp / 'storage'}", "--benchmark-compare",
                      "--benchmark-compare-fail=mean:1000%")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Comparing against benchmarks from" in out
    assert "test_step_time[mlp-fp32-bs4-cpu] (0001_" in out  # the stored run was matched case by case
