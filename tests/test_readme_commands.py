"""scripts/readme_commands.py reads every command the README shows; these check that each one it would
run can run here: a command that needs a GPU or a cluster carries the mark that skips it elsewhere."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "scripts" / "readme_commands.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_every_readme_command_that_needs_a_gpu_or_a_cluster_is_marked():
    mod = _script()
    commands = mod.extract(ROOT / "README.md")
    assert len(commands) > 20
    for c in commands:
        if c.kind != "sh":
            continue
        if "srun " in c.text or "--rdzv-endpoint" in c.text or "--nnodes" in c.text:
            assert c.cluster_only, c.shown()
        elif "-d cuda" in c.text:
            assert c.gpu_only, c.shown()


def test_the_cluster_mark_is_read_from_a_commands_text(tmp_path):
    mod = _script()
    readme = tmp_path / "README.md"
    readme.write_text("```sh\nsrun --nodes=2 torchrun -m bench sweep   # several machines only\n```\n")
    commands = mod.extract(readme)
    assert [c.cluster_only for c in commands] == [True]


def test_every_readme_bench_compare_says_exit_1_is_one_of_its_outcomes():
    # bench compare exits 1 on a regression, which two runs on a noisy CPU can show: readme_commands.py
    # accepts exit 1 only from a command whose comment says so.
    mod = _script()
    compares = [c for c in mod.extract(ROOT / "README.md") if c.text.lstrip().startswith("bench compare")]
    assert len(compares) >= 3
    assert all(mod.EXIT_1_MARK in c.text for c in compares), [c.shown() for c in compares]
    assert all(mod.EXIT_3_MARK in c.text for c in compares), [c.shown() for c in compares]


def test_an_exported_variable_reaches_the_commands_after_it_and_exit_1_passes_only_where_documented(tmp_path, capsys):
    mod = _script()
    readme = tmp_path / "README.md"
    out = tmp_path / "seen.txt"
    readme.write_text("```sh\n"
                      "export README_PROBE=$(echo hello)   # prints nothing\n"
                      f"echo \"$README_PROBE\" > {out}\n"
                      "false || exit 1   # exit 0 / 1 as documented\n"
                      "```\n")
    assert mod.main(["--readme", str(readme), "--env", str(tmp_path / "no-env"), "--timeout", "60"]) == 0
    assert out.read_text() == "hello\n"
    assert "ok (exit 1, one of its documented outcomes)" in capsys.readouterr().out
    readme.write_text("```sh\nfalse\n```\n")
    assert mod.main(["--readme", str(readme), "--env", str(tmp_path / "no-env"), "--timeout", "60"]) == 1


def test_a_command_that_needs_the_pytorch_index_is_skipped_with_its_reason_where_it_cannot_be_reached(
        tmp_path, capsys, monkeypatch):
    mod = _script()
    readme = tmp_path / "README.md"
    readme.write_text("```sh\nfalse   # needs the PyTorch wheel index\necho ran\n```\n")
    assert [c.needs_pytorch_index for c in mod.extract(readme)] == [True, False]
    monkeypatch.setattr(mod, "reachable", lambda url, timeout_s=10.0: False)
    assert mod.main(["--readme", str(readme), "--env", str(tmp_path / "no-env"), "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert "skipped: needs the PyTorch wheel index" in out and "1 failed" not in out


def test_the_readme_installs_torchvision_without_replacing_torch():
    # Unpinned, pip takes the newest torchvision and replaces the installed torch (a CPU build with a
    # CUDA one and its NVIDIA packages): the README pins the installed torch as a constraint first.
    mod = _script()
    installs = [c.text for c in mod.extract(ROOT / "README.md") if "install" in c.text and "torchvision" in c.text]
    assert installs, "the README shows how to add torchvision"
    assert all("-c " in t and mod.NETWORK_MARK in t for t in installs), installs
    pins = [c.text for c in mod.extract(ROOT / "README.md") if "torch.__version__" in c.text and "torch==" in c.text]
    assert pins, "the README writes the installed torch's version to the constraint file"
