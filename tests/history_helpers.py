"""Shared by the history-store tests: a store URL on SQLite and, when BENCH_TEST_POSTGRES_URL names a
server, on PostgreSQL (a fresh database per test), and simulated nightly files written to disk."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from bench.history.simulate import lognormal_samples, night, suite_file

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


def write_night(folder: Path, i: int, medians: dict[str, float], *, seed: int | None = None, spread: float = 0.005,
                n: int = 60, commit: str | None = None, throttled=(), fingerprint=None, name: str | None = None) -> Path:
    """Night `i`'s suite file with `n` samples per benchmark around the given medians (seconds)."""
    rng = np.random.default_rng(i if seed is None else seed)
    data = suite_file({b: lognormal_samples(rng, m, n, spread) for b, m in medians.items()}, when=night(i),
                      commit=commit or f"{i:040x}", throttled=throttled, fingerprint=fingerprint)
    path = folder / (name or f"night-{i:04d}.json")
    path.write_text(json.dumps(data))
    return path
