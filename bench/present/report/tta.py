"""The time-to-accuracy section of the report: one card per study (verdict, method, convergence, steps to
target and time to target figures, the per-batch table) and one per curves file."""

from __future__ import annotations

from pathlib import Path

import bench.present.fmt as fmt
from bench.core.numbers import is_number
from bench.present.report.common import batches, cell, compact_table, distinct, markup
from bench.present.report.figures import tta as F
from bench.present.report.inputs import Source
from bench.present.tta import interval_method, naive_error_words, tta_verdict


def _naive_error(b) -> str | None:
    if not is_number(b.naive_rel_error):
        return None
    lo, hi = getattr(b, "naive_rel_error_low", None), getattr(b, "naive_rel_error_high", None)
    shown = fmt.signed_percent(b.naive_rel_error)
    return f"{shown} [{fmt.signed_percent(lo)}, {fmt.signed_percent(hi)}]" if is_number(lo) and is_number(hi) else shown


def tta_summary(result) -> list[str]:
    """The study's verdict (its warnings are listed in the page's warnings section instead)."""
    if result.analysis is None:
        return ["The study has no analysis yet (unfinished?): only its curves are shown."
                + (f" {result.null_reasons.get('analysis')}" if result.null_reasons.get("analysis") else "")]
    return tta_verdict(result, warnings=False)


# What a study's warning is about, by the words the analysis (bench.analysis.tta) starts it with: the page
# groups warnings by kind. Anything else is grouped as "Time to accuracy".
_STUDY_WARNING_KINDS = (("mean step time exceeds the median", "Heavy tail"),
                        ("best learning rate at the edge", "LR at the grid's edge"),
                        ("fitted b_crit", "B_crit out of range"), ("one seed", "One seed"))


def study_warning_kind(text: str) -> str:
    low = text.lower()
    return next((kind for start, kind in _STUDY_WARNING_KINDS if start in low), "Time to accuracy")


def tta_headline(result) -> list[str]:
    """The study's verdict in at most three short lines: the fastest batch to the target, B_crit with its
    interval, and where the naive estimate (every batch at the smallest batch's step time) goes wrong."""
    a = result.analysis
    if a is None:
        return tta_summary(result)
    better = "≥" if a.higher_is_better else "≤"
    lines = []
    if a.best_time_batch is not None:
        ties = f" (tied within the intervals: {', '.join(map(str, a.best_time_ties))})" if a.best_time_ties else ""
        lines.append(f"Fastest to {a.metric} {better} {a.target:.4g}: batch {a.best_time_batch:,}, "
                     f"{fmt.duration(a.best_time_s, 2)}{ties}.")
    else:
        lines.append(f"Target {a.metric} {better} {a.target:.4g}: no fastest batch "
                     f"({a.null_reasons.get('best_time_batch') or 'none reached it'}).")
    f = a.scaling_fit
    if f is not None and f.b_crit is not None:
        ci = f.b_crit_ci
        shown = fmt.figures(f.b_crit, fmt.supported_digits(f.b_crit, *ci) if ci else 2)
        lines.append(f"Critical batch size B_crit ≈ {shown}" + (f" (95% CI {fmt.figures(ci[0], 3)}–{fmt.figures(ci[1], 3)})"
                                                                 if ci else " (no interval)")
                     + f"; S_min ≈ {fmt.figures(f.s_min, 2)} steps.")
    naive = [b for b in a.batches if is_number(b.naive_rel_error)]
    if naive:
        worst = max(naive, key=lambda b: abs(b.naive_rel_error))
        lines.append(f"At batch {worst.batch_size:,}, {naive_error_words(worst.naive_rel_error)}.")
    return lines


def tta_table(a) -> dict:
    """One row per batch size of a study's analysis: the numbers behind the figures."""
    cols = ["batch", "best LR", "steps to target", "seed range", "examples", "regime", "step time used",
            "time to target", "interval", "naive estimate", "naive error", "energy to target", "notes"]
    rows = []
    best = a.best_time_batch
    for b in a.batches:
        notes = [f"{k}: {v}" for k, v in (b.null_reasons or {}).items() if k not in ("energy_per_step_j", "energy_to_target_j")]
        if b.best_lr_at_grid_edge:
            notes.append("best LR at the edge of the grid")
        rows.append([
            cell(f"{b.batch_size:,}", b.batch_size, cls="good" if b.batch_size == best else None),
            cell(fmt.quantity(b.best_lr), b.best_lr),
            cell(fmt.quantity(b.steps_to_target), b.steps_to_target),
            cell(f"{fmt.quantity(b.steps_low)} – {fmt.quantity(b.steps_high)}" if is_number(b.steps_low) else None, b.steps_low),
            cell(fmt.quantity(b.examples_to_target), b.examples_to_target),
            cell(b.regime, b.regime),
            _used_step_time(b),
            cell(fmt.duration(b.time_to_target_s), b.time_to_target_s),
            cell(f"{fmt.duration(b.time_to_target_low_s)} – {fmt.duration(b.time_to_target_high_s)}"
                 if is_number(b.time_to_target_low_s) else None, b.time_to_target_low_s),
            cell(fmt.duration(b.naive_time_to_target_s), b.naive_time_to_target_s),
            cell(_naive_error(b), b.naive_rel_error,
                 title="the naive estimate / the measured time − 1 (negative: the estimate is short), with its 95% "
                       "interval where the step times carry one"),
            cell(f"{b.energy_to_target_j:.3g} J" if is_number(b.energy_to_target_j) else None, b.energy_to_target_j,
                 title=(b.null_reasons or {}).get("energy_to_target_j")),
            cell("; ".join(notes), None, cls="notes"),
        ])
    return {"columns": cols, "rows": rows}


def study_label(src: Source) -> str:
    """'task · metric to target': what a study is of."""
    r = src.record
    a = r.analysis
    task = (r.task or {}).get("name") or (r.config.get("study") or {}).get("task") or Path(src.path).stem
    metric = a.metric if a else (r.curves[0].metric if r.curves else "metric")
    target = a.target if a else (r.config.get("study") or {}).get("target")
    return f"{task} · {metric} to {target:.4g}" if is_number(target) else str(task)


# Study settings that tell two studies of the same task and target apart, in the order they are tried.
_DISTINGUISHING = ("lr_rule", "optimizer", "precision", "batch_sizes", "lr_factors", "base_lr", "seeds", "device",
                   "max_steps", "warmup_steps", "momentum", "weight_decay")


def study_labels(sources) -> list[str]:
    """One title per study, naming what distinguishes studies of the same task and target: the first
    setting that differs (LR rule, optimizer, …), else the step-time source, the date or the file name."""
    def settings(src):
        cfg = src.record.config or {}
        study = cfg.get("study") if isinstance(cfg.get("study"), dict) else cfg
        return study if isinstance(study, dict) else {}

    bases = [study_label(s) for s in sources]
    extras = []
    for s in sources:
        st = settings(s)
        keys = [k for k in _DISTINGUISHING if any(settings(o).get(k) != st.get(k) for o in sources if o is not s)]
        words = [f"{k.replace('_', ' ')} {_show(st.get(k))}" for k in keys]
        words += [s.record.step_time_source or "", s.record.created or "", Path(s.path).name]
        extras.append(words)
    return distinct(bases, extras)


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return "—" if v is None else str(v)


def _used_step_time(b):
    """The step time the time to target multiplies (the mean, where known), the median in its tooltip: the
    columns steps × step time = time to target must multiply."""
    used = getattr(b, "step_time_used_s", None)
    if not is_number(used) and is_number(b.time_to_target_s) and is_number(b.steps_to_target) and b.steps_to_target:
        used = b.time_to_target_s / b.steps_to_target  # files from before step_time_used_s
    if not is_number(used):
        return cell(fmt.duration(b.step_time_s), b.step_time_s,
                    title=f"median {fmt.duration(b.step_time_s)}" if is_number(b.step_time_s) else None)
    basis = b.time_to_target_basis or "mean"
    return cell(f"{fmt.duration(used)} ({basis})", used,
                title=f"time to target = steps × this {basis}; median {fmt.duration(b.step_time_s)}")


def tta_context(src: Source, index: int, label: str | None = None) -> dict:
    """One study's card: verdict, warnings, method, its three figures and its table; `label` its title
    (study_labels: unique among the studies on the page)."""
    r = src.record
    a = r.analysis
    metric = a.metric if a else (r.curves[0].metric if r.curves else "metric")
    target = a.target if a else (r.config.get("study") or {}).get("target")
    best_lr = {b.batch_size: b.best_lr for b in a.batches} if a else None
    figs = [
        ("convergence", "Convergence curves", F.convergence_figure(r.curves, target, metric, best_lr),
         "no curve has evaluations"),
        ("steps", "Steps to target", F.steps_to_target_figure(a) if a else None,
         "no batch size reached the target" if a else "no analysis"),
        ("tta", "Time to accuracy", F.tta_figure(a) if a else None,
         (a.null_reasons.get("best_time_batch") or "no time to target") if a else "no analysis"),
    ]
    warnings = [{"kind": study_warning_kind(w), "text": w[0].upper() + w[1:] + ("" if w.endswith(".") else ".")}
                for w in (a.warnings if a else [])]
    if not r.finished:
        warnings.insert(0, {"kind": "Unfinished", "text": "The study did not finish (interrupted, or still running)."})
    method = []
    if r.step_time_source:
        method.append(f"Step times: {r.step_time_source}.")
    study = r.config.get("study") or {}
    if study:
        method.append(f"Learning rate tuned per batch size ({study.get('lr_rule') or 'task default'} rule, "
                      f"{len(study.get('lr_factors') or [])} factors), {len(study.get('seeds') or [])} seed(s) each; "
                      "steps to target = interpolated between the evaluations either side of the target, averaged over seeds at the best LR.")
    f = a.scaling_fit if a else None
    if f is not None and f.b_crit is not None:
        if "bootstrap" in (f.interval_method or "bootstrap") and f.bootstrap_method:
            method.append(f"B_crit interval: {interval_method(f)} ({f.n_bootstrap_ok} of {f.n_bootstrap} resamples).")
        elif f.interval_method:
            method.append(f"B_crit interval: {interval_method(f)}: every B_crit whose best fit raises the residual "
                          "sum of squares by at most the F(1, n−2) quantile times the residual variance (coverage "
                          "measured in docs/tta.md).")
    if a and a.scaling_fit is not None:
        method.append("Regimes " + a.scaling_fit.regime_rule + ".")
    return {
        "id": f"tta-{index}",
        "label": label or study_label(src),
        "path": src.path,
        "summary": tta_summary(r),
        "headline": tta_headline(r),
        "warnings": warnings,
        "method": method,
        "figures": [{"key": k, "title": t, "svg": markup(svg), "missing": None if svg else why} for k, t, svg, why in figs],
        "table": compact_table(tta_table(a), keep=("batch",)) if a else None,
        "pareto": a.pareto_time_examples if a else [],
    }


def curves_context(src: Source, index: int) -> dict:
    """A curves file's card: how many runs at which batch sizes, and their convergence figure."""
    cf = src.record
    metric = cf.curves[0].metric if cf.curves else "metric"
    target = (cf.config or {}).get("target") or next((c.target for c in cf.curves if c.target is not None), None)
    svg = F.convergence_figure(cf.curves, target, metric)
    sizes = sorted({c.batch_size for c in cf.curves})
    return {"id": f"curves-{index}", "path": src.path,
            "label": f"{(cf.task or {}).get('name') or Path(src.path).stem} · {fmt.plural(len(cf.curves), 'run')}",
            "summary": [f"{fmt.plural(len(cf.curves), 'training run')} at batch {batches(sizes)}"
                        + ("" if cf.finished else " (unfinished: more runs were planned)") + "."],
            "figure": {"key": "convergence", "title": "Convergence curves", "svg": markup(svg),
                       "missing": "no curve has evaluations"}}
