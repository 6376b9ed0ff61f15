"""Open a history store (SQLite file or PostgreSQL), migrate it, and ingest results files in one transaction.

Where: `--db` (a path, or a SQLAlchemy URL such as `postgresql+psycopg://user@host/db`), else the
environment variable BENCH_DB, else `reports/history.sqlite`. SQLite runs in WAL mode and writers take
the write lock when their transaction begins (`BEGIN IMMEDIATE`), so several processes ingesting at
once queue instead of failing; PostgreSQL serialises what needs it on its own.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)

from bench.core.errors import BenchError
from bench.core.io import json_safe
from bench.core.text import shorten, shown_name
from bench.history.schema import SCHEMA_VERSION, migrate, results, runs, stored_version
from bench.history.sources import RunRecord, read_results_file

DEFAULT_DB = os.path.join("reports", "history.sqlite")
DB_ENV = "BENCH_DB"
SQLITE_BUSY_TIMEOUT_MS = 120_000

# progress(done, total, path, what): what is "read", "stored" or "duplicate"
Progress = Callable[[int, int, str, str], None]


def resolve_url(db: str | os.PathLike | None = None) -> str:
    """The store's SQLAlchemy URL: `db`, else $BENCH_DB, else reports/history.sqlite; a plain path is a SQLite file."""
    value = os.fspath(db) if db is not None else (os.environ.get(DB_ENV) or DEFAULT_DB)
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


# user:password@ in anything shaped like a URL, parsed or not: the password is what gets masked.
_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>\S*)(?P<at>@)")


def mask_password(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` in it replaced by `***`."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)


def hide_secret(text: str, url: str) -> str:
    """`text` (a driver's message) with `url`'s password, wherever it appears, as `***`."""
    m = _PASSWORD.search(url)
    text = mask_password(text)
    return text.replace(m["password"], "***") if m and len(m["password"]) >= 3 else text


def describe_url(url: str) -> str:
    """The URL without its password, for messages: parsed where it parses, masked as text where not."""
    try:  # masked as text as well: a password with '@' in it parses as part of the host
        return mask_password(make_url(url).render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse (bad port, `[::1`): mask it as text
        return mask_password(url)


@dataclass
class IngestOutcome:
    path: str
    status: str          # "stored" or "duplicate" (the same content is already in the store)
    run_id: int
    n_results: int


def samples_to_bytes(samples: Sequence[float] | None) -> bytes | None:
    return None if not samples else np.asarray(samples, dtype="<f8").tobytes()


def samples_from_bytes(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f8").tolist()


class Store:
    """An open history store. Use `open_store`; close it (or use it as a context manager) when done."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url

    @property
    def where(self) -> str:
        return describe_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that holds the write lock from its start (SQLite) and commits or rolls back whole."""
        with self.engine.connect() as conn:
            conn.execution_options(bench_write=True)
            with conn.begin():
                yield conn

    # ----------------------------------------------------------------------- ingest

    def ingest(self, paths: Sequence[str | os.PathLike], *, progress: Progress | None = None) -> list[IngestOutcome]:
        """Store every file in one transaction: all of them or, on any bad file or failure, none.

        Every file is read and checked before anything is written, so a corrupt or foreign file leaves
        the store unchanged (InvalidResultsFile, one line). A file whose content is already stored (by
        any process, at any time) is a "duplicate" and stored once.
        """
        records: list[RunRecord] = []
        total = len(paths)
        for i, p in enumerate(paths):
            records.append(read_results_file(p))
            if progress:
                progress(i + 1, total, os.fspath(p), "read")
        return self.ingest_records(records, progress=progress)

    def ingest_records(self, records: Sequence[RunRecord], *, progress: Progress | None = None) -> list[IngestOutcome]:
        """`ingest` for files already read with `read_results_file`."""
        _check_integers(records)
        for attempt in range(5):
            try:
                return self._ingest_once(records, progress)
            except (OverflowError, DataError) as e:  # a value _check_integers does not know of: still one line
                why = str(getattr(e, "orig", e)).strip().splitlines()
                raise BenchError(f"a value in these files does not fit the history store "
                                 f"({why[0] if why else type(e).__name__}); nothing was stored") from None
            except OperationalError as e:  # a full disk ("database or disk is full"), a lost mount: rolled back
                why = str(getattr(e, "orig", e)).strip().splitlines()
                raise BenchError(f"cannot write the history store {self.where}: "
                                 f"{hide_secret(why[0], self.url) if why else type(e).__name__}; nothing was stored "
                                 "(the store is as it was before)") from None
            except IntegrityError:
                # Another process stored one of these files between our check and our insert: its
                # transaction won; ours rolled back whole. Try again, now seeing that file as stored.
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(self, records: Sequence[RunRecord], progress: Progress | None) -> list[IngestOutcome]:
        out: list[IngestOutcome] = []
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with self.write() as conn:
            hashes = list({r.content_hash for r in records})
            existing: dict[str, int] = {}
            for i in range(0, len(hashes), 500):
                chunk = hashes[i:i + 500]
                existing.update(conn.execute(select(runs.c.content_hash, runs.c.id)
                                             .where(runs.c.content_hash.in_(chunk))).all())
            for i, rec in enumerate(records):
                if rec.content_hash in existing:
                    out.append(IngestOutcome(rec.path, "duplicate", existing[rec.content_hash], len(rec.results)))
                else:
                    run_id = conn.execute(runs.insert().values(
                        content_hash=rec.content_hash, kind=rec.kind, path=rec.path, size_bytes=rec.size_bytes,
                        ingested_at=now, run_time=rec.time, time_text=rec.time_text, commit_id=rec.commit,
                        dirty=rec.dirty, hardware_key=rec.hardware_key, hardware_label=rec.hardware_label,
                        fingerprint_hash=rec.fingerprint_hash, software_hash=rec.software_hash,
                        fingerprint=json.dumps(json_safe(rec.fingerprint), sort_keys=True),
                    )).inserted_primary_key[0]
                    rows = [_result_row(run_id, r) for r in rec.results]
                    if rows:
                        conn.execute(results.insert(), rows)
                    existing[rec.content_hash] = run_id
                    out.append(IngestOutcome(rec.path, "stored", run_id, len(rec.results)))
                if progress:
                    progress(i + 1, len(records), rec.path, out[-1].status)
        return out


_INT64 = range(-2 ** 63, 2 ** 63)


def _check_integers(records: Sequence[RunRecord]) -> None:
    """BenchError naming the file and benchmark, before anything is written, for an integer the store's
    64-bit columns cannot hold (a batch size of 10^30 overflows SQLite and is a DataError on PostgreSQL)."""
    for rec in records:
        for r in rec.results:
            for name in ("batch_size", "n"):
                v = getattr(r, name, None)
                if isinstance(v, int) and v not in _INT64:
                    raise BenchError(f"{rec.path}: {shown_name(r.benchmark)}: {name} {shorten(str(v), 40)} does not fit "
                                     "the history store's 64-bit integers; nothing was stored")


def _result_row(run_id: int, r) -> dict:
    return {
        "run_id": run_id, "benchmark": r.benchmark, "metric": r.metric, "unit": r.unit, "better": r.better,
        "status": r.status, "error": r.error, "timer": r.timer, "n": r.n, "median": r.median,
        "ci_low": r.ci_low, "ci_high": r.ci_high, "q1": r.q1, "q3": r.q3, "mean": r.mean, "stddev": r.stddev,
        "ci_rel_halfwidth": r.ci_rel_halfwidth, "noise_target": r.noise_target, "throttled": r.throttled,
        "throttled_fraction": r.throttled_fraction, "batch_size": r.batch_size,
        "samples": samples_to_bytes(r.samples), "warnings": json.dumps(r.warnings) if r.warnings else None,
    }


def _create_engine(url: str, parsed, **kwargs) -> Engine:
    try:
        return create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise BenchError(f"--db {describe_url(url)}: unknown {parsed.get_backend_name()} driver "
                         f"{parsed.get_driver_name()!r} (SQLite: a file path; PostgreSQL: postgresql+psycopg://...)") from None


def read_only_place(path: Path) -> str | None:
    """How an SQLite store at `path` can only be read: "immutable" on a read-only file system (nobody
    can change it while we read, and SQLite cannot make its shared-memory file there), "ro" where we
    may not write the file or its folder, None where it can be written."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "immutable"
    except (OSError, AttributeError):
        pass
    return None if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK) else "ro"


def make_engine(url: str, *, read_only: str | None = None) -> Engine:
    """An engine for the store at `url`, set up for it (SQLite: WAL, busy timeout, BEGIN IMMEDIATE for
    writers). `read_only` (SQLite, see `read_only_place`): opened with mode=ro (and immutable=1)."""
    if url != url.strip():
        raise BenchError(f"--db {describe_url(url)!r} begins or ends with white space: give the URL without it")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number, `[::1` without `]`
        raise BenchError(f"--db {describe_url(url)!r} is neither a file path nor a database URL "
                         "(dialect+driver://user:password@host:port/database)") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise BenchError("the history store must be a file or a server: an in-memory SQLite store would vanish")
        if read_only:
            import sqlite3
            from urllib.parse import quote

            uri = f"file:{quote(database)}?mode=ro" + ("&immutable=1" if read_only == "immutable" else "")
            engine = _create_engine(url, parsed, creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
        else:
            engine = _create_engine(url, parsed)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # SQLAlchemy, not the sqlite3 module, issues BEGIN (below)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not read_only:  # a write; a store made by bench is in WAL mode already
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            write = conn.get_execution_options().get("bench_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql":
        try:
            return _create_engine(url, parsed, pool_pre_ping=True)
        except ImportError as e:
            raise BenchError(f"PostgreSQL needs the psycopg driver (pip install 'psycopg[binary]'): {e}") from None
    raise BenchError(f"--db {describe_url(url)}: the history store runs on SQLite or PostgreSQL "
                     f"(postgresql+psycopg://...), not {parsed.get_backend_name()}")


def open_store(db: str | os.PathLike | None = None, *, create: bool = False) -> Store:
    """Open the store at `db` (see resolve_url) and bring its schema up to date.

    `create=False` (reading): a store that does not exist is a BenchError saying so, not a new empty file.
    """
    url = resolve_url(db)
    read_only = None
    probe = make_engine(url)  # checks the URL (one line, password masked) before anything else
    parsed = probe.url
    probe.dispose()
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database)
        if not path.exists():
            if not create:
                raise BenchError(f"no history store at {path}: ingest results first (bench history ingest FILE...)")
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not create:
            read_only = read_only_place(path)  # a store on a read-only mount is still read
    store = Store(make_engine(url, read_only=read_only), url)
    try:
        if not create:
            with store.read() as conn:
                version = stored_version(conn)
            if version is None:
                raise BenchError(f"{store.where} holds no history store: ingest results first "
                                 "(bench history ingest FILE...)")
            if version == SCHEMA_VERSION:
                return store
            if read_only:
                raise BenchError(f"{store.where} can only be read here, and its tables are of an older version "
                                 f"({version}, now {SCHEMA_VERSION}): open it once where it can be written")
        with store.write() as conn:
            migrate(conn)
    except (OperationalError, DBAPIError) as e:
        store.close()
        msg = str(getattr(e, "orig", e)).strip().splitlines()
        why = hide_secret(msg[0], url) if msg else type(e).__name__
        raise BenchError(f"cannot open the history store {store.where}: {why}") from None
    except BenchError:
        store.close()
        raise
    return store
