"""scripts/gpu_check.sh, the one GPU run: it fits its time, covers every check the issue asks for, and its
summary makes the verdicts from the analysis fields (never stored prose) and prints its table last. The
whole script runs end to end on the CPU with TINY=1 (slow: about two minutes on a loaded 2-core CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import report_inputs as R

from bench.present.steptime import sweep_verdict
from bench.records.sweep import load_sweep

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
EIGHT_MINUTES = 8 * 60


def checks() -> dict[str, tuple[int, list[str]]]:
    """name -> (limit in seconds, command words) of every `check NAME LIMIT ...` line."""
    out = {}
    for line in SCRIPT.read_text().splitlines():
        m = re.match(r"^check (\S+) (\d+) (.*)$", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), m.group(3).split())
    return out


def gpu_settings() -> dict[str, str]:
    """The variables the script sets for a real GPU (the `else` branch of its TINY test)."""
    text = SCRIPT.read_text()
    branch = text[text.index("\nelse\n"):text.index("\nfi\n")]
    return {m.group(1): m.group(2) for m in re.finditer(r'^\s+([A-Z_0-9]+)="(.*)"$', branch, re.M)}


def test_the_run_stays_under_eight_minutes_even_if_every_check_uses_all_of_its_limit():
    limits = [limit for limit, _ in checks().values()]
    summary = int(re.search(r"timeout -k (\d+) (\d+) \$PY scripts/gpu_check_summary.py", SCRIPT.read_text()).group(2))
    kill_after = 2  # `timeout -k 2`: a check that ignores the signal is killed 2 s later
    assert sum(limits) + summary + kill_after * (len(limits) + 1) <= EIGHT_MINUTES


def test_the_run_covers_every_check_the_issue_asks_for_on_the_gpu():
    names = set(checks())
    assert {"gpu-tests", "resnet50", "transformer", "timers", "sampler", "suites"} <= names
    gpu = gpu_settings()
    r50 = gpu["R50"].split()
    assert r50[:2] == ["-w", "resnet50"] and "bf16" in r50 and "--channels-last" in r50
    assert "--no-largest-search" not in r50  # to out-of-memory, then the search and its confirmation
    sizes = [int(b) for b in r50[r50.index("-b") + 1].split(",")]
    assert max(sizes) >= 8192  # beyond the largest ResNet-50 batch an H200 holds (~3,000-4,000)
    assert gpu["SAMPLER"].split()[gpu["SAMPLER"].split().index("--batch-sizes") + 1] == "1,2,4,8,16,32,64"
    assert "--bench-precisions bf16" in gpu["SUITES"] and "--bench-device cuda" in gpu["SUITES"]
    assert "bf16" in gpu["TIMERS"] and "resnet50" in gpu["TIMERS"] and gpu["GPU_TESTS"] == "tests"
    assert "-m gpu" in " ".join(checks()["gpu-tests"][1])
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def summary_inputs(out: Path) -> Path:
    sweep = R.make_sweep("resnet50", "bf16")
    sweep["analysis"]["verdict"] = ["STORED PROSE, never to be printed"]  # as version 1 files carried it
    (out / "sweep-resnet50.json").write_text(json.dumps(sweep))
    (out / "compare-timer.json").write_text(json.dumps({"rows": [
        {"batch_size": 32, "ratio": 1.01, "wall_ratio": 1.03}]}))
    (out / "sampler-overhead.json").write_text(json.dumps({"source": "pynvml", "batch_sizes": [
        {"batch_size": 1, "ratio_median": 1.004, "ratio_ci95": [0.99, 1.02]}]}))
    (out / "gpu-tests.xml").write_text('<testsuites><testsuite tests="15" failures="1" errors="0" skipped="2">'
                                       '<testcase classname="tests.test_x" name="test_y"><failure/></testcase>'
                                       '</testsuite></testsuites>')
    (out / "sections.tsv").write_text("gpu-tests\t1\t61\t75\nresnet50\t0\t88\t130\ntransformer\t124\t35\t35\n")
    return out


def test_the_summary_makes_the_verdicts_from_the_fields_and_prints_its_table_last(tmp_path):
    out = summary_inputs(tmp_path)
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(out)],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "STORED PROSE" not in text
    for sentence in sweep_verdict(load_sweep(out / "sweep-resnet50.json")):
        assert sentence in text
    lines = text.strip().splitlines()
    assert lines[-1].startswith("| total |") and lines[-1].split("|")[3].strip() == "184 s"
    table = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert "12 passed, 2 skipped, 1 failed" in table["gpu-tests"] and "rc 1" in table["gpu-tests"]
    assert "timed out" in table["transformer"] and "no sweep-transformer.json" in table["transformer"]
    assert "largest batch: none" not in table["resnet50"] and "events +1.0%, wall +3.0%" in table["timers"]
    assert "bs1 +0.4% (-1.0%..+2.0%)" in table["sampler"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["sections"]["resnet50"]["verdict"] == sweep_verdict(load_sweep(out / "sweep-resnet50.json"))
    assert (out / "summary.md").read_text().strip() == "\n".join(lines[-len(table) - 1:])


@pytest.mark.slow
def test_the_tiny_run_goes_end_to_end_on_the_cpu_and_prints_its_table_last(tmp_path):
    env = {**os.environ, "TINY": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    ran = [line.split("\t") for line in (tmp_path / "sections.tsv").read_text().splitlines()]
    assert [name for name, *_ in ran] == list(checks())
    assert all(rc == "0" for _, rc, *_ in ran), ran
    assert run.stdout.strip().splitlines()[-1].startswith("| total |")
    for name in ("sweep-resnet50.json", "sweep-transformer.json", "compare-timer.json", "sampler-overhead.json",
                 "suites.json", "peak.json", "gpu-tests.xml", "summary.json", "summary.md"):
        assert (tmp_path / name).is_file(), name
    suites = json.loads((tmp_path / "summary.json").read_text())["sections"]["suites"]
    assert suites["cases"] and all(c["library_to_pytest_benchmark"] for c in suites["cases"])
