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
