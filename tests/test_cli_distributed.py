"""The data-parallel options of `bench sweep` and the `bench allreduce` command, outside torchrun: bad
input is one line and exit status 2."""

from __future__ import annotations

import pytest

from bench.cli import main


@pytest.fixture(autouse=True)
def _not_under_torchrun(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--dist-timeout", "0"], "collective timeout must be a positive number of seconds"),
    (["allreduce"], "launch it with torchrun, e.g. torchrun --standalone --nproc_per_node=2 -m bench allreduce"),
    (["allreduce", "-s", "0"], "positive"),
    (["allreduce", "--dist-timeout", "-1"], "collective timeout"),
])
def test_bad_input_or_no_torchrun_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, *argv, "-o", str(tmp_path / "o.json"))
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_sweep_outside_torchrun_is_the_single_process_sweep(capsys, tmp_path):
    out = tmp_path / "s.json"
    code, stdout, err = run_cli(capsys, "sweep", "-b", "2", "-a", "in_features=8", "-a", "hidden=8", "-a", "depth=1",
                                "--budget", "0.05", "--warmup-max", "0.05", "--min-time", "0.005", "--min-samples", "6", "-q",
                                "-o", str(out))
    assert code == 0, err
    assert "Data parallel" not in stdout and '"distributed"' not in out.read_text()
