"""The step-time verdict: a few plain sentences made from a `StepTimeAnalysis` (where step time stays
equal, how it grows beyond, where throughput saturates, which points are noisy), read first by the
`bench sweep` command and the report. Never more certain than the analysis: what it could not tell,
the sentences say it could not tell.
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
    """The verdict, in order: the equal-time range and growth beyond it, throughput, noise, and (unless
    `largest_batch` is False) the largest batch that fits."""
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
                   f"{fmt.number(p.throughput_samples_per_s)} samples/s{diag}): at least two batch sizes are "
                   "needed to compare step times, and three to fit a curve.")
    else:
        out.append(equal_time_sentence(a))
        out.append(throughput_sentence(a))
    if pts:
        noise = noise_sentence(a)
        if noise:
            out.append(noise)
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


def throughput_sentence(a: StepTimeAnalysis) -> str:
    """The peak throughput, and the smallest batch that reaches the saturation fraction of it."""
    peak = (f"Throughput peaks at {fmt.number(a.peak_throughput_samples_per_s)} samples/s "
            f"at batch {a.peak_throughput_batch}")
    if a.peak_at_largest_batch:
        peak += ", the largest measured (it may rise further)"
    frac = fmt.pct(a.saturation_fraction)
    if a.throughput_saturation_batch is not None and a.throughput_saturation_batch < a.peak_throughput_batch:
        return peak + f"; batch {a.throughput_saturation_batch} already reaches {frac} of it."
    return peak + f"; no smaller batch reaches {frac} of it."


def noise_sentence(a: StepTimeAnalysis) -> str | None:
    """Which points are noisy (repeated blocks disagree) and where the curve is not monotone; None if neither."""
    mono = None
    if a.faster_at_larger_batch:
        pairs = fmt.and_list([f"{s} to {b}" for s, b in a.faster_at_larger_batch])
        mono = f"step time falls from batch {pairs} beyond the 95% CIs"
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


def sweep_verdict(result) -> list[str]:
    """The verdict of a SweepResult's analysis; [] when it has none. InvalidResultsFile for an analysis
    that cannot be read."""
    a = sweep_analysis(result.analysis)
    return steptime_verdict(a) if a is not None else []

