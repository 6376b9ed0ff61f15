"""Coverage of the S(B) fit's intervals against a simulated ground truth.

Steps to target follow S(B) = S_min·(1 + B_crit/B) exactly, times log-normal seed noise (10% by default);
each trial draws every seed of every batch size, fits with `bench.analysis.scaling.fit_scaling` and asks
whether each nominal 95% interval holds the true value. An interval the fit refuses to print (null, with a
reason: unbounded, too many failed resamples) counts as a miss, so the coverage is never flattered.

    python scripts/tta_coverage.py                         # profile likelihood, 9 batch sizes, 1/3/5 seeds
    python scripts/tta_coverage.py --methods profile,bootstrap --trials 400
    python scripts/tta_coverage.py --scenario wide          # 5 batch sizes over a very wide range
    python scripts/tta_coverage.py --scenario noise4x       # seed noise growing 4x from the smallest batch to the largest
    python scripts/tta_coverage.py --scenario power0.8      # misspecified: S = S_min(1 + (B_crit/B)^0.8)
    python scripts/tta_coverage.py --scenario sharp         # misspecified: a sharper knee, S = S_min(1 + (B_crit/B)^2)^(1/2)

    python scripts/tta_coverage.py --definitions           # check (1+tol)·B0 + tol·B_crit against the tool and a root finder

For the misspecified curves the fit should say it does not fit rather than print an interval: the table
adds how often the lack-of-fit check rejected the curve and how often an interval was printed that
missed the truth (the harm to avoid).

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

NINE = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
SCENARIOS = {
    # name: (batch sizes, S_min, B_crit, curve, noise growth from the smallest batch size to the largest)
    "nine": (NINE, 100.0, 256.0, "hyperbola", 1.0),
    "wide": ([8, 128, 2048, 32768, 524288], 100.0, 859.0, "hyperbola", 1.0),
    "noise4x": (NINE, 100.0, 256.0, "hyperbola", 4.0),
    "power0.8": (NINE, 100.0, 256.0, "power0.8", 1.0),
    "sharp": (NINE, 100.0, 256.0, "sharp", 1.0),
}


def true_steps(b: float, s_min: float, b_crit: float, curve: str) -> float:
    if curve == "power0.8":
        return s_min * (1.0 + (b_crit / b) ** 0.8)
    if curve == "sharp":
        return s_min * math.sqrt(1.0 + (b_crit / b) ** 2)
    return float(steps_model(b, s_min, b_crit))
METHODS = {"profile": INTERVAL_PROFILE, "bootstrap": INTERVAL_BOOTSTRAP}
PARAMS = ("b_crit", "s_min", "e_min")


def simulated_batches(sizes, s_min: float, b_crit: float, seeds: int, noise: float,
                      rng: np.random.Generator, curve: str = "hyperbola", growth: float = 1.0) -> list[BatchSteps]:
    """One simulated study: per batch size, `seeds` runs at one learning rate with log-normal noise whose
    sigma grows log-linearly by `growth` from the smallest batch size to the largest (noise at the
    geometric middle)."""
    out = []
    lo, hi = math.log(min(sizes)), math.log(max(sizes))
    for b in sizes:
        true = true_steps(b, s_min, b_crit, curve)
        frac = (math.log(b) - lo) / (hi - lo) if hi > lo else 0.5
        sigma = noise * growth ** (frac - 0.5)
        per_seed = [true * math.exp(sigma * z) for z in rng.standard_normal(seeds)]
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
    rejected: int = 0  # the lack-of-fit check said the curve does not fit
    printed_missed: int = 0  # a B_crit interval was printed and missed the truth

    def add(self, fit, truth: dict[str, float]) -> None:
        self.trials += 1
        self.rejected += fit.fits is False
        for p in PARAMS:
            ci = getattr(fit, f"{p}_ci")
            if ci is None:
                self.null[p] += 1
            elif ci[0] <= truth[p] <= ci[1]:
                self.covered[p] += 1
            elif p == "b_crit":
                self.printed_missed += 1
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
    sizes, s_min, b_crit, curve, growth = SCENARIOS[scenario]
    truth = {"b_crit": b_crit, "s_min": s_min, "e_min": s_min * b_crit}
    rng = np.random.default_rng([rng_seed, seeds])
    tally = Tally()
    for i in range(trials):
        batches = simulated_batches(sizes, s_min, b_crit, seeds, noise, rng, curve, growth)
        fit = fit_scaling(batches, interval=METHODS[method], n_bootstrap=resamples, seed=i)
        tally.add(fit, truth)
    return tally


def check_definitions() -> bool:
    """The tolerance definition of the critical batch against the hyperbola's closed form: for S = a + b/B
    the batch where S(B)·B = (1 + tol)·S(B0)·B0 is (1 + tol)·B0 + tol·b/a. Compares a root finder on the
    definition itself, the closed form, and what bench reports (from the fit and measured on a dense grid)."""
    from scipy import optimize

    from bench.analysis.scaling import fit_table
    from bench.records.steps_table import StepsRow, StepsTable

    print("| S_min | B_crit = b/a | B0 | tolerance | root of S(B)·B = (1+tol)·S(B0)·B0 | (1+tol)·B0 + tol·b/a | "
          "bench, from the fit | bench, measured (grid ×1.05) | agree |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for s_min, b_crit, b0, tol in ((100.0, 256.0, 16, 0.2), (50.0, 1000.0, 64, 0.2), (100.0, 256.0, 32, 0.5),
                                   (10.0, 30.0, 8, 0.1)):
        def excess(b):
            return float(steps_model(b, s_min, b_crit)) * b - (1 + tol) * float(steps_model(b0, s_min, b_crit)) * b0

        root = optimize.brentq(excess, b0 * (1 + 1e-9), b0 * 1e6)
        closed = (1 + tol) * b0 + tol * b_crit
        sizes = sorted({int(round(b0 * 1.05 ** k)) for k in range(200)})
        table = StepsTable([StepsRow(b, float(steps_model(b, s_min, b_crit)), True, 0, i) for i, b in enumerate(sizes)])
        got = fit_table(table, reference_batch=b0, tolerance=tol).critical_batch["tolerance"]
        agree = (abs(root / closed - 1) < 1e-9 and abs(got["from_fit"] / closed - 1) < 1e-6
                 and abs(got["measured"] / closed - 1) < 0.01)
        ok &= agree
        print(f"| {s_min:g} | {b_crit:g} | {b0} | {tol:g} | {root:.6g} | {closed:.6g} | {got['from_fit']:.6g} | "
              f"{got['measured']:.4g} | {'yes' if agree else 'NO'} |")
    print("PASS: the closed form holds" if ok else "FAIL")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="profile", help="comma-separated: profile, bootstrap (default: %(default)s)")
    ap.add_argument("--seeds", default="1,3,5", help="seeds per batch size, comma-separated (default: %(default)s)")
    ap.add_argument("--trials", type=int, default=2000, help="simulated studies per row (default: %(default)s)")
    ap.add_argument("--noise", type=float, default=0.10, help="log-normal seed noise, sigma (default: %(default)s)")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="nine")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    ap.add_argument("--rng-seed", type=int, default=0)
    ap.add_argument("--definitions", action="store_true",
                    help="only check the tolerance definition of the critical batch against its closed form")
    args = ap.parse_args(argv)
    if args.definitions:
        return 0 if check_definitions() else 1
    sizes, s_min, b_crit, curve, growth = SCENARIOS[args.scenario]
    shape = {"hyperbola": f"S = {s_min:g}·(1 + {b_crit:g}/B)", "power0.8": f"S = {s_min:g}·(1 + ({b_crit:g}/B)^0.8)",
             "sharp": f"S = {s_min:g}·(1 + ({b_crit:g}/B)^2)^(1/2)"}[curve]
    noise_words = (f"{args.noise:.0%} log-normal seed noise" if growth == 1 else
                   f"log-normal seed noise growing {growth:g}x from {args.noise / math.sqrt(growth):.0%} at batch "
                   f"{min(sizes)} to {args.noise * math.sqrt(growth):.0%} at {max(sizes)}")
    print(f"{shape}, batch sizes {', '.join(map(str, sizes))}, {noise_words}, {args.trials} trials per row, "
          "nominal 95% intervals")
    print()
    print("| method | seeds | B_crit coverage | ± (95%) | S_min coverage | E_min coverage | B_crit null | "
          "median B_crit high/low | lack of fit found | printed and missed | s per fit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        for seeds in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            t = run(method, args.scenario, seeds, args.trials, args.noise, args.rng_seed, args.resamples)
            per_fit = (time.perf_counter() - t0) / t.trials
            lo, hi = wilson(t.covered["b_crit"], t.trials)
            width = f"{np.median(t.widths):.2f}" if t.widths else "—"
            print(f"| {METHODS[method]} | {seeds} | {t.covered['b_crit'] / t.trials:.1%} | {lo:.1%}–{hi:.1%} | "
                  f"{t.covered['s_min'] / t.trials:.1%} | {t.covered['e_min'] / t.trials:.1%} | "
                  f"{t.null['b_crit'] / t.trials:.1%} | {width} | {t.rejected / t.trials:.1%} | "
                  f"{t.printed_missed / t.trials:.1%} | {per_fit:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
