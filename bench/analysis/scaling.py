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
from scipy import optimize

from bench.core.errors import BenchError
from bench.measure.stats import CONFIDENCE
from bench.records.curves import Curve
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


def steps_by_batch(curves: Sequence[Curve], target: float) -> list[BatchSteps]:
    """Per batch size: each LR's steps to target over seeds, and the LR that needs the fewest.

    A (batch, LR) cell counts only if every seed reached the target (an LR that sometimes fails is
    not a good choice); a batch size where no cell did is kept with steps None and a reason. A target
    that some run meets before training (step 0) measures no training: BenchError.
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


def fit_steps_model(batch_sizes: Sequence[float], steps: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of log S = log S_min + log(1 + B_crit/B); returns (S_min, B_crit).

    Fitting in logs weighs each batch size by its relative error, so the many steps at small
    batches do not drown the few at large ones. Starts from the linear fit S = S_min + E_min/B.
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

    def resid(p):
        return p[0] + np.log1p(np.exp(p[1]) / b) - ls

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


def _percentile_ci(values: Sequence[float], confidence: float) -> list[float] | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size < 2:
        return None
    a = (1 - confidence) / 2 * 100
    return [float(np.percentile(v, a)), float(np.percentile(v, 100 - a))]


def fit_scaling(batches: Sequence[BatchSteps], *, n_bootstrap: int = 1000, seed: int = 0,
                confidence: float = CONFIDENCE, all_batch_sizes: Sequence[int] | None = None) -> ScalingFit:
    """Fit S(B) to the batch sizes that reached the target, with a bootstrap over seeds.

    Bootstrap: each resample redraws, for every (batch, LR) cell the point estimate could choose (every
    seed reached the target, at a batch size that reached it), its seeds with replacement, picks the
    best LR again (so LR selection is part of the uncertainty) and refits. Where a cell has a single
    seed, seeds cannot be resampled; the batch sizes themselves are resampled instead. Percentile
    intervals, fixed RNG seed.
    """
    reached = [b for b in batches if b.reached]
    sizes = [b.batch_size for b in batches] if all_batch_sizes is None else list(all_batch_sizes)
    if len(reached) < 3:
        return ScalingFit(None, None, None, batch_sizes=[b.batch_size for b in reached],
                          regimes={str(b): None for b in sizes}, confidence=confidence, regime_rule=REGIME_RULE,
                          reason=f"needs steps to target at 3 or more batch sizes; {len(reached)} reached the target")
    bsz = np.array([b.batch_size for b in reached], dtype=float)
    st = np.array([b.steps_to_target for b in reached], dtype=float)
    s_min, b_crit = fit_steps_model(bsz, st)
    pred = steps_model(bsz, s_min, b_crit)
    rel_rms = float(np.sqrt(np.mean((st / pred - 1.0) ** 2)))
    fit = ScalingFit(s_min, b_crit, s_min * b_crit, batch_sizes=[int(b) for b in bsz], rel_rms_residual=rel_rms,
                     n_bootstrap=n_bootstrap, bootstrap_seed=seed, confidence=confidence, regime_rule=REGIME_RULE)
    fit.b_crit_position = "below" if b_crit < bsz.min() else "beyond" if b_crit > bsz.max() else "inside"
    fit.regimes = {str(b): regime(b, b_crit) for b in sizes}
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        multi_seed = all(len(c.steps_per_seed) >= 2 for b in reached for c in b.lr_cells
                         if c.steps_to_target is not None)
        fit.bootstrap_method = "seeds within each (batch, LR) cell" if multi_seed else "batch sizes"
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
        if draws:
            arr = np.array(draws)
            fit.s_min_ci = _percentile_ci(arr[:, 0], confidence)
            fit.b_crit_ci = _percentile_ci(arr[:, 1], confidence)
            fit.e_min_ci = _percentile_ci(arr[:, 0] * arr[:, 1], confidence)
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
