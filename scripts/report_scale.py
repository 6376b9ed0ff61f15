"""How long `bench report` takes on a large nightly history given as files: 50 benchmarks x 1,000
pytest-benchmark runs in a folder.

Writes synthetic `--benchmark-json` files (a slow drift, noise, and a few step regressions) into a
folder, then times reading them, building the page (the files' trends come from a temporary history
store they are read into) and writing it, and prints the sizes. Every file is embedded in the page, so
it stays large: the history store's report (`bench report --db`) embeds summaries instead, measured by
scripts/history_scale.py.

    python scripts/report_scale.py                      # 50 x 1000, in a temporary folder
    python scripts/report_scale.py --benchmarks 10 --runs 200 --keep /tmp/history
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.present.report import build_report, load_inputs, write_report  # noqa: E402
from bench.present.report.figures.common import MAX_TREND_POINTS  # noqa: E402


def synthetic_run(i: int, when: datetime, n_benchmarks: int, rounds: int, rng: np.random.Generator,
                  steps: dict[int, tuple[int, float]]) -> dict:
    benches = []
    for j in range(n_benchmarks):
        base = 1e-3 * (1 + j % 7) * (1 + 0.02 * math.sin(i / 50 + j))
        at, factor = steps.get(j, (None, 1.0))
        if at is not None and i >= at:
            base *= factor
        data = base * (1 + 0.01 * rng.standard_normal(rounds))
        q1, med, q3 = (float(v) for v in np.percentile(data, [25, 50, 75]))
        stats = {"min": float(data.min()), "max": float(data.max()), "mean": float(data.mean()),
                 "stddev": float(data.std(ddof=1)), "rounds": rounds, "median": med, "iqr": q3 - q1, "q1": q1,
                 "q3": q3, "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": float(data.min()),
                 "hd15iqr": float(data.max()), "ops": 1 / float(data.mean()), "total": float(data.sum()),
                 "iterations": 1, "data": data.tolist()}
        benches.append({"group": "step_time", "name": f"test_step_time[case{j:02d}-bs{2 ** (j % 8)}]",
                        "fullname": f"suites/test_step_time.py::test_step_time[case{j:02d}-bs{2 ** (j % 8)}]",
                        "params": {"case": f"case{j:02d}"}, "param": f"case{j:02d}", "extra_info": {},
                        "options": {"timer": "perf_counter", "min_rounds": rounds}, "stats": stats})
    return {"machine_info": {"node": f"runner-{i % 5}", "processor": "x86_64", "machine": "x86_64",
                             "python_version": "3.11.7", "system": "Linux", "release": "6.1",
                             "cpu": {"brand_raw": "AMD EPYC 9654"}},
            "commit_info": {"id": f"{i:040x}", "dirty": False, "project": "bench", "branch": "main"},
            "benchmarks": benches, "datetime": when.isoformat(), "version": "5.3.1"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks", type=int, default=50)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20, help="per-round times kept in each entry (stats.data)")
    ap.add_argument("--keep", type=Path, help="write the inputs and the report here instead of a temporary folder")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    steps = {j: (int(rng.integers(args.runs // 4, args.runs)), 1.15) for j in range(0, args.benchmarks, 9)}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        inputs = root / "history"
        inputs.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        start = datetime(2025, 1, 1, 2, 0, tzinfo=timezone.utc)
        for i in range(args.runs):
            run = synthetic_run(i, start + timedelta(days=i), args.benchmarks, args.rounds, rng, steps)
            (inputs / f"{i + 1:04d}_nightly.json").write_text(json.dumps(run))
        t_gen = time.perf_counter() - t0
        size_in = sum(p.stat().st_size for p in inputs.glob("*.json"))

        t0 = time.perf_counter()
        loaded = load_inputs([inputs])
        t_load = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        html = build_report(loaded)
        t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        out = write_report(html, root / "report.html", overwrite=True)
        t_write = time.perf_counter() - t0

        print(f"inputs: {args.runs} pytest-benchmark files x {args.benchmarks} benchmarks "
              f"({args.rounds} rounds each), {size_in / 2 ** 20:.1f} MiB, generated in {t_gen:.1f} s")
        print(f"read:   {t_load:.1f} s")
        print(f"build:  {t_build:.1f} s, {c_build:.1f} s CPU (temporary store, trends, figures, tables, embedded data)")
        print(f"write:  {t_write:.2f} s")
        print(f"total:  {t_load + t_build + t_write:.1f} s -> {out} ({out.stat().st_size / 2 ** 20:.1f} MiB)")
        print(f"figures: {html.count('<svg')}; trend lines drawn with at most {MAX_TREND_POINTS} points each")
        if "stats.data" in html and "left out of the embedded data" in html:
            print("embedded: per-round times left out (over the embedding limit); every summary statistic kept")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
