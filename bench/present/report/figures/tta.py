"""Time-to-accuracy figures: convergence curves, steps to target with the scaling fit, and time to
target with the naive estimate, the fastest batch and B*."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context, ticker

from bench.present.fmt import compact, number
from bench.present.report.figures.common import (
    GUIDE_COLOR,
    OOM_COLOR,
    TickFormatter,
    batch_axis,
    errs,
    legend,
    log_y,
    new_figure,
    ok,
    palette,
    sequential,
    style,
    time_unit,
    to_svg,
)


def convergence_figure(curves: Sequence[Any], target: float | None, metric: str,
                       best_lr: dict[int, float | None] | None = None) -> str | None:
    fig = convergence_fig(curves, target, metric, best_lr)
    return to_svg(fig, "convergence curves per batch size") if fig is not None else None


def convergence_fig(curves: Sequence[Any], target: float | None, metric: str,
                    best_lr: dict[int, float | None] | None = None):
    """Evaluation metric against training steps, one colour per batch size (runs at the best learning
    rate drawn solid, the other learning rates faint), with the target."""
    curves = [c for c in curves if any(p.eval_metric is not None for p in c.points)]
    if not curves:
        return None
    sizes = sorted({c.batch_size for c in curves})
    colors = dict(zip(sizes, sequential(len(sizes))))
    best_lr = best_lr or {}
    with rc_context(style()):
        fig, (ax,) = new_figure()
        labelled = set()
        shown: list[float] = []  # values of the best-LR runs set the y range: a diverged run cannot swamp it
        n_diverged = 0
        for c in sorted(curves, key=lambda c: (c.batch_size, c.lr or 0.0, c.seed or 0)):
            pts = [(p.step, p.eval_metric) for p in c.points if p.eval_metric is not None and p.step > 0]
            if not pts:
                continue
            x, y = zip(*pts)
            chosen = c.batch_size not in best_lr or best_lr[c.batch_size] is None or \
                (c.lr is not None and math.isclose(c.lr, best_lr[c.batch_size], rel_tol=1e-9))
            diverged = (c.stop_reason or "").startswith("diverged")
            if diverged:
                n_diverged += 1
                chosen = False  # drawn faint and left out of the y range, which it would swamp
                ax.plot([x[-1]], [y[-1]], "x", color=colors[c.batch_size], ms=5, alpha=0.6,
                        label="diverged (run stopped)" if n_diverged == 1 else None, clip_on=True)
            if chosen:
                shown.extend(v for v in y if ok(v))
            label = None
            if chosen and c.batch_size not in labelled:
                label = f"batch {c.batch_size:,}"
                labelled.add(c.batch_size)
            ax.plot(x, y, color=colors[c.batch_size], lw=1.4 if chosen else 0.8, alpha=0.95 if chosen else 0.22,
                    label=label)
        for b in sizes:
            if b not in labelled:  # every run at this batch diverged: still say so in the legend
                ax.plot([], [], color=colors[b], alpha=0.4, label=f"batch {b:,} (every run diverged)")
        if ok(target):
            ax.axhline(target, color="black", ls="--", lw=1.0, label=f"target {metric} = {target:.4g}")
            shown.append(target)
        if len(shown) > (1 if ok(target) else 0):
            lo, hi = min(shown), max(shown)
            if lo > 0 and hi / lo > 30:  # losses and risks fall over decades
                log_y(ax)
                ax.set_ylim(lo / 1.5, hi * 1.5)
            else:
                pad = 0.05 * (hi - lo or abs(hi) or 1.0)
                ax.set_ylim(lo - pad, hi + pad)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(TickFormatter())
        # matplotlib's own minor labels are mathtext ("$\mathdefault{2\times10^{3}}$"), which the figures
        # never parse: they would print raw. Label the 2x and 5x ticks in plain numbers when the steps span
        # under two decades (no labelled major tick in between otherwise), else none.
        span = ax.get_xlim() if ax.has_data() else (1, 10)
        if span[0] > 0 and span[1] / span[0] < 100:
            ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0), numticks=12))
            ax.xaxis.set_minor_formatter(TickFormatter())
        else:
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("training steps (optimizer updates)")
        ax.set_ylabel(metric)
        ax.set_title("Convergence per batch size (solid: best learning rate; faint: others)")
        legend(ax, ncols=min(6, len(sizes) + 1))
        return fig


def scaling_figure(batches: Sequence[Any], fit: Any, title: str = "Steps to target against batch size"):
    """A Figure of steps to target against batch size (`batches`: BatchSteps or BatchTTA rows) with the
    fitted S(B) = S_min(1 + B_crit/B), its asymptotes, B_crit and its interval; batch sizes that did not
    reach the target as lower bounds (▲) where known, else ✕ at the top. None with nothing reached."""
    rows = [b for b in batches if ok(b.steps_to_target)]
    if not rows:
        return None
    with rc_context(style()):
        fig, (ax,) = new_figure()
        b = np.array([r.batch_size for r in rows], dtype=float)
        s = np.array([r.steps_to_target for r in rows], dtype=float)
        err = errs(list(s), [r.steps_low for r in rows], [r.steps_high for r in rows])
        ax.errorbar(b, s, yerr=err, fmt="o", color=palette(1)[0], label="steps to target (bars: seed range)",
                    zorder=4)
        all_b = [r.batch_size for r in batches]
        ys = list(s - err[0]) + list(s + err[1])
        bounds = [(r.batch_size, r.censored_at) for r in batches
                  if not ok(r.steps_to_target) and ok(getattr(r, "censored_at", None))]
        if bounds:
            bx, by = zip(*bounds)
            ax.plot(bx, by, "^", color=OOM_COLOR, ms=7, zorder=5, label="not reached: at least this many steps")
            ys += list(by)
        missed = [r.batch_size for r in batches if not ok(r.steps_to_target) and r.batch_size not in dict(bounds)]
        if missed:
            ax.scatter(missed, [0.96] * len(missed), transform=ax.get_xaxis_transform(), marker="x", s=36,
                       color=OOM_COLOR, clip_on=False, label="did not reach the target (no bound)")
        batch_axis(ax, all_b)
        x_lo, x_hi = ax.get_xlim()
        if fit is not None and ok(fit.s_min) and ok(fit.b_crit):
            grid = np.geomspace(x_lo, x_hi, 200)
            ax.plot(grid, fit.s_min * (1 + fit.b_crit / grid), "-", color="black", lw=1.2,
                    label=f"fit S(B) = S_min·(1 + B_crit/B), S_min = {compact(fit.s_min)}")
            ax.plot(grid, fit.s_min * fit.b_crit / grid, ls=(0, (5, 2, 1, 2)), color=GUIDE_COLOR, lw=1.0,
                    label="perfect scaling (steps ∝ 1/B)")
            ax.axhline(fit.s_min, color=GUIDE_COLOR, ls=(0, (1, 2)), lw=1.0, label="S_min (no fewer steps at any batch)")
            ys.append(fit.s_min)
            ci = fit.b_crit_ci if fit.b_crit_ci and all(ok(v) for v in fit.b_crit_ci) else None
            sure = "" if ci else " (no reliable interval)"
            if x_lo <= fit.b_crit <= x_hi:
                ax.axvline(fit.b_crit, color="#9467bd", ls="--", lw=1.2, label=f"B_crit ≈ {number(fit.b_crit)}{sure}")
            else:  # drawn nowhere, so the legend says where it is rather than naming a line that is not there
                ax.plot([], [], " ", label=f"B_crit ≈ {number(fit.b_crit)}, {'below' if fit.b_crit < x_lo else 'beyond'} "
                                           f"the plotted range{sure}")
            if ci and ci[1] > x_lo and ci[0] < x_hi:
                ax.axvspan(max(ci[0], x_lo), min(ci[1], x_hi), color="#9467bd", alpha=0.08, lw=0,
                           label=f"B_crit {fit.confidence:.0%} CI ({number(ci[0])}–{number(ci[1])})")
        log_y(ax)
        ymin, ymax = min(v for v in ys if v > 0), max(ys)
        ax.set_ylim(max(ymin, 1e-9) / 1.6, ymax * 1.8)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylabel("steps to target")
        ax.set_title(title)
        legend(ax)
        return fig


def steps_to_target_figure(analysis: Any) -> str | None:
    """Steps to target against batch size with the fitted S(B) = S_min(1 + B_crit/B), B_crit and its CI."""
    rows = analysis.lr_selection or analysis.batches  # the selection carries the lower bounds of unreached sizes
    fig = scaling_figure(rows, analysis.scaling_fit)
    return to_svg(fig, "steps to target against batch size") if fig is not None else None


def tta_fig(analysis: Any):
    """A Figure of time to target against batch size: measured (steps × the step time TTA multiplies)
    with its interval, the equal-step-time estimate beside it, the best batch, the model S(B)·t(B) and B*.
    Whatever lies outside the plotted range is named in the legend as such, never listed as if drawn."""
    rows = [b for b in analysis.batches if ok(b.time_to_target_s)]
    if not rows:
        return None
    c0, c1 = palette(2)
    scale, unit = time_unit(r.time_to_target_s for r in rows)
    with rc_context(style()):
        fig, (ax,) = new_figure()
        b = np.array([r.batch_size for r in rows], dtype=float)
        t = np.array([r.time_to_target_s for r in rows], dtype=float)
        err = errs(list(t), [r.time_to_target_low_s for r in rows], [r.time_to_target_high_s for r in rows])
        ax.errorbar(b, t, yerr=err, fmt="-o", color=c0, label="measured: steps × step time (interval: seeds × CI)",
                    zorder=4)
        naive = [(r.batch_size, r.naive_time_to_target_s) for r in rows if ok(r.naive_time_to_target_s)]
        if naive:
            nb, nt = zip(*naive)
            ref = (analysis.naive or {}).get("reference_batch")
            ax.plot(nb, nt, "--s", color=c1, mfc="white", ms=5,
                    label=f"naive: every batch at batch {ref}'s step time" if ref is not None else "naive estimate")
            nbest = (analysis.naive or {}).get("naive_best_batch")
            if nbest in nb:
                ax.plot([nbest], [nt[nb.index(nbest)]], marker="*", ms=12, mfc="white", mec=c1, mew=1.3, zorder=6,
                        label=f"naive pick: batch {nbest:,}")
        if analysis.best_time_batch is not None and ok(analysis.best_time_s):
            ax.plot([analysis.best_time_batch], [analysis.best_time_s], marker="*", ms=16, color=c0, mec="black",
                    mew=0.7, zorder=7,
                    label=f"fastest measured: batch {analysis.best_time_batch:,} "
                          f"({compact(analysis.best_time_s / scale)} {unit})")
        all_t = list(t - err[0]) + list(t + err[1]) + [v for _, v in naive]
        batch_axis(ax, [r.batch_size for r in analysis.batches])
        log_y(ax, scale)
        y_lo, y_hi = min(v for v in all_t if v > 0) / 1.8, max(all_t) * 2.2
        ax.set_ylim(y_lo, y_hi)
        x_lo, x_hi = ax.get_xlim()
        sf, fit = analysis.step_time_fit, analysis.scaling_fit
        hinge = getattr(sf, "model", None) == "hinge"
        if sf is not None and fit is not None and ok(fit.s_min) and ok(fit.b_crit):
            grid = np.geomspace(x_lo, x_hi, 200)
            step_time = np.array([sf.predict_s(g) for g in grid])
            # The step-time fit follows the medians; the measured times multiply the mean, so the model
            # does too (mean/median interpolated between the measured batch sizes).
            ratio = [(r.batch_size, r.step_time_used_s / r.step_time_s) for r in rows
                     if ok(getattr(r, "step_time_used_s", None)) and ok(r.step_time_s) and r.step_time_s > 0]
            if ratio:
                rb, rr = zip(*sorted(ratio))
                step_time = step_time * np.interp(np.log(grid), np.log(rb), rr)
            model = fit.s_min * (1 + fit.b_crit / grid) * step_time
            shape = "max(t0, a + b·B)" if hinge else "(a + b·B)"
            inside = np.isfinite(model) & (model >= y_lo) & (model <= y_hi)
            if inside.any():
                ax.plot(grid[inside], model[inside], ":", color="black", lw=1.0, label=f"model S(B)·{shape}")
            else:
                where = "below" if np.nanmax(model) < y_lo else "above"
                ax.plot([], [], " ", label=f"model S(B)·{shape}: {where} the plotted range")
        if ok(analysis.b_star):
            name = (f"B* ≈ {number(analysis.b_star)} (hinge fit, ≥ knee)" if hinge
                    else f"B* = √(B_crit·a/b) ≈ {number(analysis.b_star)}")
            if x_lo <= analysis.b_star <= x_hi:
                ax.axvline(analysis.b_star, color="#9467bd", ls="--", lw=1.1, label=name)
            else:
                where = "below" if analysis.b_star < x_lo else "beyond"
                ax.plot([], [], " ", label=f"{name}: {where} the batch sizes plotted (an extrapolation)")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylabel(f"time to target ({unit})")
        ax.set_title("Time to accuracy against batch size")
        legend(ax)
        return fig


def tta_figure(analysis: Any) -> str | None:
    fig = tta_fig(analysis)
    return to_svg(fig, "time to accuracy against batch size") if fig is not None else None
