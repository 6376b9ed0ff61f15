"""`bench history`: ingest results files into the history store, list its runs, find change points."""

from __future__ import annotations

import argparse
import json
import sys

from bench.cli import COMMANDS, Deferred
from bench.core.errors import BenchError
from bench.core.io import check_output_file, json_safe, write_json_atomic
from bench.core.text import shown_name

PROGRESS_FROM_FILES = 10  # a progress bar for ingests of more files than this


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH_OR_URL",
                   help="history store: a SQLite file or a database URL such as postgresql+psycopg://user@host/db "
                        "(default: $BENCH_DB, else reports/history.sqlite)")


def register(sub) -> None:
    p = sub.add_parser("history", help=COMMANDS["history"].help,
                       description="Keep every nightly results file (pytest-benchmark JSON, bench sweep and tta "
                                   "files) in a database with its raw samples, fingerprint, commit and flags, and "
                                   "find where each benchmark's history stepped.")
    hs = p.add_subparsers(dest="history_command", metavar="SUBCOMMAND", parser_class=type(p))
    i = hs.add_parser("ingest", help="store results files (one transaction: all of them or none)")
    i.add_argument("inputs", nargs="+", metavar="FILE",
                   help="results file, or folder (every *.json inside); also an asv results folder (with its "
                        "benchmarks.json) and a github-action-benchmark data.js / data.json")
    add_db_option(i)
    i.add_argument("--skip-unknown-units", action="store_true",
                   help="leave out (and count) github-action-benchmark results in units bench does not know, "
                        "instead of refusing the file")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar, one summary line")
    i.set_defaults(func=run_ingest)
    ls = hs.add_parser("list", help="the runs in the store, oldest first")
    add_db_option(ls)
    ls.add_argument("--hardware", metavar="KEY", help="only runs on this machine (its hardware key)")
    ls.add_argument("--json", action="store_true", help="a JSON list on standard output")
    ls.set_defaults(func=run_list)
    ch = hs.add_parser("changes", help="change points in each benchmark's history on each machine")
    add_db_option(ch)
    _series_filters(ch)
    ch.add_argument("--json", action="store_true", help="a JSON list on standard output")
    ch.set_defaults(func=run_changes)
    tr = hs.add_parser("trends", help="per-benchmark trend summaries (JSON, for a report)")
    add_db_option(tr)
    _series_filters(tr)
    tr.add_argument("-o", "--output", help="write the JSON here instead of standard output")
    tr.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    tr.set_defaults(func=run_trends)
    from bench.cli.calibrate import register_calibrate

    register_calibrate(hs, add_db_option)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _series_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", metavar="KEY", help="only this machine (its hardware key, see `bench history list`)")
    p.add_argument("--benchmark", metavar="TEXT", help="only benchmarks whose name contains TEXT")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="metric(s) to look at (default: step_time, time, time_to_target)")
    p.add_argument("--min-change", type=float, default=Deferred.attribute("bench.analysis.changepoints", "DEFAULT_MIN_CHANGE"),
                   help="smallest relative step reported (default: %(default)s)")
    p.add_argument("--config", metavar="TOML", help="compare settings (noise target per benchmark); default: "
                                                     "[tool.bench.compare] of ./pyproject.toml")


def run_ingest(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from bench.history.foreign import empty_runs, read_inputs
    from bench.history.store import open_store

    records, notes = read_inputs(args.inputs, skip_unknown_units=args.skip_unknown_units)
    files = [r.path for r in records]
    for note in notes:
        print(note, file=sys.stderr)
    empty = empty_runs(records)
    if empty:
        print(f"warning: {len(empty)} run(s) carry no benchmark result (stored, but nothing to trend), e.g. "
              f"{empty[0].path}", file=sys.stderr)
    with open_store(args.db, create=True) as store:
        if args.quiet or len(files) <= PROGRESS_FROM_FILES:
            outcomes = store.ingest_records(records)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("storing", total=len(files))

                def progress(done: int, total: int, path: str, what: str) -> None:
                    bar.update(task, advance=1)

                outcomes = store.ingest_records(records, progress=progress)
        where = store.where
    stored = [o for o in outcomes if o.status == "stored"]
    dups = [o for o in outcomes if o.status == "duplicate"]
    if args.quiet or len(files) > PROGRESS_FROM_FILES:
        print(f"{where}: stored {len(stored)} run(s), {len(dups)} already stored")
    else:
        for o in outcomes:
            print(f"{'stored as run' if o.status == 'stored' else 'already stored as run'} {o.run_id}: "
                  f"{shown_name(o.path)} ({o.n_results} results)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from bench.history import query
    from bench.history.store import open_store
    from bench.present.nightly import runs_lines

    with open_store(args.db) as store:
        runs = query.list_runs(store, hardware=args.hardware)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=1))
    else:
        print("\n".join(runs_lines(runs)))
    return 0


def _settings(args):
    from bench.analysis.compare import load_settings

    if not (0 < args.min_change < 10):
        raise BenchError(f"--min-change must be a positive fraction such as 0.02, got {args.min_change}")
    return load_settings(args.config)


def run_changes(args: argparse.Namespace) -> int:
    from bench.analysis.trends import history_changes
    from bench.history.store import open_store
    from bench.present.nightly import changes_lines

    settings = _settings(args)
    with open_store(args.db) as store:
        changes = history_changes(store, hardware=args.hardware, benchmark=args.benchmark,
                                  metrics=args.metric or _primary(),
                                  settings=settings, min_change=args.min_change)
    if args.json:
        print(json.dumps(json_safe([c.to_dict() for c in changes]), indent=1))
    else:
        print("\n".join(changes_lines(changes)))
    return 0


def _primary():
    from bench.history.sources import PRIMARY_METRICS

    return PRIMARY_METRICS


def run_trends(args: argparse.Namespace) -> int:
    from bench.analysis.trends import trend_summaries
    from bench.history.store import open_store

    settings = _settings(args)
    if args.output is not None:  # before the work; never over the store itself (check_output_file)
        check_output_file(args.output, resume=None, overwrite=args.overwrite)
    with open_store(args.db) as store:
        data = trend_summaries(store, hardware=args.hardware, benchmark=args.benchmark,
                               metrics=args.metric or _primary(), settings=settings, min_change=args.min_change)
    if args.output is not None:
        write_json_atomic(args.output, data, replace=args.overwrite)
        print(f"Trend summaries: {args.output}", file=sys.stderr)
    else:
        print(json.dumps(json_safe(data), separators=(",", ":")))
    return 0
