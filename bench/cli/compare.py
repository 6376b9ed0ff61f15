"""`bench compare`: per-benchmark verdicts between two runs; exit 0 nothing regressed, 1 a regression, 2 bad input."""

from __future__ import annotations

import argparse
import json

from bench.cli import COMMANDS
from bench.cli.history import add_db_option
from bench.core.errors import BenchError
from bench.core.io import json_safe


def register(sub) -> None:
    p = sub.add_parser("compare", help=COMMANDS["compare"].help,
                       description="Compare a candidate run with a baseline, per benchmark and metric. Each side is "
                                   "a results file (pytest-benchmark JSON, ours or any suite's; a bench sweep or tta "
                                   "file) or a run in the history store (run:ID). Exit status: 0 nothing regressed, "
                                   "1 a regression, 2 bad input.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="BASELINE CANDIDATE, or CANDIDATE with --against")
    p.add_argument("--against", metavar="WHICH",
                   help="baseline from the store: last (the newest earlier run on the candidate's hardware), "
                        "last-good (the same, skipping runs a --record found regressed), window:N (the N newest "
                        "earlier runs' nightly medians) or a run id")
    add_db_option(p)
    p.add_argument("--threshold", type=float, metavar="FRACTION",
                   help="a change counts above this relative size (default 0.05, or [tool.bench.compare])")
    p.add_argument("--noise-target", type=float, metavar="FRACTION",
                   help="a run whose median's 95%% CI half-width exceeds this is unreliable (default: half the threshold)")
    p.add_argument("--config", metavar="TOML", help="settings file; default: [tool.bench.compare] of ./pyproject.toml")
    p.add_argument("--cross-hardware", action="store_true", help="compare runs from different hardware anyway")
    p.add_argument("--record", action="store_true",
                   help="store the verdict (ok/regressed) on the candidate's run, for --against last-good")
    p.add_argument("--no-baseline-ok", action="store_true",
                   help="with --against: exit 0 with a note when the store has no earlier run to compare with "
                        "(a machine's first night)")
    p.add_argument("--json", action="store_true", help="the comparison as JSON on standard output")
    p.add_argument("--hide-unchanged", action="store_true", help="leave unchanged benchmarks out of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bench.analysis.compare import (
        NoBaseline,
        baseline_for,
        compare,
        exit_status,
        load_settings,
        load_side,
    )
    from bench.present.nightly import comparison_lines

    if args.against is None and len(args.runs) != 2:
        raise BenchError(f"expected BASELINE and CANDIDATE (or CANDIDATE with --against), got {len(args.runs)} run(s)")
    if args.against is not None and len(args.runs) != 1:
        raise BenchError(f"with --against give only the CANDIDATE, got {len(args.runs)} runs")
    settings = load_settings(args.config)
    for name in ("threshold", "noise_target"):
        v = getattr(args, name)
        if v is not None:
            if not (0 < v < float("inf")):
                raise BenchError(f"--{name.replace('_', '-')} must be a positive fraction such as 0.05, got {v}")
            settings = replace(settings, **{name: v})
    candidate = load_side(args.runs[-1], db=args.db)
    try:
        baseline = baseline_for(candidate, args.against, db=args.db) if args.against else load_side(args.runs[0], db=args.db)
    except NoBaseline as e:
        if not args.no_baseline_ok:
            raise
        print(f"bench compare: nothing to compare with: {e}")
        return 0
    result = compare(baseline, candidate, settings, cross_hardware=args.cross_hardware)
    if args.record:
        _record(candidate, result, args.db)
    if args.json:
        print(json.dumps(json_safe(result.to_dict()), indent=1))
    else:
        print("\n".join(comparison_lines(result, show_unchanged=not args.hide_unchanged)))
    return exit_status(result)


def _record(candidate, result, db) -> None:
    from bench.history import query
    from bench.history.store import open_store

    with open_store(db) as store:
        run_id = candidate.run_id
        if run_id is None and candidate.content_hash:
            found = query.run_by_content_hash(store, candidate.content_hash)
            run_id = found.id if found else None
        if run_id is None:
            raise BenchError(f"--record: the candidate {candidate.name} is not in {store.where} "
                             "(bench history ingest it first)")
        query.set_verdict(store, run_id, "regressed" if result.regressed else "ok")
