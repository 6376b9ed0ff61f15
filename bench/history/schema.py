"""The store's tables and the ordered migrations that build them, so a later version can open an old store.

`bench_schema_version` holds one row per migration applied. Each step is frozen once released: a new
version appends a step (never edits an old one) and bumps SCHEMA_VERSION; `migrate` applies the
missing steps in order inside the caller's transaction (both SQLite and PostgreSQL run DDL inside a
transaction, so a step is applied whole or not at all).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from bench.core.errors import BenchError

SCHEMA_VERSION = 2

# --------------------------------------------------------------------------- the current tables

metadata = MetaData()

schema_version = Table(
    "bench_schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime, nullable=False),
    Column("description", Text, nullable=False),
)


def _run_columns() -> list[Column]:
    """The runs table as schema version 1 made it."""
    return [
        Column("id", Integer, primary_key=True),
        Column("content_hash", String(64), nullable=False, unique=True),
        Column("kind", String(32), nullable=False),
        Column("path", Text, nullable=False),
        Column("size_bytes", Integer, nullable=False),
        Column("ingested_at", DateTime, nullable=False),
        Column("run_time", DateTime, nullable=False),        # UTC
        Column("time_text", Text, nullable=False),           # as written in the source file
        Column("commit_id", String(64)),
        Column("dirty", Boolean),
        Column("hardware_key", String(200), nullable=False),
        Column("hardware_label", Text, nullable=False),
        Column("fingerprint_hash", String(64)),
        Column("software_hash", String(64)),
        Column("fingerprint", Text, nullable=False),         # JSON
    ]


def _result_columns() -> list[Column]:
    """The results table as schema version 1 made it."""
    return [
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, ForeignKey("bench_runs.id", ondelete="CASCADE"), nullable=False),
        Column("benchmark", Text, nullable=False),
        Column("metric", String(64), nullable=False),
        Column("unit", String(32), nullable=False),
        Column("better", String(8), nullable=False),
        Column("status", String(16), nullable=False),
        Column("error", Text),
        Column("timer", String(64)),
        Column("n", Integer),
        Column("median", Float),
        Column("ci_low", Float),
        Column("ci_high", Float),
        Column("q1", Float),
        Column("q3", Float),
        Column("mean", Float),
        Column("stddev", Float),
        Column("ci_rel_halfwidth", Float),
        Column("noise_target", Float),
        Column("throttled", Boolean),
        Column("throttled_fraction", Float),
        Column("batch_size", Integer),
        Column("samples", LargeBinary),                      # little-endian float64, raw
        Column("warnings", Text),                            # JSON list
    ]


runs = Table("bench_runs", metadata, *_run_columns(),
             Column("verdict", String(16)),  # version 2: what `bench compare --record` said about the run
             )
results = Table("bench_results", metadata, *_result_columns())
Index("bench_results_run", results.c.run_id)
Index("bench_results_series", results.c.benchmark, results.c.metric)
Index("bench_runs_machine_time", runs.c.hardware_key, runs.c.run_time)


# --------------------------------------------------------------------------- the migrations


def _v1(conn: Connection) -> None:
    """Runs (one per results file, unique by content hash) and results with raw samples."""
    frozen = MetaData()
    Table("bench_runs", frozen, *_run_columns())
    t = Table("bench_results", frozen, *_result_columns())
    Index("bench_results_run", t.c.run_id)
    Index("bench_results_series", t.c.benchmark, t.c.metric)
    Index("bench_runs_machine_time", frozen.tables["bench_runs"].c.hardware_key,
          frozen.tables["bench_runs"].c.run_time)
    frozen.create_all(conn)


def _v2(conn: Connection) -> None:
    """runs.verdict: the nightly compare's verdict on a run, so `--against last-good` can skip regressed nights."""
    conn.execute(text("ALTER TABLE bench_runs ADD COLUMN verdict VARCHAR(16)"))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "runs and results with raw samples", _v1),
    (2, "runs.verdict (the nightly compare's verdict on a run)", _v2),
]
assert [v for v, _, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def stored_version(conn: Connection) -> int | None:
    """The store's schema version, or None for a database without the store's tables."""
    if not inspect(conn).has_table(schema_version.name):
        return None
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc()).limit(1)).scalar()


def migrate(conn: Connection, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the steps after the stored version up to `target`, in the caller's transaction; returns them."""
    if conn.dialect.name == "postgresql":
        # Two processes opening a new store at once: the second waits here, then finds it migrated.
        conn.execute(text("SELECT pg_advisory_xact_lock(7436190211)"))
    version = stored_version(conn)
    if version is not None and version > SCHEMA_VERSION:
        raise BenchError(f"the history store has schema version {version}, newer than this bench reads "
                         f"({SCHEMA_VERSION}): upgrade bench")
    if version is None:
        schema_version.create(conn)
        version = 0
    applied = []
    for v, description, step in MIGRATIONS:
        if version < v <= target:
            step(conn)
            conn.execute(schema_version.insert().values(version=v, description=description,
                                                        applied_at=datetime.now(timezone.utc).replace(tzinfo=None)))
            applied.append(v)
    return applied
