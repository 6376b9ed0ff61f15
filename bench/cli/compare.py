"""`bench compare`: per-benchmark verdicts between two runs; exit 0 same or faster, 1 slower, 3 inconclusive,
2 bad input or nothing compared."""

from __future__ import annotations

import argparse
import json
import sys

from bench.cli import COMMANDS
from bench.cli.history import add_db_option
from bench.core.errors import BenchError
from bench.core.io import json_safe


def register(sub) -> None:
    p = sub.add_parser("compare", help=COMMANDS["compare"].help,
                       description="Compare a candidate run with a baseline, per benchmark and metric. Each side is "
                                   "a results file (pytest-benchmark JSON, ours or any suite's; a bench sweep or tta "
                                   "file) or a run in the history store (run:ID). Each change is judged against the noise "
                                   "between runs: the series' own from the store (--db, --against), calibrated "
                                   "settings, or the A/A default for the machine class. Exit status: 0 same or "
                                   "faster, 1 slower, 3 inconclusive (the runs cannot tell the change from noise), "
                                   "2 bad input or nothing compared.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="BASELINE CANDIDATE, or CANDIDATE with --against")
    p.add_argument("--against", metavar="WHICH",
                   help="baseline from the store: last (the newest earlier run on the candidate's hardware), "
                        "last-good (the same, skipping runs a --record found regressed), window:N (the N newest "
                        "earlier runs' nightly medians) or a run id")
    add_db_option(p)
    p.add_argument("--threshold", type=float, metavar="FRACTION",
                   help="a change counts above this relative size (default 0.05, or [tool.bench.compare])")
    p.add_argument("--noise-target", type=float, metavar="FRACTION",
                   help="for the trends' unreliable nights (default: half the threshold); compare judges a noisy run "
                        "with its own uncertainty instead of setting it aside")
    p.add_argument("--between-runs", type=float, metavar="SIGMA",
                   help="the noise between two runs of unchanged code (sd of the log ratio of their medians), for "
                        "every benchmark; default: calibrated settings, the store's history, else the A/A default")
    p.add_argument("--config", metavar="TOML", help="settings file; default: [tool.bench.compare] of ./pyproject.toml")
    p.add_argument("--cross-hardware", action="store_true", help="compare runs from different hardware anyway")
    p.add_argument("--record", action="store_true",
                   help="store the outcome on the candidate's run (ok, regressed, inconclusive): only an ok night "
                        "is a good baseline for --against last-good")
    p.add_argument("--no-baseline-ok", action="store_true",
                   help="with --against: exit 0 with a note when the store has no earlier run to compare with "
                        "(a machine's first night)")
    p.add_argument("--json", action="store_true", help="the comparison as JSON on standard output")
    p.add_argument("--wide", action="store_true", help="every column (p, noise, detectable change, rule), whole names")
    p.add_argument("--hide-unchanged", action="store_true", help="leave unchanged benchmarks out of the table")
    p.add_argument("--rerun", metavar="COMMAND",
                   help="when inconclusive or slower, run this shell command again (it writes a results file at "
                        "{out}, e.g. 'pytest suites/ -k cpu --benchmark-json {out}') and pool the runs")
    p.add_argument("--rerun-baseline", metavar="COMMAND",
                   help="with --rerun: the baseline's command, run before each candidate re-run (interleaved)")
    p.add_argument("--reruns", type=int, default=2, metavar="N", help="re-runs of each side (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bench.analysis.compare import (
        EXIT_SAME,
        NoBaseline,
        baseline_for,
        compare,
        exit_status,
        load_settings,
        load_side,
    )
    from bench.present.compare import comparison_lines, nothing_compared

    if args.against is None and len(args.runs) != 2:
        raise BenchError(f"expected BASELINE and CANDIDATE (or CANDIDATE with --against), got {len(args.runs)} run(s)")
    if args.against is not None and len(args.runs) != 1:
        raise BenchError(f"with --against give only the CANDIDATE, got {len(args.runs)} runs")
    if args.rerun_baseline and not args.rerun:
        raise BenchError("--rerun-baseline needs --rerun (the candidate's command)")
    if args.rerun:
        from bench.run.confirm import check_command

        check_command(args.rerun, "--rerun")
        if args.rerun_baseline:
            check_command(args.rerun_baseline, "--rerun-baseline")
        if not 1 <= args.reruns <= 100:
            raise BenchError(f"--reruns must be between 1 and 100, got {args.reruns}")
        if args.against and args.against.startswith("window:"):
            raise BenchError("--rerun pools re-runs with one baseline run; it does not apply to --against window:N")
    settings = load_settings(args.config)
    for name in ("threshold", "noise_target", "between_runs"):
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
        return EXIT_SAME
    history = None
    if args.db is not None or args.against or any(s.run_id is not None for s in (candidate, baseline)
                                                  if not isinstance(s, list)):
        from bench.analysis.calibrate import store_noise_for

        history = store_noise_for(candidate, args.db)
    result = compare(baseline, candidate, settings, cross_hardware=args.cross_hardware, history=history)
    if not result.verdicts:
        raise BenchError(nothing_compared(result))
    if args.rerun:
        from bench.run.confirm import confirm

        result = confirm(baseline, candidate, settings, rerun=args.rerun, rerun_baseline=args.rerun_baseline,
                         times=args.reruns, cross_hardware=args.cross_hardware, history=history, first=result,
                         progress=lambda text: print(f"bench compare: {text}", file=sys.stderr, flush=True))
    recorded = _record(candidate, result, args.db) if args.record else None
    if args.json:
        print(json.dumps(json_safe({**result.to_dict(), "recorded": recorded}), indent=1))
    else:
        print("\n".join(comparison_lines(result, show_unchanged=not args.hide_unchanged, wide=args.wide)))
        if recorded is not None:
            print(recorded_sentence(recorded))
    return exit_status(result)


def recorded_sentence(recorded: str) -> str:
    if recorded == "ok":
        return "--record: stored as ok, a good baseline for --against last-good"
    return (f"--record: stored as {recorded}; refused as a good baseline (--against last-good skips it)")


def _record(candidate, result, db) -> str:
    """Store the outcome on the candidate's run; only SAME is ok. Returns what was stored."""
    from bench.analysis.compare import INCONCLUSIVE, SLOWER
    from bench.history import query
    from bench.history.store import open_store

    verdict = {SLOWER: "regressed", INCONCLUSIVE: "inconclusive"}.get(result.outcome, "ok")
    with open_store(db) as store:
        run_id = candidate.run_id
        if run_id is None and candidate.content_hash:
            found = query.run_by_content_hash(store, candidate.content_hash)
            run_id = found.id if found else None
        if run_id is None:
            raise BenchError(f"--record: the candidate {candidate.name} is not in {store.where} "
                             "(bench history ingest it first)")
        query.set_verdict(store, run_id, verdict)
    return verdict
