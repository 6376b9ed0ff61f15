"""The gradient noise scale B_simple = tr(Σ)/|G|² from squared gradient norms at two batch sizes.

McCandlish et al. 2018, appendix A: E|G_B|² = |G|² + tr(Σ)/B, so from a small and a big batch
    |G|²  ≈ (B_big·|G_big|² − B_small·|G_small|²)/(B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²)/(1/B_small − 1/B_big).
Each step's estimates are noisy (|G|² can come out negative), so numerator and denominator are
averaged over steps separately, then divided. Pure functions; the measuring lives in bench.run.train.noise.

Finite training set. The formulas above assume examples drawn with replacement. Batches drawn without
replacement from N examples (an epoch's shuffle) have, with Σ the population covariance of the N
per-example gradients,
    E|G_B|² = |G|² + tr(Σ)/B · (N − B)/(N − 1) = (|G|² − tr(Σ')/N) + tr(Σ')/B,   Σ' = Σ·N/(N − 1),
the same form with |G|² − tr(Σ')/N in place of |G|² and tr(Σ') in place of tr(Σ). So the two-batch
estimates (ĝ², tr̂) recover |G|² = ĝ² + tr̂/N and tr(Σ) = tr̂·(N − 1)/N. Uncorrected, B_simple comes
out about 1/(1 − B_simple/N) times too large.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from bench.core.errors import BenchError
from bench.core.stats import CONFIDENCE
from bench.records.tta import NoiseScaleEstimate

# How the per-step estimates are combined: numerator and denominator averaged separately, then divided.
AVERAGING = "mean over steps"


def unbiased_norm_estimates(sq_small: float, sq_big: float, batch_small: int, batch_big: int,
                            train_size: int | None = None) -> tuple[float, float]:
    """(|G|², tr Σ) estimates from mean squared gradient norms at two batch sizes; with `train_size` N,
    for batches drawn without replacement from N examples (finite-population correction, see above)."""
    if not batch_big > batch_small > 0:
        raise BenchError(f"noise scale needs batch_big > batch_small > 0 (got {batch_small}, {batch_big})")
    if train_size is not None and not train_size > 1:
        raise BenchError(f"noise scale: training set size must be > 1, got {train_size}")
    g2 = (batch_big * sq_big - batch_small * sq_small) / (batch_big - batch_small)
    trace = (sq_small - sq_big) / (1.0 / batch_small - 1.0 / batch_big)
    if train_size is not None:
        g2, trace = g2 + trace / train_size, trace * (train_size - 1) / train_size
    return float(g2), float(trace)


def _ratio(sq_small: np.ndarray, sq_big: np.ndarray, bs: int, bb: int,
           n: int | None = None) -> tuple[float, float, float | None]:
    g2, tr = unbiased_norm_estimates(float(np.mean(sq_small)), float(np.mean(sq_big)), bs, bb, n)
    return g2, tr, (tr / g2 if g2 > 0 and tr > 0 else None)


def estimate_noise_scale(sq_norm_small: Sequence[float], sq_norm_big: Sequence[float], batch_small: int,
                         batch_big: int, *, n_bootstrap: int = 1000, blocks: int = 20, seed: int = 0,
                         confidence: float = CONFIDENCE, context: dict | None = None,
                         train_size: int | None = None) -> NoiseScaleEstimate:
    """B_simple from per-step squared norms. The interval resamples contiguous blocks of steps
    (neighbouring steps are correlated), `blocks` of them, with a fixed RNG seed. Give `train_size`
    when batches were drawn without replacement from that many examples (finite-population correction)."""
    s = np.asarray(sq_norm_small, dtype=float)
    g = np.asarray(sq_norm_big, dtype=float)
    if s.size == 0 or s.size != g.size:
        raise BenchError("noise scale needs the same number (>= 1) of small- and big-batch squared norms")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(g))):
        raise BenchError("noise scale: squared gradient norms must be finite (did training diverge?)")
    g2, tr, b = _ratio(s, g, batch_small, batch_big, train_size)
    est = NoiseScaleEstimate(b, g2, tr, int(batch_small), int(batch_big), int(s.size),
                             sq_norm_small=s.tolist(), sq_norm_big=g.tolist(), context=dict(context or {}),
                             confidence=confidence, averaging=AVERAGING,
                             train_size=None if train_size is None else int(train_size))
    if b is None:
        est.null_reasons["b_simple"] = (
            f"estimated |G|^2 = {g2:.3g} and tr(Sigma) = {tr:.3g}: the true gradient is lost in the noise "
            "(measure over more steps or with a larger big batch)" if g2 <= 0 else
            f"estimated tr(Sigma) = {tr:.3g} <= 0: no measurable gradient noise between these batch sizes")
        return est
    k = min(blocks, s.size)
    if k >= 2 and n_bootstrap > 0:
        edges = np.linspace(0, s.size, k + 1).astype(int)
        idx_blocks = [np.arange(edges[i], edges[i + 1]) for i in range(k)]
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_bootstrap):
            idx = np.concatenate([idx_blocks[i] for i in rng.integers(0, k, k)])
            g2_r, tr_r, v = _ratio(s[idx], g[idx], batch_small, batch_big, train_size)
            # No measurable gradient (|G|² <= 0): B_simple unbounded. No measurable noise with a
            # gradient (tr Σ <= 0 < |G|²): B_simple at most 0, so it counts as 0.
            vals.append(v if v is not None else math.inf if g2_r <= 0 else 0.0)
        a = (1 - confidence) / 2 * 100
        with np.errstate(invalid="ignore"):  # inf - inf between two unbounded resamples: nan, not finite
            lo, hi = float(np.percentile(vals, a)), float(np.percentile(vals, 100 - a))
        est.b_simple_ci = [lo, hi] if math.isfinite(hi) else None
        if est.b_simple_ci is None:
            n_inf = sum(math.isinf(v) for v in vals)
            est.null_reasons["b_simple_ci"] = (f"{n_inf} of {n_bootstrap} resamples had |G|^2 <= 0 (no measurable "
                                               "gradient): the upper bound is unbounded")
    else:
        est.null_reasons["b_simple_ci"] = "needs at least 2 steps for a block bootstrap"
    return est


# How far apart B_simple and B_crit are (`compare_with_critical_batch`'s "agreement").
AGREE_WITHIN_2X = "within_2x"
AGREE_WITHIN_10X = "within_10x"
AGREE_BEYOND_10X = "beyond_10x"


def compare_with_critical_batch(b_simple: float | None, b_crit: float | None) -> dict:
    """How far apart the noise scale and the fitted critical batch are (McCandlish et al. find
    B_crit ≈ B_simple within about an order of magnitude, B_simple usually the smaller): their ratio,
    its log10, `factor` (the larger over the smaller) and `agreement` (AGREE_WITHIN_2X, AGREE_WITHIN_10X
    or AGREE_BEYOND_10X); None values with a `reason` without both."""
    if b_simple is None or b_crit is None or not (b_simple > 0 and b_crit > 0):
        return {"ratio_b_simple_to_b_crit": None, "log10_ratio": None, "factor": None, "agreement": None,
                "reason": "needs both the noise scale and the fitted critical batch size"}
    r = b_simple / b_crit
    lr = math.log10(r)
    agreement = (AGREE_WITHIN_2X if abs(lr) <= math.log10(2) else AGREE_WITHIN_10X if abs(lr) <= 1
                 else AGREE_BEYOND_10X)
    return {"ratio_b_simple_to_b_crit": r, "log10_ratio": lr, "factor": max(r, 1 / r), "agreement": agreement,
            "reason": None}
