"""Steps to target against batch size: per-batch LR selection, the fit S(B) = S_min·(1 + B_crit/B) with
bootstrap intervals, and each batch size's regime. Pure functions over curves; measures nothing.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"): steps S and examples E = B·S to
reach a target trade off as (S/S_min − 1)(E/E_min − 1) = 1, i.e. S(B) = S_min(1 + B_crit/B),
E(B) = E_min(1 + B/B_crit), with B_crit = E_min/S_min.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy import optimize, special, stats

from bench.core.errors import BenchError
from bench.core.stats import CONFIDENCE
from bench.records.curves import Curve
from bench.records.steps_table import StepsTable, TableFit
from bench.records.tta import BatchSteps, LRCell, ScalingFit, steps_model

# Regime boundaries, from the model's local slope d log S / d log B = −B_crit/(B + B_crit):
# perfect scaling while the slope is steeper than −0.8 (B <= B_crit/4), maximal data parallelism once it
# is flatter than −0.2 (B >= 4·B_crit), diminishing returns in between.
REGIME_FACTOR = 4.0
PERFECT, DIMINISHING, MAXIMAL = "perfect scaling", "diminishing returns", "maximal data parallelism"
REGIME_RULE = (f"from the fitted B_crit: perfect scaling if B <= B_crit/{REGIME_FACTOR:g}, maximal data parallelism "
               f"if B >= {REGIME_FACTOR:g}·B_crit, diminishing returns between (local slope of log S vs log B "
               "steeper than -0.8, flatter than -0.2, between)")


def _lr_key(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.6g}"


def _cell_from_steps(lr, factor, seeds, steps, budget: int, first_eval_steps=()) -> LRCell:
    missing = sum(s is None for s in steps)
    if missing:
        reason = (f"not reached within {budget} steps" if missing == len(steps)
                  else f"{missing} of {len(steps)} seeds not reached within {budget} steps")
        return LRCell(lr, factor, list(seeds), list(steps), None, reason, list(first_eval_steps))
    return LRCell(lr, factor, list(seeds), list(steps), float(np.mean(steps)), None, list(first_eval_steps))


def _best_cell(cells: Sequence[LRCell]) -> LRCell | None:
    ok = [c for c in cells if c.steps_to_target is not None]
    return min(ok, key=lambda c: c.steps_to_target) if ok else None


def _diverged(c: Curve) -> bool:
    return (c.stop_reason or "").startswith("diverged")


def censored_bound(cells: Sequence[Sequence[Curve]], target: float) -> tuple[float | None, str | None]:
    """The fewest steps a batch size where no learning rate reached the target could still need: for each
    LR, the mean over its seeds of (steps where reached, else steps run), since a seed that stopped short
    needed more; the smallest over LRs. An LR with a diverged seed never gets there at all, so it bounds
    nothing. (None, reason) when every LR diverged."""
    bounds = []
    for runs in cells:
        if any(_diverged(c) for c in runs if not c.steps_to_target(target).reached):
            continue
        per_seed = [st.steps if st.reached else float(c.steps_run)
                    for c in runs for st in [c.steps_to_target(target)]]
        bounds.append(float(np.mean(per_seed)))
    if not bounds:
        return None, "every learning rate diverged: no lower bound on its steps"
    return min(bounds), None


def steps_by_batch(curves: Sequence[Curve], target: float) -> list[BatchSteps]:
    """Per batch size: each LR's steps to target over seeds, and the LR that needs the fewest.

    A (batch, LR) cell counts only if every seed reached the target (an LR that sometimes fails is
    not a good choice); a batch size where no cell did is kept with steps None, a reason and, where
    some LR ran without diverging, a lower bound on its steps (`censored_at`). A target that some run
    meets before training (step 0) measures no training: BenchError.
    """
    if not curves:
        raise BenchError("no curves to analyse")
    reads = {id(c): c.steps_to_target(target) for c in curves}
    at_start = [c for c in curves if reads[id(c)].steps == 0]
    if at_start:
        n, sizes = len(at_start), sorted({c.batch_size for c in at_start})
        raise BenchError(f"target {target:g} is already met before training (step 0) by {n} of {len(curves)} runs "
                         f"(batch size {', '.join(map(str, sizes))}): it measures no training; choose a harder target")
    by_batch: dict[int, list[Curve]] = defaultdict(list)
    for c in curves:
        by_batch[c.batch_size].append(c)
    out = []
    for b in sorted(by_batch):
        runs = by_batch[b]
        by_lr: dict[str, list[Curve]] = defaultdict(list)
        for c in runs:
            by_lr[_lr_key(c.lr)].append(c)
        budget = max(c.steps_run for c in runs)
        cells, cell_curves = [], {}
        for key, cs in sorted(by_lr.items(), key=lambda kv: (kv[1][0].lr is None, kv[1][0].lr or 0.0)):
            cs = sorted(cs, key=lambda c: (c.seed is None, c.seed or 0))
            sts = [reads[id(c)] for c in cs]
            cell = _cell_from_steps(cs[0].lr, cs[0].lr_factor, [c.seed for c in cs], [st.steps for st in sts],
                                    max(c.steps_run for c in cs), [st.first_eval_step for st in sts])
            cells.append(cell)
            cell_curves[id(cell)] = cs
        best = _best_cell(cells)
        bs = BatchSteps(batch_size=b, best_lr=None, steps_to_target=None, lr_cells=cells, n_runs=len(runs))
        if best is None:
            n_lr = len(cells)
            bs.reason = f"not reached within {budget} steps at any of {n_lr} learning rate{'s' if n_lr > 1 else ''}"
            bs.censored_at, bs.censored_reason = censored_bound([cell_curves[id(c)] for c in cells], target)
            pick = cells  # report metrics over every run so "how close did it get" is still visible
            chosen = [c for cell in pick for c in cell_curves[id(cell)]]
        else:
            bs.best_lr = best.lr
            bs.steps_to_target = best.steps_to_target
            bs.steps_per_seed = list(best.steps_per_seed)
            bs.seeds = list(best.seeds)
            bs.steps_low = float(min(best.steps_per_seed))
            bs.steps_high = float(max(best.steps_per_seed))
            bs.examples_to_target = best.steps_to_target * b
            lrs = [c.lr for c in cells if c.lr is not None]
            if len(lrs) > 1 and best.lr is not None:
                bs.best_lr_at_grid_edge = best.lr in (min(lrs), max(lrs))
            chosen = cell_curves[id(best)]
        finals = [c.final_eval_metric for c in chosen if c.final_eval_metric is not None]
        bests = [c.best_eval_metric for c in chosen if c.best_eval_metric is not None]
        if best is not None:
            bs.final_eval_metric = float(np.mean(finals)) if finals else None
            bs.best_eval_metric = float(np.mean(bests)) if bests else None
        else:
            hib = chosen[0].higher_is_better if chosen else True
            bs.best_eval_metric = (max(bests) if hib else min(bests)) if bests else None
            bs.final_eval_metric = None
        out.append(bs)
    return out


# ---------------------------------------------------------------------------------------------
# The fit


def fit_steps_model(batch_sizes: Sequence[float], steps: Sequence[float],
                    weights: Sequence[float] | None = None) -> tuple[float, float]:
    """Least-squares fit of log S = log S_min + log(1 + B_crit/B); returns (S_min, B_crit).

    Fitting in logs weighs each batch size by its relative error, so the many steps at small
    batches do not drown the few at large ones; `weights` (inverse variances of log S, e.g. from
    `noise_weights`) weigh them further. Starts from the linear fit S = S_min + E_min/B.
    """
    b = np.asarray(batch_sizes, dtype=float)
    s = np.asarray(steps, dtype=float)
    if b.size < 2 or np.unique(b).size < 2:
        raise BenchError("the scaling fit needs steps to target at 2 or more batch sizes")
    if np.any(b <= 0) or np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise BenchError("the scaling fit needs positive, finite batch sizes and steps")
    slope, intercept = np.polyfit(1.0 / b, s, 1)
    if intercept > 0 and slope > 0:
        x0 = [math.log(intercept), math.log(slope / intercept)]
    else:
        x0 = [math.log(float(np.min(s)) / 2), math.log(float(np.median(b)))]
    ls = np.log(s)
    sw = np.ones_like(b) if weights is None else np.sqrt(np.asarray(weights, dtype=float))

    def resid(p):
        return (p[0] + np.log1p(np.exp(p[1]) / b) - ls) * sw

    r = optimize.least_squares(resid, x0, method="lm" if b.size > 2 else "trf", xtol=1e-12, ftol=1e-12)
    return float(math.exp(r.x[0])), float(math.exp(r.x[1]))


def regime(batch_size: float, b_crit: float | None) -> str | None:
    if b_crit is None or not b_crit > 0:
        return None
    if batch_size <= b_crit / REGIME_FACTOR:
        return PERFECT
    if batch_size >= REGIME_FACTOR * b_crit:
        return MAXIMAL
    return DIMINISHING


# ---------------------------------------------------------------------------------------------
# Intervals
#
# Profile likelihood (the default). In logs the model is y = log S = a + log(1 + e^c/B) + noise, with
# a = log S_min, c = log B_crit; with Gaussian noise of variance σ² (log-normal seed noise), least squares
# is maximum likelihood. The interval for a parameter holds every value whose best fit (the other
# parameter re-optimised) raises the residual sum of squares by at most F(1, n−2)·s², s² = RSS/(n−2):
# exact for a linear model, and invariant to how the parameter is written (B_crit or log B_crit), which
# is what makes it work for a skewed, bounded statistic where a percentile bootstrap does not. Measured
# coverage: scripts/tta_coverage.py, docs/tta.md.
#
# Censored batch sizes (no LR reached the target; S > bound) add −2·log P(y > log bound) to the same
# objective (a Tobit likelihood), with σ = s from the batch sizes that reached it.

INTERVAL_PROFILE = "profile likelihood"
INTERVAL_BOOTSTRAP = "percentile bootstrap"
INTERVAL_METHODS = (INTERVAL_PROFILE, INTERVAL_BOOTSTRAP)
# A censored batch whose lower bound the fit to the reached batch sizes undercuts this many times over:
# the fit or those runs are wrong, so the bound is reported and left out of the fit.
CENSOR_CONFLICT = 2.0
# How far beyond the measured batch sizes the profile looks for B_crit's bounds; a side that stays
# plausible that far out is unbounded (B_crit -> 0: S flat; B_crit -> inf: S ∝ 1/B over the range).
PROFILE_SPAN = 1e4
# A percentile bootstrap that loses more than this share of its resamples to failed fits is unreliable.
MAX_BOOTSTRAP_FAILURES = 0.05
_TINY = 1e-300


class _LogFit:
    """The objective q(a, c) = RSS/s² − 2·Σ log P(y_censored > log bound) and its profiles."""

    def __init__(self, b, s, censored_b=(), censored_s=(), *, sigma: float, weights=None, censored_weights=None):
        self.inv = 1.0 / np.asarray(b, dtype=float)
        self.ls = np.log(np.asarray(s, dtype=float))
        self.w = np.ones_like(self.inv) if weights is None else np.asarray(weights, dtype=float)
        self.cw = (np.ones(len(censored_b)) if censored_weights is None
                   else np.asarray(censored_weights, dtype=float))
        self.cinv = 1.0 / np.asarray(censored_b, dtype=float)
        self.lc = np.log(np.asarray(censored_s, dtype=float))
        self.sigma = float(sigma)
        b_all = np.concatenate([np.asarray(b, dtype=float), np.asarray(censored_b, dtype=float)])
        self.c_lo = math.log(b_all.min() / PROFILE_SPAN)
        self.c_hi = math.log(b_all.max() * PROFILE_SPAN)

    def q(self, a: float, c: float) -> float:
        r = self.ls - a - np.log1p(np.exp(c) * self.inv)
        out = float(r @ (self.w * r)) / self.sigma ** 2
        if self.lc.size:
            z = (self.lc - a - np.log1p(np.exp(c) * self.cinv)) * np.sqrt(self.cw) / self.sigma
            out -= 2.0 * float(np.sum(stats.norm.logsf(z)))
        return out

    def best_a(self, c: float) -> float:
        a0 = float(np.average(self.ls - np.log1p(np.exp(c) * self.inv), weights=self.w))  # closed form
        if not self.lc.size:
            return a0
        span = 10.0 * self.sigma + 1.0
        return float(optimize.minimize_scalar(lambda a: self.q(a, c), bounds=(a0 - span, a0 + span),
                                              method="bounded", options={"xatol": 1e-10}).x)

    def best_c(self, q_of_c) -> float:
        return float(optimize.minimize_scalar(q_of_c, bounds=(self.c_lo, self.c_hi), method="bounded",
                                              options={"xatol": 1e-10}).x)

    # Profiles: the objective with one parameter fixed and the other at its best.
    def profile_c(self, c: float) -> float:
        return self.q(self.best_a(c), c)

    def profile_a(self, a: float) -> float:
        return self.q(a, self.best_c(lambda c: self.q(a, c)))

    def profile_e(self, e: float) -> float:  # e = log E_min = a + c
        c = self.best_c(lambda c: self.q(e - c, c))
        return self.q(e - c, c)

    def minimum(self, a0: float, c0: float) -> tuple[float, float]:
        """The best (a, c), starting from the least-squares fit (exact without censored bounds)."""
        if not self.lc.size:
            return a0, c0
        c = self.best_c(self.profile_c)
        if self.profile_c(c0) < self.profile_c(c):
            c = c0
        return self.best_a(c), c


def _profile_range(profile, centre: float, limit_lo: float, limit_hi: float, level: float) -> list[float | None]:
    """[low, high] where profile(x) − profile(centre) stays within `level`; None for an open side."""
    q0 = profile(centre)

    def g(x):
        return profile(x) - q0 - level

    out: list[float | None] = []
    for lim in (limit_lo, limit_hi):
        if g(lim) <= 0:
            out.append(None)
            continue
        out.append(float(optimize.brentq(g, min(lim, centre), max(lim, centre), xtol=1e-10)))
    return out


def _exp_range(r: list[float | None]) -> list[float | None]:
    return [None if v is None else math.exp(v) for v in r]


def _profile_intervals(fit: ScalingFit, problem: _LogFit, a: float, c: float, df: int) -> None:
    """Fill the fit's intervals (or their null reasons) from the profiles of `problem` around (a, c)."""
    fit.interval_method = INTERVAL_PROFILE
    level = float(stats.f.ppf(fit.confidence, 1, df))
    span = math.log(PROFILE_SPAN) + 30.0
    bc = _exp_range(_profile_range(problem.profile_c, c, problem.c_lo, problem.c_hi, level))
    fit.b_crit_range = bc
    open_low, open_high = bc[0] is None, bc[1] is None
    if not open_low and not open_high:
        fit.b_crit_ci = [bc[0], bc[1]]
    else:
        fit.null_reasons["b_crit_ci"] = _open_reason(bc, fit.confidence)
    sm = _exp_range(_profile_range(problem.profile_a, a, a - span, a + span, level))
    em = _exp_range(_profile_range(problem.profile_e, a + c, a + c - span, a + c + span, level))
    if open_high or sm[0] is None or sm[1] is None:
        fit.null_reasons["s_min_ci"] = ("the data cannot rule out steps ∝ 1/B over the whole range (B_crit unbounded "
                                        "above), so S_min may be near 0" if open_high else
                                        "the profile likelihood does not close within its search range")
    else:
        fit.s_min_ci = [sm[0], sm[1]]
    if open_low or em[0] is None or em[1] is None:
        fit.null_reasons["e_min_ci"] = ("the data cannot rule out flat steps over the whole range (B_crit unbounded "
                                        "below), so E_min may be near 0" if open_low else
                                        "the profile likelihood does not close within its search range")
    else:
        fit.e_min_ci = [em[0], em[1]]


def _open_reason(bc: list[float | None], confidence: float) -> str:
    lo, hi = bc
    if lo is None and hi is None:
        return (f"unreliable: every B_crit from below to beyond the batch sizes measured fits within the "
                f"{confidence:.0%} profile likelihood, so the data do not locate it")
    if hi is None:
        return (f"unreliable: the {confidence:.0%} profile likelihood leaves B_crit unbounded above (the steps are "
                f"consistent with halving at every doubling over the range); only B_crit >= {lo:.3g} is supported")
    return (f"unreliable: the {confidence:.0%} profile likelihood leaves B_crit unbounded below (the steps are "
            f"consistent with no fall at all over the range); only B_crit <= {hi:.3g} is supported")


def _percentile_ci(values: Sequence[float], confidence: float) -> list[float] | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size < 2:
        return None
    a = (1 - confidence) / 2 * 100
    return [float(np.percentile(v, a)), float(np.percentile(v, 100 - a))]


def _bootstrap_intervals(fit: ScalingFit, batches: Sequence[BatchSteps], bsz: np.ndarray, st: np.ndarray,
                         n_bootstrap: int, seed: int) -> None:
    """Percentile bootstrap: over seeds within each (batch, LR) cell where every chosen cell has 2 or
    more, else over batch sizes. Null with a reason when too few resamples could be fitted."""
    fit.interval_method = INTERVAL_BOOTSTRAP
    reached = [b for b in batches if b.reached]
    chosen = [c for b in reached for c in b.lr_cells if c.steps_to_target is not None]
    multi_seed = bool(chosen) and len(chosen) >= len(reached) and all(len(c.steps_per_seed) >= 2 for c in chosen)
    fit.bootstrap_method = "seeds within each (batch, LR) cell" if multi_seed else "batch sizes"
    if n_bootstrap <= 0:
        for k in ("s_min_ci", "b_crit_ci", "e_min_ci"):
            fit.null_reasons[k] = "no bootstrap resamples requested (n_bootstrap = 0)"
        return
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        if multi_seed:
            bb, ss = _resample_seeds(batches, rng)
        else:
            idx = rng.integers(0, bsz.size, bsz.size)
            bb, ss = bsz[idx], st[idx]
        if np.unique(bb).size < 3:
            continue
        try:
            draws.append(fit_steps_model(bb, ss))
        except (BenchError, ValueError, FloatingPointError):
            continue
    fit.n_bootstrap_ok = len(draws)
    lost = 1.0 - len(draws) / n_bootstrap
    if len(draws) < 2 or lost > MAX_BOOTSTRAP_FAILURES:
        why = (f"unreliable: {n_bootstrap - len(draws)} of {n_bootstrap} resamples ({lost:.0%}) could not be fitted "
               f"(fewer than 3 distinct batch sizes, or no fit); the percentile interval of the rest would be too narrow")
        for k in ("s_min_ci", "b_crit_ci", "e_min_ci"):
            fit.null_reasons[k] = why
        return
    arr = np.array(draws)
    fit.s_min_ci = _percentile_ci(arr[:, 0], fit.confidence)
    fit.b_crit_ci = _percentile_ci(arr[:, 1], fit.confidence)
    fit.e_min_ci = _percentile_ci(arr[:, 0] * arr[:, 1], fit.confidence)
    fit.b_crit_range = list(fit.b_crit_ci)


# ---------------------------------------------------------------------------------------------
# Per-batch noise and lack of fit
#
# Seed noise need not be the same at every batch size (it often grows with B). Where 3 or more batch
# sizes have 2 or more seeds, the variance of log steps over seeds is modelled as log-linear in log B
# (a trend fitted to every batch size's sample variance, weighted by its degrees of freedom: steadier than
# each batch size's own 2 or 3 seeds), and each batch mean is weighted by n_B / σ²(B). Only the relative
# weights matter: the intervals still scale by the weighted residual mean square.
#
# Lack of fit: with seeds, the classical F test of the curve against the per-batch means, the pure
# error coming from the seeds' spread around their own batch mean (weighted alike); without seeds, a
# Wald–Wolfowitz runs test on the signs of the residuals in batch order (a curve of the wrong shape
# leaves long runs of one sign). A curve that fails gets no intervals: they would be narrow around a
# shifted B_crit.

LACK_OF_FIT_ALPHA = 0.001  # F test with seeds: a false alarm refuses an interval, so it must be rare
RUNS_ALPHA = 0.05  # runs test without seeds (exact; its discreteness keeps false alarms well below this)
MIN_BATCHES_FOR_NOISE_TREND = 3


def _seed_logs(b: BatchSteps) -> list[float]:
    return [math.log(x) for x in b.steps_per_seed if x is not None and x > 0]


def noise_weights(reached: Sequence[BatchSteps]):
    """Weights (mean 1) of the reached batch sizes' mean log steps, n_B/σ²(B); the noise model; and
    weight_at(B, n), the weight on that scale of a mean of n runs at batch size B."""
    n = len(reached)
    groups = [(b.batch_size, _seed_logs(b)) for b in reached]
    usable = [(bs, logs) for bs, logs in groups if len(logs) >= 2 and float(np.var(logs, ddof=1)) > 0]
    if len(usable) < MIN_BATCHES_FOR_NOISE_TREND:
        return np.ones(n), {"model": "equal", "slope": None, "sd_ratio": None, "weights": [1.0] * n,
                            "reason": f"{len(usable)} batch size(s) with 2 or more distinct seeds; "
                                      f"{MIN_BATCHES_FOR_NOISE_TREND} are needed to tell how the noise varies"}, \
            (lambda b, k: 1.0)
    x = np.array([math.log(bs) for bs, _ in usable])
    y = np.array([math.log(float(np.var(logs, ddof=1))) for _, logs in usable])
    # log of a sample variance with k degrees of freedom has variance trigamma(k/2), whatever σ² is: the
    # trend's slope has a known standard error, reported as a p-value. The trend is used even where it is
    # weak (gating it on its p-value made the intervals and the lack-of-fit test worse in simulation).
    lvar = np.array([float(special.polygamma(1, (len(logs) - 1) / 2.0)) for _, logs in usable])
    icpt, slope = np.polynomial.polynomial.polyfit(x, y, 1, w=1.0 / np.sqrt(lvar))
    X = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(X.T @ (X / lvar[:, None]))
    z = slope / math.sqrt(cov[1, 1])
    p_trend = float(2 * stats.norm.sf(abs(z)))
    # Shrink the slope by max(0, 1 − 1/z²) (James–Stein): a trend the seeds barely show moves the weights
    # little, a clear one fully; the intercept follows so the trend still passes through the data's centre.
    shrunk = slope * max(0.0, 1.0 - 1.0 / (z * z)) if z else 0.0
    icpt += (slope - shrunk) * float(np.average(x, weights=1.0 / lvar))
    slope = shrunk
    if slope == 0.0:
        return np.ones(n), {"model": "equal", "slope": None, "sd_ratio": None, "weights": [1.0] * n,
                            "trend_p_value": p_trend,
                            "reason": f"the seeds' spread shows no clear trend with batch size (p = {p_trend:.2g})"}, \
            (lambda b, k: 1.0)
    var = np.exp(icpt + slope * np.log([b.batch_size for b in reached]))
    counts = np.array([max(1, len(logs)) for _, logs in groups], dtype=float)
    w = counts / var
    norm = float(w.mean())
    w = w / norm
    sizes = [b.batch_size for b in reached]
    sd_ratio = float(math.exp(0.5 * slope * math.log(max(sizes) / min(sizes))))

    def weight_at(batch_size: float, runs: int) -> float:
        return float(runs / math.exp(icpt + slope * math.log(batch_size)) / norm)

    return w, {"model": "seed variance of log steps, log-linear in log B", "slope": float(slope),
               "sd_ratio": sd_ratio, "weights": [float(v) for v in w], "trend_p_value": p_trend,
               "reason": None}, weight_at


def _runs_p_value(signs: Sequence[bool]) -> tuple[int, float] | None:
    """(runs, P(runs <= observed)) for a sequence of signs under random order; None if one sign only."""
    n1, n2 = sum(signs), len(signs) - sum(signs)
    if n1 == 0 or n2 == 0:
        return None
    runs = 1 + sum(a != b for a, b in zip(signs, signs[1:]))
    total = math.comb(n1 + n2, n1)

    def pmf(r: int) -> float:
        k = r // 2
        if r % 2 == 0:
            return 2 * math.comb(n1 - 1, k - 1) * math.comb(n2 - 1, k - 1) / total
        return (math.comb(n1 - 1, k - 1) * math.comb(n2 - 1, k) + math.comb(n1 - 1, k) * math.comb(n2 - 1, k - 1)) / total

    return runs, float(sum(pmf(r) for r in range(2, runs + 1)))


def lack_of_fit(reached: Sequence[BatchSteps], s_min: float, b_crit: float, weights: np.ndarray) -> dict | None:
    """The lack-of-fit check of S(B) = S_min(1 + B_crit/B) (see above); None where none can be made."""
    f = np.log(steps_model([b.batch_size for b in reached], s_min, b_crit))
    means = np.log([b.steps_to_target for b in reached])
    logs = [_seed_logs(b) for b in reached]
    n, total = len(reached), sum(len(x) for x in logs)
    df_lof, df_pe = n - 2, total - n
    if df_lof >= 1 and df_pe >= 2 and all(len(x) >= 1 for x in logs):
        counts = np.array([len(x) for x in logs], dtype=float)
        inv_var = weights / counts  # weights = n_B/σ²(B), up to a common factor
        ss_pe = float(sum(iv * float(np.sum((np.array(x) - np.mean(x)) ** 2)) for iv, x in zip(inv_var, logs)))
        ss_lof = float(np.sum(weights * (means - f) ** 2))
        if ss_pe > 0:
            stat = (ss_lof / df_lof) / (ss_pe / df_pe)
            p = float(stats.f.sf(stat, df_lof, df_pe))
            return {"test": "F test of the curve against the per-batch means, pure error from the seeds",
                    "statistic": float(stat), "df": [df_lof, df_pe], "p_value": p, "alpha": LACK_OF_FIT_ALPHA,
                    "fails": p < LACK_OF_FIT_ALPHA, "reason": None}
    signs = [bool(r > 0) for r in means - f]
    runs = _runs_p_value(signs)
    if runs is None or n < 4:
        return None
    r, p = runs
    return {"test": "runs test on the signs of the residuals in batch order (no seeds to test against)",
            "statistic": float(r), "df": [sum(signs), n - sum(signs)], "p_value": p, "alpha": RUNS_ALPHA,
            "fails": p < RUNS_ALPHA, "reason": None}


def _refuse_intervals(fit: ScalingFit) -> None:
    lof = fit.lack_of_fit
    why = (f"not printed: the McCandlish curve does not fit these steps ({lof['test']}: "
           f"{'F' if lof['test'].startswith('F') else 'runs'} = {lof['statistic']:.3g}, p = {lof['p_value']:.2g} < "
           f"{lof['alpha']:g}); an interval around its B_crit would be narrow around the wrong value")
    fit.s_min_ci = fit.b_crit_ci = fit.e_min_ci = None
    fit.b_crit_range = None
    for k in ("s_min_ci", "b_crit_ci", "e_min_ci"):
        fit.null_reasons[k] = why
    fit.warnings.append(
        f"the McCandlish curve S = S_min(1 + B_crit/B) does not fit these steps ({lof['test']}, p = "
        f"{lof['p_value']:.2g}): S_min and B_crit are shown without intervals; read the measured steps, not "
        "the curve")


def fit_scaling(batches: Sequence[BatchSteps], *, n_bootstrap: int = 1000, seed: int = 0,
                confidence: float = CONFIDENCE, all_batch_sizes: Sequence[int] | None = None,
                interval: str = INTERVAL_PROFILE, use_censored: bool = True) -> ScalingFit:
    """Fit S(B) = S_min(1 + B_crit/B) to the batch sizes that reached the target, with intervals.

    `interval`: INTERVAL_PROFILE (default; profile likelihood, see above) or INTERVAL_BOOTSTRAP
    (percentile bootstrap over seeds within each (batch, LR) cell, the LR picked again in each resample;
    over batch sizes with one seed; `n_bootstrap` resamples from RNG seed `seed`). An interval that
    cannot be trusted is null with its reason in `null_reasons`, never printed.

    Batch sizes that did not reach the target are censored data: their lower bound (`censored_at`)
    enters the fit (`use_censored`) unless the fit to the reached ones predicts fewer than
    1/CENSOR_CONFLICT of it, which is reported as a warning instead. They get no regime.
    """
    if interval not in INTERVAL_METHODS:
        raise BenchError(f"unknown interval method {interval!r}; choose {' or '.join(INTERVAL_METHODS)}")
    reached = [b for b in batches if b.reached]
    sizes = [b.batch_size for b in batches] if all_batch_sizes is None else list(all_batch_sizes)
    reached_sizes = {b.batch_size for b in reached}
    censored = [b for b in batches if not b.reached and b.censored_at is not None and b.censored_at > 0]
    if len(reached) < 3:
        why = f"needs steps to target at 3 or more batch sizes; {len(reached)} reached the target"
        return ScalingFit(None, None, None, batch_sizes=[b.batch_size for b in reached],
                          regimes={str(b): None for b in sizes}, confidence=confidence, regime_rule=REGIME_RULE,
                          reason=why, censored_bounds={str(b.batch_size): b.censored_at for b in censored},
                          null_reasons={k: f"no fit: {why}" for k in ("s_min_ci", "b_crit_ci", "e_min_ci")})
    bsz = np.array([b.batch_size for b in reached], dtype=float)
    st = np.array([b.steps_to_target for b in reached], dtype=float)
    w, noise, weight_at = noise_weights(reached)
    s_min, b_crit = fit_steps_model(bsz, st, w)
    df = int(bsz.size - 2)
    rss = float(np.sum(w * (np.log(st) - np.log(steps_model(bsz, s_min, b_crit))) ** 2))
    sigma = math.sqrt(rss / df)
    fit = ScalingFit(None, None, None, batch_sizes=[int(b) for b in bsz], n_bootstrap=n_bootstrap,
                     bootstrap_seed=seed, confidence=confidence, regime_rule=REGIME_RULE, residual_df=df,
                     noise_model=noise)
    # A censored bound is one mean over its runs: weighted as a batch mean of that many seeds there.
    censored_w = [weight_at(b.batch_size, max(1, len(b.lr_cells[0].seeds) if b.lr_cells else 1)) for b in censored]
    cw_of = {b.batch_size: v for b, v in zip(censored, censored_w)}
    fit.censored_bounds = {str(b.batch_size): float(b.censored_at) for b in censored}
    used = []
    for b in censored:
        predicted = float(steps_model(b.batch_size, s_min, b_crit))
        if predicted * CENSOR_CONFLICT <= b.censored_at:
            fit.warnings.append(
                f"batch size {b.batch_size} did not reach the target in {b.censored_at:.4g} steps, yet the fit to "
                f"the batch sizes that did predicts {predicted:.3g}: the fit or those runs are wrong (diverging, or "
                "an LR grid that missed the good rates); its bound is left out of the fit")
        elif use_censored:
            used.append(b)
    degenerate = sigma <= 1e-9  # noise-free steps: the fit is exact, and so is every interval
    if used and not degenerate:
        problem = _LogFit(bsz, st, [b.batch_size for b in used], [b.censored_at for b in used], sigma=sigma,
                          weights=w, censored_weights=[cw_of[b.batch_size] for b in used])
        a, c = problem.minimum(math.log(s_min), math.log(b_crit))
        s_min, b_crit = math.exp(a), math.exp(c)
        fit.censored_used = [b.batch_size for b in used]
    fit.s_min, fit.b_crit, fit.e_min = s_min, b_crit, s_min * b_crit
    pred = steps_model(bsz, s_min, b_crit)
    fit.rel_rms_residual = float(np.sqrt(np.mean((st / pred - 1.0) ** 2)))
    fit.residuals = {str(int(b)): float(s / p - 1.0) for b, s, p in zip(bsz, st, pred)}
    fit.b_crit_position = "below" if b_crit < bsz.min() else "beyond" if b_crit > bsz.max() else "inside"
    fit.regimes = {str(b): regime(b, b_crit) if b in reached_sizes else None for b in sizes}
    if interval == INTERVAL_BOOTSTRAP:
        _bootstrap_intervals(fit, batches, bsz, st, n_bootstrap, seed)
    elif degenerate:
        fit.interval_method = INTERVAL_PROFILE
        fit.s_min_ci, fit.b_crit_ci, fit.e_min_ci = [s_min] * 2, [b_crit] * 2, [fit.e_min] * 2
        fit.b_crit_range = [b_crit, b_crit]
    else:
        problem = _LogFit(bsz, st, [b.batch_size for b in used], [b.censored_at for b in used], sigma=sigma,
                          weights=w, censored_weights=[cw_of[b.batch_size] for b in used])
        c = math.log(b_crit)
        problem.c_lo, problem.c_hi = min(problem.c_lo, c - 2.0), max(problem.c_hi, c + 2.0)  # an estimate far out
        try:
            # Weights estimated from the seeds cost the interval a degree of freedom (their trend's slope).
            weighted = noise["slope"] is not None and noise["slope"] != 0.0 and df > 2
            _profile_intervals(fit, problem, math.log(s_min), c, df - 1 if weighted else df)
        except (ValueError, FloatingPointError, ArithmeticError) as e:
            fit.s_min_ci = fit.b_crit_ci = fit.e_min_ci = None
            for k in ("s_min_ci", "b_crit_ci", "e_min_ci"):
                fit.null_reasons.setdefault(k, f"the profile likelihood could not be computed ({type(e).__name__}: {e})")
    fit.lack_of_fit = None if degenerate else lack_of_fit(reached, s_min, b_crit, w)
    if fit.lack_of_fit is None:
        fit.null_reasons["lack_of_fit"] = ("the steps fit exactly" if degenerate else
                                           "too few batch sizes, or residuals of one sign only, to test the fit")
    elif fit.lack_of_fit["fails"]:
        _refuse_intervals(fit)
    return fit


def _resample_seeds(batches: Sequence[BatchSteps], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One resample over the cells the point estimate could choose from: complete cells (every seed
    reached the target) of batch sizes that reached it. A cell that failed on some seed is not a
    candidate there, so it must not become one whenever a resample happens to miss its failed seed."""
    bb, ss = [], []
    for b in batches:
        if not b.reached:
            continue
        best = None
        for c in b.lr_cells:
            if c.steps_to_target is None or not c.steps_per_seed:
                continue
            n = len(c.steps_per_seed)
            m = float(np.mean([c.steps_per_seed[i] for i in rng.integers(0, n, n)]))
            if best is None or m < best:
                best = m
        if best is not None:
            bb.append(b.batch_size)
            ss.append(best)
    return np.array(bb, dtype=float), np.array(ss, dtype=float)


def measured_scaling_exponents(batches: Sequence[BatchSteps]) -> dict[str, float | None]:
    """Slope of log S against log B from each batch size to the next one that reached the target
    (−1: doubling the batch halves the steps; 0: no fewer steps at all)."""
    reached = [b for b in batches if b.reached]
    out: dict[str, float | None] = {str(b.batch_size): None for b in batches}
    for a, b in zip(reached, reached[1:]):
        out[str(a.batch_size)] = math.log(b.steps_to_target / a.steps_to_target) / math.log(b.batch_size / a.batch_size)
    return out


# ---------------------------------------------------------------------------------------------
# Critical batch size: definitions side by side

DEFAULT_TOLERANCE = 0.2


def critical_batch_definitions(batches: Sequence[BatchSteps], fit: ScalingFit, *, reference_batch: int | None = None,
                               tolerance: float = DEFAULT_TOLERANCE, b_simple: float | None = None,
                               b_simple_reason: str | None = None) -> dict:
    """Three critical batch sizes, each by its own definition:

    - McCandlish et al.: B_crit = B_noise = b/a of the hyperbola S = a + b/B (the fit's B_crit);
    - tolerance: the batch size where steps exceed perfect linear scaling from a reference batch B0 by
      `tolerance` τ, i.e. where S(B)·B = (1 + τ)·S(B0)·B0. Measured: interpolated (in log B) between the
      measured batch sizes where the examples ratio E(B)/E(B0) crosses 1 + τ. For the hyperbola,
      a·B + b = (1 + τ)(a·B0 + b) gives B = (1 + τ)·B0 + τ·b/a = (1 + τ)·B0 + τ·B_crit;
    - B_simple, the gradient noise scale, where it was measured.
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance):
        raise BenchError(f"tolerance must be > 0, got {tolerance!r}")
    reached = sorted((b for b in batches if b.reached), key=lambda b: b.batch_size)
    sizes = sorted(b.batch_size for b in batches)
    if reference_batch is not None and reference_batch not in sizes:
        raise BenchError(f"reference batch {reference_batch} is not one of the batch sizes ({', '.join(map(str, sizes))})")
    out: dict = {"mccandlish": {"b_crit": fit.b_crit, "ci": fit.b_crit_ci,
                                "definition": "B_noise = b/a of the fitted hyperbola S = a + b/B (a = S_min, b = E_min)",
                                "reason": None if fit.b_crit is not None else fit.reason}}
    tol: dict = {"tolerance": float(tolerance), "reference_batch": None, "measured": None, "measured_reason": None,
                 "from_fit": None, "from_fit_reason": None,
                 "definition": "the batch size where steps exceed perfect linear scaling from the reference batch B0 "
                               "by the tolerance: S(B)·B = (1 + tolerance)·S(B0)·B0",
                 "relation": "for the hyperbola: (1 + tolerance)·B0 + tolerance·B_crit"}
    out["tolerance"] = tol
    ref = reference_batch if reference_batch is not None else (reached[0].batch_size if reached else None)
    tol["reference_batch"] = ref
    at_ref = next((b for b in reached if b.batch_size == ref), None)
    if ref is None or at_ref is None:
        tol["measured_reason"] = tol["from_fit_reason"] = (
            f"the reference batch {ref} did not reach the target" if ref is not None else "no batch size reached the target")
    else:
        e0 = at_ref.steps_to_target * ref
        pts = [(b.batch_size, b.steps_to_target * b.batch_size / e0) for b in reached if b.batch_size >= ref]
        limit = 1.0 + tolerance
        for (b0, r0), (b1, r1) in zip(pts, pts[1:]):
            if r0 <= limit < r1:
                frac = (limit - r0) / (r1 - r0)
                tol["measured"] = float(math.exp(math.log(b0) + frac * (math.log(b1) - math.log(b0))))
                break
        if tol["measured"] is None:
            tol["measured_reason"] = (f"steps stay within {tolerance:.0%} of perfect scaling from batch {ref} up to the "
                                      f"largest batch that reached the target ({pts[-1][0]}): it lies beyond"
                                      if len(pts) > 1 else f"no batch size above the reference batch {ref} reached the target")
        if fit.b_crit is not None:
            tol["from_fit"] = (1.0 + tolerance) * ref + tolerance * fit.b_crit
        else:
            tol["from_fit_reason"] = f"no fit: {fit.reason}"
    out["b_simple"] = {"value": b_simple, "reason": None if b_simple is not None else (b_simple_reason or "not measured"),
                       "definition": "gradient noise scale tr(Σ)/|G|² (McCandlish et al.: B_crit ≈ B_simple within "
                                     "about an order of magnitude)"}
    return out


# ---------------------------------------------------------------------------------------------
# A table the user already has


def batches_from_table(table: StepsTable) -> list[BatchSteps]:
    """One BatchSteps per batch size of a steps-to-target table: its rows are seeds of one setting. As
    with curves, the batch size counts as reached only if every row did; otherwise it is censored at the
    mean over rows of (steps where reached, else the bound)."""
    by_batch: dict[int, list] = defaultdict(list)
    for r in table.rows:
        by_batch[r.batch_size].append(r)
    out = []
    for b in sorted(by_batch):
        rows = by_batch[b]
        seeds = [r.seed if r.seed is not None else i for i, r in enumerate(rows)]
        steps = [r.steps if r.reached else None for r in rows]
        cell = _cell_from_steps(None, None, seeds, steps, int(max(r.steps for r in rows)))
        bs = BatchSteps(batch_size=b, best_lr=None, steps_to_target=None, lr_cells=[cell], n_runs=len(rows))
        if cell.steps_to_target is None:
            bs.reason = cell.reason
            bs.censored_at = float(np.mean([r.steps for r in rows]))
        else:
            bs.steps_to_target = cell.steps_to_target
            bs.steps_per_seed = list(cell.steps_per_seed)
            bs.seeds = list(seeds)
            bs.steps_low, bs.steps_high = float(min(steps)), float(max(steps))
            bs.examples_to_target = cell.steps_to_target * b
        out.append(bs)
    return out


def fit_table(table: StepsTable, *, interval: str = INTERVAL_PROFILE, confidence: float = CONFIDENCE,
              n_bootstrap: int = 1000, seed: int = 0, reference_batch: int | None = None,
              tolerance: float = DEFAULT_TOLERANCE) -> TableFit:
    """`bench fit`: S(B) = S_min·(1 + B_crit/B) fitted to a table of steps (or examples, or epochs) to
    target, with intervals, regimes and residuals (see fit_scaling); E_min also in epochs when the
    table knows its training set size."""
    batches = batches_from_table(table)
    where = table.source or "the table"
    if len(batches) < 2:
        raise BenchError(f"{where}: one batch size ({batches[0].batch_size if batches else 'none'}): a fit of steps "
                         "against batch size needs steps to target at 3 or more batch sizes")
    if not any(b.reached for b in batches):
        raise BenchError(f"{where}: no run reached the target at any of its {len(batches)} batch sizes: nothing to fit")
    fit = fit_scaling(batches, interval=interval, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
    out = TableFit(table.source, table.unit, table.dataset_size, batches, fit, comments=list(table.comments))
    out.critical_batch = critical_batch_definitions(batches, fit, reference_batch=reference_batch, tolerance=tolerance,
                                                    b_simple_reason="a table carries no gradient noise scale")
    if table.dataset_size and fit.e_min is not None:
        out.e_min_epochs = fit.e_min / table.dataset_size
        if fit.e_min_ci:
            out.e_min_epochs_ci = [v / table.dataset_size for v in fit.e_min_ci]
    elif not table.dataset_size:
        out.null_reasons["e_min_epochs"] = "no training set size given (--dataset-size N)"
    else:
        out.null_reasons["e_min_epochs"] = f"no fit: {fit.reason}"
    return out

