"""The nightly recipes, as far as a CPU allows: scripts/nightly.sh on the real CPU suites (tiny settings),
scripts/nightly.slurm run as a plain batch script, and the GitHub Actions workflow's shape and shell steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.history import query
from bench.history.store import open_store

REPO = Path(__file__).resolve().parents[1]
TINY = ("--bench-subset cpu --bench-workloads mlp --bench-precisions fp32 --bench-batch-sizes 4,16 "
        "--bench-budget 0.3")

# Stands in for pytest on later nights: writes a prepared results file (a real night's, changed) where
# --benchmark-json asks, with a later datetime.
FAKE_PYTEST = '''
import json, os, sys
from datetime import datetime, timedelta
data = json.load(open(os.environ["NIGHT_SOURCE"]))
data["datetime"] = (datetime.fromisoformat(data["datetime"]) + timedelta(days=int(os.environ["NIGHT"]))).isoformat()
json.dump(data, open(sys.argv[sys.argv.index("--benchmark-json") + 1], "w"))
'''


def run_script(script: str, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(["bash", script], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": path, "PYTHONPATH": str(REPO), **env})


@pytest.mark.slow
def test_the_nightly_script_and_the_slurm_job_ingest_compare_and_report(tmp_path):
    out, db = tmp_path / "nightly", tmp_path / "history.sqlite"
    env = {"BENCH_NIGHTLY_DIR": str(out), "BENCH_DB": str(db), "BENCH_SUITE_ARGS": TINY,
           "PYTEST_CMD": f"{sys.executable} -m pytest"}
    first = run_script("scripts/nightly.sh", env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "nothing to compare with" in first.stdout  # the machine's first night
    [night1] = sorted(out.glob("suites-*.json"))
    assert len(list(out.glob("report-*.html"))) == 1 and len(list(out.glob("trends-*.json"))) == 1
    [page] = out.glob("report-*.html")
    assert "From the history store" in page.read_text(encoding="utf-8")  # the trends are the store's

    # Night 2 (through the Slurm batch script): every step beyond its own spread slower -> exit 1,
    # and the night is recorded as regressed.
    data = json.loads(night1.read_text())
    ms = [b["extra_info"]["measurement"] for b in data["benchmarks"]]
    factor = max(max(m["samples_s"]) / min(m["samples_s"]) for m in ms) * 1.01
    slow = tmp_path / "slow.json"
    for b in data["benchmarks"]:
        m = b["extra_info"]["measurement"]
        m["samples_s"] = [v * factor for v in m["samples_s"]]
        m["block_medians_s"] = [v * factor for v in m.get("block_medians_s") or []]
        m.pop("stats", None)  # the summary written beside the samples: recomputed from the scaled ones
    slow.write_text(json.dumps(data))
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(FAKE_PYTEST)
    loose = "--between-runs 0.01"  # a quiet machine: the verdicts follow the change
    later = {**env, "PYTEST_CMD": f"{sys.executable} {fake}", "BENCH_COMPARE_ARGS": loose,
             "SLURM_SUBMIT_DIR": str(REPO), "BENCH_REPORT_NIGHTS": "0"}
    second = run_script("scripts/nightly.slurm", {**later, "NIGHT_SOURCE": str(slow), "NIGHT": "1"})
    assert second.returncode == 1, second.stdout[-4000:] + second.stderr[-4000:]
    assert "REGRESSION" in second.stdout

    # Night 3: back to night 1's numbers -> compared with the last *good* night (1), not the regressed one.
    # Night 1 was measured for real: where its own samples are wide (a busy or noisy machine), the same
    # numbers again are "inconclusive" (exit 5) rather than "same" (exit 0); never slower, and either way
    # against night 1.
    third = run_script("scripts/nightly.sh", {**later, "NIGHT_SOURCE": str(night1), "NIGHT": "2"})
    assert third.returncode in (0, 5), third.stdout[-4000:] + third.stderr[-4000:]
    assert re.search(r"baseline:\s+run 1 ", third.stdout), third.stdout[-4000:]
    with open_store(db) as store:
        runs = query.list_runs(store)
    assert [r.verdict for r in runs] == [None, "regressed", "ok" if third.returncode == 0 else "inconclusive"]
    assert len(list(out.glob("report-*.html"))) == 1  # later nights asked for no report


def test_the_nightly_script_exits_4_when_the_suites_write_nothing(tmp_path):
    env = {"BENCH_NIGHTLY_DIR": str(tmp_path), "BENCH_DB": str(tmp_path / "h.sqlite"), "PYTEST_CMD": "false"}
    done = run_script("scripts/nightly.sh", env)
    assert done.returncode == 4 and "wrote no results" in done.stderr


def test_the_slurm_script_asks_for_one_gpu_and_runs_the_nightly_script():
    text = (REPO / "scripts" / "nightly.slurm").read_text()
    directives = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "--gres=gpu:1" in directives and any(d.startswith("--time=") for d in directives)
    assert "bash scripts/nightly.sh" in text
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "nightly.slurm")]).returncode == 0


def test_the_github_actions_workflow_runs_the_nightly_script_on_a_self_hosted_gpu_runner(tmp_path):
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((REPO / "docs" / "nightly" / "github-actions.yml").read_text())
    job = wf["jobs"]["nightly"]
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert wf[True]["schedule"][0]["cron"]  # YAML 1.1 reads the key `on` as True
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any("scripts/nightly.sh" in r for r in runs)
    for i, r in enumerate(runs):  # every shell step parses
        step = tmp_path / f"step{i}.sh"
        step.write_text(r)
        assert subprocess.run(["bash", "-n", str(step)]).returncode == 0, r
