"""The step-time verdict: a few plain sentences made from a `StepTimeAnalysis` (where step time stays
equal, how it grows beyond, where throughput saturates, which points are noisy, have heavy tails or
too few blocks for their CI, whether the machine was busy), read first by the `bench sweep` command
and the report. Never more certain than the analysis: what it could not tell, the sentences say it
could not tell, and a comparison made on medians is never said to be beyond CIs.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import bench.present.fmt as fmt
from bench.analysis.steptime import (
    BEYOND,
    FIT_HINGE,
    GROWTH_IRREGULAR,
    GROWTH_LINEAR,
    GROWTH_NONE,
    THROUGHPUT_MEAN,
    StepTimeAnalysis,
    StepTimePoint,
)


def sweep_analysis(analysis: Any) -> StepTimeAnalysis | None:
    """The typed analysis of a sweep: `SweepResult.analysis` as stored (a dict, version 1 or 2) or
    already typed; None when there is none. Raises InvalidResultsFile for one that cannot be read."""
    if analysis is None or isinstance(analysis, StepTimeAnalysis):
        return analysis
    return StepTimeAnalysis.from_dict(analysis)


def steptime_verdict(a: StepTimeAnalysis, *, largest_batch: bool = True) -> list[str]:
    """The verdict, in order: the equal-time range and growth beyond it, throughput, noise, heavy tails,
    block shortfalls, a busy machine, and (unless `largest_batch` is False) the largest batch that fits."""
    out: list[str] = []
    pts = a.points
    fits = largest_batch_sentence(a) if largest_batch else None
    if not pts:
        out.append("Nothing was measured: no batch size has a successful step-time measurement, "
                   "so there is nothing to analyse.")
    elif len(pts) == 1:
        p = pts[0]
        diag = f", {p.diagnosis}" if p.diagnosis else ""
        out.append(f"Only batch {p.batch_size} was measured ({fmt.duration(p.median_s)} per step, "
                   f"{fmt.number(p.throughput_samples_per_s)} samples/s{_from_mean(p)}{diag}): at least two batch "
                   "sizes are needed to compare step times, and three to fit a curve.")
    else:
        out.append(equal_time_sentence(a))
        out.append(throughput_sentence(a))
    if pts:
        for sentence in (noise_sentence(a), heavy_tail_sentence(a), block_shortfall_sentence(a)):
            if sentence:
                out.append(sentence)
    busy = busy_sentence(a)
    if busy:
        out.append(busy)
    if fits:
        out.append(fits)
    return out


def largest_batch_sentence(a: StepTimeAnalysis) -> str | None:
    """'The largest batch that fits is N.' when the analysis was given one."""
    if a.largest_batch_that_fits is None:
        return None
    return f"The largest batch that fits is {a.largest_batch_that_fits}."


def _next_batch(points: Sequence[StepTimePoint], batch_size: int | None) -> int | None:
    for p in points:
        if batch_size is not None and p.batch_size > batch_size:
            return p.batch_size
    return None


def _diag_phrase(points: Iterable[StepTimePoint]) -> str | None:
    """The diagnoses of `points` in batch order, distinct, e.g. 'launch-bound, then compute-bound'."""
    seen: list[str] = []
    for p in points:
        if p.diagnosis and p.diagnosis not in seen:
            seen.append(p.diagnosis)
    return ", then ".join(seen) if seen else None


def equal_time_sentence(a: StepTimeAnalysis) -> str:
    """Up to which batch step time stays within eps of the smallest batch's (with the CIs), and how it
    grows beyond. Needs two or more points."""
    pts = a.points
    ref = pts[0]
    eps = fmt.pct(a.eps)
    tref = f"batch {ref.batch_size}'s ({fmt.duration(ref.median_s)})"
    ci = "95% CIs"
    median_note = ""
    if len(a.points_without_ci) == len(pts):
        ci = "judged on medians: no point has a 95% CI"
    elif a.points_without_ci:
        median_note = f"batch {fmt.batch_list(a.points_without_ci)} judged on medians for lack of a CI"
        ci += f"; {median_note}"
    largest = pts[-1].batch_size
    flat = [p for p in pts if a.equal_time_max_batch is not None and p.batch_size <= a.equal_time_max_batch]
    flat_diag = _diag_phrase(flat)
    flat_diag = f", where the step is {flat_diag}" if flat_diag else ""

    if a.equal_time_reaches_largest:
        return (f"Step time stays within {eps} of {tref} at every batch measured, up to {largest} "
                f"({ci}){flat_diag}: the knee lies beyond batch {largest}.")

    nxt = pts[1]
    mentioned_beyond = False
    if a.equal_time_max_batch == ref.batch_size:
        if nxt.equal_time == BEYOND:
            head = (f"Step time already exceeds {tref} by more than {eps} at batch {nxt.batch_size}, "
                    f"the next batch measured ({ci})")
            mentioned_beyond = True
        else:
            head = (f"At batch {nxt.batch_size} the 95% CIs cannot tell whether step time stays within {eps} "
                    f"of {tref}" + (f" ({median_note})" if median_note else ""))
            if a.equal_time_max_batch_possible is not None and a.equal_time_max_batch_possible > nxt.batch_size:
                head += f"; it may stay so up to batch {a.equal_time_max_batch_possible}"
    else:
        head = f"Step time stays within {eps} of {tref} up to batch {a.equal_time_max_batch} ({ci}){flat_diag}"
        if a.equal_time_max_batch_possible is not None and a.equal_time_max_batch_possible > a.equal_time_max_batch:
            head += f", and possibly up to batch {a.equal_time_max_batch_possible} (the CIs are too wide to tell)"

    if a.first_beyond_batch is None:
        return head + f"; no batch measured is clearly more than {eps} slower."

    beyond_pts = [p for p in pts if p.batch_size >= a.first_beyond_batch]
    beyond_diag = _diag_phrase(beyond_pts)
    where = f" ({beyond_diag})" if beyond_diag else ""
    growth = a.growth()
    if growth is None:
        if mentioned_beyond:
            return head + (f"{where}." if where else ".")
        return head + f"; from batch {a.first_beyond_batch} on{where} it is more than {eps} slower."
    if mentioned_beyond:
        lead = f"{beyond_diag}, it grows" if beyond_diag else "it grows"
    elif _next_batch(pts, a.equal_time_max_batch) == a.first_beyond_batch:
        lead = f"beyond{where}, it grows"
    else:
        lead = f"from batch {a.first_beyond_batch} on{where}, it grows"
    if growth == GROWTH_NONE:
        return head + f"; {lead} without a steady trend (the fits find no positive slope)."
    fit = a.fit()
    slope_txt = fmt.slope(fit.slope_s_per_sample, ref.median_s)
    if growth == GROWTH_IRREGULAR:
        return head + (f"; {lead} irregularly (the best fit, {slope_txt}, leaves a "
                       f"{fit.rel_rms_residual:.0%} RMS residual).")
    return head + f"; {lead} about linearly, {slope_txt} ({knee_text(a)})."


def named_knee(a: StepTimeAnalysis) -> float | None:
    """The knee the verdict names (the hinge's knee, or the line's a/b), or None where it names none: no
    growth past the equal-time range, or growth too irregular for a knee to mean anything. The figures
    draw this one, so a figure never shows a knee the sentence beside it does not claim."""
    if a.equal_time_reaches_largest or a.first_beyond_batch is None or a.growth() != GROWTH_LINEAR:
        return None
    if a.best_fit == FIT_HINGE:
        return a.knee_batch
    return a.linear_fit.saturation_batch if a.linear_fit is not None else None


def knee_text(a: StepTimeAnalysis) -> str:
    """Where the curve bends: the hinge's knee, or the line's fixed part and a/b."""
    if a.best_fit == FIT_HINGE and a.knee_batch is not None:
        return f"knee ≈ {fmt.batch_estimate(a.knee_batch)}"
    lin = a.linear_fit
    fixed = f"fixed part {fmt.duration(lin.intercept_s)}" if lin.intercept_s > 0 else "no fixed part resolved"
    if lin.saturation_batch is not None:
        return f"{fixed}, so a/b ≈ {fmt.batch_estimate(lin.saturation_batch)}"
    return fixed


def _from_mean(p: StepTimePoint) -> str:
    return " from the mean step" if p.throughput_basis == THROUGHPUT_MEAN else ""


def throughput_sentence(a: StepTimeAnalysis) -> str:
    """The peak throughput (saying whether from the mean step time, as an epoch gets it, or from the
    median in analyses made before it was), and the smallest batch that reaches the saturation fraction of it."""
    basis = {p.throughput_basis for p in a.points}
    label = (", from the mean step time," if basis == {THROUGHPUT_MEAN}
             else ", from the median step time," if THROUGHPUT_MEAN not in basis else "")
    peak = (f"Throughput{label} peaks at {fmt.number(a.peak_throughput_samples_per_s)} samples/s "
            f"at batch {a.peak_throughput_batch}")
    if a.peak_at_largest_batch:
        peak += ", the largest measured (it may rise further)"
    frac = fmt.pct(a.saturation_fraction)
    if a.throughput_saturation_batch is not None and a.throughput_saturation_batch < a.peak_throughput_batch:
        return peak + f"; batch {a.throughput_saturation_batch} already reaches {frac} of it."
    return peak + f"; no smaller batch reaches {frac} of it."


def noise_sentence(a: StepTimeAnalysis) -> str | None:
    """Which points are noisy (repeated blocks disagree) and where the curve is not monotone (beyond the
    95% CIs where both points have one, on the medians where one lacks it); None if neither."""
    parts = []
    if a.faster_at_larger_batch:
        pairs = fmt.and_list([f"{s} to {b}" for s, b in a.faster_at_larger_batch])
        parts.append(f"step time falls from batch {pairs} beyond the 95% CIs")
    if a.faster_on_medians:
        pairs = fmt.and_list([f"{s} to {b}" for s, b in a.faster_on_medians])
        missing = sorted({b for pair in a.faster_on_medians for b in pair} & set(a.points_without_ci))
        lead = "from batch" if not parts else "and from batch"
        text = (f"by more than {fmt.pct(a.noise_target)} on the medians, without a 95% CI at batch "
                f"{fmt.batch_list(missing)} to judge it by" if missing else
                f"by more than {fmt.pct(a.noise_target)} on the medians")
        parts.append((f"step time falls {lead} {pairs} " if not parts else f"{lead} {pairs} ") + text)
    mono = ", ".join(parts) if parts else None
    if a.noisy_batches:
        noisy = [p for p in a.points if p.noisy]
        diag = _diag_phrase(noisy)
        diag = f" ({diag})" if diag else ""
        s = (f"Repeated timing blocks disagree by more than ±{fmt.pct(a.noise_target)} at batch "
             f"{fmt.batch_list(a.noisy_batches)}{diag}: those points are noisy")
        return s + (f", and {mono}." if mono else ".")
    if mono:
        return mono[0].upper() + mono[1:] + ": the curve is not monotone, so read the fits with care."
    return None


def heavy_tail_sentence(a: StepTimeAnalysis) -> str | None:
    """The points whose mean step exceeds the median by more than the noise target; None if none."""
    tails = [p for p in a.points if p.heavy_tail]
    if not tails:
        return None
    worst = max(p.mean_s / p.median_s - 1.0 for p in tails)
    return (f"The mean step time exceeds the median by more than {fmt.pct(a.noise_target)} at batch "
            f"{fmt.batch_list([p.batch_size for p in tails])} (by up to {fmt.percent(worst, 0 if worst >= 0.1 else 1)}): a "
            "heavy tail of slow "
            "steps, which a run of such steps pays for; throughput is from the mean, the equal-time calls "
            "from the median.")


def block_shortfall_sentence(a: StepTimeAnalysis) -> str | None:
    """The points at which fewer timed blocks than a CI across blocks needs fitted the budget; None if none."""
    short = [p for p in a.points if p.block_shortfall is not None]
    if not short:
        return None
    f = [p.block_shortfall for p in short]
    steps = sorted(x.step_s for x in f)
    step_txt = (f"{fmt.duration(steps[0])} steps" if steps[0] == steps[-1]
                else f"steps of {fmt.duration(steps[0])} to {fmt.duration(steps[-1])}")
    budgets = sorted({x.budget_s for x in f})
    budget_txt = f"the {budgets[0]:g} s budget" if len(budgets) == 1 else "the budget"
    no_ci = [p.batch_size for p in short if p.ci_low_s is None]
    with_ci = [p.batch_size for p in short if p.ci_low_s is not None]
    what = []
    if with_ci:
        what.append(f"the 95% CI{'s' if len(with_ci) > 1 else ''} at batch {fmt.batch_list(with_ci)} "
                    f"{'rest' if len(with_ci) > 1 else 'rests'} on the pooled samples alone, which drift can make "
                    "too narrow")
    if no_ci:
        what.append(f"batch {fmt.batch_list(no_ci)} {'have' if len(no_ci) > 1 else 'has'} too few samples for "
                    "any 95% CI")
    return (f"Fewer than {f[0].needed} timed blocks fitted {budget_txt} at batch "
            f"{fmt.batch_list([p.batch_size for p in short])} ({step_txt}): {'; '.join(what)}; a budget of about "
            f"{max(x.budget_needed_s for x in f):.2g} s would fit them (--budget).")


def busy_sentence(a: StepTimeAnalysis) -> str | None:
    """A warning when other work kept the run from a CPU while it was measured; None otherwise."""
    load = a.machine_load
    if load is None or not load.busy:
        return None
    if load.basis == "cpu time":
        other = (f"other processes used about {load.other_load:.1f} CPUs on average over the "
                 f"{fmt.duration(load.window_s)} of measuring (the machine's busy CPU time less this run's own)")
    elif load.basis == "window":
        other = (f"other work kept about {load.other_load:.1f} threads runnable on average over the "
                 f"{fmt.duration(load.window_s)} of measuring")
    else:
        other = (f"other work kept about {load.other_load:.1f} threads runnable (the 1-minute load average "
                 f"at the end of a {fmt.duration(load.window_s)} run was {load.mean_load:.2f})")
    if load.free_cpus > 0:
        room = (f"more than the {load.free_cpus:g} of its {load.cpus} CPUs this run leaves free (it keeps "
                f"{load.own_threads:g} busy)")
    else:
        room = f"while this run's own {load.own_threads:g} threads already fill its {load.cpus} CPUs"
    return (f"The machine was busy while this ran: {other}, {room}; step times may include waiting for a "
            "CPU, so compare them with a quiet run before trusting small differences.")


def skipped_steps_sentence(result) -> str | None:
    """Where fp16's gradient scaler skipped the optimizer update in timed steps (None: nowhere)."""
    skipped = sorted((p.batch_size, p.skipped_steps, len(p.samples_s or [])) for p in result.points
                     if isinstance(p.skipped_steps, int) and p.skipped_steps > 0)
    if not skipped:
        return None
    where = ", ".join(f"{n} of {m} at batch {b:,}" if m else f"{n} at batch {b:,}" for b, n, m in skipped)
    return (f"The fp16 gradient scaler skipped the optimizer update (inf/NaN gradients) in timed steps: {where}; "
            "those steps did less work than a training step, so the step times there are not all of full steps.")


def sweep_verdict(result) -> list[str]:
    """The verdict of a SweepResult's analysis, then the steps fp16's gradient scaler skipped; [] when
    it has no analysis. InvalidResultsFile for an analysis that cannot be read."""
    a = sweep_analysis(result.analysis)
    if a is None:
        return []
    skipped = skipped_steps_sentence(result)
    return steptime_verdict(a) + ([skipped] if skipped else [])



def warmup_cost_sentence(result) -> str | None:
    """What warm-up cost a sweep, apart from the budget of timed steps (it has limits of its own), and
    which points it left still moving; None without measured points. From a SweepResult."""
    from bench.core.vocabulary import WARM_STABLE

    pts = [p for p in result.points if p.ok and p.warmup_samples_s]
    if not pts:
        return None
    rule = result.config.get("warmup_rule") or {}
    warm_s = sorted(sum(p.warmup_samples_s[1:]) for p in pts)  # after each point's first step
    budget = result.config.get("budget_s")
    limit = rule.get("max_time_s")
    span = (fmt.duration(warm_s[0]) if warm_s[0] == warm_s[-1]
            else f"{fmt.duration(warm_s[0])} to {fmt.duration(warm_s[-1])}")
    out = (f"Warm-up, apart from the {budget:g} s budget of timed steps per point: {span} of steps per point after "
           f"its first" + (f" (limit {limit:g} s, --warmup-max)" if limit else "") + ".")
    cut = [p.batch_size for p in pts if p.warmup_reason != WARM_STABLE]
    if cut:
        out += (f" At batch {fmt.batch_list(cut)} warm-up reached its limit before step times stopped moving: "
                "those points may still be drifting (each says how in its warnings).")
    return out
