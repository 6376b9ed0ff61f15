"""Bad input, as an attacker or a careless user gives it (issue 20): no secret printed, no escape code
reaching the terminal, no unbounded read, and one line with exit status 2 instead of a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.io import MAX_INPUT_ENV
from bench.core.text import MAX_SHOWN_NAME, shown_name, terminal_safe
from bench.history.simulate import write_night
from bench.history.store import describe_url, mask_password

SECRET = "S3cretPW"


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- database URLs


BAD_URLS = {
    "leading-space": f" postgresql+psycopg://ci:{SECRET}@db.example/bench",
    "port-not-a-number": f"postgresql+psycopg://ci:{SECRET}@db.example:abc/bench",
    "unclosed-ipv6": f"postgresql+psycopg://ci:{SECRET}@[::1/bench",
    "unknown-backend": f"mysql://ci:{SECRET}@db.example/bench",
    "unknown-driver": f"postgresql+nodriver://ci:{SECRET}@db.example/bench",
    "unknown-sqlite-driver": "sqlite+nodriver:///x.sqlite",
    "at-sign-in-password": "postgresql+nodriver://ci:S3c@retPW@db.example/bench",
}


@pytest.mark.parametrize("how", ["env", "option"])
@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
@pytest.mark.parametrize("command", [["history", "list"], ["history", "ingest", "x.json"], ["report", "--db"]])
def test_a_database_url_that_does_not_work_is_one_line_without_its_password(url, how, command, capsys, monkeypatch,
                                                                               tmp_path):
    from bench.history.simulate import write_night

    monkeypatch.chdir(tmp_path)
    write_night(tmp_path, 0, {"bs4": 0.01}, name="x.json")  # an input ingest accepts, so the URL is what fails
    argv = list(command)
    if how == "env":
        monkeypatch.setenv("BENCH_DB", url)
        if argv[-1] == "--db":
            argv.pop()
    else:
        argv += [url] if argv[-1] == "--db" else ["--db", url]
    code, out, err = run_cli(capsys, argv)
    assert code == 2
    line = one_line(err)
    assert "retPW" not in line + out and "S3c" not in line + out
    if "://ci:" in url:
        assert "ci:***@" in line


def test_passwords_are_masked_in_text_that_is_not_a_url():
    assert mask_password(f"could not use postgresql://u:{SECRET}@h:5432/db now") == "could not use postgresql://u:***@h:5432/db now"
    assert describe_url(f"postgresql://u:{SECRET}@h:x/db") == "postgresql://u:***@h:x/db"
    assert describe_url("sqlite:////tmp/h.sqlite") == "sqlite:////tmp/h.sqlite"


# --------------------------------------------------------------------------- what reaches the terminal

TITLE = "\x1b]0;pwned\x07"
COLOUR = "\x1b[31;1m"


def test_escape_codes_and_controls_are_removed_and_long_names_shortened():
    assert terminal_safe(f"a{TITLE}b{COLOUR}c\x1b[0m\r\nd\u202ee\x9b2J") == "abc  d e"
    long = "n" * 10_000_000 + "-tail"
    shown = shown_name(long)
    assert len(shown) == MAX_SHOWN_NAME and shown.endswith("-tail") and "more)" in shown
    assert shown_name("mlp-fp32-bs4-cpu") == "mlp-fp32-bs4-cpu"


def test_compare_prints_no_escape_code_from_a_benchmark_name(tmp_path, capsys):
    evil = f"mlp{TITLE}{COLOUR}-fp32-bs32-cuda"
    base = write_night(tmp_path, 1, {evil: 0.010, "other": 0.02})
    cand = write_night(tmp_path, 2, {evil: 0.040})  # 4x: slower beyond any default noise between runs
    code, out, err = run_cli(capsys, ["compare", base, cand])
    assert code == 1
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "mlp-fp32-bs32-cuda" in out.replace(" ", "")  # the name is still shown, without its codes


def test_a_huge_benchmark_name_is_shortened_in_the_terminal(tmp_path, capsys):
    huge = "b" * 4000  # the longest a file may hold is shown at 160 characters
    base = write_night(tmp_path, 1, {huge: 0.010})
    cand = write_night(tmp_path, 2, {huge: 0.010})
    code, out, err = run_cli(capsys, ["compare", base, cand])
    assert code in (0, 3), err  # same, or inconclusive against the default noise between runs: never slower
    assert max(len(line) for line in out.splitlines()) < 1000 and huge not in out


def test_an_error_naming_a_file_prints_no_escape_code(tmp_path, capsys):
    bad = tmp_path / f"x{TITLE}.json"
    bad.write_text("{")
    code, _, err = run_cli(capsys, ["report", bad, "-o", tmp_path / "r.html"])
    assert code == 2 and "\x1b" not in one_line(err) and "\x07" not in err


# --------------------------------------------------------------------------- bounded reads

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("argv", [["report", "{x}", "-o", "{d}/r.html"], ["history", "ingest", "{x}", "--db", "{d}/h.sqlite"],
                                  ["compare", "{x}", "{x}"], ["fit", "{x}"], ["tta", "--curves", "{x}", "-o", "{d}/t.json"]],
                         ids=["report", "ingest", "compare", "fit", "tta-curves"])
@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_is_refused_unread(argv, source, tmp_path, capsys):
    if source == "fifo":
        source = str(tmp_path / "pipe.json")
        os.mkfifo(source)  # opening it to read would wait for a writer forever
    code, out, err = run_cli(capsys, [a.format(x=source, d=tmp_path) for a in argv])
    assert code == 2
    assert "not a results file (bench reads only regular files)" in one_line(err)
    assert not list(tmp_path.glob("*.html"))


def test_a_file_above_the_input_limit_is_refused_and_the_limit_can_be_raised(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.json"
    shutil.copy(DATA / "sweep-v1.json", src)
    monkeypatch.setenv(MAX_INPUT_ENV, str(src.stat().st_size / 2 ** 20 / 2))
    code, _, err = run_cli(capsys, ["report", src, "-o", tmp_path / "r.html"])
    assert code == 2 and "larger than the" in one_line(err) and MAX_INPUT_ENV in err
    monkeypatch.setenv(MAX_INPUT_ENV, "1")
    assert run_cli(capsys, ["report", src, "-o", tmp_path / "r.html"])[0] == 0


def _with_huge_integer(folder: Path) -> Path:
    text = (DATA / "sweep-v1.json").read_text().replace('"schema_version": 1', '"schema_version": ' + "9" * 5000, 1)
    assert "9" * 5000 in text
    p = folder / "huge-int.json"
    p.write_text(text)
    return p


def test_an_integer_of_thousands_of_digits_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["report", _with_huge_integer(tmp_path), "-o", tmp_path / "r.html"])
    assert code == 2 and "integer too long to read" in one_line(err)


def test_a_folder_report_skips_a_file_with_a_huge_integer_and_goes_on(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    _with_huge_integer(folder)
    shutil.copy(DATA / "sweep-v1.json", folder / "good.json")
    code, out, err = run_cli(capsys, ["report", folder, "-o", tmp_path / "r.html"])
    assert code == 0
    assert "skipped" in one_line(err) and "integer too long" in err
    assert (tmp_path / "r.html").exists()


def _runs(capsys, db: Path) -> list:
    code, out, _ = run_cli(capsys, ["history", "list", "--db", db, "--json"])
    return json.loads(out) if code == 0 else []


@pytest.fixture
def store(tmp_path, capsys) -> Path:
    db = tmp_path / "h.sqlite"
    assert run_cli(capsys, ["history", "ingest", DATA / "pytest-benchmark-v1.json", "--db", db, "-q"])[0] == 0
    return db


def test_a_batch_size_of_10_to_the_30_at_ingest_is_one_line_and_stores_nothing(store, tmp_path, capsys):
    sweep = json.loads((DATA / "sweep-v1.json").read_text())
    sweep["points"][0]["case"]["batch_size"] = 10 ** 30
    suite = json.loads((DATA / "pytest-benchmark-v1.json").read_text())
    suite["datetime"] = "2030-01-01T00:00:00"  # other content than the stored night
    for b in suite["benchmarks"]:
        b["extra_info"]["batch_size"] = b["extra_info"]["measurement"]["case"]["batch_size"] = 10 ** 30
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    before = _runs(capsys, store)
    for name, says in (("sweep.json", "must be <="), ("suite.json", "does not fit the history store")):
        code, _, err = run_cli(capsys, ["history", "ingest", tmp_path / name, "--db", store])
        assert code == 2 and says in one_line(err)
    assert _runs(capsys, store) == before


def test_a_store_that_fills_its_disk_during_ingest_is_one_line_and_intact(store, tmp_path, capsys, monkeypatch):
    from sqlalchemy import event

    import bench.history.store as store_module

    real = store_module.make_engine

    def small_disk(url, **kwargs):  # SQLite's own "database or disk is full" (SQLITE_FULL), at its current size
        engine = real(url, **kwargs)
        event.listen(engine, "connect", lambda conn, _: conn.execute(
            f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"))
        return engine

    before = _runs(capsys, store)
    other = json.loads((DATA / "pytest-benchmark-v1.json").read_text())
    other["datetime"] = "2030-01-01T00:00:00"
    (tmp_path / "night.json").write_text(json.dumps(other))
    monkeypatch.setattr(store_module, "make_engine", small_disk)
    code, _, err = run_cli(capsys, ["history", "ingest", tmp_path / "night.json", "--db", store])
    monkeypatch.undo()
    assert code == 2
    line = one_line(err)
    assert "database or disk is full" in line and "nothing was stored" in line and "INSERT" not in line
    assert _runs(capsys, store) == before


LONG = "n" * 300 + ".json"


@pytest.mark.parametrize("argv", [["report", "{d}/" + LONG, "-o", "{d}/r.html"],
                                  ["history", "ingest", "{d}/" + LONG, "--db", "{d}/h.sqlite"],
                                  ["compare", "{d}/" + LONG, "{d}/" + LONG],
                                  ["sweep", "-b", "2", "-o", "{d}/" + LONG],
                                  ["train", "nqm", "-o", "{d}/" + LONG]],
                         ids=["report", "ingest", "compare", "sweep", "train"])
def test_a_file_name_over_255_bytes_is_one_line(argv, tmp_path, capsys):
    code, _, err = run_cli(capsys, [a.format(d=tmp_path) for a in argv])
    assert code == 2
    line = one_line(err)
    assert "too long" in line or "bytes long" in line


# --------------------------------------------------------------------------- numbers checked up front


@pytest.mark.parametrize("argv,says", [
    (["sweep", "--threads", "100000"], "at most 1024"),
    (["train", "nqm", "--threads", "100000"], "at most 1024"),
    (["sweep", "--seed", "1" + "0" * 30], "too large"),
    (["sweep", "-a", "hidden=1" + "0" * 30, "-b", "2"], "parameter 'hidden'"),
    (["train", "nqm", "--seeds", "1" + "0" * 30], "seed 1000"),
    (["sweep", "-b", "1" + "0" * 30], "too large"),
    (["train", "nqm", "--max-steps", "1" + "0" * 30], "too large"),
], ids=["sweep-threads", "train-threads", "sweep-seed", "workload-arg", "train-seeds", "batch", "max-steps"])
def test_a_huge_number_is_refused_before_anything_runs(argv, says, tmp_path, capsys):
    code, out, err = run_cli(capsys, [*argv, "-o", tmp_path / "out.json"])
    assert code == 2 and says in one_line(err)
    assert not (tmp_path / "out.json").exists()


def test_peak_that_measured_nothing_exits_1_and_says_so(capsys, monkeypatch):
    import bench.measure.telemetry.peaks as peak
    from bench.measure.telemetry.peaks import PeakMeasurement

    def nothing(**kwargs):
        return [PeakMeasurement(precision=p, device="cpu", device_name=None, measured="cpu", size=kwargs["size"],
                                null_reasons={"tflops_median": "matmul failed: RuntimeError: can't allocate memory"})
                for p in ("fp32", "bf16")]

    monkeypatch.setattr(peak, "measure_peak", nothing)
    code, out, err = run_cli(capsys, ["peak", "--size", "200000"])
    assert code == 1
    assert "nothing was measured" in one_line(err) and "can't allocate memory" in err


def test_suites_refuse_a_batch_size_no_machine_holds_and_threads_no_machine_has():
    from bench.core.errors import BenchError
    from bench.run.suite import SuiteOptions

    with pytest.raises(BenchError, match="--bench-batch-sizes: batch size 1,000,000,000,000,000,000 cannot fit"):
        SuiteOptions.parse(batch_sizes="8,1000000000000000000", device="cpu")
    with pytest.raises(BenchError, match="--bench-cpu-threads: must be at most 1024"):
        SuiteOptions.parse(cpu_threads="100000")
    assert SuiteOptions.parse(batch_sizes="8,64", device="cpu").batch_sizes == (8, 64)


# --------------------------------------------------------------------------- a store on a read-only mount


@pytest.fixture
def read_only_store(tmp_path, capsys):
    """A history store on a tmpfs remounted read-only (needs root and mount); skipped where it cannot be made."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        db = mnt / "h.sqlite"
        assert run_cli(capsys, ["history", "ingest", DATA / "pytest-benchmark-v1.json", "--db", db, "-q"])[0] == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        yield db
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_store_on_a_read_only_mount_is_read_by_list_report_and_compare(read_only_store, tmp_path, capsys):
    before = read_only_store.read_bytes()
    code, out, err = run_cli(capsys, ["history", "list", "--db", read_only_store])
    assert code == 0 and "pytest-benchmark" in out, err
    code, out, err = run_cli(capsys, ["report", "--db", read_only_store, "-o", tmp_path / "r.html"])
    assert code == 0 and (tmp_path / "r.html").exists(), err
    code, out, err = run_cli(capsys, ["compare", "run:1", DATA / "pytest-benchmark-v1.json", "--db", read_only_store])
    assert code in (0, 3), err  # read and judged (same, or inconclusive against the noise between runs)
    assert read_only_store.read_bytes() == before


# --------------------------------------------------------------------------- Ctrl-C once the work is done


def test_ctrl_c_after_the_command_finished_says_what_was_kept_and_keeps_its_status(tmp_path):
    out = tmp_path / "r.html"
    script = (f"import os, signal, sys, time\nfrom bench.cli import main\n"
              f"sys.argv = ['bench', 'report', {str(DATA / 'sweep-v1.json')!r}, '-o', {str(out)!r}]\n"
              "code = main()\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\nsys.exit(99)\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == (f"bench: interrupted while exiting, after the command had finished; "
                                                 f"its results are in {out}")
    assert out.exists() and "Report:" in p.stdout


def test_a_10_mib_name_is_refused_at_load_so_no_page_or_store_grows_with_it(tmp_path, capsys):
    suite = json.loads((DATA / "pytest-benchmark-v1.json").read_text())
    suite["benchmarks"][0]["name"] = "x" * (10 * 2 ** 20)
    sweep = json.loads((DATA / "sweep-v1.json").read_text())
    sweep["points"][0]["case"]["workload"] = "w" * (10 * 2 ** 20)
    for name, data, where in (("suite.json", suite, "benchmarks[0].name"), ("sweep.json", sweep, "points[0].case.workload")):
        (tmp_path / name).write_text(json.dumps(data))
        for argv in (["report", tmp_path / name, "-o", tmp_path / "r.html"],
                     ["history", "ingest", tmp_path / name, "--db", tmp_path / "h.sqlite"]):
            code, _, err = run_cli(capsys, argv)
            line = one_line(err)
            assert code == 2 and where in line and "4096 characters" in line and len(line) < 500
    assert not (tmp_path / "r.html").exists()
