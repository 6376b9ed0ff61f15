"""The test run's last line: what the skipped tests waited for, and how to run the full set."""

import subprocess
import sys
from pathlib import Path

import conftest


def test_the_skip_line_counts_each_kind_and_says_how_to_get_the_full_set():
    line = conftest.skip_summary([
        "no chromium on PATH (apt-get install chromium): the browser test needs one",
        "no chromium on PATH (apt-get install chromium): the browser test needs one",
        "no PostgreSQL server: set BENCH_TEST_POSTGRES_URL",
        "needs a CUDA device",
        "the fault injector tells files from folders by /proc",
    ])
    assert line == ("5 test(s) skipped: 2 for want of headless Chromium, 1 for want of a PostgreSQL server, "
                    "1 for want of a CUDA GPU, 1 for other reasons (-rs lists them); " + conftest.FULL_SET + ".")
    assert conftest.skip_summary([]) is None


def test_a_run_with_skips_ends_with_that_line_above_pytests_own_summary(tmp_path):
    tests = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((tests / "conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.skip(reason='needs a CUDA device')\ndef test_gpu():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    ours = [i for i, ln in enumerate(lines) if ln.startswith("1 test(s) skipped: 1 for want of a CUDA GPU; `bash .ci/run`")]
    assert ours, proc.stdout
    assert lines[-1].startswith("1 passed, 1 skipped")  # pytest's own line stays the last
    assert ours[0] >= len(lines) - 5  # among the closing lines
