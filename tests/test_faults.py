"""Faults and bad input, as a new user or a broken disk meets them (issue 13): every case ends in one
line on stderr naming the problem, exit status 2 (1 where a run ran but measured nothing, or failed
points with --fail-on-error), no traceback, and nothing that existed before overwritten or truncated.

The table below holds every case of the issue, the ones that used to fail and the ones that already
passed; concurrency, a full disk, orphaned temporary files and Ctrl-C while starting have their own
tests further down.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from bench.cli import main
from bench.core.io import (
    OutputLock,
    remove_orphaned_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from bench.records.loader import load

ROOT = Path(__file__).resolve().parents[1]
# A sweep that takes about a second a point on a 2-core CPU.
QUICK = ["-a", "in_features=16", "-a", "hidden=16", "-a", "depth=1", "--min-samples", "3", "--min-time", "0.005",
         "--budget", "0.05", "--warmup-max", "0.05", "-q"]
TRAIN_QUICK = ["--max-steps", "4", "--eval-every", "2", "--seeds", "0", "-q"]


# --------------------------------------------------------------------------- fixtures: files to break


def _sweep_file(folder: Path) -> Path:
    """A real, small sweep file, made once per session and copied."""
    return _cached("sweep.json", folder, ["sweep", "-b", "2,4", *QUICK])


def _curves_file(folder: Path) -> Path:
    return _cached("curves.json", folder, ["train", "nqm", "-a", "dim=8", "-b", "4,8", *TRAIN_QUICK])


_CACHE = Path(tempfile.mkdtemp(prefix="bench-faults-"))


def _cached(name: str, folder: Path, argv: list[str]) -> Path:
    src = _CACHE / name
    if not src.exists():
        code = main([*argv, "-o", str(src)])
        assert code == 0, f"could not make the {name} fixture"
    dst = folder / name
    dst.write_bytes(src.read_bytes())
    return dst


def _edited(folder: Path, name: str, edit: Callable[[dict], None], base=_sweep_file, raw: str | None = None) -> Path:
    data = json.loads(base(folder).read_text())
    edit(data)
    p = folder / name
    p.write_text(raw if raw is not None else json.dumps(data))  # json.dumps writes NaN as NaN, as a broken writer would
    return p


def _deep(folder: Path) -> Path:
    p = folder / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    return p


def _deep_but_parseable(folder: Path) -> Path:
    """Nested 500 levels: Python's json reads it, but code walking it recursively might not."""
    data = json.loads(_sweep_file(folder).read_text())
    inner: dict = {}
    node = inner
    for _ in range(500):
        node["x"] = {}
        node = node["x"]
    data["config"]["deep"] = inner
    p = folder / "deep-config.json"
    p.write_text(json.dumps(data))
    return p


def _nan_samples(d: dict) -> None:
    d["points"][0]["samples_s"][0] = float("nan")


def _user_module(folder: Path, name: str, source: str) -> Path:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return folder


EXITING_WORKLOAD = """
import sys
def make():
    sys.exit(3)
"""

FAILING_TASK = """
import dataclasses
import os
from bench.measure.tasks import load_task

def make():
    task = load_task("nqm", {"dim": 8})
    stream = task.batch_stream
    def batch_stream(batch_size, seed):
        if batch_size == int(os.environ.get("BENCH_TEST_FAIL_AT", "8")):
            raise ValueError(f"this task cannot train at batch {batch_size}")
        return stream(batch_size, seed)
    return dataclasses.replace(task, batch_stream=batch_stream)
"""


# --------------------------------------------------------------------------- the table


@dataclass
class Case:
    id: str
    argv: Callable[[Path], list[str]]  # from the test's folder
    code: int
    says: str  # in the one line on stderr
    keep: Callable[[Path], list[Path]] = lambda d: []  # files that must come out byte for byte the same
    absent: tuple[str, ...] = ("out.json", "out.html")  # outputs that must not have been written
    cwd: bool = False  # run in the test's folder (user modules)


def _out(d: Path, name: str = "out.json") -> str:
    return str(d / name)


CASES = [
    # 1-2, concurrency and disk full: tests below.
    # 3. Every setting of an end-to-end study is checked before any training.
    Case("tta-sweep-budget-zero", lambda d: ["tta", "--task", "nqm", "--sweep-budget", "0", "-o", _out(d)], 2,
         "--sweep-budget"),
    Case("tta-sweep-budget-nan", lambda d: ["tta", "--task", "nqm", "--sweep-budget", "nan", "-o", _out(d)], 2,
         "--sweep-budget"),
    # 4. A task that raises at one batch size: recorded, the grid goes on (exit 1 only with --fail-on-error).
    Case("train-task-raises-fail-on-error", lambda d: ["train", "failtask:make", "-b", "4,8", *TRAIN_QUICK,
                                                       "--fail-on-error", "-o", _out(d, "runs.json")], 1,
         "1 of 2 runs failed", absent=(), cwd=True),
    # 6. Exit status.
    Case("sweep-nothing-measured", lambda d: ["sweep", "-w", "cnn", "-a", "width=2", "-b", "1", *QUICK[6:],
                                              "-o", _out(d, "cnn.json")], 1, "nothing was measured", absent=()),
    Case("report-folder-with-unreadable-file-fail-on-error",
         lambda d: ["report", str(_report_folder(d)), "-o", _out(d, "out.html"), "--fail-on-error"], 1,
         "skipped", absent=()),
    # 7. Tracebacks that must be one line.
    Case("report-deep-json", lambda d: ["report", str(_deep(d)), "-o", _out(d, "out.html")], 2, "nested too deeply",
         keep=lambda d: [d / "deep.json"]),
    Case("sweep-resume-deep-json", lambda d: ["sweep", "-o", str(_deep(d)), "--resume", *QUICK], 2,
         "nested too deeply", keep=lambda d: [d / "deep.json"]),
    Case("train-resume-deep-json", lambda d: ["train", "nqm", "-o", str(_deep(d)), "--resume", *TRAIN_QUICK], 2,
         "nested too deeply", keep=lambda d: [d / "deep.json"]),
    Case("tta-curves-deep-json", lambda d: ["tta", "--curves", str(_deep(d)), "-o", _out(d)], 2, "nested too deeply"),
    Case("report-deep-but-parseable-json", lambda d: ["report", str(_deep_but_parseable(d)), "-o", _out(d, "out.html")],
         2, "nested more than"),
    Case("report-points-not-a-list",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x.update(points={"a": 1}))), "-o", _out(d, "out.html")],
         2, "points: expected an array"),
    Case("resume-points-not-a-list",
         lambda d: ["sweep", "-b", "2,4", *QUICK, "--resume", "-o",
                    str(_edited(d, "bad.json", lambda x: x.update(points={"a": 1})))],
         2, "points: expected an array", keep=lambda d: [d / "bad.json"]),
    Case("report-largest-batch-a-string",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x.update(largest_batch="x"))), "-o", _out(d, "out.html")],
         2, "largest_batch: expected an object"),
    Case("report-batch-size-a-string",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x["points"][0]["case"].update(batch_size="abc"))),
                    "-o", _out(d, "out.html")], 2, "points[0].case.batch_size: expected an integer"),
    Case("report-status-unknown",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x["points"][0].update(status="fine"))),
                    "-o", _out(d, "out.html")], 2, "points[0].status"),
    Case("report-nan-samples", lambda d: ["report", str(_edited(d, "bad.json", _nan_samples)), "-o", _out(d, "out.html")],
         2, "NaN"),
    Case("report-negative-sample",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x["points"][0]["samples_s"].__setitem__(0, -1.0))),
                    "-o", _out(d, "out.html")], 2, "must be >= 0"),
    Case("report-curves-step-a-string",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x["curves"][0]["points"][0].update(step="x"),
                                          base=_curves_file)), "-o", _out(d, "out.html")], 2, "curves[0].points[0].step"),
    Case("tta-curves-nan-metric",
         lambda d: ["tta", "--curves", str(_edited(d, "bad.json", lambda x: x["curves"][0]["points"][1]
                                                   .update(eval_metric=float("nan")), base=_curves_file)),
                    "-o", _out(d)], 2, "NaN"),
    Case("train-warmup-epochs-nan", lambda d: ["train", "nqm", "--warmup-epochs", "nan", "-o", _out(d)], 2,
         "--warmup-epochs"),
    Case("peak-min-repeat-nan", lambda d: ["peak", "--min-repeat-s", "nan", "--size", "8"], 2, "--min-repeat-s"),
    Case("peak-json-a-folder", lambda d: ["peak", "--json", str(d), "--size", "8", "--repeats", "1"], 2,
         "is a directory"),
    Case("train-huge-batch", lambda d: ["train", "nqm", "-b", "1000000000000", *TRAIN_QUICK, "-o", _out(d)], 2,
         "cannot fit"),
    Case("sweep-huge-batch", lambda d: ["sweep", "-b", "1000000000000", *QUICK, "-o", _out(d)], 2, "cannot fit"),
    Case("sweep-huge-depth", lambda d: ["sweep", "-a", "depth=1000000", "-b", "2", *QUICK[6:], "-o", _out(d)], 2,
         "parameter tensors"),
    Case("sweep-huge-width", lambda d: ["sweep", "-a", "hidden=100000000", "-b", "2", *QUICK[6:], "-o", _out(d)], 2,
         "parameters"),
    # 8. Values that used to be accepted silently.
    Case("sweep-budget-inf", lambda d: ["sweep", "--budget", "inf", "-o", _out(d)], 2, "--budget"),
    Case("sweep-min-time-nan", lambda d: ["sweep", "--min-time", "nan", "-o", _out(d)], 2, "--min-time"),
    Case("sweep-peak-tflops-inf", lambda d: ["sweep", "--peak-tflops", "inf", "-o", _out(d)], 2, "--peak-tflops"),
    Case("sweep-ci-target-zero", lambda d: ["sweep", "--ci-target", "0", "-o", _out(d)], 2, "--ci-target"),
    Case("sweep-min-samples-zero", lambda d: ["sweep", "--min-samples", "0", "-o", _out(d)], 2, "--min-samples"),
    Case("train-momentum-nan", lambda d: ["train", "nqm", "--momentum", "nan", "-o", _out(d)], 2, "--momentum"),
    Case("train-weight-decay-inf", lambda d: ["train", "nqm", "--weight-decay", "inf", "-o", _out(d)], 2,
         "--weight-decay"),
    Case("train-trust-coefficient-nan", lambda d: ["train", "nqm", "--optimizer", "lars", "--trust-coefficient", "nan",
                                                   "-o", _out(d)], 2, "--trust-coefficient"),
    Case("train-lr-factor-nan", lambda d: ["train", "nqm", "--lr-factors", "1,nan", "-o", _out(d)], 2, "finite"),
    Case("tta-curves-target-nan",
         lambda d: ["tta", "--curves", str(_curves_file(d)), "--target", "nan", "-o", _out(d)], 2, "--target"),
    Case("train-max-steps-zero", lambda d: ["train", "nqm", "--max-steps", "0", "-o", _out(d)], 2, "--max-steps"),
    Case("train-eval-every-zero", lambda d: ["train", "nqm", "--eval-every", "0", "-o", _out(d)], 2, "--eval-every"),
    Case("train-lr-points-zero", lambda d: ["train", "nqm", "--lr-points", "0", "-o", _out(d)], 2, "--lr-points"),
    Case("tta-max-steps-zero", lambda d: ["tta", "--task", "nqm", "--max-steps", "0", "-o", _out(d)], 2, "--max-steps"),
    Case("tta-noise-batch-big-zero", lambda d: ["tta", "--task", "nqm", "--noise-batch-big", "0", "-o", _out(d)], 2,
         "--noise-batch-big"),
    Case("tta-noise-steps-zero", lambda d: ["tta", "--task", "nqm", "--noise-steps", "0", "-o", _out(d)], 2,
         "--noise-steps"),
    Case("tta-bootstrap-negative", lambda d: ["tta", "--task", "nqm", "--bootstrap", "-1", "-o", _out(d)], 2,
         "--bootstrap"),
    Case("peak-json-existing", lambda d: ["peak", "--json", str(_precious(d, "peak.json")), "--size", "8",
                                          "--repeats", "1"], 2, "--overwrite", keep=lambda d: [d / "peak.json"]),
    # 9. Messages that misled.
    Case("schema-version-a-string",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x.update(schema_version="1"))), "-o", _out(d, "out.html")],
         2, "must be a whole number, got '1'"),
    Case("schema-version-newer",
         lambda d: ["report", str(_edited(d, "bad.json", lambda x: x.update(schema_version=99))), "-o", _out(d, "out.html")],
         2, "newer than this tool reads"),
    Case("output-in-proc", lambda d: ["sweep", "-o", "/proc/x.json", *QUICK], 2, "/proc does not accept new files"),
    Case("workload-calls-sys-exit", lambda d: ["sweep", "-w", "exiting:make", "-b", "2", *QUICK[6:], "-o", _out(d)], 2,
         "sys.exit(3)", cwd=True),
    Case("tta-curves-a-folder", lambda d: ["tta", "--curves", str(d), "-o", _out(d)], 2, "is a folder"),
    # Cases that already passed, kept passing.
    Case("sweep-existing-output", lambda d: ["sweep", "-o", str(_precious(d, "old.json")), *QUICK], 2, "--resume",
         keep=lambda d: [d / "old.json"]),
    Case("report-existing-output", lambda d: ["report", str(_sweep_file(d)), "-o", str(_precious(d, "old.html"))], 2,
         "--overwrite", keep=lambda d: [d / "old.html"]),
    Case("resume-not-json", lambda d: ["sweep", "--resume", "-o", str(_precious(d, "old.json")), *QUICK], 2,
         "not valid JSON", keep=lambda d: [d / "old.json"]),
    Case("resume-binary", lambda d: ["sweep", "--resume", "-o", str(_binary(d)), *QUICK], 2, "not UTF-8",
         keep=lambda d: [d / "bin.json"]),
    Case("resume-other-settings", lambda d: ["sweep", "-b", "2", *QUICK[:-1], "--budget", "0.06", "-q", "--resume",
                                             "-o", str(_sweep_file(d))], 2, "budget_s",
         keep=lambda d: [d / "sweep.json"]),
    Case("unknown-workload", lambda d: ["sweep", "-w", "nope", "-o", _out(d)], 2, "nope"),
    Case("batch-size-zero", lambda d: ["sweep", "-b", "0", "-o", _out(d)], 2, "positive"),
    Case("report-missing-input", lambda d: ["report", str(d / "missing.json"), "-o", _out(d, "out.html")], 2,
         "no such file"),
    Case("tta-curves-missing", lambda d: ["tta", "--curves", str(d / "missing.csv"), "-o", _out(d)], 2, "no such file"),
    Case("train-bad-task-arg", lambda d: ["train", "nqm", "-a", "dim=abc", "-o", _out(d)], 2, "dim"),
]


def _precious(d: Path, name: str) -> Path:
    p = d / name
    p.write_text("{not json: precious}")
    return p


def _binary(d: Path) -> Path:
    p = d / "bin.json"
    p.write_bytes(b"\xff\xfe\x00binary")
    return p


def _report_folder(d: Path) -> Path:
    folder = d / "results"
    folder.mkdir()
    (folder / "good.json").write_bytes(_sweep_file(d).read_bytes())
    (folder / "truncated.json").write_text('{"schema": "bench.sweep", "points": [')
    return folder


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_and_faults_end_in_one_line(case, tmp_path, capsys, monkeypatch):
    _user_module(tmp_path, "exiting", EXITING_WORKLOAD)
    _user_module(tmp_path, "failtask", FAILING_TASK)
    if case.cwd:
        monkeypatch.chdir(tmp_path)
    argv = case.argv(tmp_path)
    kept = {p: p.read_bytes() for p in case.keep(tmp_path)}
    capsys.readouterr()  # what the fixtures printed
    code, out, err = run_cli(capsys, argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == case.code, err
    assert len(lines) == 1, err
    assert case.says in lines[0], lines[0]
    assert "Traceback" not in err + out
    for p, before in kept.items():
        assert p.read_bytes() == before, f"{p} changed"
    for name in case.absent:
        assert not (tmp_path / name).exists(), f"{name} was written"
    assert not list(tmp_path.rglob(".*.tmp")), "a temporary file was left behind"


# --------------------------------------------------------------------------- results of failing cases


def test_a_task_that_raises_at_one_batch_size_is_recorded_and_the_grid_goes_on(tmp_path, capsys, monkeypatch):
    _user_module(tmp_path, "failtask", FAILING_TASK)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, ["train", "failtask:make", "-b", "4,8,16", *TRAIN_QUICK, "-o", "runs.json"])
    assert code == 0, err  # some runs worked: the failure is a result, not the command's failure
    curves = load(tmp_path / "runs.json").record.curves
    assert sorted(c.batch_size for c in curves) == [4, 8, 16]
    failed = [c for c in curves if c.failed]
    assert [c.batch_size for c in failed] == [8]
    assert "ValueError: this task cannot train at batch 8" in failed[0].error
    assert "the run failed" in failed[0].steps_to_target(0.0).reason


def test_a_resumed_grid_runs_its_failed_runs_again(tmp_path, capsys, monkeypatch):
    _user_module(tmp_path, "failtask", FAILING_TASK)
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, ["train", "failtask:make", "-b", "4,8", *TRAIN_QUICK, "-o", "runs.json"])[0] == 0
    first = {c.batch_size: c for c in load(tmp_path / "runs.json").record.curves}
    assert first[8].failed and not first[4].failed
    monkeypatch.setenv("BENCH_TEST_FAIL_AT", "0")  # whatever failed at batch 8 is gone now
    code, _, err = run_cli(capsys, ["train", "failtask:make", "-b", "4,8", *TRAIN_QUICK, "-o", "runs.json", "--resume"])
    assert code == 0, err
    again = {c.batch_size: c for c in load(tmp_path / "runs.json").record.curves}
    assert sorted(again) == [4, 8] and not again[8].failed
    assert again[4].points == first[4].points  # kept, not trained again


def test_a_sweep_that_measured_nothing_still_writes_its_file(tmp_path, capsys):
    out = tmp_path / "cnn.json"
    code, _, err = run_cli(capsys, ["sweep", "-w", "cnn", "-a", "width=2", "-b", "1", *QUICK[6:], "-o", str(out)])
    assert code == 1 and "nothing was measured" in err and "batch 1: error" in err
    points = load(out).record.points
    assert [p.status for p in points] == ["error"]


def test_a_failed_point_exits_1_only_with_fail_on_error(tmp_path, capsys):
    argv = ["sweep", "-w", "cnn", "-a", "width=2", "-b", "1,2", *QUICK[6:]]
    code, _, err = run_cli(capsys, [*argv, "-o", str(tmp_path / "a.json")])
    assert code == 0, err  # batch 2 was measured; batch 1 (BatchNorm) failed, recorded in the file
    code, _, err = run_cli(capsys, [*argv, "-o", str(tmp_path / "b.json"), "--fail-on-error"])
    assert code == 1 and "1 point(s) failed (batch 1" in err


def test_report_names_skipped_files_on_stderr_and_still_exits_0(tmp_path, capsys):
    folder = _report_folder(tmp_path)
    code, out, err = run_cli(capsys, ["report", str(folder), "-o", str(tmp_path / "r.html")])
    assert code == 0
    assert err.strip() == f"bench report: skipped {folder / 'truncated.json'}: not valid JSON (Expecting value at line 1)"
    assert (tmp_path / "r.html").exists()


def test_tta_checks_its_sweep_settings_before_any_training(tmp_path):
    from bench.core.errors import BenchError
    from bench.run.study import StudyConfig, run_study

    events = []
    cfg = StudyConfig(task="nqm", task_params={"dim": 8}, batch_sizes=[4, 8], seeds=[0], max_steps=4,
                      sweep_budget_s=0.2, sweep_min_time_s=0.3)
    with pytest.raises(BenchError, match="minimum time 0.3 s exceeds the time budget 0.2 s"):
        run_study(cfg, output=tmp_path / "t.json", progress=lambda e, i: events.append(e))
    assert events == [] and not (tmp_path / "t.json").exists()


def test_a_small_sweep_budget_alone_is_a_quick_measurement_not_an_error():
    from bench.run.study import StudyConfig

    StudyConfig(task="nqm", sweep_budget_s=0.2).validate()  # the minimum time follows the budget down


# --------------------------------------------------------------------------- interrupted


def test_interrupt_before_the_first_point_does_not_claim_anything_was_saved(tmp_path, capsys, monkeypatch):
    import bench.run.sweep as sweep

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "measure_point", interrupted)
    code, _, err = run_cli(capsys, ["sweep", "-b", "2,4", *QUICK, "-o", str(tmp_path / "s.json")])
    assert code == 130 and err.strip() == "bench sweep: interrupted; nothing was saved"
    assert not (tmp_path / "s.json").exists()


def test_interrupt_after_a_point_says_where_it_is_saved(tmp_path, capsys, monkeypatch):
    import bench.run.sweep as sweep

    real, calls = sweep.measure_point, []

    def second_interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sweep, "measure_point", second_interrupted)
    out = tmp_path / "s.json"
    code, _, err = run_cli(capsys, ["sweep", "-b", "2,4", *QUICK, "-o", str(out)])
    assert code == 130
    assert err.strip() == f"bench sweep: interrupted; what was completed is saved in {out} " \
                          "(run the same command with --resume to continue)"
    assert [p.batch_size for p in load(out).record.points] == [2]


def _wait_for_library(proc: subprocess.Popen, marker: str, timeout: float = 120.0) -> bool:
    """Wait until the child has mapped a shared library whose path contains `marker` (it is loading
    modules), or has exited; True if it got there while still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if marker in Path(f"/proc/{proc.pid}/maps").read_text():
                return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see what the child has loaded")
@pytest.mark.parametrize("entry", ["python -m bench", "bench"])
@pytest.mark.parametrize("marker", ["_multiarray_umath", "libtorch_cpu"])
def test_ctrl_c_while_modules_load_is_one_line_and_exit_130(tmp_path, entry, marker):
    exe = [sys.executable, "-m", "bench"] if entry == "python -m bench" else [str(Path(sys.executable).parent / "bench")]
    if not Path(exe[0]).exists():
        pytest.skip("the bench console script is not installed next to this Python")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*exe, "sweep", "-b", "2", *QUICK, "-o", str(tmp_path / "s.json")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        loading = _wait_for_library(proc, marker)
        assert loading, f"the child never loaded {marker} (exit {proc.poll()})"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # Still loading (the startup handler), or just past it (the command's own message): one line either way.
    assert err.strip().splitlines() in (["bench: interrupted while starting; nothing was run"],
                                        ["bench sweep: interrupted; nothing was saved"])
    assert not (tmp_path / "s.json").exists()


# --------------------------------------------------------------------------- two writers, one file


def test_a_second_writer_of_a_locked_results_file_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "same.json"
    with OutputLock(out):
        code, _, err = run_cli(capsys, ["sweep", "-b", "2", *QUICK, "-o", str(out)])
    assert code == 2
    assert err.strip() == f"bench sweep: error: output {out} is being written by another bench process right now; " \
                          "wait for it to finish, or write to another file"
    assert not out.exists()
    assert run_cli(capsys, ["sweep", "-b", "2", *QUICK, "-o", str(out)])[0] == 0  # free again once released


BLOCKING_WORKLOAD = """
import os, time
import torch
from torch import nn

class Waits(nn.Module):
    '''A model whose first step waits until the test releases it, so the run is known to be open.'''
    def __init__(self, started, release):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.started, self.release = started, release
    def forward(self, x):
        open(self.started, "a").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.lin(x)

def make(started: str = "", release: str = ""):
    return {"model": lambda: Waits(started, release),
            "make_batch": lambda b, device: (torch.randn(b, 4, device=device), torch.randint(0, 2, (b,), device=device)),
            "loss_fn": nn.functional.cross_entropy}
"""


def test_two_processes_writing_one_results_file_the_second_is_refused_and_nothing_is_lost(tmp_path):
    _user_module(tmp_path, "blocking", BLOCKING_WORKLOAD)
    started, release, out = tmp_path / "started", tmp_path / "release", tmp_path / "same.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench", "sweep", "-w", "blocking:make", "-a", f"started={started}",
            "-a", f"release={release}", "-b", "2,4", "--min-samples", "3", "--min-time", "0.001", "--budget", "0.05",
            "-q", "-o", str(out)]
    first = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not started.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), first.communicate()[1]
        second = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=180)
        assert first.poll() is None  # the first was still measuring, holding the file
        release.touch()
        _, first_err = first.communicate(timeout=180)
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"bench sweep: error: output {out} is being written by another bench process right now; "
        "wait for it to finish, or write to another file"]
    assert first.returncode == 0, first_err
    assert [p.batch_size for p in load(out).record.points] == [2, 4]


# --------------------------------------------------------------------------- a full disk


def _fail_fsync_after(monkeypatch, n_ok: int, *, spare: Path | None = None, err: int = errno.ENOSPC):
    """Make every fsync of a file after the first `n_ok` fail as a full disk does, except for files
    under `spare` (another, healthy disk)."""
    real, calls = os.fsync, []

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isfile(target) and not (spare and target.startswith(str(spare))):
            calls.append(fd)
            if len(calls) > n_ok:
                raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="the fault injector tells files from folders by /proc")
def test_disk_full_mid_sweep_keeps_what_was_measured_and_says_where(tmp_path, capsys, monkeypatch):
    rescue = tmp_path / "elsewhere"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    out = tmp_path / "s.json"
    _fail_fsync_after(monkeypatch, n_ok=1, spare=rescue)  # the first point is saved, the second save fails
    code, _, err = run_cli(capsys, ["sweep", "-b", "2,4,8", *QUICK, "-o", str(out)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"bench sweep: error: cannot write {out}: no space left on device (ENOSPC); "
                               "the 2 completed item(s) are saved in ")
    rescued = list(rescue.glob("s.rescued-*.json"))
    assert len(rescued) == 1 and str(rescued[0]) in lines[0]
    assert [p.batch_size for p in load(rescued[0]).record.points] == [2, 4]
    assert [p.batch_size for p in load(out).record.points] == [2]  # the last complete version, intact
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="the fault injector tells files from folders by /proc")
def test_disk_full_everywhere_is_still_one_line_and_leaves_the_old_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "also-full"))
    (tmp_path / "also-full").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "also-full"))
    out = tmp_path / "s.json"
    _fail_fsync_after(monkeypatch, n_ok=1)
    code, _, err = run_cli(capsys, ["sweep", "-b", "2,4", *QUICK, "-o", str(out)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "no space left on device (ENOSPC); nowhere else would take the 2 completed item(s) either" in lines[0]
    assert [p.batch_size for p in load(out).record.points] == [2]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="the fault injector tells files from folders by /proc")
def test_disk_full_while_writing_a_report_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    src = _sweep_file(tmp_path)
    _fail_fsync_after(monkeypatch, n_ok=0)
    code, _, err = run_cli(capsys, ["report", str(src), "-o", str(tmp_path / "r.html")])
    assert code == 2
    assert err.strip() == f"bench report: error: cannot write {tmp_path / 'r.html'}: no space left on device (ENOSPC)"
    assert not (tmp_path / "r.html").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and a kernel that lets us mount); skipped where it cannot be made."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until about `leave` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > leave:
        (folder / "filler").write_bytes(b"\0" * (free - leave))


def test_a_real_full_disk_sweep_rescues_its_points_elsewhere(tiny_disk, tmp_path, capsys, monkeypatch):
    rescue = tmp_path / "elsewhere"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    _fill(tiny_disk, leave=0)
    out = tiny_disk / "s.json"
    code, _, err = run_cli(capsys, ["sweep", "-b", "2", *QUICK, "-o", str(out)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"cannot write {out}: no space left on device (ENOSPC)" in lines[0]
    rescued = list(rescue.glob("s.rescued-*.json"))
    assert len(rescued) == 1 and [p.batch_size for p in load(rescued[0]).record.points] == [2]
    assert not out.exists() and not list(tiny_disk.glob(".*.tmp"))


def test_a_real_full_disk_report_is_one_line(tiny_disk, tmp_path, capsys):
    src = _sweep_file(tmp_path)
    _fill(tiny_disk, leave=4096)
    code, _, err = run_cli(capsys, ["report", str(src), "-o", str(tiny_disk / "r.html")])
    assert code == 2
    assert err.strip() == f"bench report: error: cannot write {tiny_disk / 'r.html'}: no space left on device (ENOSPC)"
    assert not (tiny_disk / "r.html").exists() and not list(tiny_disk.glob(".*.tmp"))


# --------------------------------------------------------------------------- orphaned temporary files


def test_temporary_files_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "f.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    orphan = tmp_path / f".f.json.{dead_pid}-abc123.tmp"
    orphan.write_text('{"half": ')
    old_style = tmp_path / ".f.json.k2j4h_x.tmp"
    old_style.write_text("{")
    os.utime(old_style, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / f".f.json.{os.getpid()}-zzz999.tmp"  # ours, still being written: kept
    live.write_text("{")
    recent_unknown = tmp_path / ".f.json.q8w7e6.tmp"  # no pid, recent: may be another machine's live write
    recent_unknown.write_text("{")
    other = tmp_path / ".g.json.1-abc.tmp"  # another file's: not ours to touch
    other.write_text("{")
    write_json_atomic(target, {"ok": True})
    assert json.loads(target.read_text()) == {"ok": True}
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["f.json", live.name, recent_unknown.name, other.name])


def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "f.json"
    write_text_atomic(target, "old\n")
    code = textwrap.dedent(f"""
        import os, signal
        import bench.core.io as io
        def fsync(fd):
            os.kill(os.getpid(), signal.SIGKILL)  # dies after writing, before the rename
        io.os.fsync = fsync
        io.write_text_atomic({str(target)!r}, "new\\n" * 1000)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "old\n"
    assert len(list(tmp_path.glob(".f.json.*.tmp"))) == 1  # the orphan
    write_text_atomic(target, "newer\n")
    assert target.read_text() == "newer\n" and not list(tmp_path.glob(".f.json.*.tmp"))
    assert remove_orphaned_temporaries(target) == []


# --------------------------------------------------------------------------- the loader's schema check


@pytest.mark.parametrize("edit, says", [
    (lambda d: d.update(points=[{"case": {"workload": "mlp"}, "status": "ok"}]), "points[0].case: field 'batch_size' is missing"),
    (lambda d: d["points"][0].update(case=None), "points[0].case: expected an object"),
    (lambda d: d["points"][0].update(warnings="x"), "points[0].warnings: expected an array or null"),
    (lambda d: d["points"][0].update(peak_allocated_bytes=1.5), "points[0].peak_allocated_bytes: expected an integer"),
    (lambda d: d["largest_batch"].update(probes=[{"batch_size": "x", "fits": True}]), "largest_batch.probes[0].batch_size"),
    (lambda d: d.update(finished="yes"), "finished: expected true or false"),
])
def test_every_sweep_file_is_checked_against_its_schema_at_load(tmp_path, edit, says):
    from bench.core.errors import InvalidResultsFile

    p = _edited(tmp_path, "bad.json", edit)
    with pytest.raises(InvalidResultsFile) as e:
        load(p)
    assert str(e.value) == f"{p}: not a valid sweep results file: {says}" or says in str(e.value)
    assert "\n" not in str(e.value)


def test_the_files_bench_writes_pass_their_own_schema(tmp_path):
    for make in (_sweep_file, _curves_file):
        load(make(tmp_path))  # raises if the schema disagreed with the writer


def test_a_pytest_benchmark_file_with_a_bad_extra_info_measurement_is_one_line(tmp_path):
    from bench.core.errors import InvalidResultsFile

    data = json.loads((ROOT / "tests" / "data" / "pytest-benchmark-v1.json").read_text())
    ours = [b for b in data["benchmarks"] if (b.get("extra_info") or {}).get("measurement")]
    assert ours, "the fixture carries bench extra_info"
    bad = copy.deepcopy(data)
    next(b for b in bad["benchmarks"] if (b.get("extra_info") or {}).get("measurement"))["extra_info"]["measurement"]["samples_s"] = "x"
    p = tmp_path / "pb.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(InvalidResultsFile, match=r"samples_s: expected an array or null, got the string 'x'"):
        load(p).sweeps()


# --------------------------------------------------------------------------- the first hour


USER_WORKLOAD = """
import torch
from torch import nn

def make():
    model = nn.Linear(8, 2)
    return model, lambda b, device: (torch.randn(b, 8, device=device), torch.randint(0, 2, (b,), device=device)), \\
        nn.functional.cross_entropy
"""


def test_a_user_workload_is_found_in_the_current_folder_without_pythonpath(tmp_path):
    script = Path(sys.executable).parent / "bench"
    if not script.exists():
        pytest.skip("the bench console script is not installed next to this Python")
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(USER_WORKLOAD))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The console script's sys.path[0] is its own folder, not the current one: bench adds the latter.
    r = subprocess.run([str(script), "sweep", "-w", "mypkg.models:make", "-b", "2", *QUICK[6:], "-o", "s.json"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.status for p in load(tmp_path / "s.json").record.points] == ["ok"]


def test_a_sweep_that_could_take_long_says_so_before_it_starts():
    from bench.cli.progress import long_run_warning

    assert long_run_warning(11, 2.0, 30.0) is None  # the default CPU sweep: at most about 6 min
    note = long_run_warning(40, 2.0, 30.0)
    assert note.startswith("40 batch sizes planned, each measured for up to 2 s after up to 30 s of warm-up: "
                           "this sweep may take up to 21 min")


def test_the_progress_bar_shows_the_time_left():
    from rich.console import Console
    from rich.progress import TimeRemainingColumn

    from bench.cli.progress import SweepProgress

    with SweepProgress(Console(file=open(os.devnull, "w")), enabled=True) as progress:
        assert any(isinstance(c, TimeRemainingColumn) for c in progress._progress.columns)


def test_bench_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "bench sweep" in out and "exit status" in out
    assert "module" not in out.lower()  # nothing about how the code is laid out


def _two_nights(tmp_path) -> list[str]:
    from bench.history.simulate import write_night

    medians = {f"suites/test_step_time.py::test_step_time[mlp-fp32-bs{b}-cpu]": 1e-3 * b for b in (1, 2, 4)}
    return [str(write_night(tmp_path, i, medians)) for i in (0, 1)]


def test_a_closed_standard_output_stops_a_command_in_one_line_with_exit_141(tmp_path):
    # `bench compare A B | head -1`, made deterministic: the pipe's read end is closed before bench writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "bench", "compare", *_two_nights(tmp_path)], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert r.stderr == "bench compare: standard output was closed (broken pipe), so it stopped\n"


def test_a_broken_pipe_in_the_code_a_command_runs_is_an_error_not_a_closed_output(tmp_path, monkeypatch, capsys):
    import bench.cli.compare

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(bench.cli.compare, "run", broken)
    assert main(["compare", *_two_nights(tmp_path)]) == 2
    assert capsys.readouterr().err == ("bench compare: error: the code it ran wrote to a closed pipe "
                                       "([Errno 32] Broken pipe)\n")
