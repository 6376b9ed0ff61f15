"""`bench fit`: the scaling fit S(B) = S_min·(1 + B_crit/B) of a steps-to-target table a user already has
(their own runs, an MLPerf reference convergence table, a paper's table), without any training."""

from __future__ import annotations

import argparse
import json
import math

from bench.cli import COMMANDS
from bench.core.errors import BenchError
from bench.core.params import positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("fit", help=COMMANDS["fit"].help,
                       description="Fit S(B) = S_min·(1 + B_crit/B) to a CSV of batch_size and steps, examples or "
                                   "epochs to target (several rows per batch size are seeds; a row with "
                                   "reached=false is a run that stopped short, a lower bound). Prints S_min, "
                                   "B_crit and E_min with intervals, the regimes and the residuals.")
    p.add_argument("table", metavar="TABLE",
                   help="CSV: batch_size, steps | examples | epochs [, seed, reached] ('#' lines are comments), or an "
                        "MLPerf reference-convergence-point JSON (mlcommons/logging rcps_*.json)")
    p.add_argument("--rcp-unit", choices=["steps", "examples", "epochs"],
                   help="what an RCP JSON's 'Epochs to converge' counts (default: examples for bert, which counts "
                        "samples there, else epochs)")
    p.add_argument("--dataset-size", type=int, metavar="N",
                   help="training set size in examples: turns epochs into steps, and reports E_min in epochs")
    p.add_argument("--interval", choices=["profile", "bootstrap"], default="profile",
                   help="interval method (default: %(default)s likelihood; see docs/tta.md for coverage)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples for --interval bootstrap")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default: %(default)s)")
    p.add_argument("--reference-batch", type=positive_int, metavar="B0",
                   help="reference batch of the tolerance definition of the critical batch (default: the smallest)")
    p.add_argument("--tolerance", type=positive_float, default=0.2,
                   help="steps may exceed perfect linear scaling from B0 by this much (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the fit as JSON instead of text")
    p.add_argument("--plot", metavar="OUT.svg", help="draw the fitted hyperbola over the data into this SVG file")
    p.add_argument("--overwrite", action="store_true", help="replace --plot if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.analysis.scaling import INTERVAL_BOOTSTRAP, INTERVAL_PROFILE, fit_table
    from bench.core.io import check_output_file, json_safe, write_text_atomic
    from bench.records.steps_table import read_steps_table

    if not (math.isfinite(args.confidence) and 0 < args.confidence < 1):
        raise BenchError(f"--confidence must be between 0 and 1, got {args.confidence:g}")
    if args.bootstrap < 0:
        raise BenchError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if args.plot:
        check_output_file(args.plot, resume=None, overwrite=args.overwrite, inputs=[args.table])
    table = read_steps_table(args.table, dataset_size=args.dataset_size, unit=args.rcp_unit)
    tf = fit_table(table, interval=INTERVAL_PROFILE if args.interval == "profile" else INTERVAL_BOOTSTRAP,
                   confidence=args.confidence, n_bootstrap=args.bootstrap, reference_batch=args.reference_batch,
                   tolerance=args.tolerance)
    if args.plot:
        from bench.present.report.figures.common import svg_document
        from bench.present.report.figures.tta import scaling_figure

        fig = scaling_figure(tf.batches, tf.fit, title=f"Steps to target: {table.source}")
        if fig is None:
            raise BenchError(f"{args.table}: nothing to plot (no batch size reached the target)")
        write_text_atomic(args.plot, svg_document(fig), replace=args.overwrite)
    if args.json:
        print(json.dumps(json_safe(tf.to_dict()), indent=1, ensure_ascii=False))
        return 0
    from bench.cli import output_console
    from bench.present.tables import table_fit_table
    from bench.present.tta import table_fit_lines

    console = output_console()
    lines = table_fit_lines(tf)
    console.print(lines[0], highlight=False)
    console.print(table_fit_table(tf))
    for line in lines[1:]:
        console.print(line, highlight=False)
    if args.plot:
        console.print(f"Plot: {args.plot}", highlight=False)
    return 0
