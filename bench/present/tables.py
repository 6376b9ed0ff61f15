"""Terminal tables (rich): the points of one sweep, and the batch sizes of one time-to-accuracy study.
The commands print them; the report has its own HTML tables of the same numbers."""

from __future__ import annotations

import textwrap

import bench.present.fmt as fmt
from bench.present.steptime import sweep_analysis


def sweep_table(result):
    """A rich Table of the points of one sweep (a SweepResult): what a user reads first after the verdict."""
    from rich.table import Table

    a = sweep_analysis(result.analysis)
    per_point = {p.batch_size: p for p in a.points} if a is not None else {}
    points = sorted(result.points, key=lambda p: p.batch_size)
    optional = [c for c in fmt.TELEMETRY_COLUMNS if any(p.telemetry.get(c[1]) is not None for p in points)]
    cfg = result.config
    t = Table(title=f"{cfg.get('workload')} · {cfg.get('precision')} · {cfg.get('device')} · {cfg.get('optimizer')}",
              title_justify="left")
    for col, justify in (("batch", "right"), ("status", "left"), ("median step", "right"), ("95% CI", "right"),
                         ("±", "right"), ("samples/s (mean)", "right"), ("n", "right"), ("stop", "left"),
                         ("peak mem", "right"), *((c[0], "right") for c in optional),
                         ("vs smallest", "left"), ("notes", "left")):
        t.add_column(col, justify=justify)
    for p in points:
        s = p.stats
        ap = per_point.get(p.batch_size)
        notes = []
        if ap is not None and ap.noisy:
            notes.append("noisy blocks")
        diagnosis = (p.telemetry.get("diagnosis") or {}).get("label")
        if diagnosis and diagnosis != "undetermined":
            notes.append(diagnosis)
        if p.telemetry.get("throttled"):
            notes.append("throttled")
        if p.error:
            notes.append(textwrap.shorten(p.error, 80, placeholder=" …"))  # whole words, never cut mid-word
        extra = [show(p.telemetry[key]) if p.telemetry.get(key) is not None else "—" for _, key, show in optional]
        t.add_row(
            str(p.batch_size), p.status,
            fmt.duration(s.median_s) if s else "—",
            f"{fmt.duration(s.ci_low_s)} – {fmt.duration(s.ci_high_s)}" if s and s.ci_low_s is not None else "—",
            fmt.percent(s.ci_rel_halfwidth) if s else "—",
            fmt.rate(p.throughput, ""), str(s.n) if s else "—", p.stop_reason or "—",
            fmt.nbytes(p.peak_allocated_bytes), *extra, ap.equal_time if p.ok and ap is not None else "—",
            "; ".join(notes),
        )
    return t


def _g(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def tta_table(result):
    """A rich Table with one row per batch size of a finished study (a TTAResult): best LR, steps (seed
    range), the mean step time that TTA multiplies, time to target, regime, naive error."""
    from rich.table import Table

    a = result.analysis
    energy = any(b.energy_to_target_j is not None for b in a.batches)
    t = Table(title=f"{result.task.get('name', '?')} · target {a.metric} {'≥' if a.higher_is_better else '≤'} {a.target:g}",
              title_justify="left")
    cols = [("batch", "right"), ("best lr", "right"), ("steps to target", "right"), ("seed range", "right"),
            ("fit", "right"), ("mean step", "right"), ("time to target", "right"), ("95% range", "right")]
    if energy:
        cols.append(("energy", "right"))
    cols += [("regime", "left"), ("naive error", "right"), (f"final {a.metric}", "right")]
    for c, j in cols:
        t.add_column(c, justify=j)
    for b in a.batches:
        best = " ★" if b.batch_size == a.best_time_batch else ""
        row = [f"{b.batch_size}{best}", _g(b.best_lr),
               _g(b.steps_to_target, 4) if b.steps_to_target is not None else "not reached",
               f"{_g(b.steps_low, 4)}–{_g(b.steps_high, 4)}" if b.steps_low is not None else "—",
               _g(b.fitted_steps),
               fmt.duration(b.step_time_mean_s) if b.step_time_mean_s is not None
               else f"{fmt.duration(b.step_time_s)} (median)" if b.step_time_s is not None else "—",
               fmt.duration(b.time_to_target_s),
               f"{fmt.duration(b.time_to_target_low_s)} – {fmt.duration(b.time_to_target_high_s)}"
               if b.time_to_target_low_s is not None else "—"]
        if energy:
            row.append(f"{b.energy_to_target_j:.3g} J" if b.energy_to_target_j is not None else "—")
        row += [b.regime or "—", fmt.signed_percent(b.naive_rel_error),
                _g(b.final_eval_metric, 4)]
        t.add_row(*row)
    return t


def table_fit_table(tf):
    """A rich Table of `bench fit`: per batch size, the runs, mean steps to target (a lower bound where not
    reached), the seed range, the fitted steps, the residual and the regime."""
    from rich.table import Table

    f = tf.fit
    t = Table(title=f"steps to target · {tf.source or 'table'}", title_justify="left")
    for col in ("batch", "runs", "steps to target", "seed range", "fitted", "residual", "regime"):
        t.add_column(col, justify="left" if col == "regime" else "right")
    for b in tf.batches:
        key = str(b.batch_size)
        if b.reached:
            steps = fmt.quantity(b.steps_to_target)
            seed_range = f"{fmt.quantity(b.steps_low)}–{fmt.quantity(b.steps_high)}" if b.n_runs > 1 else "—"
        else:
            steps = f"≥ {fmt.quantity(b.censored_at)} (not reached)" if b.censored_at is not None else "not reached"
            seed_range = "—"
        fitted = fmt.quantity(f.predict_steps(b.batch_size)) if b.reached and f.b_crit is not None else "—"
        resid = f.residuals.get(key)
        t.add_row(f"{b.batch_size:,}", str(b.n_runs), steps, seed_range, fitted,
                  f"{resid:+.1%}" if resid is not None else "—", f.regimes.get(key) or "—")
    return t
