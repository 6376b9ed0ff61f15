"""A/A calibration of `bench compare`: run an unchanged suite N times back to back and report how often
the gate calls two runs of the same code "slower" (a false alarm), and which injected slowdowns it
catches (a measurement of the gate, not a test).

Two suites:
  plain    a plain pytest-benchmark file of three small tests (sort, sum, JSON round trip) that this
           script writes; BENCH_AA_SIZE (a factor, default 1) scales the work of every test, which is how
           real slowdowns are injected (runs with size 3 and 1.1, each right after an A run)
  suites   `pytest suites/ -k cpu` (the project's suites), kept short with their own budget options;
           slowdowns are injected by scaling the next A run's samples (so the pair still carries the
           real between-run noise)

    python scripts/compare_aa.py --suite plain --runs 31 --out /tmp/aa-plain      # collect, then judge
    python scripts/compare_aa.py --suite suites --runs 31 --out /tmp/aa-suites
    python scripts/compare_aa.py --suite plain --out /tmp/aa-plain --judge-only   # judge what is there

Collecting is resumable: runs already in --out are kept. Judging uses bench.analysis.compare with its
defaults (the A/A default between-run noise for the machine class), one pair of consecutive runs at a
time, and prints the outcome counts, the exit statuses, and per benchmark the spread between runs
(quantiles of |log ratio| of consecutive runs: what `bench history calibrate` derives from a store).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAIN_SUITE = '''\
"""A/A calibration suite of bench compare: three small benchmarks; BENCH_AA_SIZE scales their work."""
import json
import os
import random

SIZE = float(os.environ.get("BENCH_AA_SIZE", "1"))
_rng = random.Random(1234)
NUMBERS = [_rng.random() for _ in range(int(20000 * SIZE))]
RECORDS = [{"id": i, "name": f"item{i}", "tags": ["a", "b"], "value": i * 0.5} for i in range(int(2000 * SIZE))]


def test_sort(benchmark):
    benchmark(sorted, NUMBERS)


def test_sum(benchmark):
    benchmark(sum, NUMBERS)


def test_json_round_trip(benchmark):
    benchmark(lambda: json.loads(json.dumps(RECORDS)))
'''

# One torch thread: on a 2-core machine that other jobs load, torch's own choice of threads oversubscribes
# it and the warm-up eats the budget (1 to 3 samples per point at --bench-budget 1, measured 2026-12-06).
SUITES_ARGS = ["suites/", "-k", "cpu", "--bench-workloads", "mlp,cnn", "--bench-precisions", "fp32",
               "--bench-batch-sizes", "4,16", "--bench-budget", "0.5", "--bench-cpu-threads", "1"]
PLAIN_ARGS = ["--benchmark-max-time", "0.5"]
SLOW_SIZES = (3.0, 1.1)   # plain: real slowdowns, by the size of the work
SCALES = (3.0, 1.1)       # suites (and plain too): A runs' samples scaled


def _pytest(args: list[str], cwd: Path, out: Path, env: dict) -> float:
    t0 = time.perf_counter()
    tmp = out.with_suffix(".part")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args,
                           "--benchmark-json", str(tmp)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})
    if proc.returncode != 0 or not tmp.exists():
        raise SystemExit(f"compare_aa: pytest failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    tmp.replace(out)
    return time.perf_counter() - t0


def collect(suite: str, runs: int, out: Path, slow_runs: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if suite == "plain":
        (out / "test_aa_plain.py").write_text(PLAIN_SUITE)
    for i in range(runs):
        jobs = [(out / f"a{i:03d}.json", 1.0)]
        if suite == "plain" and i < slow_runs:
            jobs += [(out / f"slow{s:g}-{i:03d}.json", s) for s in SLOW_SIZES]
        for path, size in jobs:
            if path.exists():
                continue
            if suite == "plain":
                wall = _pytest(["test_aa_plain.py", *PLAIN_ARGS], out, path, {"BENCH_AA_SIZE": str(size)})
            else:
                wall = _pytest(SUITES_ARGS, REPO, path, {})
            print(f"{path.name}: {wall:.1f} s, load average {os.getloadavg()[0]:.1f}", flush=True)


def scaled(data: dict, factor: float) -> dict:
    """The same run with every time `factor` times as long (raw rounds, summaries, the library's samples)."""
    out = copy.deepcopy(data)
    for b in out["benchmarks"]:
        st = b["stats"]
        st["data"] = [v * factor for v in st.get("data") or []]
        for k in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev", "ld15iqr", "hd15iqr"):
            if isinstance(st.get(k), (int, float)):
                st[k] *= factor
        m = (b.get("extra_info") or {}).get("measurement")
        if isinstance(m, dict):
            m["samples_s"] = [v * factor for v in m.get("samples_s") or []]
            m["block_medians_s"] = [v * factor for v in m.get("block_medians_s") or []]
            m.pop("stats", None)
    return out


def judge(out: Path, sigma: float | None = None, calibrated: bool = False, reruns: int = 0) -> dict:
    """Outcome counts over consecutive pairs. `sigma`: the noise between runs for every benchmark instead
    of the A/A default; `calibrated`: each benchmark's own noise from the other half of the A runs
    (bench.analysis.calibrate.spread, what `bench history calibrate` does on a store), so no pair is judged
    with a noise estimate it helped make; `reruns`: what `bench compare --rerun` does, from the runs
    collected: a pair that is not same-or-faster is pooled with the `reruns` A runs after it on each side,
    interleaved (runs i+2, i+4, ... with i, and i+3, i+5, ... with i+1, made slower alike)."""
    import numpy as np

    from bench.analysis.calibrate import spread
    from bench.analysis.compare import (
        SAME,
        SLOWER,
        CompareSettings,
        compare,
        exit_status,
        load_side,
        side_from_record,
    )
    from bench.history.sources import run_record
    from bench.records.loader import ResultsFile

    a_runs = sorted(out.glob("a[0-9][0-9][0-9].json"))
    if len(a_runs) < 2:
        raise SystemExit(f"compare_aa: fewer than 2 A runs in {out}")
    sides = [load_side(str(p)) for p in a_runs]
    half = len(sides) // 2
    settings = {False: CompareSettings(between_runs=sigma), True: CompareSettings(between_runs=sigma)}
    if calibrated:
        for second_half in (False, True):
            other = sides[:half] if second_half else sides[half:]
            own = []
            for key in set.intersection(*(set(s.results) for s in other)):
                sd, _ = spread([s.results[key].median for s in other])
                if sd is not None and key[1] in ("time", "step_time"):
                    own.append((key[0], sd))
            settings[second_half] = CompareSettings(between_runs=sigma, between_runs_overrides=tuple(own))

    def outcome(base, cand, i=0, slow=None):
        c = compare(base, cand, settings[i >= half])
        if reruns and c.outcome != SAME:
            more = [(sides[(i + 2 + 2 * k) % len(sides)], sides[(i + 3 + 2 * k) % len(sides)]) for k in range(reruns)]
            c = compare(base, cand, settings[i >= half], more_baselines=[b for b, _ in more],
                        more_candidates=[slow(j) if slow else c_ for j, (_, c_) in
                                         zip(range(i + 3, i + 3 + 2 * reruns, 2), more)])
        return c.outcome, exit_status(c), c

    def scaled_side(j: int, f: float):
        j %= len(a_runs)
        data = scaled(json.loads(a_runs[j].read_text()), f)
        rf = ResultsFile(path=str(a_runs[j]) + f".x{f:g}", kind="pytest-benchmark", data=data, record=None)
        return side_from_record(run_record(rf))

    report: dict = {"folder": str(out), "a_runs": len(a_runs), "pairs": {}, "sigma": sigma, "calibrated": calibrated,
                    "reruns": reruns}
    pairs = [i for i in range(len(sides) - 1) if not calibrated or i + 1 != half]  # within one half
    aa = [outcome(sides[i], sides[i + 1], i) for i in pairs]
    report["pairs"]["A/A"] = _counts(aa)
    for f in SCALES:
        rows = []
        for i in pairs:
            rows.append(outcome(sides[i], scaled_side(i + 1, f), i, slow=lambda j, f=f: scaled_side(j, f)))
        report["pairs"][f"next A run's samples x{f:g}"] = _counts(rows)
    for s in SLOW_SIZES:
        slow = sorted(out.glob(f"slow{s:g}-[0-9][0-9][0-9].json"))
        slow_sides = {int(p.stem[-3:]): load_side(str(p)) for p in slow}
        rows = [outcome(sides[i], side, i, slow=lambda j: slow_sides[j % len(slow_sides)])
                for i, side in slow_sides.items()]
        if rows:
            report["pairs"][f"work x{s:g} (a real run)"] = _counts(rows)
    # the spread between consecutive A runs, per benchmark (what `bench history calibrate` derives)
    spread = {}
    for key in sorted(set.intersection(*(set(s.results) for s in sides))):
        meds = [s.results[key].median for s in sides]
        if all(m and m > 0 for m in meds):
            d = np.abs(np.diff(np.log(meds)))
            spread[f"{key[0]} ({key[1]})"] = {"median_abs_log_ratio": float(np.median(d)),
                                               "q90": float(np.quantile(d, 0.9)), "max": float(d.max())}
    report["between_runs"] = spread
    report["same"], report["slower"] = SAME, SLOWER
    return report


def _counts(rows) -> dict:
    outcomes: dict[str, int] = {}
    codes: dict[str, int] = {}
    for o, code, _ in rows:
        outcomes[o] = outcomes.get(o, 0) + 1
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"n": len(rows), "outcomes": outcomes, "exit": codes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=["plain", "suites"], required=True)
    p.add_argument("--runs", type=int, default=31, help="A runs to collect (pairs: one fewer)")
    p.add_argument("--slow-runs", type=int, default=10, help="plain: real slowed runs per size")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs (kept; collection resumes)")
    p.add_argument("--judge-only", action="store_true")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--json", type=Path, help="write the judgement here too")
    p.add_argument("--sigma", type=float, help="noise between runs for every benchmark (default: the A/A default)")
    p.add_argument("--reruns", type=int, default=0, help="pool a pair that is not same-or-faster with N re-runs "
                   "of each side, interleaved, taken from the runs collected (as bench compare --rerun does)")
    p.add_argument("--calibrated", action="store_true",
                   help="each benchmark's own noise, from the other half of the A runs (as from a store)")
    args = p.parse_args(argv)
    if not args.judge_only:
        collect(args.suite, args.runs, args.out, args.slow_runs)
    if args.collect_only:
        return 0
    report = judge(args.out, args.sigma, args.calibrated, args.reruns)
    print(f"{args.out}: {report['a_runs']} A runs; noise between runs: "
          + ("each benchmark's own, from the other half of the runs" if args.calibrated
             else f"{args.sigma} for every benchmark" if args.sigma else "the A/A default")
          + (f"; pairs not same-or-faster pooled with {args.reruns} interleaved re-run(s) of each side"
             if args.reruns else ""))
    for name, c in report["pairs"].items():
        print(f"{name:32s} pairs {c['n']:3d}  outcomes {c['outcomes']}  exit {c['exit']}")
    print("between consecutive A runs, |log ratio| of the medians (median / 90th percentile / max):")
    for name, s in report["between_runs"].items():
        print(f"  {s['median_abs_log_ratio']:.3f} / {s['q90']:.3f} / {s['max']:.3f}  {name}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
