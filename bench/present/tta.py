"""The time-to-accuracy verdict: plain sentences made from a finished study's typed analysis (the target,
the scaling fit, the noise scale, the best batches, B*, the naive estimate, generalisation), read first
by the `bench tta` command and the report.
"""

from __future__ import annotations

from typing import Any

import bench.present.fmt as fmt
from bench.analysis.noise_scale import (
    AGREE_BEYOND_10X,
    AGREE_WITHIN_2X,
    compare_with_critical_batch,
)


def _n(v: float) -> str:
    return fmt.number(v) if abs(v) >= 1 else f"{v:.3g}"


def _ci(ci) -> str:
    return f"[{_n(ci[0])}, {_n(ci[1])}]" if ci else "[—]"


def interval_method(f) -> str:
    """How a scaling fit's intervals were made, in words: '95% profile likelihood', '95% percentile
    bootstrap over batch sizes', or 'no interval' (files from before `interval_method` say 'bootstrap')."""
    method = getattr(f, "interval_method", None)
    if method is None and f.bootstrap_method:
        return f"{f.confidence:.0%} bootstrap over {f.bootstrap_method}"
    if method is None:
        return "no interval"
    if f.bootstrap_method and "bootstrap" in method:
        return f"{f.confidence:.0%} {method} over {f.bootstrap_method}"
    return f"{f.confidence:.0%} {method}"


def _value_ci(value: float, ci, reason: str | None, unit: str = "") -> str:
    """'199 [198, 200]' or, where the interval is null, the value and why there is none."""
    shown = f"{_n(value)}{unit}"
    if ci:
        return f"{shown} {_ci(ci)}"
    return f"{shown} (no interval: {reason})" if reason else f"{shown} [—]"


def scaling_sentence(f) -> str:
    """The fitted S_min, B_crit and E_min with their intervals, or why each interval is missing."""
    if f is None or f.b_crit is None:
        return f"No scaling fit: {f.reason if f else 'no curves'}."
    nr = getattr(f, "null_reasons", None) or {}
    if f.b_crit_ci:
        head = f"Critical batch size B_crit = {_n(f.b_crit)} {_ci(f.b_crit_ci)} ({interval_method(f)})"
    elif nr.get("b_crit_ci"):
        head = f"Critical batch size B_crit ≈ {_n(f.b_crit)}, no interval ({interval_method(f)}: {nr['b_crit_ci']})"
    else:
        head = f"Critical batch size B_crit = {_n(f.b_crit)} [—] ({interval_method(f)})"
    same = nr.get("s_min_ci") and nr.get("s_min_ci") == nr.get("b_crit_ci")
    s_min = f"{_n(f.s_min)} steps {_ci(f.s_min_ci)}" if f.s_min_ci or same or not nr.get("s_min_ci") \
        else _value_ci(f.s_min, None, nr.get("s_min_ci"), " steps")
    e_min = f"{_n(f.e_min)} examples {_ci(f.e_min_ci)}" if f.e_min_ci or not nr.get("e_min_ci") or \
        nr.get("e_min_ci") == nr.get("b_crit_ci") else _value_ci(f.e_min, None, nr.get("e_min_ci"), " examples")
    return f"{head}; S_min = {s_min}, E_min = {e_min}; fit residual {f.rel_rms_residual:.1%} rms."


def fit_check_sentence(f) -> str | None:
    """Whether the curve fits (the lack-of-fit test) and how the batch sizes were weighed by their noise."""
    if f is None or f.b_crit is None:
        return None
    lof = getattr(f, "lack_of_fit", None)
    nm = getattr(f, "noise_model", None) or {}
    parts = []
    if lof:
        name = "F" if lof["test"].startswith("F") else "runs"
        df = lof.get("df") or []
        on = (f" on {df[0]} and {df[1]} df" if name == "F" and len(df) == 2 else "")
        verdict = ("the McCandlish curve does not fit, so no interval is printed for it" if lof["fails"]
                   else "no evidence that the curve does not fit")
        parts.append(f"Fit check ({lof['test']}): {name} = {lof['statistic']:.3g}{on}, p = {lof['p_value']:.2g}: {verdict}")
    elif (f.null_reasons or {}).get("lack_of_fit"):
        parts.append(f"Fit check: not made ({f.null_reasons['lack_of_fit']})")
    if nm.get("slope") is not None:
        parts.append(f"each batch size weighed by its seed noise (the seeds' spread at the largest batch is "
                     f"{nm['sd_ratio']:.2g}x that at the smallest)")
    if not parts:
        return None
    return "; ".join(parts) + "."


def critical_batch_sentence(defs: dict | None) -> str | None:
    """The critical batch size by each definition, side by side, and how they relate."""
    if not defs:
        return None
    mc, tol, bs = defs.get("mccandlish") or {}, defs.get("tolerance") or {}, defs.get("b_simple") or {}
    parts = []
    if mc.get("b_crit") is not None:
        parts.append(f"McCandlish B_crit (B_noise = b/a of S = a + b/B) {_n(mc['b_crit'])}"
                     + (f" {_ci(mc['ci'])}" if mc.get("ci") else " (no interval)"))
    if tol.get("reference_batch") is not None:
        t, b0 = tol["tolerance"], tol["reference_batch"]
        what = f"steps {t:.0%} above perfect linear scaling from batch {b0}"
        measured = (f"at batch {_n(tol['measured'])} (measured, interpolated)" if tol.get("measured") is not None
                    else f"not within the batch sizes measured ({tol.get('measured_reason')})")
        fitted = (f"; the hyperbola puts it at (1 + {t:g})·{b0} + {t:g}·B_crit = {_n(tol['from_fit'])}"
                  if tol.get("from_fit") is not None else "")
        parts.append(f"{what}: {measured}{fitted}")
    if bs.get("value") is not None:
        parts.append(f"gradient noise scale B_simple {_n(bs['value'])}")
    if not parts:
        return None
    return "Critical batch size by definition: " + "; ".join(parts) + "."


def tta_verdict(result, *, warnings: bool = True) -> list[str]:
    """Plain sentences on a finished study (a TTAResult); with `warnings`, the analysis's warnings last."""
    a = result.analysis
    if a is None:
        return ["The study has no analysis yet (unfinished?)."]
    better = "≥" if a.higher_is_better else "≤"
    lines = [f"Target: {a.metric} {better} {a.target:.4g}."]
    lines.append(scaling_sentence(a.scaling_fit))
    check = fit_check_sentence(a.scaling_fit)
    if check:
        lines.append(check)
    defs = critical_batch_sentence(getattr(a, "critical_batch", None))
    if defs:
        lines.append(defs)
    ns = result.noise_scale
    if ns is not None and ns.b_simple is not None:
        agree = noise_scale_agreement(a.noise_scale_vs_b_crit)
        lines.append(f"Gradient noise scale B_simple = {ns.b_simple:.3g} {_ci(ns.b_simple_ci)} (batch {ns.batch_small} vs "
                     f"{ns.batch_big}, {ns.n_steps} steps)" + (f"; {agree}." if agree else "."))
    elif ns is not None:
        lines.append(f"Gradient noise scale: not measured ({ns.null_reasons.get('b_simple')}).")
    else:
        lines.append(f"Gradient noise scale: {result.null_reasons.get('noise_scale', 'not measured')}.")
    if a.best_time_batch is not None:
        ties = (f" (indistinguishable within the intervals: {', '.join(map(str, a.best_time_ties))})" if a.best_time_ties
                else " (with one seed, which batch sizes are indistinguishable from it cannot be told)"
                if a.null_reasons.get("best_time_ties") else "")
        lines.append(f"Fastest to target: batch {a.best_time_batch}, {fmt.duration(a.best_time_s)}{ties}.")
    else:
        lines.append(f"Fastest to target: — ({a.null_reasons.get('best_time_batch')}).")
    if a.compute_optimal_batch is not None:
        lines.append(f"Fewest examples to target (compute-optimal): batch {a.compute_optimal_batch}, "
                     f"{fmt.number(a.compute_optimal_examples)} examples.")
    if a.pareto_time_examples:
        lines.append(f"Time-vs-examples Pareto frontier: batch {', '.join(map(str, a.pareto_time_examples))}.")
    if a.pareto_time_energy:
        lines.append(f"Time-vs-energy Pareto frontier: batch {', '.join(map(str, a.pareto_time_energy))}.")
    if a.b_star is not None:
        rule = a.b_star_rule or "sqrt(B_crit·a/b)"
        lines.append(f"From the fits, B* = {a.b_star:.3g} (predicted {fmt.duration(a.b_star_time_s)}), as {rule}.")
    elif a.null_reasons.get("b_star"):
        lines.append(f"B*: — ({a.null_reasons['b_star']}).")
    rounds = step_time_load_sentence(result)
    if rounds:
        lines.append(rounds)
    naive = naive_sentence(a)
    if naive:
        lines.append(naive)
    errors = naive_errors_sentence(a)
    if errors:
        lines.append(errors)
    general = generalisation_sentence(a)
    if general:
        lines.append(general)
    if warnings:
        lines += [f"Warning: {w}." for w in a.warnings]
    return lines


def noise_scale_agreement(comparison: dict[str, Any] | None) -> str | None:
    """'B_simple and B_crit agree within a factor of 2' and the like, from `compare_with_critical_batch`'s
    record (files written before it had `agreement` carry the ratio, from which it is redone)."""
    c = dict(comparison or {})
    if c.get("agreement") is None and c.get("ratio_b_simple_to_b_crit"):
        c = compare_with_critical_batch(float(c["ratio_b_simple_to_b_crit"]), 1.0)
    agreement, factor = c.get("agreement"), c.get("factor")
    if agreement is None:
        return None
    if agreement == AGREE_WITHIN_2X:
        words = "agree within a factor of 2"
    elif agreement == AGREE_BEYOND_10X:
        words = f"differ by a factor of {factor:.0f} (more than an order of magnitude)"
    else:
        words = f"differ by a factor of {factor:.1f} (within an order of magnitude)"
    return f"B_simple and B_crit {words}"


def naive_error_words(err: float | None) -> str:
    """naive/true − 1 in words that cannot be read backwards: −0.25 -> 'the equal-step-time estimate is
    25% short: the real time is 33% longer'; +0.2 -> '… 20% long: the real time is 17% shorter'."""
    if err is None:
        return "no equal-step-time estimate"
    if round(100 * err) == 0:
        return "the equal-step-time estimate is right (within 0.5%)"
    if err < 0:
        return (f"the equal-step-time estimate is {-err:.0%} short: the real time is "
                f"{1.0 / (1.0 + err) - 1.0:.0%} longer")
    return f"the equal-step-time estimate is {err:.0%} long: the real time is {1.0 - 1.0 / (1.0 + err):.0%} shorter"


def _short_long(err: float) -> str:
    return "0%" if round(100 * err) == 0 else f"{-err:.0%} short" if err < 0 else f"{err:.0%} long"


def naive_sentence(a) -> str | None:
    """What the equal-step-time rule of thumb picks and how far off it is; None without a naive estimate."""
    n = a.naive or {}
    if n.get("naive_best_batch") is None:
        return None
    fastest = n.get("naive_best_is_fastest")
    if fastest is None:  # files written before the field: the same comparison
        fastest = n["naive_best_batch"] == a.best_time_batch
    predicted, true = n["naive_best_predicted_time_s"], n["naive_best_true_time_s"]
    off = predicted / true - 1.0 if predicted and true else None
    summary = (f"it picks batch {n['naive_best_batch']} and predicts {fmt.duration(predicted)} to target; the real "
               f"time is {fmt.duration(true)}" + (f", so {naive_error_words(off)}" if off is not None else "")
               + "; " + ("that batch is also the fastest" if fastest
                         else f"that batch is {n['penalty_rel']:.0%} slower than the fastest, batch "
                              f"{a.best_time_batch} ({fmt.duration(a.best_time_s)})"))
    assumption = (f"every batch size takes batch {n['reference_batch']}'s step time "
                  f"({fmt.duration(n['assumed_step_time_s'])})")
    return f"Equal-step-time rule of thumb ({assumption}): {summary}."


def naive_errors_sentence(a) -> str | None:
    """Per batch size, how short or long the equal-step-time estimate is, with its 95% interval; a batch
    whose interval holds zero is said to be within the noise."""
    n = a.naive or {}
    ref = n.get("reference_batch")
    rows = [b for b in a.batches if b.naive_rel_error is not None and b.batch_size != ref]
    if not rows or "interval_basis" not in n:  # files from before the intervals: said as they were then
        return None
    parts = []
    for b in rows:
        lo, hi = b.naive_rel_error_low, b.naive_rel_error_high
        if lo is None or hi is None:
            parts.append(f"{b.batch_size}: {_short_long(b.naive_rel_error)} (no interval)")
        elif lo <= 0 <= hi:
            parts.append(f"{b.batch_size}: {_short_long(b.naive_rel_error)} (95% interval "
                         f"{fmt.signed_percent(lo)} to {fmt.signed_percent(hi)}: holds 0, within the noise)")
        else:
            parts.append(f"{b.batch_size}: {_short_long(b.naive_rel_error)} (95% interval {fmt.signed_percent(lo)} "
                         f"to {fmt.signed_percent(hi)})")
    basis = n.get("interval_basis")
    return (f"Equal-step-time estimate against the real time to target, by batch (short: the real time is "
            f"longer; intervals from {basis or 'the step times'}): " + "; ".join(parts) + ".")


def _load_words(load: dict) -> str:
    busy = "busy: step times include waiting for a CPU" if load.get("busy") else "not busy beyond its free CPUs"
    return (f"other work kept about {load['other_load']:.1f} CPUs busy ({load['basis']}; the run's own "
            f"{load['own_threads']:g} of {load['cpus']} CPUs; 1-minute load average up to "
            f"{load['load_avg_1m_max']:.2f}): the machine was {busy}")


def rounds_sentence(rounds) -> str | None:
    """How the step times were measured in interleaved rounds, and how busy the machine was meanwhile."""
    if rounds is None:
        return None
    done = [b for b in rounds.batch_sizes if rounds.samples_s.get(str(b))]
    head = (f"Step times: {rounds.rounds} interleaved rounds across {fmt.plural(len(done), 'batch size')} "
            f"(order rotated each round, blocks of about {fmt.duration(rounds.block_s)}"
            + (f", {fmt.duration(rounds.wall_time_s)} in all" if rounds.wall_time_s else "") + ")")
    if rounds.missing:
        head += "; not timed in rounds: " + "; ".join(f"batch {b} ({why})" for b, why in sorted(
            rounds.missing.items(), key=lambda kv: int(kv[0])))
    load = rounds.machine_load
    if not load:
        why = (rounds.null_reasons or {}).get("machine_load", "not recorded")
        return f"{head}; machine load: unknown ({why})."
    return f"{head}; meanwhile {_load_words(load)}."


def step_time_load_sentence(result) -> str | None:
    """The machine's load while the step times were measured: the rounds' sentence, else the sweep's load."""
    rounds = getattr(result, "step_time_rounds", None)
    if rounds is not None:
        return rounds_sentence(rounds)
    load = getattr(result, "step_time_load", None)
    if load:
        return f"While the step times were measured, {_load_words(load)}."
    why = (getattr(result, "null_reasons", None) or {}).get("step_time_load")
    return f"Machine load while the step times were measured: unknown ({why})." if why else None


def generalisation_sentence(a) -> str | None:
    """How the final metric of the smallest and the largest batch compare, or why they were not compared."""
    g = a.generalisation or {}
    if g.get("reason"):
        return f"Generalisation: not compared ({g['reason']})."
    by_batch = g.get("final_eval_metric_by_batch") or {}
    b0, b1 = g.get("smallest_batch"), g.get("largest_batch")
    worse = g.get("largest_batch_ends_worse")
    if b0 is None and g.get("summary") and len(by_batch) >= 2:  # a file written before the typed fields
        keys = sorted(by_batch, key=int)
        b0, b1 = int(keys[0]), int(keys[-1])
        m0, m1 = by_batch[keys[0]], by_batch[keys[-1]]
        worse = (m1 < m0) if a.higher_is_better else (m1 > m0)
    if b0 is None or b1 is None:
        return None
    m0, m1 = by_batch[str(b0)], by_batch[str(b1)]
    return (f"Generalisation: final {a.metric} {m0:.4g} at batch {b0} vs {m1:.4g} at batch {b1}: "
            + ("the largest batch ends worse." if worse else "the largest batch ends no worse."))


def regimes_sentence(fit) -> str | None:
    """'Regimes: perfect scaling at batch 16, 32; diminishing returns at 64 … 1,024; …' from a fit."""
    if fit is None or not fit.regimes:
        return None
    from bench.analysis.scaling import DIMINISHING, MAXIMAL, PERFECT

    groups = []
    for name in (PERFECT, DIMINISHING, MAXIMAL):
        sizes = sorted(int(b) for b, r in fit.regimes.items() if r == name)
        if sizes:
            groups.append(f"{name} at batch {fmt.batch_list(sizes, thousands=True)}")
    unlabelled = sorted(int(b) for b, r in fit.regimes.items() if r is None)
    if unlabelled and fit.b_crit is not None:
        groups.append(f"none at batch {fmt.batch_list(unlabelled, thousands=True)} (not reached)")
    return ("Regimes: " + "; ".join(groups) + ".") if groups else None


def table_fit_lines(tf) -> list[str]:
    """`bench fit`'s sentences: what was fitted, the fit with its intervals (E_min in epochs too where the
    training set size is known), the regimes, then the warnings."""
    f = tf.fit
    n_rows = sum(b.n_runs for b in tf.batches)
    unreached = [b.batch_size for b in tf.batches if not b.reached]
    head = (f"Fit of S(B) = S_min·(1 + B_crit/B) to {tf.source or 'the table'}: {fmt.plural(n_rows, 'run')} at "
            f"{fmt.plural(len(tf.batches), 'batch size')}, given as {tf.unit} to target"
            + (f" (training set of {tf.dataset_size:,} examples)" if tf.dataset_size else "")
            + (f"; not reached at batch {fmt.batch_list(unreached, thousands=True)} (lower bounds)" if unreached else "")
            + ".")
    lines = [head, scaling_sentence(f)]
    check = fit_check_sentence(f)
    if check:
        lines.append(check)
    defs = critical_batch_sentence(getattr(tf, "critical_batch", None))
    if defs:
        lines.append(defs)
    if tf.e_min_epochs is not None:
        lines.append(f"E_min = {tf.e_min_epochs:.3g} epochs {_ci(tf.e_min_epochs_ci)} of the {tf.dataset_size:,} "
                     "training examples.")
    regimes = regimes_sentence(f)
    if regimes:
        lines.append(regimes)
    if f.b_crit_position in ("below", "beyond"):
        lines.append(f"Warning: B_crit lies {f.b_crit_position} the batch sizes measured: it is an extrapolation.")
    lines += [f"Warning: {w}." for w in f.warnings]
    return lines
