"""Scale of the history store: ingest 1,000 nights x 60 benchmarks, find the change points, build the
trend summaries a report embeds and the report itself, and time each step (a benchmark, not a test).

The nights are simulated suite files in the plugin's format (bench.history.simulate): 60 step-time
benchmarks with 60 device-timed samples each (plus pytest-benchmark's host rounds), 1% night-to-night
noise, 3% of nights throttled, and a 5% slowdown injected into 5 benchmarks at known nights. Each step
runs as the `bench` command a user would type; its wall time and its CPU time (user + system, which a
machine shared with other jobs does not inflate as much) are printed.

    python scripts/history_scale.py                        # SQLite file in a temporary folder
    python scripts/history_scale.py --db postgresql+psycopg://postgres@127.0.0.1:55432/postgres
    python scripts/history_scale.py --nights 100 --benchmarks 10   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.history.simulate import night, suite_file

SAMPLES = 60
STEPPED = 5          # benchmarks with an injected 5% slowdown
STEP = 0.05
THROTTLED_P = 0.03


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench(*args: str) -> tuple[str, str]:
    """Run `bench ARGS`: ('<wall> s (<cpu> s CPU)', its standard output)."""
    t0, c0 = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return f"{time.perf_counter() - t0:.1f} s ({_children_cpu() - c0:.1f} s CPU)", done.stdout


def _sum(*timings: str) -> str:
    """Add '<wall> s (<cpu> s CPU)' strings."""
    wall = sum(float(t.split(" s (")[0]) for t in timings)
    cpu = sum(float(t.split(" s (")[1].split(" s CPU")[0]) for t in timings)
    return f"{wall:.1f} s ({cpu:.1f} s CPU)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=1000)
    ap.add_argument("--benchmarks", type=int, default=60)
    ap.add_argument("--db", help="store URL or file (default: a SQLite file in the temporary folder)")
    ap.add_argument("--keep", help="keep the generated files and store in this folder")
    ap.add_argument("--no-report", action="store_true", help="skip `bench report` (the store's steps only)")
    a = ap.parse_args()
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench-history-scale-"))
    files_dir = work / "nights"
    files_dir.mkdir(parents=True, exist_ok=True)
    db = a.db or str(work / "history.sqlite")
    rng = np.random.default_rng(0)
    names = [f"w{i:02d}-fp32-bs32-cuda" for i in range(a.benchmarks)]
    base = dict(zip(names, np.exp(rng.uniform(np.log(1e-4), np.log(0.2), a.benchmarks))))
    steps = {names[i]: int(rng.integers(a.nights // 5, a.nights - 10)) for i in range(min(STEPPED, a.benchmarks))}

    t0 = time.perf_counter()
    for i in range(a.nights):
        thr = [n for n in names if rng.random() < THROTTLED_P]
        samples = {}
        for n in names:
            level = base[n] * float(np.exp(rng.normal(0, 0.01))) * (1 + STEP if i >= steps.get(n, a.nights) else 1)
            level *= 1.3 if n in thr else 1.0
            samples[n] = (level * np.exp(rng.normal(0, 0.01, SAMPLES))).tolist()
        data = suite_file(samples, when=night(i), commit=f"{i:040x}", throttled=thr)
        (files_dir / f"night-{i:04d}.json").write_text(json.dumps(data))
    gen_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in files_dir.iterdir())

    ingest_s, _ = bench("history", "ingest", "--quiet", "--db", db, str(files_dir))
    changes_s, out = bench("history", "changes", "--json", "--db", db)
    changes = json.loads(out)
    trends_path = work / "trends.json"
    trends_s, _ = bench("history", "trends", "--db", db, "-o", str(trends_path))
    list_s, _ = bench("history", "list", "--json", "--db", db)
    page = work / "report.html"
    report_s = None if a.no_report else bench("report", "--db", db, "-o", str(page), "--overwrite")[0]
    store_bytes = sum(p.stat().st_size for p in work.glob("history.sqlite*")) if not a.db else None

    found = {c["benchmark"].split("[")[1].rstrip("]"): c for c in changes if c.get("scope", "benchmark") == "benchmark"}
    hits = [n for n, at in steps.items() if n in found and abs(
        int(found[n]["commit_after"], 16) - at) <= 1]
    compact = len(json.dumps(json.loads(trends_path.read_text()), separators=(",", ":")).encode())
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{a.nights} nights x {a.benchmarks} benchmarks ({a.nights * a.benchmarks:,} benchmark-nights, "
          f"{SAMPLES} samples each), generated in {gen_s:.0f} s: {size / 2**20:.0f} MiB of JSON")
    print()
    print("| step | command | time |")
    print("|---|---|---|")
    print(f"| ingest every night | `bench history ingest --quiet --db DB nights/` | {ingest_s} |")
    print(f"| change points | `bench history changes --json --db DB` | {changes_s} |")
    print(f"| ingest + change points together | | {_sum(ingest_s, changes_s)} |")
    print(f"| trend summaries | `bench history trends --db DB -o trends.json` | {trends_s} |")
    print(f"| list runs | `bench history list --json --db DB` | {list_s} |")
    if report_s:
        print(f"| report | `bench report --db DB -o report.html` | {report_s} |")
    print()
    print(f"store: {'%.0f MiB' % (store_bytes / 2**20) if store_bytes else a.db.split('@')[-1]}; trend summaries: "
          f"{compact / 1e6:.2f} MB ({compact / (a.nights * a.benchmarks):.0f} bytes per benchmark-night)")
    if report_s:
        html = page.read_text(encoding="utf-8")
        print(f"report: {page.stat().st_size / 1e6:.2f} MB ({page.stat().st_size / 2**20:.2f} MiB), "
              f"{html.count('<svg')} figures")
    print(f"change points: {len(changes)} reported; the {len(steps)} injected 5% steps found within +-1 night: "
          f"{len(hits)} of {len(steps)}; others: {len(changes) - len(hits)}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
