"""Every file bench writes follows one rule (issue 20): checked before any work, written to a temporary
file beside it and renamed, never through a symbolic link, into a FIFO or a device, over one of the
command's inputs or over a history store, and never with a name too long for the temporary file
beside it. Each refusal is one line on stderr, exit 2, with everything already on disk unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_faults_input import one_line, run_cli  # the one CLI runner of the fault tests

from bench.cli import main
from bench.core.errors import BenchError
from bench.core.io import (
    OUTPUT_NAME_ROOM,
    check_output_file,
    output_name_limit,
    write_json_atomic,
    write_text_atomic,
)

DATA = Path(__file__).parent / "data"
SWEEP = DATA / "sweep-v1.json"
PYTEST_BENCHMARK = DATA / "pytest-benchmark-v1.json"


@pytest.fixture
def store(tmp_path, capsys) -> Path:
    db = tmp_path / "h.sqlite"
    assert main(["history", "ingest", str(PYTEST_BENCHMARK), "--db", str(db), "-q"]) == 0
    capsys.readouterr()
    return db


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} changed"


def no_temporaries(folder: Path) -> None:
    assert not list(folder.rglob(".*.tmp")), "a temporary file was left behind"


# --------------------------------------------------------------------------- the store and the inputs


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_trends_output_never_replaces_the_store(store, tmp_path, capsys, overwrite):
    before = snapshot(store)
    code, out, err = run_cli(capsys, ["history", "trends", "--db", str(store), "-o", str(store), *overwrite])
    assert code == 2
    assert "SQLite database" in one_line(err)
    assert_unchanged(before)
    no_temporaries(tmp_path)


def test_trends_output_needs_overwrite_to_replace_a_file_and_then_replaces_it(store, tmp_path, capsys):
    old = tmp_path / "trends.json"
    old.write_text("precious")
    code, _, err = run_cli(capsys, ["history", "trends", "--db", str(store), "-o", str(old)])
    assert code == 2 and "--overwrite" in one_line(err)
    assert old.read_text() == "precious"
    code, _, err = run_cli(capsys, ["history", "trends", "--db", str(store), "-o", str(old), "--overwrite"])
    assert code == 0, err
    assert old.read_text().startswith("{")


def test_report_overwrite_never_replaces_its_own_input(tmp_path, capsys):
    src = tmp_path / "in.json"
    shutil.copy(SWEEP, src)
    before = snapshot(src)
    code, _, err = run_cli(capsys, ["report", str(src), "-o", str(src), "--overwrite"])
    assert code == 2 and "also an input" in one_line(err)
    assert_unchanged(before)


def test_report_overwrite_never_replaces_a_file_inside_an_input_folder(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(SWEEP, folder / "a.json")
    before = snapshot(folder / "a.json")
    code, _, err = run_cli(capsys, ["report", str(folder), "-o", str(folder / "a.json"), "--overwrite"])
    assert code == 2 and "also an input" in one_line(err)
    assert_unchanged(before)


def test_report_and_sweep_overwrite_never_replace_a_history_store(store, tmp_path, capsys):
    before = snapshot(store)
    code, _, err = run_cli(capsys, ["report", str(SWEEP), "-o", str(store), "--overwrite"])
    assert code == 2 and "SQLite database" in one_line(err)
    code, _, err = run_cli(capsys, ["sweep", "-b", "2", "-o", str(store), "--overwrite"])
    assert code == 2 and "SQLite database" in one_line(err)
    assert_unchanged(before)


# --------------------------------------------------------------------------- links, FIFOs, devices


def test_overwrite_never_writes_through_a_symbolic_link(tmp_path, capsys):
    target = tmp_path / "target.html"
    target.write_text("precious")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    code, _, err = run_cli(capsys, ["report", str(SWEEP), "-o", str(link), "--overwrite"])
    assert code == 2 and "symbolic link" in one_line(err)
    assert target.read_text() == "precious" and link.is_symlink()
    no_temporaries(tmp_path)


def test_a_symbolic_link_that_appears_before_the_rename_is_not_replaced(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("precious")
    (tmp_path / "out.json").symlink_to(target)
    with pytest.raises(BenchError, match="symbolic link"):
        write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert target.read_text() == "precious" and (tmp_path / "out.json").is_symlink()
    no_temporaries(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_overwrite_never_replaces_a_fifo(tmp_path, capsys):
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, ["report", str(SWEEP), "-o", str(fifo), "--overwrite"])
    assert code == 2 and "a FIFO" in one_line(err)
    assert fifo.is_fifo()


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_overwrite_never_replaces_a_device_node():
    with pytest.raises(BenchError, match="a device"):
        check_output_file("/dev/null", resume=None, overwrite=True)
    with pytest.raises(BenchError, match="a device"):
        write_text_atomic("/dev/null", "x")


# --------------------------------------------------------------------------- names


def test_an_empty_output_name_is_an_error_not_the_default_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, ["report", str(SWEEP), "-o", ""])
    assert code == 2 and "file name is empty" in one_line(err)
    assert not (tmp_path / "reports").exists()
    with pytest.raises(BenchError, match="empty"):
        check_output_file("")


@pytest.mark.parametrize("length", [230, 255])
def test_an_output_name_with_no_room_for_its_temporary_file_fails_before_measuring(tmp_path, capsys, length):
    name = "x" * (length - 5) + ".json"
    code, out, err = run_cli(capsys, ["sweep", "-b", "2", "-o", str(tmp_path / name)])
    assert code == 2
    line = one_line(err)
    assert f"is {length} bytes long" in line and f"at most {output_name_limit(tmp_path)}" in line
    assert out == "" and list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_a_name_over_255_bytes_is_one_line_wherever_it_is_written(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["report", str(SWEEP), "-o", str(tmp_path / ("y" * 300 + ".html"))])
    assert code == 2 and "bytes long" in one_line(err)


def test_the_longest_name_allowed_can_be_written_with_its_temporary_file(tmp_path):
    name = "z" * (output_name_limit(tmp_path) - 5) + ".json"
    assert len(name) + OUTPUT_NAME_ROOM <= 255
    check_output_file(tmp_path / name)
    write_json_atomic(tmp_path / name, {"ok": True})
    assert (tmp_path / name).read_text().strip().endswith("}")
    no_temporaries(tmp_path)


def test_trends_never_writes_into_a_device_node(store, capsys):
    code, _, err = run_cli(capsys, ["history", "trends", "--db", str(store), "-o", "/dev/null", "--overwrite"])
    assert code == 2 and "a device" in one_line(err)


def test_a_first_save_that_fails_everywhere_does_not_claim_a_complete_version(tmp_path):
    import errno
    from types import SimpleNamespace

    from bench.core.io import OutputWriteError
    from bench.run.runner import Identity, ResultsNotSaved, Resumable

    def full_disk(result, path):
        raise OutputWriteError(path, OSError(errno.ENOSPC, "No space left on device"))

    run = Resumable.open(tmp_path / "out.json", create=lambda: SimpleNamespace(finished=False, items=[1]),
                         load=lambda p: None, save=full_disk, entries=lambda r: r.items, key=lambda e: e,
                         identity=Identity(), identity_of=lambda r: Identity())
    with pytest.raises(ResultsNotSaved) as e:
        run.save()
    assert f"nothing was written to {tmp_path / 'out.json'}" in str(e.value)
    assert "keeps its last complete version" not in str(e.value)


def test_fit_and_tta_overwrite_never_replace_the_table_or_curves_they_read(tmp_path, capsys):
    table = tmp_path / "steps.csv"
    shutil.copy(DATA / "mlperf_bert_rcps_v3.1.csv", table)
    curves = tmp_path / "curves.json"
    shutil.copy(DATA / "curves-v1.json", curves)
    before = snapshot(table, curves)
    code, _, err = run_cli(capsys, ["fit", str(table), "--plot", str(table), "--overwrite"])
    assert code == 2 and "also an input" in one_line(err)
    code, _, err = run_cli(capsys, ["tta", "--curves", str(curves), "-o", str(curves), "--overwrite"])
    assert code == 2 and "also an input" in one_line(err)
    assert_unchanged(before)
