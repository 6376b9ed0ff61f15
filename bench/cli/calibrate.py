"""`bench history calibrate`: each series' noise between runs, from the store's nights of unchanged code;
printed, or stored as compare settings (`-o FILE`, for `bench compare --config FILE`)."""

from __future__ import annotations

import argparse
import json
import sys

from bench.core.io import check_output_file, json_safe, write_text_atomic


def register_calibrate(hs, add_db_option) -> None:
    c = hs.add_parser("calibrate", help="per-benchmark noise between runs and thresholds from the store's nights",
                      description="From each series' consecutive reliable nights (assumed to be unchanged code): "
                                  "the noise between two runs (robust sd of the log ratio of their medians) and "
                                  "a threshold two unchanged nights stay within 95% of the time. bench compare "
                                  "uses the noise itself when given the store (--db, --against); -o writes it "
                                  "as settings for --config.")
    add_db_option(c)
    c.add_argument("--hardware", metavar="KEY", help="only this machine (its hardware key)")
    c.add_argument("--benchmark", metavar="TEXT", help="only benchmarks whose name contains TEXT")
    c.add_argument("--metric", action="append", metavar="NAME",
                   help="metric(s) (default: step_time, time, time_to_target)")
    c.add_argument("-o", "--output", metavar="TOML", help="write [tool.bench.compare.benchmarks] settings here")
    c.add_argument("--overwrite", action="store_true", help="replace the -o file if it exists")
    c.add_argument("--json", action="store_true", help="a JSON list on standard output")
    c.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from bench.analysis.calibrate import series_noise, settings_toml
    from bench.history.sources import PRIMARY_METRICS
    from bench.history.store import open_store
    from bench.present.calibrate import calibration_lines

    if args.output is not None:
        check_output_file(args.output, resume=None, overwrite=args.overwrite)
    with open_store(args.db) as store:
        noises = series_noise(store, hardware=args.hardware, benchmark=args.benchmark,
                              metrics=args.metric or PRIMARY_METRICS)
        where = store.where
    if args.output:
        write_text_atomic(args.output, settings_toml(noises))
        print(f"Calibrated settings: {args.output} (bench compare --config {args.output})", file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe([n.to_dict() for n in noises]), indent=1))
    else:
        print("\n".join(calibration_lines(noises, where)))
    return 0
