"""The suites' `--benchmark-json` follows bench's rule for files (issue 20): checked before any case runs,
written to a temporary file and renamed (a full disk leaves last night's file whole), never through a
symbolic link, and a Ctrl-C never replaces a complete file with a partial one."""

from __future__ import annotations

import json

import pytest

# A step imports torch._dynamo, which registers C++ operators once per process; pytester's in-process
# runs drop the modules they imported, so a second run would import (and register) it again and fail.
import torch._dynamo  # noqa: F401

from bench.core.errors import InvalidResultsFile
from bench.history.sources import read_results_file
from bench.pytest_plugin import interrupted_path
from bench.records.suite import INTERRUPTED_KEY

pytest_plugins = ("pytester",)

SUITE = '''
import os

def test_a(benchmark):
    benchmark.pedantic(lambda: None, rounds=2)

def test_b(benchmark):
    if os.environ.get("BENCH_TEST_INTERRUPT"):
        raise KeyboardInterrupt
    benchmark.pedantic(lambda: None, rounds=2)
'''

LAST_NIGHT = '{"last": "night"}\n'

# Faults injected into the suites' process (a subprocess: pytest.exit and Ctrl-C end an in-process run
# of pytester in its own way), chosen by BENCH_TEST_FAULT.
CONFTEST = '''
import errno
import os
import tempfile

import bench.core.io as io
from bench.pytest_plugin import *  # noqa

HERE = os.path.dirname(os.path.abspath(__file__))
FAULT = os.environ.get("BENCH_TEST_FAULT")
if FAULT == "read-only":  # root ignores permission bits: the file system says no where the check writes
    def mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    io.tempfile = type("T", (), {"mkstemp": staticmethod(mkstemp), "TemporaryFile": tempfile.TemporaryFile})
elif FAULT == "full-disk":  # the folder of --benchmark-json fills up; the rescue folder does not
    tempfile.tempdir = os.environ["BENCH_TEST_RESCUE"]
    fsync = os.fsync

    def full_disk(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(HERE):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fsync(fd)
    io.os = type("O", (), {k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    io.os.fsync = staticmethod(full_disk)
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def run(pytester, *args, fault: str | None = None, **env):
    mp = pytest.MonkeyPatch()
    try:
        if fault:
            mp.setenv("BENCH_TEST_FAULT", fault)
        for k, v in env.items():
            mp.setenv(k, str(v))
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)
    finally:
        mp.undo()


def exit_line(result) -> str:
    lines = [ln for ln in result.stderr.lines if ln.strip()]
    assert len(lines) == 1, result.stderr.str()
    return lines[0]


def test_a_complete_run_writes_the_json_and_leaves_no_temporary_file(suite):
    out = suite.path / "out.json"
    out.write_text(LAST_NIGHT)
    result = run(suite, f"--benchmark-json={out}")
    assert result.ret == 0
    data = json.loads(out.read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["test_a", "test_b"] and INTERRUPTED_KEY not in data
    assert not list(suite.path.glob(".*.tmp"))


@pytest.mark.parametrize("make", ["folder", "symlink", "file-as-folder"])
def test_an_unwritable_json_path_stops_the_run_before_any_case(suite, make):
    target = suite.path / "target.json"
    target.write_text(LAST_NIGHT)
    if make == "folder":
        out, says = suite.path / "afolder", "is a directory"
        out.mkdir()
    elif make == "symlink":
        out, says = suite.path / "link.json", "symbolic link"
        out.symlink_to(target)
    else:
        out, says = target / "out.json", "not a directory"
    result = run(suite, f"--benchmark-json={out}")
    assert result.ret == 2
    line = exit_line(result)
    assert says in line and "nothing was run" in line
    assert "passed" not in result.stdout.str()  # no case ran
    assert target.read_text() == LAST_NIGHT


def test_a_read_only_folder_stops_the_run_before_any_case(suite):
    result = run(suite, f"--benchmark-json={suite.path / 'out.json'}", fault="read-only")
    assert result.ret == 2 and "read-only file system" in exit_line(result)
    assert not (suite.path / "out.json").exists()


def test_a_full_disk_at_the_end_keeps_last_nights_file_and_rescues_the_results(suite, tmp_path_factory):
    out = suite.path / "out.json"
    out.write_text(LAST_NIGHT)
    rescue = tmp_path_factory.mktemp("rescue")
    result = run(suite, f"--benchmark-json={out}", fault="full-disk", BENCH_TEST_RESCUE=rescue)
    assert result.ret == 2
    line = exit_line(result)
    assert "no space left on device" in line and "keeps its last complete version" in line
    assert out.read_text() == LAST_NIGHT
    (rescued,) = rescue.glob("out.rescued-*.json")
    assert [b["name"] for b in json.loads(rescued.read_text())["benchmarks"]] == ["test_a", "test_b"]
    assert not list(suite.path.glob(".*.tmp"))


def test_ctrl_c_keeps_the_complete_file_and_writes_the_part_marked_interrupted(suite):
    out = suite.path / "out.json"
    out.write_text(LAST_NIGHT)
    result = run(suite, f"--benchmark-json={out}", BENCH_TEST_INTERRUPT=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert out.read_text() == LAST_NIGHT
    part = interrupted_path(out)
    data = json.loads(part.read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["test_a"] and data[INTERRUPTED_KEY]
    assert f"timed so far are in {part}" in result.stderr.str()
    with pytest.raises(InvalidResultsFile, match="interrupted"):
        read_results_file(part)  # ingest, compare and the report refuse it


def test_a_missing_folder_is_made_before_any_case_as_for_every_bench_output(suite):
    out = suite.path / "new" / "folder" / "out.json"
    result = run(suite, f"--benchmark-json={out}")
    assert result.ret == 0
    assert [b["name"] for b in json.loads(out.read_text())["benchmarks"]] == ["test_a", "test_b"]
