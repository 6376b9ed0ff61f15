"""scripts/gpu_check.sh, the one GPU run: it fits one call of a lent machine (6 minutes, at most 8 files back),
runs `bench doctor` first, covers every check the issue asks for, and its summary makes the verdicts from
the fields (never stored prose) and prints its table last. The whole script runs end to end on the CPU
with TINY=1 (slow: minutes on a loaded 2-core CPU)."""

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
SIX_MINUTES = 6 * 60
MAX_FILES = 8  # what a lent machine returns from $OUT


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


def test_the_run_stays_under_six_minutes_even_if_every_check_uses_all_of_its_limit():
    text = SCRIPT.read_text()
    limits = [limit for limit, _ in checks().values()]
    tail = [int(m.group(1)) for m in re.finditer(r"^timeout -k 2 (\d+) ", text, re.M)]
    assert len(tail) == 2  # the summary and the tarball
    kill_after = 2  # `timeout -k 2`: a command that ignores the signal is killed 2 s later
    assert sum(limits) + sum(tail) + kill_after * (len(limits) + len(tail)) <= SIX_MINUTES


def test_at_most_eight_files_come_back_and_everything_else_is_in_one_tarball():
    text = SCRIPT.read_text()
    written = set(re.findall(r'"\$OUT/([^"$]+)"', text)) | {"summary.json", "summary.md"}
    assert written == {"gpu-check.log", "results.tar.gz", "summary.json", "summary.md"}
    assert len(written) <= MAX_FILES
    assert 'tar -czf "$OUT/results.tar.gz" -C "$WORK" .' in text
    # Every check's results go to $WORK (packed), never to $OUT.
    assert all("$OUT" not in " ".join(words) for _, words in checks().values())


def test_bench_doctor_runs_first_and_the_run_covers_every_check_the_issue_asks_for_on_the_gpu():
    names = list(checks())
    assert names[:2] == ["wheels", "doctor"]  # installing the carried wheels takes seconds; then the doctor
    assert {"gpu-tests", "resnet50", "transformer", "suites", "peak"} <= set(names)
    gpu = gpu_settings()
    assert "--device cuda" in gpu["DOCTOR"] and "--quick" not in gpu["DOCTOR"]
    r50 = gpu["R50"].split()
    assert r50[:2] == ["-w", "resnet50"] and "bf16" in r50 and "--channels-last" in r50
    assert "--no-largest-search" not in r50  # to out-of-memory, then the search and its confirmation
    sizes = [int(b) for b in r50[r50.index("-b") + 1].split(",")]
    assert max(sizes) >= 8192  # beyond the largest ResNet-50 batch an H200 holds (~3,000-4,000)
    assert "--bench-precisions bf16" in gpu["SUITES"] and "--bench-device cuda" in gpu["SUITES"]
    assert gpu["GPU_TESTS"] == "tests"
    words = " ".join(checks()["gpu-tests"][1])
    assert "-m gpu" in words and "-p bench.testing.skip_missing_store" in words
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_wheels.sh")]).returncode == 0


def test_gpu_tests_collect_without_the_history_stores_packages(tmp_path):
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sqlalchemy', 'ruptures', 'fastjsonschema'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Blocker())\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "-m", "gpu",
            "tests/test_history_store.py", "tests/test_memory.py"]
    without = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert without.returncode != 0 and "No module named 'sqlalchemy'" in without.stdout  # what it fixes
    run = subprocess.run(args[:3] + ["-p", "bench.testing.skip_missing_store"] + args[3:], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "test_history_store.py:0: needs sqlalchemy" in run.stdout and "test_memory.py::" in run.stdout


def doctor_report() -> dict:
    from bench.run.doctor import verdict

    def r(median, lo, hi):
        return {"ratio_median": median, "ratio_ci95": [lo, hi], "rounds": 6}

    report = {"device": "cuda", "timers": {"launch_bound": {"harness_blocks_vs_torch": r(1.01, 0.99, 1.03),
                                                            "wall_vs_torch": r(1.02, 1.0, 1.03)}},
              "sampler_overhead": r(1.004, 0.99, 1.02), "distorting_env": [], "skipped": {"nccl_version": "x"},
              "gpu": {"sampler_tick": {"us_per_tick_median": 80.0, "nvml_calls_per_tick": 3.75}},
              "wall_time_s": 95.0}
    report["verdict"] = verdict(report)
    return report


def summary_inputs(out: Path) -> Path:
    sweep = R.make_sweep("resnet50", "bf16")
    sweep["analysis"]["verdict"] = ["STORED PROSE, never to be printed"]  # as version 1 files carried it
    (out / "sweep-resnet50.json").write_text(json.dumps(sweep))
    report = doctor_report()
    report["verdict_text"] = "STORED PROSE, never to be printed"
    (out / "doctor.json").write_text(json.dumps(report))
    (out / "gpu-tests.xml").write_text('<testsuites><testsuite tests="15" failures="1" errors="0" skipped="2">'
                                       '<testcase classname="tests.test_x" name="test_y"><failure/></testcase>'
                                       '</testsuite></testsuites>')
    (out / "sections.tsv").write_text("wheels\t0\t3\t15\ndoctor\t0\t82\t100\ngpu-tests\t1\t61\t75\n"
                                      "resnet50\t0\t88\t130\ntransformer\t124\t35\t35\n")
    return out


def test_the_summary_makes_the_verdicts_from_the_fields_and_prints_its_table_last(tmp_path):
    from bench.present.doctor import verdict_line

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    summary_inputs(work)
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(work), str(out)],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "STORED PROSE" not in text
    assert f"doctor verdict: {verdict_line(doctor_report())}" in text
    for sentence in sweep_verdict(load_sweep(work / "sweep-resnet50.json")):
        assert sentence in text
    lines = text.strip().splitlines()
    assert lines[-1].startswith("| total |") and lines[-1].split("|")[3].strip() == "269 s"
    table = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert "12 passed, 2 skipped, 1 failed" in table["gpu-tests"] and "rc 1" in table["gpu-tests"]
    assert "timed out" in table["transformer"] and "no sweep-transformer.json" in table["transformer"]
    assert "largest batch: none" not in table["resnet50"]
    assert "launch_bound: timer +1.0%, wall +2.0% vs torch.utils.benchmark" in table["doctor"]
    assert "sampler on/off +0.4% (-1.0%..+2.0%)" in table["doctor"] and "3.75 NVML calls per tick" in table["doctor"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["sections"]["resnet50"]["verdict"] == sweep_verdict(load_sweep(work / "sweep-resnet50.json"))
    assert saved["sections"]["doctor"]["verdict"] == verdict_line(doctor_report())
    assert (out / "summary.md").read_text().strip() == "\n".join(lines[-len(table) - 1:])
    assert not (work / "summary.json").exists()


@pytest.mark.slow
def test_the_tiny_run_goes_end_to_end_on_the_cpu_and_returns_four_files(tmp_path):
    import tarfile

    env = {**os.environ, "TINY": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check.log", "results.tar.gz", "summary.json",
                                                          "summary.md"]
    assert run.stdout.strip().splitlines()[-1].startswith("| total |")
    with tarfile.open(tmp_path / "results.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
        ran = [line.split("\t") for line in tar.extractfile("./sections.tsv").read().decode().splitlines()]
    assert [name for name, *_ in ran] == list(checks())
    assert all(rc == "0" for _, rc, *_ in ran), ran
    for name in ("doctor.json", "sweep-resnet50.json", "sweep-transformer.json", "suites.json", "peak.json",
                 "gpu-tests.xml", "doctor.log"):
        assert name in names, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sections"]["doctor"]["verdict"].startswith("step times from this machine agree within")
    suites = summary["sections"]["suites"]
    assert suites["cases"] and all(c["library_to_pytest_benchmark"] for c in suites["cases"])
    assert "gpu-check.log" in [p.name for p in tmp_path.iterdir()] and "== doctor" in (tmp_path / "gpu-check.log").read_text()
