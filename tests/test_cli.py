"""The `bench` command: bad input gets one line naming the problem and exit status 2, never a traceback."""

import argparse
import json
import subprocess
import sys

import pytest
import report_inputs as R

from bench.analysis.steptime import StepTimeAnalysis
from bench.cli import main
from bench.core.errors import BenchError
from bench.present.steptime import steptime_verdict

TINY = ["-a", "in_features=16", "-a", "hidden=16", "-a", "depth=1", "--min-samples", "6", "--min-time", "0.005",
        "--budget", "0.05", "--warmup-max", "0.05", "-q"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "-w", "no_such_model"], "no_such_model"),
    (["sweep", "-b", "0"], "positive"),
    (["sweep", "-b", "4,-2"], "positive"),
    (["sweep", "-b", "four"], "not an integer"),
    (["sweep", "-p", "fp16", "-d", "cpu", "-b", "2"], "fp16"),
    (["sweep", "-w", "no_such_pkg_xyz.mod:fn"], "no_such_pkg_xyz"),
    (["sweep", "-d", "cuda:7"], "cuda"),
    (["sweep", "-a", "bogus"], "bogus"),
    (["sweep", "--threads", "0"], "threads must be a positive integer"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *argv, "-o", str(tmp_path / "out.json"))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_argparse_errors_also_exit_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "-p", "fp8"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "fp8" in err


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_warm_up_limit_that_is_not_a_positive_number_is_one_line_and_exit_2(capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--warmup-max", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--warmup-max" in err


def test_unwritable_output_path_fails_before_measuring(capsys, tmp_path):
    # /proc refuses new files even to root, so this holds whoever runs the tests
    code, out, err = run_cli(capsys, "sweep", "-o", "/proc/bench-test/out.json", *TINY)
    assert code == 2 and "/proc does not accept new files" in err
    assert len(err.strip().splitlines()) == 1


def test_output_under_a_file_is_rejected(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = run_cli(capsys, "sweep", "-o", str(tmp_path / "afile" / "out.json"), *TINY)
    assert code == 2 and "not a directory" in err


def test_existing_output_is_never_overwritten_without_asking(capsys, tmp_path):
    out = tmp_path / "out.json"
    out.write_text('{"precious": true}')
    code, _, err = run_cli(capsys, "sweep", "-o", str(out), *TINY)
    assert code == 2 and "--resume" in err
    assert json.loads(out.read_text()) == {"precious": True}


def test_resume_of_a_file_that_is_not_a_sweep_is_an_error_and_leaves_it_alone(capsys, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("{not json")
    code, _, err = run_cli(capsys, "sweep", "-o", str(out), "--resume", "-b", "2", *TINY)
    assert code == 2 and "not valid JSON" in err
    assert out.read_text() == "{not json"


def test_sweep_prints_a_table_and_verdict_and_writes_json(capsys, tmp_path):
    out = tmp_path / "sub" / "out.json"
    code, stdout, err = run_cli(capsys, "sweep", "-b", "1,4", "-o", str(out), *TINY)
    assert code == 0, err
    assert "median step" in stdout and "Results:" in stdout
    data = json.loads(out.read_text())
    assert data["schema"] == "bench.sweep" and len(data["points"]) == 2
    assert "verdict" not in data["analysis"]  # the file holds the typed analysis; sentences are made from it
    verdict = steptime_verdict(StepTimeAnalysis.from_dict(data["analysis"]))
    assert verdict and all(" ".join(sentence.split()) in " ".join(stdout.split()) for sentence in verdict)
    assert "Warm-up, apart from the 0.05 s budget of timed steps per point:" in " ".join(stdout.split())
    assert "(limit 0.05 s, --warmup-max)" in " ".join(stdout.split())


def test_the_warm_up_cost_sentence_names_the_points_whose_warm_up_hit_its_limit():
    from bench.present.steptime import warmup_cost_sentence
    from bench.records.sweep import Case, Measurement, SweepResult

    def point(b, reason):
        return Measurement(case=Case(workload="w", batch_size=b, device="cpu", precision="fp32"),
                           samples_s=[0.01] * 6, warmup_samples_s=[0.5, 0.01, 0.02], warmup_reason=reason)

    result = SweepResult(config={"budget_s": 2.0, "warmup_rule": {"max_time_s": 30.0}},
                         points=[point(1, "stable"), point(8, "max_time")])
    sentence = warmup_cost_sentence(result)
    assert sentence.startswith("Warm-up, apart from the 2 s budget of timed steps per point: 30 ms of steps")
    assert "At batch 8 warm-up reached its limit" in sentence
    assert warmup_cost_sentence(SweepResult(config={}, points=[])) is None


def test_python_dash_m_bench_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "sweep", "-w", "nope", "-o", str(tmp_path / "o.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope" in proc.stderr


HEAVY_LIBRARIES = ("torch", "pandas", "scipy", "numpy", "seaborn", "sqlalchemy", "matplotlib")


def test_help_and_argument_errors_import_no_heavy_library():
    # What makes `bench --help` take seconds is importing these; a wall-clock limit would flake on a busy
    # machine, so the test looks at what was imported. One fresh interpreter for every command.
    script = f"""
import contextlib, io, sys
from bench.cli import COMMANDS, main
for argv in [["--help"], ["no-such-command"]] + [[c, "--no-such-option"] for c in COMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, 2), (argv, e.code)
loaded = [m for m in {HEAVY_LIBRARIES!r} if m in sys.modules]
print(",".join(loaded) or "none")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "none"


def test_bench_help_lists_every_command_with_its_line():
    from bench.cli import COMMANDS

    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.help}" in flat


def test_each_command_module_registers_the_command_its_table_entry_names():
    from bench.cli import COMMANDS, build_parser

    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert sub.choices[name].get_default("func") is not None, name


def test_command_help_shows_the_library_defaults_it_reads_when_asked(capsys):
    from bench.core.budget import MEASURE_DEFAULTS

    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"warm-up is apart (default: {MEASURE_DEFAULTS['budget_s']})" in help_text
    assert "largest power of two to try (default: 1024 on cpu" in help_text


def test_a_deferred_choice_still_rejects_a_bad_value_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["allreduce", "--dtype", "int3"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "int3" in err and "float32" in err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--resume"], "--resume needs -o"),
    (["sweep", "--resume", "--overwrite", "-o", "x.json"], "contradict"),
])
def test_resume_needs_a_file_and_excludes_overwrite(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err


def test_a_binary_file_given_to_resume_is_a_one_line_error(capsys, tmp_path):
    out = tmp_path / "out.json"
    out.write_bytes(b"\xff\xfe\x00binary")
    code, _, err = run_cli(capsys, "sweep", "-o", str(out), "--resume", "-b", "2", *TINY)
    assert code == 2 and "not UTF-8" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"\xff\xfe\x00binary"


def test_a_small_budget_alone_lowers_the_default_minimum_time(capsys, tmp_path):
    out = tmp_path / "o.json"
    code, _, err = run_cli(capsys, "sweep", "-a", "in_features=16", "-a", "hidden=16", "-a", "depth=1",
                           "-b", "2", "--budget", "0.05", "-q", "-o", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["config"]["min_time_s"] == 0.05


def test_an_explicit_minimum_time_above_the_budget_is_an_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "--min-time", "5", "--budget", "1", "-o", str(tmp_path / "o.json"))
    assert code == 2 and "exceeds the time budget" in err


def test_the_sweep_command_takes_its_defaults_from_the_measuring_defaults():
    from bench.cli import parse_args
    from bench.cli.sweep import config_from_args
    from bench.core.budget import MEASURE_DEFAULTS

    config = config_from_args(parse_args(["sweep", "-d", "cpu"])).to_dict()
    assert config["budget_s"] == MEASURE_DEFAULTS["budget_s"]
    assert config["min_time_s"] == MEASURE_DEFAULTS["min_time_s"]
    assert config["min_samples"] == MEASURE_DEFAULTS["min_samples"]
    assert config["ci_target"] == MEASURE_DEFAULTS["ci_target"]
    assert config["warmup_max_s"] == MEASURE_DEFAULTS["warmup_max_s"]


def test_threads_are_set_for_the_sweep_and_recorded(capsys, tmp_path):
    out = tmp_path / "o.json"
    code, _, err = run_cli(capsys, "sweep", "-b", "2", "--threads", "1", *TINY, "-o", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["config"]["threads"] == 1


# ------------------------------------------------------------------------------------ bench report


def _parser():
    import bench.cli.report as report

    parser = argparse.ArgumentParser(prog="bench")
    report.register(parser.add_subparsers(dest="command"))
    return parser


def test_command_writes_the_default_path_and_refuses_to_overwrite_without_the_flag(tmp_path, monkeypatch, capsys):
    src = R.write(tmp_path / "s.json", R.make_sweep(batches=(1, 4, 16), oom_from=None, gpu=False))
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["report", str(src), "--title", "My <b>title</b>"])
    assert args.func(args) == 0
    written = list((tmp_path / "reports").glob("report-*.html"))
    assert len(written) == 1 and "Report: reports/report-" in capsys.readouterr().out
    html = written[0].read_text()
    assert "<title>My &lt;b&gt;title&lt;/b&gt;</title>" in html

    out = tmp_path / "r.html"
    out.write_text("keep me")
    args = _parser().parse_args(["report", str(src), "-o", str(out)])
    with pytest.raises(BenchError, match="exists: pass --overwrite"):
        args.func(args)
    assert out.read_text() == "keep me"
    args = _parser().parse_args(["report", str(src), "-o", str(out), "--overwrite"])
    assert args.func(args) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary file left


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_command_wants_a_finite_positive_embed_limit(capsys, tmp_path, value):
    src = R.write(tmp_path / "s.json", R.make_sweep(batches=(1, 4), oom_from=None, gpu=False))
    with pytest.raises(SystemExit) as e:
        main(["report", str(src), "-o", str(tmp_path / "r.html"), "--max-embed-mb", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--max-embed-mb" in err
    assert not (tmp_path / "r.html").exists()
