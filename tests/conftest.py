"""Shared test set-up: tests run on the CPU with one thread so parallel runs stay predictable; helper
modules of input makers are importable by name; `db_url` is a history store on SQLite and, when
BENCH_TEST_POSTGRES_URL names a server, on PostgreSQL (a fresh database per test)."""

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Child processes (the suites, torchrun jobs, the CLI) get one thread too: with two threads on a
    # busy two-core machine a CPU step can take 15x longer, leaving a tiny budget a single sample.
    old_env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
    if old_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_env


class _HelperModules:
    """Finds tests/<name>.py for the helper modules below (input makers, not tests) when a test imports
    them, in any pytest import mode, and only then (building report inputs imports matplotlib)."""

    names = ("report_inputs",)

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            return importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        return None


sys.meta_path.append(_HelperModules())


PG_ENV = "BENCH_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A history store location: a SQLite file, or a fresh database on the PostgreSQL server in $BENCH_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.sqlite")
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (e.g. to the URL `bash .ci/postgres.sh` prints)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def counted_threads(monkeypatch):
    """Every telemetry sampler thread started while the test runs, in a list."""
    import bench.measure.telemetry.sampler as sampler

    made = []

    class Counted(sampler._SamplerThread):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(sampler, "_SamplerThread", Counted)
    return made


# What a skipped test waited for, by words in its reason: the one line at the end of a run names them.
SKIP_KINDS = (
    ("headless Chromium", ("chromium",)),
    ("a PostgreSQL server", ("postgresql", "postgres")),
    ("a CUDA GPU", ("cuda", "gpu", "nvidia-ml-py")),
)
FULL_SET = "`bash .ci/run` runs the full CPU set (it installs Chromium and starts PostgreSQL); GPU tests need a GPU machine"


def skip_summary(reasons) -> str | None:
    """One line naming what the skipped tests waited for and how to run them; None when none skipped."""
    reasons = [str(r) for r in reasons]
    if not reasons:
        return None
    counts: dict[str, int] = {}
    for reason in reasons:
        low = reason.lower()
        kind = next((name for name, words in SKIP_KINDS if any(w in low for w in words)), "other reasons")
        counts[kind] = counts.get(kind, 0) + 1
    order = [name for name, _ in SKIP_KINDS] + ["other reasons"]
    parts = [f"{counts[k]} for want of {k}" if k != "other reasons" else f"{counts[k]} for other reasons (-rs lists them)"
             for k in order if k in counts]
    return f"{len(reasons)} test(s) skipped: {', '.join(parts)}; {FULL_SET}."


def _skip_reason(report) -> str:
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Printed just above pytest's own list of skips and its "N passed, M skipped" line, which stays
    # the run's last line (tools that read a run's result look for it there).
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if getattr(r, "skipped", False)]
    line = skip_summary(_skip_reason(r) for r in skipped)
    if line:
        terminalreporter.write_line(line)
