"""Coverage of the S(B) fit's intervals against a simulated ground truth.

Steps to target follow S(B) = S_min·(1 + B_crit/B) exactly, times log-normal seed noise (10% by default);
each trial draws every seed of every batch size, fits with `bench.analysis.scaling.fit_scaling` and asks
whether each nominal 95% interval holds the true value. An interval the fit refuses to print (null, with a
reason: unbounded, too many failed resamples) counts as a miss, so the coverage is never flattered.

    python scripts/tta_coverage.py                         # profile likelihood, 9 batch sizes, 1/3/5 seeds
    python scripts/tta_coverage.py --methods profile,bootstrap --trials 400
    python scripts/tta_coverage.py --scenario wide          # 5 batch sizes over a very wide range

The table's "±" column is the 95% Wilson interval of the coverage estimate itself (binomial, over trials).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analysis.scaling import INTERVAL_BOOTSTRAP, INTERVAL_PROFILE, fit_scaling  # noqa: E402
from bench.records.tta import BatchSteps, LRCell, steps_model  # noqa: E402

SCENARIOS = {
    # name: (batch sizes, S_min, B_crit)
    "nine": ([16, 32, 64, 128, 256, 512, 1024, 2048, 4096], 100.0, 256.0),
    "wide": ([8, 128, 2048, 32768, 524288], 100.0, 859.0),
}
METHODS = {"profile": INTERVAL_PROFILE, "bootstrap": INTERVAL_BOOTSTRAP}
PARAMS = ("b_crit", "s_min", "e_min")


def simulated_batches(sizes, s_min: float, b_crit: float, seeds: int, noise: float,
                      rng: np.random.Generator) -> list[BatchSteps]:
    """One simulated study: per batch size, `seeds` runs at one learning rate with log-normal noise."""
    out = []
    for b in sizes:
        true = float(steps_model(b, s_min, b_crit))
        per_seed = [true * math.exp(noise * z) for z in rng.standard_normal(seeds)]
        mean = float(np.mean(per_seed))
        cell = LRCell(0.1, 1.0, list(range(seeds)), per_seed, mean)
        out.append(BatchSteps(b, 0.1, mean, steps_per_seed=per_seed, seeds=list(range(seeds)),
                              steps_low=min(per_seed), steps_high=max(per_seed), lr_cells=[cell]))
    return out


@dataclass
class Tally:
    trials: int = 0
    covered: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PARAMS})
    null: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PARAMS})
    widths: list[float] = field(default_factory=list)  # B_crit: high / low

    def add(self, fit, truth: dict[str, float]) -> None:
        self.trials += 1
        for p in PARAMS:
            ci = getattr(fit, f"{p}_ci")
            if ci is None:
                self.null[p] += 1
            elif ci[0] <= truth[p] <= ci[1]:
                self.covered[p] += 1
        if fit.b_crit_ci is not None and fit.b_crit_ci[0] > 0:
            self.widths.append(fit.b_crit_ci[1] / fit.b_crit_ci[0])


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def run(method: str, scenario: str, seeds: int, trials: int, noise: float, rng_seed: int,
        resamples: int) -> Tally:
    sizes, s_min, b_crit = SCENARIOS[scenario]
    truth = {"b_crit": b_crit, "s_min": s_min, "e_min": s_min * b_crit}
    rng = np.random.default_rng([rng_seed, seeds])
    tally = Tally()
    for i in range(trials):
        batches = simulated_batches(sizes, s_min, b_crit, seeds, noise, rng)
        fit = fit_scaling(batches, interval=METHODS[method], n_bootstrap=resamples, seed=i)
        tally.add(fit, truth)
    return tally


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="profile", help="comma-separated: profile, bootstrap (default: %(default)s)")
    ap.add_argument("--seeds", default="1,3,5", help="seeds per batch size, comma-separated (default: %(default)s)")
    ap.add_argument("--trials", type=int, default=2000, help="simulated studies per row (default: %(default)s)")
    ap.add_argument("--noise", type=float, default=0.10, help="log-normal seed noise, sigma (default: %(default)s)")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="nine")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    ap.add_argument("--rng-seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes, s_min, b_crit = SCENARIOS[args.scenario]
    print(f"S = {s_min:g}·(1 + {b_crit:g}/B), batch sizes {', '.join(map(str, sizes))}, "
          f"{args.noise:.0%} log-normal seed noise, {args.trials} trials per row, nominal 95% intervals")
    print()
    print("| method | seeds | B_crit coverage | ± (95%) | S_min coverage | E_min coverage | B_crit null | "
          "median B_crit high/low | s per fit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        for seeds in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            t = run(method, args.scenario, seeds, args.trials, args.noise, args.rng_seed, args.resamples)
            per_fit = (time.perf_counter() - t0) / t.trials
            lo, hi = wilson(t.covered["b_crit"], t.trials)
            width = f"{np.median(t.widths):.2f}" if t.widths else "—"
            print(f"| {METHODS[method]} | {seeds} | {t.covered['b_crit'] / t.trials:.1%} | {lo:.1%}–{hi:.1%} | "
                  f"{t.covered['s_min'] / t.trials:.1%} | {t.covered['e_min'] / t.trials:.1%} | "
                  f"{t.null['b_crit'] / t.trials:.1%} | {width} | {per_fit:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
