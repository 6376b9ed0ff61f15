"""Where a benchmark's nightly history stepped: change points in a series of nightly medians.

Search: PELT with a linear-kernel (least-squares) cost from `ruptures` (its C implementation), on the
log of the medians scaled by a robust estimate of the night-to-night noise (the MAD of successive
differences, which a step does not inflate), after damping one-night outliers (a residual from the
5-night rolling median beyond 3 noise units is clipped), with a BIC-like penalty. Check: each step
found must change the median by at least `min_change` and separate the nights on either side with a
Mann-Whitney U test at `alpha` (`mann_whitney_p`); the weakest failing step is merged away until all pass.

No night is left out for being noisy: a night whose own uncertainty (`rel_se`, e.g. from its CI, its
quartiles or its standard deviation and rounds) is wider than the series usually is has its deviation
from the rolling median shrunk by that ratio before the search, so it weighs less; the noise every step
is judged against is the series' own night-to-night noise, whatever each night claims. Nights with no
value or throttled clocks are left out by the caller (bench.analysis.trends). Detection quality on
simulated histories: scripts/changepoint_quality.py; on real ones: scripts/realhist_quality.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

DEFAULT_MIN_CHANGE = 0.02
DEFAULT_ALPHA = 0.001
DEFAULT_MIN_SIZE = 3          # nights on each side of a step, at least
PENALTY_PER_LOG_N = 3.0       # penalty = PENALTY_PER_LOG_N * ln(n), in units of the noise variance
OUTLIER_CLIP = 3.0            # noise units from the rolling median
ROLLING = 5


@dataclass(frozen=True)
class Step:
    """A change point: `index` is the first value after the change (in the series given)."""

    index: int
    before: float        # median of the values since the previous step
    after: float         # median of the values up to the next step
    change: float        # after / before - 1
    p_value: float       # Mann-Whitney U, the two sides
    n_before: int
    n_after: int

    def to_dict(self) -> dict:
        return asdict(self)


def noise_scale(log_values: np.ndarray) -> float:
    """Robust night-to-night standard deviation of log values: 1.4826 MAD of successive differences / sqrt 2."""
    d = np.diff(log_values)
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _rolling_median(y: np.ndarray) -> np.ndarray:
    half = ROLLING // 2
    padded = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, ROLLING), axis=1)


def _damped(y: np.ndarray, sigma: float) -> np.ndarray:
    med = _rolling_median(y)
    return med + np.clip(y - med, -OUTLIER_CLIP * sigma, OUTLIER_CLIP * sigma)


def night_weights(rel_se: Sequence[float | None] | None, sigma: float) -> np.ndarray | None:
    """Per night, the factor (0, 1] its deviation is shrunk by: the series' usual uncertainty (the larger
    of its night-to-night noise and the median of the nights' own) over the night's own; 1 where unknown."""
    if rel_se is None:
        return None
    se = np.array([np.nan if v is None or not math.isfinite(v) or v < 0 else float(v) for v in rel_se])
    known = se[np.isfinite(se)]
    if not known.size:
        return None
    ref = max(sigma, float(np.median(known)))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(np.isfinite(se) & (se > ref), ref / se, 1.0)
    return w


EXACT_UP_TO = 8  # segment sizes up to which scipy's exact Mann-Whitney distribution is used


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p value: scipy's (exact) for a side of EXACT_UP_TO values or fewer, else
    the normal approximation with tie and continuity corrections that scipy's "auto" method uses there,
    computed here directly (scipy's wrapper costs ~4 ms a call; a long history checks thousands of steps)."""
    n1, n2 = a.size, b.size
    if min(n1, n2) <= EXACT_UP_TO:
        return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    both = np.sort(np.concatenate([a, b]))
    ranks = (np.searchsorted(both, a, "left") + np.searchsorted(both, a, "right") + 1) / 2.0
    u1 = float(ranks.sum()) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    ties = float((counts ** 3 - counts).sum())
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    u = max(u1, n1 * n2 - u1)
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


def _boundary_check(x: np.ndarray, edges: list[int], j: int, min_change: float = 0.0) -> tuple[float, float, float]:
    """(p value, change, |change|) of inner boundary `edges[j]` between its neighbouring segments; a
    boundary smaller than `min_change` fails whatever its test says, so it gets p = 1 untested."""
    left, right = x[edges[j - 1]:edges[j]], x[edges[j]:edges[j + 1]]
    change = float(np.median(right) / np.median(left)) - 1.0
    if abs(change) < min_change:
        return 1.0, change, abs(change)
    return mann_whitney_p(left, right), change, abs(change)


def _segments_check(x: np.ndarray, bounds: list[int], min_change: float = 0.0) -> list[tuple[float, float, float]]:
    """(p value, change, |change|) for each inner boundary between its neighbouring segments."""
    edges = [0, *bounds, len(x)]
    return [_boundary_check(x, edges, j, min_change) for j in range(1, len(edges) - 1)]


def detect_steps(values: Sequence[float], *, min_change: float = DEFAULT_MIN_CHANGE, alpha: float = DEFAULT_ALPHA,
                 min_size: int = DEFAULT_MIN_SIZE, penalty: float | None = None,
                 rel_se: Sequence[float | None] | None = None) -> list[Step]:
    """Change points in positive `values` (e.g. nightly medians, oldest first), each checked as above;
    `rel_se`: each value's own relative standard error (None where unknown), to weigh noisy nights less."""
    import ruptures as rpt

    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("detect_steps needs a 1-D series of positive finite values")
    n = x.size
    if n < 2 * min_size:
        return []
    y = np.log(x)
    sigma = noise_scale(y)
    if sigma <= 0:
        sigma = max(float(np.std(y)), 1e-12)  # mostly identical values: any real step stands out
    w = night_weights(rel_se, sigma)
    if w is not None:
        if len(w) != n:
            raise ValueError("rel_se must give one entry per value")
        med = _rolling_median(y)
        y = med + (y - med) * w
    z = _damped(y, sigma) / sigma
    pen = penalty if penalty is not None else PENALTY_PER_LOG_N * math.log(n)
    ends = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(z.reshape(-1, 1)).predict(pen=pen)
    bounds = [int(e) for e in ends if 0 < e < n]
    checks = _segments_check(x, bounds, min_change)
    while bounds:
        failing = [j for j, (p, _, mag) in enumerate(checks) if p >= alpha or mag < min_change]
        if not failing:
            break
        worst = max(failing, key=lambda j: (checks[j][0], -checks[j][2]))
        del bounds[worst], checks[worst]
        # Only the two boundaries beside the one removed see a different segment: check those again
        # (a drifting series can give PELT a hundred boundaries; checking them all each time was quadratic).
        edges = [0, *bounds, n]
        for j in (worst - 1, worst):
            if 0 <= j < len(bounds):
                checks[j] = _boundary_check(x, edges, j + 1, min_change)
    edges = [0, *bounds, n]
    steps = []
    for j, (p, change, _) in enumerate(_segments_check(x, bounds) if bounds else []):
        left, right = x[edges[j]:edges[j + 1]], x[edges[j + 1]:edges[j + 2]]
        steps.append(Step(index=edges[j + 1], before=float(np.median(left)), after=float(np.median(right)),
                          change=change, p_value=p, n_before=int(left.size), n_after=int(right.size)))
    return steps
