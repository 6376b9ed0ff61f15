"""`bench report`: results files (sweeps, pytest-benchmark JSON, time-to-accuracy studies) and the history
store's nightly trends -> one HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import COMMANDS
from bench.core.params import positive_float, positive_int
from bench.core.text import shown_name, terminal_safe


def register(sub) -> None:
    p = sub.add_parser("report", help=COMMANDS["report"].help,
                       description="Turn results files into one HTML page that opens offline in any browser: "
                                   "verdicts, figures, sortable tables and the source data embedded. Inputs may "
                                   "be files or folders (every *.json inside, recursively): bench sweep files, "
                                   "pytest-benchmark JSON, bench.tta studies and bench.curves files. Nightly trends "
                                   "(change points, unreliable nights, the latest night's verdicts) come from the "
                                   "history store given with --db, else from two or more pytest-benchmark inputs "
                                   "read into a temporary store. With no INPUT, the report is the store's: --db, "
                                   "else $BENCH_DB, else reports/history.sqlite.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="results file or folder")
    p.add_argument("--db", metavar="PATH_OR_URL",
                   help="history store whose nightly trends the page shows (a SQLite file or a database URL such as "
                        "postgresql+psycopg://user@host/db); without INPUT: default $BENCH_DB, else "
                        "reports/history.sqlite")
    p.add_argument("--nights", type=positive_int, metavar="N",
                   help="show each machine's last N nights of the history (change points are found over all of it; "
                        "default: every night)")
    p.add_argument("--config", metavar="TOML",
                   help="bench compare settings for the trends (threshold and noise target per benchmark); default: "
                        "[tool.bench.compare] of ./pyproject.toml")
    p.add_argument("-o", "--output", help="HTML file to write (default: reports/report-<time>.html)")
    p.add_argument("--title", help="page title (default: from the inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--max-embed-mb", type=positive_float, default=None, metavar="MB",
                   help="above this size the per-round times of pytest-benchmark files are left out of the "
                        "embedded data (summaries stay; default 25)")
    p.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 if any file in a folder was skipped as unreadable or not a results file "
                        "(each is named on stderr either way)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.analysis.compare import load_settings
    from bench.history.store import resolve_url
    from bench.present.report.page import DEFAULT_MAX_EMBED_BYTES, make_report

    limit = DEFAULT_MAX_EMBED_BYTES if args.max_embed_mb is None else int(args.max_embed_mb * 2 ** 20)
    skipped: list[str] = []

    def skip(path: str, reason: str) -> None:
        skipped.append(path)
        print(f"bench report: skipped {shown_name(path)}: {terminal_safe(reason)}", file=sys.stderr)

    db = args.db if args.db is not None else (None if args.inputs else resolve_url(None))
    out = make_report(args.inputs, Path(args.output) if args.output else None, title=args.title,
                      overwrite=args.overwrite, max_embed_bytes=limit, on_skipped=skip, db=db, nights=args.nights,
                      settings=load_settings(args.config))
    args.results_path = out  # written: what a Ctrl-C from here on says was kept
    print(f"Report: {out}")
    return 1 if skipped and args.fail_on_error else 0
