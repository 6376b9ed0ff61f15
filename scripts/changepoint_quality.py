"""Detection quality of the nightly regression rules on simulated histories (a benchmark, not a test).

Each simulated benchmark history has N nights. A night's level is log-normal around the benchmark's
true step time with the stated night-to-night noise; within a night, 50 step times scatter 1% around
that level (so each night's median is known to about +-0.3%, inside the noise target). Occasional
one-night outliers (2% of nights, 10-30% slower, not flagged) and throttled nights (5% of nights,
10-50% slower, flagged as throttled by telemetry) are mixed in. Scenarios:

  noise    no change at all, 1%, 2% and 3% night-to-night noise: every reported regression is a false alarm
  step     a 5% slowdown at a random night, 1% noise: found (a regression reported within +-3 nights of
           the step) and placed (within +-1 night); other nights reported are false alarms

Rules compared, each on the same histories:
  change points   bench history changes (bench.analysis.changepoints: throttled and failed nights left out,
                  noisy ones weighed by their own noise)
  IQR overlap     the report's former rule (bench.analysis.regression.is_regression, night vs night before)
  compare last    bench compare --against last (raw samples, 5% threshold, night vs night before)
  compare window  bench compare --against window:7 (the night vs the 7 nights before)

    python scripts/changepoint_quality.py                 # the README's table (about 15 minutes on 2 busy cores)
    python scripts/changepoint_quality.py --trials 20     # quicker, rougher
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone

import numpy as np

from bench.analysis.changepoints import detect_steps
from bench.analysis.compare import REGRESSION, compare_results, compare_window
from bench.analysis.regression import RunStats, is_regression
from bench.analysis.trends import LEFT_OUT, night_flags, night_rel_se
from bench.history.sources import STEP_TIME, ResultRecord, from_samples

WITHIN_NIGHT_SPREAD = 0.01
SAMPLES_PER_NIGHT = 50
OUTLIER_P, OUTLIER_RANGE = 0.02, (1.1, 1.3)
THROTTLE_P, THROTTLE_RANGE = 0.05, (1.1, 1.5)
THRESHOLD, NOISE_TARGET = 0.05, 0.025
WINDOW = 7
FOUND_WITHIN = 3  # nights: a regression reported this close to the step counts as finding it
RULES = ("change points", "IQR overlap", "compare last", "compare window")


def simulate(rng: np.random.Generator, nights: int, sigma: float, step_at: int | None, step: float):
    """(results per night, throttled mask)."""
    level = 0.010 * np.exp(rng.normal(0.0, sigma, nights))
    if step_at is not None:
        level[step_at:] *= 1.0 + step
    outlier = rng.random(nights) < OUTLIER_P
    level[outlier] *= rng.uniform(*OUTLIER_RANGE, outlier.sum())
    throttled = rng.random(nights) < THROTTLE_P
    level[throttled] *= rng.uniform(*THROTTLE_RANGE, throttled.sum())
    out = []
    for i in range(nights):
        x = level[i] * np.exp(rng.normal(0.0, WITHIN_NIGHT_SPREAD, SAMPLES_PER_NIGHT))
        r = from_samples(ResultRecord("sim", STEP_TIME, throttled=bool(throttled[i]),
                                       throttled_fraction=1.0 if throttled[i] else 0.0), x.tolist())
        out.append(r)
    return out, throttled


def flagged_nights(rule: str, nights: list[ResultRecord]) -> list[int]:
    """Indices of the nights a rule reports as the first night of a regression."""
    if rule == "change points":
        # as bench history changes judges them: throttled and failed nights left out, noisy ones weighed
        keep = [i for i, r in enumerate(nights) if not night_flags(r, NOISE_TARGET) & LEFT_OUT]
        steps = detect_steps([nights[i].median for i in keep], rel_se=[night_rel_se(nights[i]) for i in keep])
        return [keep[s.index] for s in steps if s.change > 0]
    out = []
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(1, len(nights)):
        prev, cur = nights[i - 1], nights[i]
        if rule == "IQR overlap":
            hit = is_regression(RunStats(t, "a", prev.median, prev.q1, prev.q3), RunStats(t, "b", cur.median, cur.q1, cur.q3))
        elif rule == "compare last":
            hit = compare_results(prev, cur, THRESHOLD, NOISE_TARGET).verdict == REGRESSION
        else:
            if i < WINDOW:
                continue
            hit = compare_window(nights[i - WINDOW:i], cur, THRESHOLD, NOISE_TARGET).verdict == REGRESSION
        if hit:
            out.append(i)
    return out


def trial(args) -> dict:
    seed, nights, sigma, step = args
    rng = np.random.default_rng(seed)
    step_at = int(rng.integers(15, nights - 10)) if step else None
    results, throttled = simulate(rng, nights, sigma, step_at, step)
    row = {}
    for rule in RULES:
        t0 = time.perf_counter()
        hits = flagged_nights(rule, results)
        row[rule] = {
            "seconds": time.perf_counter() - t0,
            "false": sum(1 for h in hits if step_at is None or abs(h - step_at) > FOUND_WITHIN),
            "found": step_at is not None and any(abs(h - step_at) <= FOUND_WITHIN for h in hits),
            "placed": step_at is not None and any(abs(h - step_at) <= 1 for h in hits),
            "throttled_flagged": sum(1 for h in hits if throttled[h]),
            "throttled": int(throttled.sum()),
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200, help="histories per scenario (default: %(default)s)")
    ap.add_argument("--nights", type=int, default=60, help="nights per history (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    scenarios = [(f"noise {s:.0%}", s, 0.0) for s in (0.01, 0.02, 0.03)] + [("5% step on 1% noise", 0.01, 0.05)]
    print(f"{a.trials} histories of {a.nights} nights per scenario; within-night spread {WITHIN_NIGHT_SPREAD:.0%} "
          f"({SAMPLES_PER_NIGHT} samples); one-night outliers {OUTLIER_P:.0%} of nights; throttled nights "
          f"{THROTTLE_P:.0%}\n")
    table = {}
    with ProcessPoolExecutor(a.workers) as pool:
        for k, (name, sigma, step) in enumerate(scenarios):
            jobs = [(a.seed * 1_000_003 + k * 100_000 + t, a.nights, sigma, step) for t in range(a.trials)]
            table[name] = list(pool.map(trial, jobs, chunksize=4))
    header = ("| rule | " + " | ".join(f"false alarms / benchmark-night, {n}" for n, _, s in scenarios if not s)
              + " | 5% step on 1% noise: found | placed ±1 night | false alarms / night | throttled nights reported "
                "as regressions | time per 60-night history |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for rule in RULES:
        cells = []
        throttled = flagged = 0
        for name, _, step in scenarios:
            rows = [r[rule] for r in table[name]]
            throttled += sum(r["throttled"] for r in rows)
            flagged += sum(r["throttled_flagged"] for r in rows)
            per_night = sum(r["false"] for r in rows) / (len(rows) * a.nights)
            if step:
                cells += [f"{np.mean([r['found'] for r in rows]):.1%}", f"{np.mean([r['placed'] for r in rows]):.1%}",
                          f"{per_night:.2%}"]
            else:
                cells.append(f"{per_night:.2%}")
        secs = np.mean([r[rule]["seconds"] for rows in table.values() for r in rows])
        cells += [f"{flagged} of {throttled}", f"{secs * 1e3:.0f} ms"]
        print(f"| {rule} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
