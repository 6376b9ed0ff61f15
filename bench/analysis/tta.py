"""Time to accuracy: steps to target (from curves) times step time (from a sweep), per batch size.

TTA(B) = S(B)·t(B), t the mean step time. Reports the batch that minimises time, the one that minimises
examples (compute), the time-vs-compute Pareto frontier, B* from the fits S(B) = S_min(1 + B_crit/B) and
t(B) (the sweep's line a + b·B, or its hinge), and what the "equal step time for every batch" rule of
thumb would have chosen.
Pure functions; nothing here measures. The records they fill (and the bench.tta file) are in
bench.records.tta.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from bench.analysis.noise_scale import compare_with_critical_batch
from bench.analysis.scaling import (
    DEFAULT_TOLERANCE,
    INTERVAL_PROFILE,
    critical_batch_definitions,
    fit_scaling,
    measured_scaling_exponents,
    steps_by_batch,
)
from bench.core.budget import MEASURE_DEFAULTS
from bench.core.errors import BenchError
from bench.core.numbers import is_number
from bench.core.stats import CONFIDENCE, summarize
from bench.records.curves import Curve
from bench.records.tta import (
    BatchTTA,
    NoiseScaleEstimate,
    StepTime,
    StepTimeFit,
    StepTimeRounds,
    TTAAnalysis,
    TTAResult,
)


def step_times_from_sweep(result) -> tuple[list[StepTime], dict[int, str]]:
    """Step times of a SweepResult's ok points, and why each other point has none, by global batch
    size (a data-parallel sweep's batch per rank times its ranks: steps to target are per global batch)."""
    times, missing = [], {}
    for p in result.points:
        if not p.ok:
            missing[p.global_batch_size] = f"sweep point {p.status}" + (f": {p.error}" if p.error else "")
    for p in result.ok_points():
        s = p.stats
        if s is None:
            missing[p.global_batch_size] = "sweep point has no samples"
            continue
        e = (p.telemetry or {}).get("energy_per_step_j")
        st = StepTime(p.global_batch_size, s.median_s, s.ci_low_s, s.ci_high_s,
                      float(e) if isinstance(e, (int, float)) and math.isfinite(e) else None, mean_s=s.mean_s)
        if st.energy_per_step_j is None:
            st.null_reasons["energy_per_step_j"] = ((p.null_reasons or {}).get("energy_per_step_j")
                                                    or "the sweep did not measure energy per step")
        if s.ci_low_s is None:
            st.null_reasons["ci"] = "too few samples for a 95% interval of the median"
        st.mean_ci_low_s, st.mean_ci_high_s = s.mean_ci_low_s, s.mean_ci_high_s
        times.append(st)
    return times, missing


def step_times_from_rounds(rounds: StepTimeRounds, energy: dict[int, StepTime] | None = None) -> list[StepTime]:
    """Step times from interleaved rounds: the median and mean over every timed step; the median's CI
    widened by the round medians and the mean's by the round means (steps of one round share its load).
    `energy` (step times by batch, e.g. the sweep's) lends its energy per step."""
    out = []
    for b in rounds.batch_sizes:
        per_round = [r for r in rounds.samples_s.get(str(b), []) if r]
        if not per_round:
            continue
        flat = [x for r in per_round for x in r]
        s = summarize(flat, block_medians=[float(np.median(r)) for r in per_round],
                      block_sizes=[len(r) for r in per_round])
        st = StepTime(b, s.median_s, s.ci_low_s, s.ci_high_s, mean_s=s.mean_s,
                      mean_ci_low_s=s.mean_ci_low_s, mean_ci_high_s=s.mean_ci_high_s)
        other = (energy or {}).get(b)
        if other is not None and other.energy_per_step_j is not None:
            st.energy_per_step_j = other.energy_per_step_j
        else:
            st.null_reasons["energy_per_step_j"] = ((other.null_reasons.get("energy_per_step_j") if other else None)
                                                    or "energy per step was not measured")
        if s.ci_low_s is None:
            st.null_reasons["ci"] = "too few samples for a 95% interval of the median"
        out.append(st)
    return out


def paired_ratio(numer: Sequence[float], denom: Sequence[float],
                 confidence: float = CONFIDENCE) -> tuple[float, float | None, float | None]:
    """R = mean(numer)/mean(denom) over paired rounds, with a `confidence` interval by the delta method
    on the paired residuals d_r = numer_r − R·denom_r (Student t over the rounds): a load change that
    scales both members of a round alike leaves d_r, and so the interval, untouched. (R, None, None)
    with fewer than 2 pairs."""
    x, y = np.asarray(numer, dtype=float), np.asarray(denom, dtype=float)
    n = min(x.size, y.size)
    x, y = x[:n], y[:n]
    ratio = float(x.mean() / y.mean())
    if n < 2:
        return ratio, None, None
    from scipy import stats as _st

    d = x - ratio * y
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / (math.sqrt(n) * y.mean()))
    return ratio, max(ratio - half, ratio * 1e-3), ratio + half


def sweep_machine_load(result) -> tuple[dict | None, str | None]:
    """How busy the machine was while a SweepResult was measured (its analysis's machine_load), or why not."""
    an = result.analysis if isinstance(result.analysis, dict) else {}
    load = an.get("machine_load")
    if isinstance(load, dict) and load:
        return dict(load), None
    return None, (an.get("null_reasons") or {}).get("machine_load") or "the sweep file records no machine load"


def fit_step_time_linear(step_times: Sequence[StepTime]) -> StepTimeFit | None:
    """t = a + b·B by least squares on relative residuals (times span decades); None with < 2 points."""
    if len({s.batch_size for s in step_times}) < 2:
        return None
    b = np.array([s.batch_size for s in step_times], dtype=float)
    t = np.array([s.median_s for s in step_times], dtype=float)
    w = 1.0 / t
    A = np.stack([np.ones_like(b), b], axis=1) * w[:, None]
    (a, slope), *_ = np.linalg.lstsq(A, t * w, rcond=None)
    return StepTimeFit(float(a), float(slope), "least squares on relative residuals over the measured step times")


def step_time_fit_from_sweep(result) -> StepTimeFit | None:
    """The fit the sweep's analysis chose (its hinge when `best_fit` is "hinge", else its line), else
    our linear fit over its ok points; in global batch size (a data-parallel sweep's fit is per rank:
    its slope is divided, its knee multiplied, by the number of ranks)."""
    an = result.analysis if isinstance(result.analysis, dict) else {}
    n = getattr(result, "world_size", 1) or 1
    hf = an.get("hinge_fit")
    if an.get("best_fit") == "hinge" and isinstance(hf, dict) and is_number(hf.get("plateau_s")) \
            and is_number(hf.get("slope_s_per_sample")):
        t0, slope, knee = float(hf["plateau_s"]), float(hf["slope_s_per_sample"]) / n, hf.get("knee_batch")
        if not is_number(knee):  # no rise seen: flat over the whole range
            return StepTimeFit(t0, 0.0, "the sweep's hinge fit (no rise over its range)", model="hinge", plateau_s=t0)
        return StepTimeFit(t0 - slope * float(knee) * n, slope, "the sweep's hinge fit", model="hinge",
                           knee_batch=float(knee) * n, plateau_s=t0)
    lf = an.get("linear_fit")
    if isinstance(lf, dict) and isinstance(lf.get("intercept_s"), (int, float)) \
            and isinstance(lf.get("slope_s_per_sample"), (int, float)):
        return StepTimeFit(float(lf["intercept_s"]), float(lf["slope_s_per_sample"]) / n, "the sweep's linear fit")
    return fit_step_time_linear(step_times_from_sweep(result)[0])


def pareto_frontier(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """Keys of the points (key, x, y) that no other point beats in both x and y (smaller is better)."""
    out, best_y = [], math.inf
    for key, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        if y < best_y:
            out.append(key)
            best_y = y
    return sorted(out)


def b_star(b_crit: float | None, a_s: float | None, b_s_per_example: float | None,
           knee_batch: float | None = None) -> tuple[float | None, str | None]:
    """B* minimising S_min(1 + B_crit/B)·t(B); None with a reason otherwise.

    Line t = a + b·B: B* = sqrt(B_crit·a/b). Hinge (a plateau up to the knee K, then a + b·B with
    a = plateau − b·K): below K a step costs the same and S falls, so time to target falls all the
    way to K; beyond it the line's optimum applies, so B* = max(K, sqrt(B_crit·a/b)), and B* = K
    where a <= 0 (time to target then only grows past the knee).
    """
    if b_crit is None:
        return None, "no fitted critical batch size"
    if a_s is None or b_s_per_example is None:
        return None, "no step-time fit"
    if not b_s_per_example > 0:
        return None, "step time does not grow with batch size over the measured range (b <= 0): B* is beyond it"
    if knee_batch is not None:
        return (max(knee_batch, math.sqrt(b_crit * a_s / b_s_per_example)) if a_s > 0 else knee_batch), None
    if not a_s > 0:
        return None, "step-time fit has no fixed cost (a <= 0): B* = 0, the smallest batch"
    return math.sqrt(b_crit * a_s / b_s_per_example), None


def analyse_tta(curves: Sequence[Curve], step_times: Sequence[StepTime], target: float, *,
                step_time_fit: StepTimeFit | None = None, step_time_missing: dict[int, str] | None = None,
                noise_scale: NoiseScaleEstimate | None = None, n_bootstrap: int = 1000,
                bootstrap_seed: int = 0, interval: str = INTERVAL_PROFILE,
                ci_target: float | None = None, rounds: StepTimeRounds | None = None,
                reference_batch: int | None = None, tolerance: float = DEFAULT_TOLERANCE) -> TTAAnalysis:
    """Join steps to target with step times and derive the best batch sizes.

    `interval` is the scaling fit's interval method (bench.analysis.scaling); `ci_target` the relative
    precision the step times were measured to (default: the measuring default), beyond which a mean
    step time far above its median is flagged. `rounds`: the interleaved rounds the step times came from
    (bench.run.rounds), whose per-round ratios give the step-time ratios and the naive error's interval."""
    if not curves:
        raise BenchError("no curves to analyse")
    metric, hib = curves[0].metric, curves[0].higher_is_better
    if any(c.higher_is_better != hib for c in curves):
        raise BenchError("curves disagree on whether a higher metric is better; analyse them separately")
    sel = steps_by_batch(curves, target)
    fit = fit_scaling(sel, n_bootstrap=n_bootstrap, seed=bootstrap_seed, interval=interval)
    ci_target = MEASURE_DEFAULTS["ci_target"] if ci_target is None else float(ci_target)
    slopes = measured_scaling_exponents(sel)
    times = {s.batch_size: s for s in step_times}
    if step_time_fit is None:
        step_time_fit = fit_step_time_linear(step_times)
    missing = dict(step_time_missing or {})
    a = TTAAnalysis(target=float(target), metric=metric, higher_is_better=hib, lr_selection=sel,
                    scaling_fit=fit, step_time_fit=step_time_fit)
    for bs in sel:
        row = BatchTTA(batch_size=bs.batch_size, best_lr=bs.best_lr, steps_to_target=bs.steps_to_target,
                       steps_low=bs.steps_low, steps_high=bs.steps_high, steps_per_seed=list(bs.steps_per_seed),
                       examples_to_target=bs.examples_to_target,
                       fitted_steps=fit.predict_steps(bs.batch_size) if bs.reached else None,
                       regime=fit.regimes.get(str(bs.batch_size)), measured_scaling_exponent=slopes.get(str(bs.batch_size)),
                       final_eval_metric=bs.final_eval_metric, best_eval_metric=bs.best_eval_metric,
                       best_lr_at_grid_edge=bs.best_lr_at_grid_edge)
        if not bs.reached:
            row.null_reasons["steps_to_target"] = bs.reason or "not reached"
            bound = (f"at least {bs.censored_at:.4g} steps (a lower bound, used by the fit)"
                     if bs.censored_at is not None and bs.batch_size in fit.censored_used
                     else f"at least {bs.censored_at:.4g} steps (a lower bound)" if bs.censored_at is not None
                     else bs.censored_reason or "no lower bound")
            row.null_reasons["fitted_steps"] = f"not reached: {bound}; fitted steps are shown only beside measured ones"
            row.null_reasons["regime"] = f"not reached: {bound}; no regime is read off a batch size that never got there"
        elif row.regime is None:
            row.null_reasons["regime"] = fit.reason or "no fitted critical batch size"
        st = times.get(bs.batch_size)
        if st is None:
            row.null_reasons["step_time_s"] = missing.get(bs.batch_size, f"no step time measured at batch {bs.batch_size}")
        else:
            row.step_time_s, row.step_time_ci_low_s, row.step_time_ci_high_s = st.median_s, st.ci_low_s, st.ci_high_s
            row.energy_per_step_j = st.energy_per_step_j
            if st.energy_per_step_j is None:
                row.null_reasons["energy_per_step_j"] = st.null_reasons.get("energy_per_step_j", "not measured")
        if st is not None:
            row.step_time_mean_s = st.mean_s
            row.step_time_mean_ci_low_s, row.step_time_mean_ci_high_s = st.mean_ci_low_s, st.mean_ci_high_s
            if st.mean_s is None:
                row.null_reasons["step_time_mean_s"] = "the step times carry no mean (an older file?)"
        if bs.reached and st is not None:
            # TTA sums S step times, so its expectation is S·mean; the median only where there is no mean.
            t = st.mean_s if st.mean_s is not None else st.median_s
            row.time_to_target_basis = "mean" if st.mean_s is not None else "median"
            row.step_time_used_s = t
            row.time_to_target_s = bs.steps_to_target * t
            # Conservative interval: fewest seed steps x CI low, most seed steps x CI high. The mean's CI
            # where measured (over interleaved rounds: it holds the load's drift during the study), else
            # the median's CI scaled to the mean (that CI already allows for steps correlated within
            # timing blocks, which stdev/sqrt(n) would not).
            scale = t / st.median_s
            if row.time_to_target_basis == "mean" and st.mean_ci_low_s is not None and st.mean_ci_high_s is not None:
                lo_t, hi_t = st.mean_ci_low_s, st.mean_ci_high_s
            else:
                lo_t = st.ci_low_s * scale if st.ci_low_s is not None else t
                hi_t = st.ci_high_s * scale if st.ci_high_s is not None else t
            row.time_to_target_low_s = bs.steps_low * lo_t
            row.time_to_target_high_s = bs.steps_high * hi_t
            if st.ci_low_s is None:
                row.null_reasons["time_to_target_interval"] = "step time has no CI: the interval holds only the seed spread"
            elif len(bs.steps_per_seed) < 2:
                row.null_reasons["time_to_target_interval"] = (
                    "one seed: the interval holds only the step-time CI, not run-to-run spread in steps")
            if st.energy_per_step_j is not None:
                row.energy_to_target_j = bs.steps_to_target * st.energy_per_step_j
        if row.time_to_target_s is None:
            row.null_reasons["time_to_target_s"] = row.null_reasons.get("steps_to_target") or row.null_reasons["step_time_s"]
        if row.energy_to_target_j is None:
            row.null_reasons["energy_to_target_j"] = (row.null_reasons.get("time_to_target_s")
                                                      or row.null_reasons.get("energy_per_step_j", "not measured"))
        a.batches.append(row)
    heavy = [(st.batch_size, st.mean_s / st.median_s) for st in step_times
             if st.mean_s is not None and st.median_s and st.mean_s / st.median_s > 1 + ci_target]
    if heavy:
        worst_b, worst = max(heavy, key=lambda h: h[1])
        a.warnings.append(
            f"mean step time exceeds the median by more than the {ci_target:.0%} CI target at batch size(s) "
            f"{', '.join(str(b) for b, _ in heavy)} (up to {worst:.3g}x, at {worst_b}): a few slow steps (a loaded "
            "machine?) dominate; time to target multiplies the mean, the step-time fit and B* the median")
    _best_batches(a)
    _naive(a, rounds, times)
    _b_star(a, times)
    _edges(a)
    _generalisation(a, curves)
    a.noise_scale_vs_b_crit = compare_with_critical_batch(noise_scale.b_simple if noise_scale else None, fit.b_crit)
    a.critical_batch = critical_batch_definitions(
        sel, fit, reference_batch=reference_batch, tolerance=tolerance,
        b_simple=noise_scale.b_simple if noise_scale else None,
        b_simple_reason=(noise_scale.null_reasons.get("b_simple") if noise_scale else "not measured"))
    a.warnings += fit.warnings
    edge = [b.batch_size for b in sel if b.best_lr_at_grid_edge]
    if edge:
        a.warnings.append(f"best learning rate at the edge of the LR grid for batch size(s) {', '.join(map(str, edge))}: "
                          "a wider grid may find fewer steps")
    if fit.b_crit_position in ("below", "beyond"):
        a.warnings.append(f"fitted B_crit = {fit.b_crit:.3g} lies {fit.b_crit_position} the batch sizes that reached the "
                          "target: it is an extrapolation")
    return a


def _best_batches(a: TTAAnalysis) -> None:
    timed = [b for b in a.batches if b.time_to_target_s is not None]
    if timed:
        best = min(timed, key=lambda b: b.time_to_target_s)
        a.best_time_batch, a.best_time_s = best.batch_size, best.time_to_target_s
        single = sorted(b.batch_size for b in timed if len(b.steps_per_seed) < 2)
        if single:
            # One run per batch size shows no run-to-run spread, so intervals that do not overlap would
            # claim differences the data cannot back: say nothing about ties rather than too much.
            a.null_reasons["best_time_ties"] = (
                f"one seed at batch size {', '.join(map(str, single))}: the time-to-target intervals hold no "
                "run-to-run spread, so which batch sizes are indistinguishable from the fastest cannot be told")
            a.warnings.append(f"one seed at batch size {', '.join(map(str, single))}: time-to-target intervals "
                              "ignore run-to-run spread; run 2 or more seeds to tell batch sizes apart")
        else:
            a.best_time_ties = [b.batch_size for b in timed
                                if b is not best and b.time_to_target_low_s <= best.time_to_target_high_s]
        a.pareto_time_examples = pareto_frontier([(b.batch_size, b.time_to_target_s, b.examples_to_target) for b in timed])
        energy = [b for b in timed if b.energy_to_target_j is not None]
        if energy and len(energy) == len(timed):
            a.pareto_time_energy = pareto_frontier([(b.batch_size, b.time_to_target_s, b.energy_to_target_j) for b in energy])
            a.min_energy_batch = min(energy, key=lambda b: b.energy_to_target_j).batch_size
        else:
            a.null_reasons["pareto_time_energy"] = "energy per step not measured at every batch size"
            a.null_reasons["min_energy_batch"] = a.null_reasons["pareto_time_energy"]
    else:
        a.null_reasons["best_time_batch"] = "no batch size has both steps to target and a step time"
    reached = [b for b in a.batches if b.examples_to_target is not None]
    if reached:
        c = min(reached, key=lambda b: b.examples_to_target)
        a.compute_optimal_batch, a.compute_optimal_examples = c.batch_size, c.examples_to_target
    else:
        a.null_reasons["compute_optimal_batch"] = "no batch size reached the target"


def _step_time_ratio(b: BatchTTA, ref: BatchTTA, rounds: StepTimeRounds | None,
                     times: dict[int, StepTime]) -> tuple[float, float | None, float | None, str]:
    """t(B)/t(reference) from the step times TTA used, with a 95% interval and what it rests on."""
    t_b, t_ref = b.step_time_used_s, ref.step_time_used_s
    if b is ref:
        return 1.0, 1.0, 1.0, "the reference batch itself"
    if rounds is not None and b.time_to_target_basis == "mean" and ref.time_to_target_basis == "mean":
        mb, mr = rounds.round_means(b.batch_size), rounds.round_means(ref.batch_size)
        if len(mb) >= 2 and len(mb) == len(mr):
            r, lo, hi = paired_ratio(mb, mr)
            return r, lo, hi, f"per-round ratios over {len(mb)} interleaved rounds"
    sb, sr = times.get(b.batch_size), times.get(ref.batch_size)
    lo_b, hi_b = (sb.mean_ci_low_s, sb.mean_ci_high_s) if sb and b.time_to_target_basis == "mean" else (None, None)
    lo_r, hi_r = (sr.mean_ci_low_s, sr.mean_ci_high_s) if sr and ref.time_to_target_basis == "mean" else (None, None)
    if None in (lo_b, hi_b, lo_r, hi_r) or not (lo_b > 0 and lo_r > 0):
        return t_b / t_ref, None, None, "no interval: the step times carry no interval of their mean"
    return (t_b / t_ref, lo_b / hi_r, hi_b / lo_r,
            "independent step-time intervals (not measured in interleaved rounds: a load change between the "
            "two batch sizes widens it)")


def _naive(a: TTAAnalysis, rounds: StepTimeRounds | None = None, times: dict[int, StepTime] | None = None) -> None:
    timed = [b for b in a.batches if b.time_to_target_s is not None]
    if not timed:
        a.naive = {"reason": "no batch size has both steps to target and a step time"}
        return
    ref = min(timed, key=lambda b: b.batch_size)
    ref_t = ref.time_to_target_s / ref.steps_to_target  # the step time TTA used there (mean, or median)
    bases = set()
    for b in timed:
        b.naive_time_to_target_s = b.steps_to_target * ref_t
        b.naive_rel_error = b.naive_time_to_target_s / b.time_to_target_s - 1.0
        # naive/true − 1 = t(ref)/t(B) − 1: the steps cancel, so its interval is the step-time ratio's.
        r, lo, hi, basis = _step_time_ratio(b, ref, rounds, times or {})
        b.step_time_ratio, b.step_time_ratio_low, b.step_time_ratio_high = r, lo, hi
        if lo is not None and hi is not None:
            b.naive_rel_error_low, b.naive_rel_error_high = 1.0 / hi - 1.0, 1.0 / lo - 1.0
        else:
            b.null_reasons["naive_rel_error_interval"] = basis
        if b is not ref:
            bases.add(basis)
    nb = min(timed, key=lambda b: b.naive_time_to_target_s)
    best = a.batch(a.best_time_batch)
    penalty = nb.time_to_target_s / best.time_to_target_s - 1.0
    a.naive = {
        "reference_batch": ref.batch_size,
        "assumed_step_time_s": ref_t,
        "naive_best_batch": nb.batch_size,
        "naive_best_predicted_time_s": nb.naive_time_to_target_s,
        "naive_best_true_time_s": nb.time_to_target_s,
        "penalty_rel": penalty,
        "largest_abs_rel_error": max(abs(b.naive_rel_error) for b in timed),
        "naive_best_is_fastest": nb.batch_size == best.batch_size,
        "interval_basis": "; ".join(sorted(bases)) if bases else None,
    }


def _mean_to_median(times: dict[int, StepTime], batch: float) -> float:
    """mean/median step time at the measured batch size nearest `batch` (in log), 1 without a mean."""
    usable = [s for s in times.values() if s.mean_s is not None and s.median_s]
    if not usable:
        return 1.0
    near = min(usable, key=lambda s: abs(math.log(s.batch_size / batch)))
    return near.mean_s / near.median_s


def model_free_b_star(batches: Sequence[BatchTTA], sf: StepTimeFit, ratio_at) -> tuple[float, float] | None:
    """B* and its predicted time without the McCandlish curve: steps interpolated piecewise-linearly in
    log-log between the measured batch sizes (no extrapolation) times the step-time fit; None with fewer
    than 2 measured batch sizes."""
    pts = sorted((b.batch_size, b.steps_to_target) for b in batches if b.steps_to_target)
    if len(pts) < 2:
        return None
    lb, ls = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    grid = np.exp(np.linspace(lb[0], lb[-1], 400))
    steps = np.exp(np.interp(np.log(grid), lb, ls))
    t = np.array([sf.predict_s(g) * ratio_at(g) for g in grid])
    i = int(np.argmin(steps * t))
    return float(grid[i]), float(steps[i] * t[i])


def _b_star(a: TTAAnalysis, times: dict[int, StepTime] | None = None) -> None:
    fit, sf = a.scaling_fit, a.step_time_fit
    if fit is not None and fit.fits is False and sf is not None:
        got = model_free_b_star(a.batches, sf, lambda b: _mean_to_median(times or {}, b))
        if got is not None:
            a.b_star, a.b_star_time_s = got
            a.b_star_rule = (f"model-free, since the McCandlish curve does not fit: steps interpolated in log-log "
                             f"between the measured batch sizes × {sf.source} (× mean/median), minimised over the "
                             "measured range")
            return
    knee = sf.knee_batch if sf is not None and sf.model == "hinge" else None
    value, reason = b_star(fit.b_crit if fit else None, sf.a_s if sf else None, sf.b_s_per_example if sf else None,
                           knee_batch=knee)
    a.b_star = value
    if value is None:
        a.null_reasons["b_star"] = reason
        return
    # The fit follows the medians (the shape); a time to target sums steps, so its prediction takes the
    # mean, as the measured times do: the fit scaled by mean/median at the measured batch nearest B*.
    ratio = _mean_to_median(times or {}, value)
    a.b_star_time_s = fit.predict_steps(value) * sf.predict_s(value) * ratio
    if knee is None:
        a.b_star_rule = f"sqrt(B_crit·a/b) from {sf.source}, t = a + b·B"
        if abs(ratio - 1) > 1e-9:
            a.b_star_rule += f"; its predicted time uses the mean step time ({ratio:.3g}x the fitted median there)"
        return
    a.b_star_rule = (f"max(K, sqrt(B_crit·a'/s)) from {sf.source}: a plateau up to the knee K = {knee:.3g}, "
                     f"then slope s, a' = plateau − s·K")
    unclipped = math.sqrt(fit.b_crit * sf.a_s / sf.b_s_per_example) if sf.a_s > 0 else None
    if value == knee:
        a.b_star_rule += ("; clipped to the knee (" + (f"sqrt(B_crit·a'/s) = {unclipped:.3g} is below it"
                                                      if unclipped is not None else "a' <= 0")
                          + ": a step costs no more up to the knee, and past it time to target only grows)")
    if abs(ratio - 1) > 1e-9:
        a.b_star_rule += f"; its predicted time uses the mean step time ({ratio:.3g}x the fitted median there)"


def _edges(a: TTAAnalysis) -> None:
    """Flag a fastest batch at the edge of the range tried (the optimum may lie beyond), its learning rate
    at the edge of the LR grid, and a model optimum B* the measured ranking contradicts."""
    e: dict[str, Any] = {"best_batch_at_edge": None, "best_lr_at_grid_edge": None, "b_star_nearest_batch": None,
                         "b_star_contradicts_ranking": None}
    a.edges = e
    timed = sorted(b.batch_size for b in a.batches if b.time_to_target_s is not None)
    best = a.batch(a.best_time_batch) if a.best_time_batch is not None else None
    if best is None or len(timed) < 2:
        return
    e["best_lr_at_grid_edge"] = best.best_lr_at_grid_edge
    lr_words = (" and its best learning rate is at the edge of the LR grid too" if best.best_lr_at_grid_edge else "")
    if best.batch_size == timed[-1]:
        e["best_batch_at_edge"] = "largest"
        a.warnings.append(f"the fastest batch, {best.batch_size}, is the largest tried{lr_words}: the optimum may lie "
                          "beyond the range; try larger batch sizes" + (" and a wider LR grid" if lr_words else ""))
    elif best.batch_size == timed[0]:
        e["best_batch_at_edge"] = "smallest"
        a.warnings.append(f"the fastest batch, {best.batch_size}, is the smallest tried{lr_words}: the optimum may lie "
                          "below the range; try smaller batch sizes" + (" and a wider LR grid" if lr_words else ""))
    if a.b_star is None:
        return
    near = min(timed, key=lambda b: abs(math.log(b / a.b_star)))
    e["b_star_nearest_batch"] = near
    if near == best.batch_size:
        e["b_star_contradicts_ranking"] = False
        return
    row = a.batch(near)
    if a.null_reasons.get("best_time_ties"):
        # No run-to-run spread to judge by: only a batch measured slower by more than its own interval counts.
        contradicts = row.time_to_target_low_s is not None and row.time_to_target_low_s > best.time_to_target_s
    else:
        contradicts = near not in a.best_time_ties
    e["b_star_contradicts_ranking"] = contradicts
    if contradicts:
        a.warnings.append(
            f"the fits' optimum B* = {a.b_star:.3g} (predicted {a.b_star_time_s:.3g} s) points at batch {near}, but its "
            f"measured time to target ({row.time_to_target_s:.3g} s, interval {row.time_to_target_low_s:.3g}–"
            f"{row.time_to_target_high_s:.3g} s) is distinguishable from the fastest measured, batch {best.batch_size} "
            f"({best.time_to_target_s:.3g} s): the measured ranking contradicts the model; trust the measurements")


def _generalisation(a: TTAAnalysis, curves: Sequence[Curve]) -> None:
    rows = [(b.batch_size, b.final_eval_metric) for b in a.batches if b.final_eval_metric is not None]
    stopped_at_target = all((c.stop_reason or "").strip() == "target reached" for c in curves
                            if c.steps_to_target(a.target).reached)
    # Compared: the smallest and the largest batch with a final metric, and whether the largest ends worse.
    g: dict[str, Any] = {"final_eval_metric_by_batch": {str(b): m for b, m in rows}, "reason": None,
                         "smallest_batch": None, "largest_batch": None, "largest_batch_ends_worse": None}
    if len(rows) < 2:
        g["reason"] = "needs a final eval metric at 2 or more batch sizes"
    elif stopped_at_target and any(c.source == "bench train" for c in curves):
        g["reason"] = ("runs stopped at the target, so their final metric is the target; train past it "
                       "(continue_after_target > 0) to compare how batch sizes generalise")
    else:
        (b0, m0), (b1, m1) = rows[0], rows[-1]
        g["smallest_batch"], g["largest_batch"] = b0, b1
        g["largest_batch_ends_worse"] = (m1 < m0) if a.higher_is_better else (m1 > m0)
    a.generalisation = g


def tta_from_files(curve_paths: Sequence[str | os.PathLike], *, sweep_path: str | os.PathLike | None = None,
                   target: float | None = None, metric: str | None = None, higher_is_better: bool | None = None,
                   batch_sizes: Sequence[int] | None = None, n_bootstrap: int = 1000,
                   step_times_path: str | os.PathLike | None = None, reference_batch: int | None = None,
                   tolerance: float = DEFAULT_TOLERANCE) -> TTAResult:
    """A TTAResult from curves files (bench.curves, bench.tta, CSV or JSON rows) and the step times of
    the same model: a sweep file, or a CSV of step times measured elsewhere (`step_times_path`,
    bench.records.tta.read_step_times), not both."""
    from datetime import datetime, timezone

    from bench.records.curves import check_batch_sizes_present
    from bench.records.loader import load_curves
    from bench.records.sweep import load_sweep
    from bench.records.tta import read_step_times

    if not curve_paths:
        raise BenchError("no curves files given")
    if sweep_path is not None and step_times_path is not None:
        raise BenchError("give the step times once: a sweep file or a step-times CSV, not both")
    curves: list[Curve] = []
    for p in curve_paths:
        curves += load_curves(p, metric=metric, higher_is_better=higher_is_better)
    if not curves:
        raise BenchError("the curves files hold no runs")
    if batch_sizes:
        check_batch_sizes_present(curves, batch_sizes, source=", ".join(map(str, curve_paths)))
        curves = [c for c in curves if c.batch_size in set(batch_sizes)]
    if target is None:
        targets = {c.target for c in curves}
        if len(targets) != 1 or None in targets:
            raise BenchError("give the target metric value (--target): the curves do not name one target")
        target = targets.pop()
    result = TTAResult(config={"curves": [str(p) for p in curve_paths], "sweep": str(sweep_path) if sweep_path else None,
                               "step_times": str(step_times_path) if step_times_path else None,
                               "target": target, "n_bootstrap": n_bootstrap},
                       task={"name": curves[0].task, "metric": curves[0].metric,
                             "higher_is_better": curves[0].higher_is_better},
                       curves=curves, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    result.null_reasons["noise_scale"] = "not measured: curves were read from files"
    fit, missing, ci_target = None, {}, None
    if sweep_path is not None:
        sweep = load_sweep(sweep_path)
        result.step_times, missing = step_times_from_sweep(sweep)
        result.step_time_missing = {str(k): v for k, v in missing.items()}
        result.step_time_source = f"sweep file {sweep_path} (workload {sweep.config.get('workload')!r})"
        result.step_time_load, why = sweep_machine_load(sweep)
        if why:
            result.null_reasons["step_time_load"] = why
        result.environment = dict(sweep.environment or {})
        fit = step_time_fit_from_sweep(sweep)
        rule = sweep.config.get("stopping_rule") if isinstance(sweep.config.get("stopping_rule"), dict) else {}
        target_ci = rule.get("ci_target", sweep.config.get("ci_target"))
        ci_target = float(target_ci) if is_number(target_ci) and target_ci > 0 else None
    elif step_times_path is not None:
        result.step_times = read_step_times(step_times_path)
        result.step_time_source = f"step-times file {step_times_path}"
        for b in sorted({c.batch_size for c in curves} - {s.batch_size for s in result.step_times}):
            missing[b] = f"no step time for batch {b} in {step_times_path}"
        result.step_time_missing = {str(k): v for k, v in missing.items()}
        result.null_reasons["environment"] = (f"step times read from {step_times_path}: the machine they were "
                                              "measured on is not recorded")
    else:
        result.null_reasons["step_times"] = "no sweep file given: steps to target only, no time to target"
        result.null_reasons["environment"] = ("no sweep file given: nothing was measured on a known machine "
                                              "(the fingerprint is the sweep's)")
    result.analysis = analyse_tta(curves, result.step_times, target, step_time_fit=fit, step_time_missing=missing,
                                  n_bootstrap=n_bootstrap, ci_target=ci_target, reference_batch=reference_batch,
                                  tolerance=tolerance)
    if sweep_path is not None and curves[0].task not in str(sweep.config.get("workload")):
        result.analysis.warnings.append(
            f"the sweep timed workload {sweep.config.get('workload')!r} and the curves come from task "
            f"{curves[0].task!r}: make sure they are the same model")
    result.finished = True
    return result

