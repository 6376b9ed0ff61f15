"""Bad input, as an attacker or a careless user gives it (issue 20): no secret printed, no escape code
reaching the terminal, no unbounded read, and one line with exit status 2 instead of a traceback."""

from __future__ import annotations

import pytest

from bench.cli import main
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
    monkeypatch.chdir(tmp_path)
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
    cand = write_night(tmp_path, 2, {evil: 0.013})
    code, out, err = run_cli(capsys, ["compare", base, cand])
    assert code == 1
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "mlp-fp32-bs32-cuda" in out.replace(" ", "")  # the name is still shown, without its codes


def test_a_huge_benchmark_name_is_shortened_in_the_terminal(tmp_path, capsys):
    huge = "b" * 1_000_000
    base = write_night(tmp_path, 1, {huge: 0.010})
    cand = write_night(tmp_path, 2, {huge: 0.010})
    code, out, err = run_cli(capsys, ["compare", base, cand])
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) < 2000


def test_an_error_naming_a_file_prints_no_escape_code(tmp_path, capsys):
    bad = tmp_path / f"x{TITLE}.json"
    bad.write_text("{")
    code, _, err = run_cli(capsys, ["report", bad, "-o", tmp_path / "r.html"])
    assert code == 2 and "\x1b" not in one_line(err) and "\x07" not in err
