""".ci/postgres.sh, the throwaway PostgreSQL server of the store tests (and of the README's recipe): run it
twice on one folder and it replaces its own cluster; another program's data it refuses to touch."""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
pytestmark = pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.geteuid() != 0,
                                reason="needs Debian's postgresql package and root (as CI has)")


def _start(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def open_tmp():
    """A folder the postgres user can reach (pytest's own tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="bench-pg-test-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_second_start_on_the_same_folder_replaces_the_first_cluster(open_tmp):
    folder = open_tmp / "pg"
    try:
        first, second = _start(folder), _start(folder)
        assert first.returncode == 0 and second.returncode == 0, second.stderr
        assert first.stdout.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert second.stdout.startswith("postgresql+psycopg://") and second.stdout != first.stdout
        pid_file = folder / "data" / "postmaster.pid"
        assert pid_file.exists()  # the new cluster runs; the old one was stopped before its data went
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=120)
    again = subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to stop" in again.stderr  # a second stop is no failure


def test_data_it_did_not_make_is_refused_in_one_line(tmp_path):
    (tmp_path / "other" / "data").mkdir(parents=True)
    (tmp_path / "other" / "data" / "keep").write_text("x")
    r = _start(tmp_path / "other")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().endswith("is not a throwaway cluster this script made: choose another DIR")
    assert (tmp_path / "other" / "data" / "keep").read_text() == "x"
