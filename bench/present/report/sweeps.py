"""The step-time section of the report: one card per sweep (its verdict, how it was measured, warnings and
the points table) and the figures all sweeps share. Sweeps come from sweep files and, through the
pytest-benchmark adapter, from suite runs."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Sequence

import bench.present.fmt as fmt
from bench.analysis.steptime import (
    BEYOND,
    GROWTH_IRREGULAR,
    GROWTH_LINEAR,
    WITHIN,
    StepTimeAnalysis,
)
from bench.core.errors import InvalidResultsFile
from bench.core.numbers import as_number, is_number
from bench.core.vocabulary import (
    STATUS_ERROR,
    STATUS_OOM,
    STOP_BUDGET,
    STOP_CI,
    STOP_COUNT,
    STOP_MAX_SAMPLES,
    TIMER_CUDA_EVENT,
    TIMER_HOST,
)
from bench.present.distributed import distributed_verdict, rank_line
from bench.present.report.common import (
    TIMER_WORDS,
    batches,
    cell,
    compact_table,
    hex_color,
    markup,
)
from bench.present.report.environment import fingerprint_line
from bench.present.report.figures import sweeps as F
from bench.present.report.figures.distributed import ranks_figure
from bench.present.report.figures.sweeps import SweepSeries
from bench.present.steptime import (
    knee_text,
    skipped_steps_sentence,
    steptime_verdict,
    sweep_analysis,
)
from bench.records.sweep import SweepResult

STOP_WORDS = {STOP_CI: "CI target reached", STOP_BUDGET: "time budget ran out", STOP_MAX_SAMPLES: "sample cap",
              STOP_COUNT: "fixed count"}


def read_analysis(result: SweepResult) -> tuple[StepTimeAnalysis | None, str | None]:
    """The sweep's step-time analysis as a typed record, or None and why there is none."""
    try:
        a = sweep_analysis(result.analysis)
    except InvalidResultsFile as e:
        return None, f"the file's step-time analysis cannot be read ({e})"
    if a is None:
        return None, result.config.get("analysis_reason") or "the file has no step-time analysis"
    return a, None


def sweep_label(result: SweepResult) -> str:
    c = result.config
    parts = [str(c.get("workload", "?")), str(c.get("precision") or ""), device_name(result)]
    opts = [str(c.get("optimizer") or "")] + [n for n in ("channels_last", "compile") if c.get(n)]
    parts.append("+".join(o for o in opts if o))
    if c.get("suite"):
        parts.append(f"suite {c['suite']}")
    return " · ".join(p for p in parts if p and p != "unknown")


def device_name(result: SweepResult) -> str:
    env = result.environment or {}
    dev = str(result.config.get("device") or env.get("device") or "")
    if dev in ("", "unknown"):
        return ""
    name = env.get("gpu_name") if dev.startswith("cuda") else env.get("cpu_model")
    return f"{dev} ({name})" if name else dev


def legend_labels(results: Sequence[SweepResult]) -> list[str]:
    """Short labels naming only what differs between the sweeps (workload, precision, device, …)."""
    if len(results) == 1:
        return [sweep_label(results[0])]
    fields = [
        lambda r: str(r.config.get("workload")),
        lambda r: str(r.config.get("precision")),
        device_name,
        lambda r: "+".join([str(r.config.get("optimizer"))] + [n for n in ("channels_last", "compile") if r.config.get(n)]),
        lambda r: f"suite {r.config['suite']}" if r.config.get("suite") else "",
    ]
    differing = [f for f in fields if len({f(r) for r in results}) > 1]
    labels = [" · ".join(x for x in (f(r) for f in differing) if x and x != "unknown") for r in results]
    if len(set(labels)) < len(labels):  # same configuration measured twice: tell them apart by time
        labels = [f"{lab} · {r.created or '#' + str(i + 1)}".lstrip(" ·") for i, (lab, r) in enumerate(zip(labels, results))]
    return labels


def sweep_series(result: SweepResult, label: str, color) -> SweepSeries:
    analysis, _ = read_analysis(result)
    per = {p.batch_size: p for p in analysis.points} if analysis is not None else {}
    env = result.environment or {}
    s = SweepSeries(label=label, color=color, analysis=analysis,
                    largest_batch_that_fits=result.largest_batch_that_fits,
                    memory_total_bytes=as_number(env.get("gpu_memory_total_bytes")),
                    power_limit_w=as_number(env.get("gpu_power_limit_w")))
    for m in result.ok_points():
        st = m.stats
        if st is None:
            continue
        b = m.case.batch_size
        a = per.get(b)
        s.batch.append(b)
        s.median_s.append(st.median_s)
        s.ci_low_s.append(st.ci_low_s)
        s.ci_high_s.append(st.ci_high_s)
        # The analysis' throughput where there is one, so the points, their intervals and the peak it
        # marks agree (an analysis made before version 3 has them from the median, and says so).
        if a is not None:
            s.throughput.append(a.throughput_samples_per_s)
            s.throughput_low.append(a.throughput_low_samples_per_s)
            s.throughput_high.append(a.throughput_high_samples_per_s)
            s.throughput_basis = a.throughput_basis
        else:
            s.throughput.append(m.throughput)
            s.throughput_low.append(b / st.mean_ci_high_s if st.mean_ci_high_s else None)
            s.throughput_high.append(b / st.mean_ci_low_s if st.mean_ci_low_s and st.mean_ci_low_s > 0 else None)
        s.peak_allocated_bytes.append(m.peak_allocated_bytes)
        s.peak_reserved_bytes.append(m.peak_reserved_bytes)
        s.telemetry.append(m.telemetry or {})
    s.failed = [(p.case.batch_size, p.status) for p in sorted(result.points, key=lambda p: p.batch_size) if not p.ok]
    return s


def warmup_sentence(wr: dict) -> str:
    """How warm-up ended, from a sweep config's `warmup_rule` (today's keys, or the step-count rule
    files written before the warm-up became time-based carry)."""
    if "min_time_s" in wr and wr.get("either_way"):
        return (f"Warm-up (discarded; apart from the budget): the first step, then at least "
                f"{fmt.duration(wr.get('min_time_s'))} of steps until a block's median has moved neither way by more "
                f"than {fmt.pct(wr.get('tolerance'))} (nor more than the blocks' own noise) from one begun "
                f"{fmt.duration(wr.get('min_time_s'))} earlier; at most {fmt.duration(wr.get('max_time_s'))}.")
    if "min_time_s" in wr:
        return (f"Warm-up (discarded): the first step, then at least {fmt.duration(wr.get('min_time_s'))} of steps "
                f"until a block's median is no more than {fmt.pct(wr.get('tolerance'))} below one "
                f"{fmt.duration(wr.get('min_time_s'))} earlier; at most {fmt.duration(wr.get('max_time_s'))} or half "
                "the point's budget.")
    return (f"Warm-up (discarded): at least {wr.get('min_steps', '?')} steps, until step times stop trending down "
            f"(last {wr.get('window', '?')} within {fmt.pct(wr.get('tolerance'))}), at most "
            f"{wr.get('max_steps', '?')} steps or {wr.get('max_time_s', '?')} s.")


def stopping_sentence(sr: dict) -> str:
    """When sampling stopped, from a sweep config's `stopping_rule` (the rule's name, its parameters
    and the measuring limits)."""
    floors = (f"at least {sr['min_samples']} samples and {fmt.duration(sr.get('min_time_s'))} of timed steps; then "
              if is_number(sr.get("min_samples")) and is_number(sr.get("min_time_s")) else "")
    included = "warm-up apart" if sr.get("budget_of") == "timed steps" else "warm-up included"
    budget = (f"the {fmt.duration(sr['budget_s'])} budget per point ({included}) runs out"
              if is_number(sr.get("budget_s")) else "its budget runs out")
    cap = f" (at most {sr['max_samples']:,} samples)" if is_number(sr.get("max_samples")) else ""
    name = sr.get("name")
    if name == "ci" and is_number(sr.get("ci_target")):
        rule = f"stop once the 95% CI of the median is within ±{fmt.pct(sr['ci_target'])}, or when {budget}"
    elif name == "count" and is_number(sr.get("count")):
        rule = f"stop after exactly {sr['count']} samples, or when {budget}"
    else:
        params = ", ".join(f"{k}={v}" for k, v in sr.items() if k not in
                           ("name", "min_samples", "min_time_s", "budget_s", "max_samples"))
        rule = f"stop when the rule {name!r}" + (f" ({params})" if params else "") + f" says so, or when {budget}"
        floors = ""
    return f"Stopping rule: {floors}{rule}{cap}."


def method_sentences(result: SweepResult) -> list[str]:
    """How the numbers of one sweep were measured, read from its config and points."""
    c = result.config
    out = []
    timers = Counter(p.timer for p in result.points if p.timer)
    if timers:
        out.append("Timer: " + "; ".join(TIMER_WORDS.get(t, t) for t in timers) + ".")
    wr = c.get("warmup_rule") or {}
    if wr:
        out.append(warmup_sentence(wr))
    sr = c.get("stopping_rule") or {}
    if sr:
        out.append(stopping_sentence(sr))
    ns = [p.stats.n for p in result.points if p.ok and p.samples_s]
    if ns:
        stops = Counter(p.stop_reason for p in result.points if p.ok and p.stop_reason)
        stop_txt = ", ".join(f"{STOP_WORDS.get(k, k)} ×{v}" for k, v in stops.most_common())
        out.append(f"Samples per point: {min(ns)}–{max(ns)} (median {statistics.median(ns):g})"
                   + (f"; stopped by: {stop_txt}." if stop_txt else "."))
    analysis, _ = read_analysis(result)
    eps = analysis.eps if analysis is not None else None
    if is_number(eps):
        out.append(f"“Equal time” means within {fmt.pct(eps)} of the smallest batch's step time, judged with the 95% "
                   "CIs of both medians, not the medians alone.")
    tel = [p.telemetry for p in result.points if p.telemetry]
    if any(t.get("telemetry_source") for t in tel):
        period = next((t.get("sample_period_s") for t in tel if t.get("sample_period_s")), None)
        out.append("GPU telemetry: NVML" + (f" sampled every {period * 1000:g} ms" if is_number(period) else "")
                   + " during the timed blocks (see docs/telemetry.md for what each field means).")
    else:
        reason = next((p.null_reasons.get("telemetry_source") or (p.telemetry or {}).get("null_reasons", {}).get("telemetry")
                       for p in result.points if p.null_reasons.get("telemetry_source")
                       or (p.telemetry or {}).get("null_reasons")), None)
        if reason:
            out.append(f"No GPU telemetry: {reason}.")
    src = c.get("source") if isinstance(c.get("source"), dict) else None
    if src:
        out.append(f"Imported from {src.get('format')} {src.get('version') or ''} file {src.get('path')}.")
    return out


def method_brief(result: SweepResult) -> str:
    """How one sweep measured, in one line (the full sentences are one click away)."""
    parts = []
    timers = sorted({p.timer for p in result.points if p.timer})
    if timers:
        parts.append(" and ".join({TIMER_CUDA_EVENT: "CUDA-event timer", TIMER_HOST: "host timer"}.get(t, t)
                                  for t in timers))
    sr = result.config.get("stopping_rule") or {}
    if sr.get("ci_target") is not None:
        parts.append(f"stop at a ±{fmt.pct(sr.get('ci_target'))} CI of the median or a {sr.get('budget_s', '?')} s budget")
    ns = [p.stats.n for p in result.points if p.ok and p.samples_s]
    if ns:
        parts.append(f"{min(ns)}–{max(ns)} samples per point" if min(ns) != max(ns) else f"{ns[0]} samples per point")
    return " · ".join(parts)


# The kinds of warning a sweep can carry, as the page groups them (one line per kind, with a count).
KIND_UNFINISHED = "Unfinished"
KIND_NO_ANALYSIS = "No analysis"
KIND_BUDGET = "Budget-limited"
KIND_NOISY = "Noisy"
KIND_NO_CI = "No confidence interval"
KIND_THROTTLED = "Throttled"
KIND_SKIPPED_STEPS = "fp16 skipped steps"
KIND_OOM = "Out of memory"
KIND_FAILED = "Failed"


def sweep_warnings(result: SweepResult) -> list[dict]:
    """What a reader must know before trusting the numbers of one sweep: {"kind", "text"} each, the kind
    being how the page groups warnings."""
    a, why = read_analysis(result)
    out = []

    def add(kind: str, text: str) -> None:
        out.append({"kind": kind, "text": text})

    if not result.finished:
        add(KIND_UNFINISHED, "The sweep did not finish (interrupted, or still running): the points shown are those "
                             "completed.")
    if a is None:
        add(KIND_NO_ANALYSIS, f"No step-time analysis: {why}.")
    budget = [p.batch_size for p in result.points if p.ok and p.stop_reason == STOP_BUDGET]
    if budget:
        target = (result.config.get("stopping_rule") or {}).get("ci_target", result.config.get("ci_target"))
        add(KIND_BUDGET, f"The time budget ran out before the 95% CI reached ±{fmt.pct(target)} at batch "
                         f"{batches(budget)}; their CIs are wider than the target.")
    if a is not None and a.noisy_batches:
        add(KIND_NOISY, f"Repeated timing blocks disagree by more than ±{fmt.pct(a.noise_target)} "
                        f"at batch {batches(a.noisy_batches)}.")
    if a is not None and a.points_without_ci:
        add(KIND_NO_CI, f"Too few samples for a 95% CI at batch {batches(a.points_without_ci)}: "
                        "those points are judged on their medians alone.")
    throttled = [(p.batch_size, p.telemetry.get("throttle_reasons")) for p in result.points if (p.telemetry or {}).get("throttled")]
    if throttled:
        reasons = sorted({r for _, rs in throttled for r in (rs or [])})
        add(KIND_THROTTLED, f"Clocks were held down (power cap, thermal or hardware slowdown) at batch "
                            f"{batches([b for b, _ in throttled])}" + (f" ({', '.join(reasons)})" if reasons else "")
                            + ": those step times are slower than the card's boost clock allows.")
    skipped = skipped_steps_sentence(result)
    if skipped:
        add(KIND_SKIPPED_STEPS, skipped)
    for p in sorted(result.points, key=lambda p: p.batch_size):
        if p.status == STATUS_OOM:
            add(KIND_OOM, f"Batch {p.batch_size:,}: out of memory" + (f" ({p.error})" if p.error else "") + ".")
        elif p.status == STATUS_ERROR:
            add(KIND_FAILED, f"Batch {p.batch_size:,} failed: {p.error or 'no message'}")
    return out


def sweep_headline(result: SweepResult, a: StepTimeAnalysis | None) -> list[str]:
    """The sweep's verdict in at most three short lines, each a claim of the full verdict (present.steptime)
    cut to its numbers: the equal-time range and the growth past it, the peak throughput, the largest batch."""
    if a is None or not a.points:
        return []
    pts = a.points
    ref = pts[0]
    if len(pts) == 1:
        return [f"Only batch {ref.batch_size:,} was measured ({_step(ref)} per step): no curve to judge."]
    eps = fmt.pct(a.eps)
    # Points without a CI are judged on their medians: the caveats line names them ("No confidence interval").
    basis = "medians: no point has a 95% CI" if len(a.points_without_ci) == len(pts) else "95% CIs"
    within = f"within {eps} of batch {ref.batch_size:,}'s {_step(ref)}"
    if a.equal_time_reaches_largest:
        lines = [f"Equal step time ({within}) at every batch up to {pts[-1].batch_size:,} ({basis})."]
    elif a.equal_time_max_batch == ref.batch_size and pts[1].equal_time == BEYOND:
        lines = [f"No equal-time range: batch {pts[1].batch_size:,} is already over {eps} slower than batch "
                 f"{ref.batch_size:,}'s {_step(ref)} ({basis})."]
    elif a.equal_time_max_batch == ref.batch_size:
        maybe = (f", possibly up to {a.equal_time_max_batch_possible:,}"
                 if (a.equal_time_max_batch_possible or 0) > pts[1].batch_size else "")
        lines = [f"Equal step time ({within}): undecided from batch {pts[1].batch_size:,}, the 95% CIs too wide"
                 f"{maybe}."]
    else:
        maybe = (f", possibly to {a.equal_time_max_batch_possible:,}"
                 if (a.equal_time_max_batch_possible or 0) > (a.equal_time_max_batch or 0) else "")
        lines = [f"Equal step time ({within}) up to batch {a.equal_time_max_batch:,}{maybe} ({basis})."]
    growth = a.growth() if a.first_beyond_batch is not None else None
    beyond = "then" if a.first_beyond_batch == pts[1].batch_size else f"from batch {a.first_beyond_batch or 0:,}"
    if growth == GROWTH_LINEAR:
        lines[0] = lines[0][:-1] + (f"; {beyond} it grows {fmt.slope(a.fit().slope_s_per_sample, ref.median_s)} "
                                    f"({knee_text(a)}).")
    elif growth == GROWTH_IRREGULAR:
        lines[0] = lines[0][:-1] + (f"; {beyond} it grows irregularly "
                                    f"(best fit: {a.fit().rel_rms_residual:.0%} RMS residual).")
    if a.peak_throughput_samples_per_s is not None:
        sat = (f"; {fmt.pct(a.saturation_fraction)} of it from {a.throughput_saturation_batch:,}"
               if a.throughput_saturation_batch is not None and a.throughput_saturation_batch < a.peak_throughput_batch
               else "")
        top = ", the largest measured" if a.peak_at_largest_batch else ""
        peak = a.peak_throughput_samples_per_s
        lines.append(f"Peak throughput {fmt.si(peak) if peak >= 1e6 else fmt.number(peak)} samples/s at batch "
                     f"{a.peak_throughput_batch:,}{top}{sat}.")
    lbf = result.largest_batch_that_fits
    if lbf is not None:  # how it was found is in the full verdict
        lines.append(f"Largest batch that fits: {lbf:,}.")
    return lines


def _step(p) -> str:
    return fmt.duration_ci(p.median_s, p.ci_low_s, p.ci_high_s)


def caveat_line(warnings: Sequence[dict]) -> str | None:
    """The warnings of one input in a line: each kind with how many there are ('Budget-limited, Noisy ×2')."""
    kinds = Counter(w["kind"] for w in warnings)
    if not kinds:
        return None
    return "Caveats: " + ", ".join(k + (f" ×{n}" if n > 1 else "") for k, n in kinds.items()) + "."


def sweep_table(result: SweepResult) -> dict:
    """Every point of one sweep as a sortable table, one line per point: the raw numbers behind the figures,
    each to the figures its CI supports. Columns no point has a value for are left out (named in
    `left_out`); each point's notes in full go to `notes`, shown folded under the table."""
    analysis, _ = read_analysis(result)
    per = {p.batch_size: p for p in analysis.points} if analysis is not None else {}
    points = sorted(result.points, key=lambda p: p.batch_size)
    has_memory = any(p.peak_allocated_bytes is not None for p in points)
    has_gpu_telemetry = any((p.telemetry or {}).get("telemetry_source") for p in points)
    flops = not has_gpu_telemetry and any(is_number((p.telemetry or {}).get("achieved_tflops")) for p in points)
    cols = ["batch", "status", "median step", "95% CI", "± CI", "samples/s (mean step)", "n", "stop",
            *(["peak memory"] if has_memory else []), *(["TFLOP/s"] if flops else []),
            "vs smallest", "regime", "diagnosis", "notes"]
    rows, notes = [], []
    for p in points:
        s = p.stats
        a = per.get(p.batch_size)
        t = p.telemetry or {}
        diag = t.get("diagnosis") if isinstance(t.get("diagnosis"), dict) else {}
        label = diag.get("label") or (a.diagnosis if a is not None else None)
        full = list(p.warnings)
        tags = []
        if a is not None and a.noisy:
            tags.append("noisy blocks")
            full.append(f"repeated blocks disagree by ±{fmt.ci_percent(a.block_spread_rel)}")
        if a is not None and a.heavy_tail:
            tags.append("heavy tail")
        if t.get("throttled"):
            tags.append("throttled")
            full.append("throttled: " + ", ".join(t.get("throttle_reasons") or []))
        if p.error:
            tags.append("error")
            full.append(p.error)
        if p.warnings:
            tags.append(fmt.plural(len(p.warnings), "note"))
        if full:
            notes.append((f"{p.batch_size:,}", full))
        ci = s is not None and s.ci_low_s is not None
        tflops = t.get("achieved_tflops")
        rows.append([
            cell(f"{p.batch_size:,}", p.batch_size),
            cell(p.status, p.status, cls=None if p.ok else "bad"),
            cell(fmt.duration_ci(s.median_s, s.ci_low_s, s.ci_high_s) if s else None, s.median_s if s else None),
            cell(fmt.interval(s.ci_low_s, s.ci_high_s, s.median_s) if ci else None,
                 s.ci_low_s if ci else None, title=None if ci else "too few samples for a 95% interval of the median"),
            cell(fmt.ci_percent(s.ci_rel_halfwidth) if s else None, s.ci_rel_halfwidth if s else None),
            cell(fmt.rate(p.throughput, "") if p.throughput else None, p.throughput),
            cell(s.n if s else None, s.n if s else None),
            cell(p.stop_reason, p.stop_reason),
            *([cell(fmt.nbytes(p.peak_allocated_bytes) if p.peak_allocated_bytes is not None else None,
                    p.peak_allocated_bytes, title=p.null_reasons.get("peak_allocated_bytes"))] if has_memory else []),
            *([cell(f"{tflops:.2g}" if is_number(tflops) else None, as_number(tflops),
                    title=t.get("flops_counted"))] if flops else []),
            cell(a.equal_time if a is not None and p.ok else None, a.equal_time if a is not None else None,
                 title=(f"t/t_ref = {a.ratio_to_reference:.3g} (interval {a.ratio_low:.3g}–{a.ratio_high:.3g})"
                        if a is not None else None),
                 cls={WITHIN: "good", BEYOND: "warn"}.get(a.equal_time) if a is not None else None),
            cell(a.regime if a is not None else None, a.regime if a is not None else None,
                 title=a.regime_reason if a is not None else None),
            cell(label, label, title=diag.get("sentence")),
            cell(", ".join(tags), None, title="; ".join(full) or None, cls="notes"),
        ])
    left_out = []
    if not has_memory:
        why = next((p.null_reasons.get("peak_allocated_bytes") for p in points
                    if p.null_reasons.get("peak_allocated_bytes")), "not measured")
        left_out.append(f"peak memory ({why})")
    return compact_table({"columns": cols, "rows": rows, "notes": notes, "left_out": left_out},
                         keep=("batch", "status", "median step"))


def telemetry_table(result: SweepResult) -> dict | None:
    """The GPU telemetry of each point (the fields measured anywhere in the sweep), beside the points table
    rather than in it: one table of both is wider than the page. None without GPU telemetry (a CPU run:
    its FLOP rate is a column of the points table instead)."""
    points = sorted(result.points, key=lambda p: p.batch_size)
    if not any((p.telemetry or {}).get("telemetry_source") for p in points):
        return None
    optional = [c for c in fmt.TELEMETRY_COLUMNS if any(is_number((p.telemetry or {}).get(c[1])) for p in points)]
    if not optional:
        return None
    rows = []
    for p in points:
        t = p.telemetry or {}
        rows.append([cell(f"{p.batch_size:,}", p.batch_size)]
                    + [cell(show(t[key]) if is_number(t.get(key)) else None, as_number(t.get(key)),
                            title=(t.get("null_reasons") or {}).get(key) or p.null_reasons.get(key))
                       for _, key, show in optional])
    return {"columns": ["batch", *[c[0] for c in optional]], "rows": rows}


def no_telemetry_reason(result: SweepResult) -> str | None:
    """Why a sweep has no GPU telemetry table, in one line (None where it has one)."""
    if any((p.telemetry or {}).get("telemetry_source") for p in result.points):
        return None
    return next((p.null_reasons.get("telemetry_source") or p.null_reasons.get("kernel_active_pct_mean")
                 for p in result.points if p.null_reasons.get("telemetry_source")
                 or p.null_reasons.get("kernel_active_pct_mean")), None) or "not measured"


def largest_batch_line(result: SweepResult, analysis: StepTimeAnalysis | None) -> str | None:
    """The largest batch that fits and how it was found; None when the verdict already says it."""
    if analysis is not None and analysis.largest_batch_that_fits is not None and result.largest_batch_that_fits is not None:
        return None
    lbf = result.largest_batch_that_fits
    return ((f"Largest batch that fits: {lbf:,}" if lbf is not None else "Largest batch that fits: —")
            + (f" ({result.largest_batch_reason})." if result.largest_batch_reason else "."))


def timer_note(result: SweepResult) -> str | None:
    """For a sweep rebuilt from a pytest-benchmark run: which clock its step times come from, since the
    suites table beside it also shows pytest-benchmark's own, often many times larger."""
    src = result.config.get("source") if isinstance(result.config.get("source"), dict) else None
    if not src or src.get("format") != "pytest-benchmark":
        return None
    timers = sorted({p.timer for p in result.points if p.timer})
    clock = " and ".join(TIMER_WORDS.get(t, t) for t in timers) or "bench's timer"
    return (f"Step times here are bench's own, one training step each ({clock}). The Suites table also shows "
            "pytest-benchmark's time per call (host clock around the whole benchmarked call, set-up and "
            "synchronisation included), which can be many times larger: compare like with like.")


def ranks_table(result: SweepResult) -> dict | None:
    """A data-parallel sweep's points, combined: batch per rank and in all, the step time (slowest rank
    per step), each rank's median, their spread, the step without all-reduce and its share, rank 0
    alone and the weak-scaling efficiency. None for a single-process sweep."""
    from bench.analysis.distributed import analyse_distributed

    run = result.distributed
    if run is None:
        return None
    a = run.analysis if run.analysis is not None else analyse_distributed(result)
    n = run.world_size

    def interval(i, show):
        if i is None:
            return None
        return show(i.value) + (f" ({show(i.low)}–{show(i.high)})" if i.low is not None and i.high is not None else "")

    cols = ["batch per rank", "batch in all", "step time", *[f"rank {r}" for r in range(n)], "spread", "slowest",
            "no all-reduce", "all-reduce share", "rank 0 alone", "efficiency"]
    rows = []
    for p in a.points:
        medians = p.spread.rank_medians_s if p.spread else []
        why = "; ".join(sorted(set(p.null_reasons.values())))
        rows.append([
            cell(f"{p.per_rank_batch_size:,}", p.per_rank_batch_size),
            cell(f"{p.global_batch_size:,}", p.global_batch_size),
            cell(fmt.duration(p.step_time_s) if p.step_time_s is not None else None, p.step_time_s, title=why or None),
            *[cell(fmt.duration(medians[r]) if r < len(medians) else None, medians[r] if r < len(medians) else None)
              for r in range(n)],
            cell(fmt.percent(p.spread.spread_rel) if p.spread else None, p.spread.spread_rel if p.spread else None,
                 cls="warn" if p.spread and p.spread.spread_rel > 0.05 else None),
            cell(f"rank {p.spread.slowest_rank} ({fmt.percent(p.spread.slowest_share, 0)} of steps)" if p.spread
                 else None, p.spread.slowest_rank if p.spread else None),
            cell(fmt.duration(p.no_sync_step_time_s) if p.no_sync_step_time_s is not None else None,
                 p.no_sync_step_time_s, title=p.null_reasons.get("comm_share")),
            cell(interval(p.comm_share, fmt.percent), p.comm_share.value if p.comm_share else None,
                 title=p.null_reasons.get("comm_share")),
            cell(fmt.duration(p.baseline_step_time_s) if p.baseline_step_time_s is not None else None,
                 p.baseline_step_time_s, title=p.null_reasons.get("efficiency")),
            cell(interval(p.efficiency, lambda v: f"{v:.2f}"), p.efficiency.value if p.efficiency else None,
                 title=p.null_reasons.get("efficiency")),
        ])
    return {"columns": cols, "rows": rows}


def distributed_context(result: SweepResult, color) -> dict | None:
    """What the report shows of a sweep measured under torchrun: its sentences, the ranks' table and the
    figure of per-rank step times, communication share and efficiency; None for one process."""
    run = result.distributed
    if run is None:
        return None
    from bench.analysis.distributed import analyse_distributed

    a = run.analysis if run.analysis is not None else analyse_distributed(result)
    return {"verdict": distributed_verdict(result), "table": ranks_table(result),
            "ranks": [rank_line(r) for r in run.ranks],
            "figure": {"key": "ranks", "title": "Ranks, communication share and efficiency",
                       "svg": markup(ranks_figure(a, hex_color(color))), "missing": "no point ran on every rank"}}


def sweep_context(index: int, path: str, result: SweepResult, legend: str, color, title: str | None = None) -> dict:
    """One sweep's card: its short verdict (the full one, its method and fingerprint folded), warnings and
    table; `title` its heading, unique on the page (default: sweep_label)."""
    a, _ = read_analysis(result)
    warnings = sweep_warnings(result)
    return {
        "id": f"sweep-{index}", "label": title or sweep_label(result), "legend": legend, "color": hex_color(color),
        "path": path, "timer_note": timer_note(result),
        "created": result.created, "verdict": steptime_verdict(a) if a is not None else [],
        "headline": sweep_headline(result, a), "caveats": caveat_line(warnings),
        "largest": largest_batch_line(result, a), "method": method_sentences(result),
        "method_brief": method_brief(result), "warnings": warnings,
        "fingerprint": fingerprint_line(result.environment), "ran_on": fingerprint_line(result.environment, brief=True),
        "table": sweep_table(result),
        "telemetry_table": telemetry_table(result), "no_telemetry": no_telemetry_reason(result),
        "distributed": distributed_context(result, color),
    }


def sweep_figures(results: Sequence[SweepResult], series: Sequence[SweepSeries]) -> list[dict]:
    """The four figures every sweep shares, each with why it is missing when it has nothing to draw."""
    if not series:
        return []
    tel_missing = None
    if not F.has_telemetry(series):
        reasons = {p.null_reasons.get("kernel_active_pct_mean") for r in results for p in r.points
                   if p.null_reasons.get("kernel_active_pct_mean")}
        tel_missing = "not measured" + (f": {sorted(reasons)[0]}" if reasons else "")
    mem_missing = None
    if not any(is_number(v) for s in series for v in s.peak_allocated_bytes):
        reasons = {p.null_reasons.get("peak_allocated_bytes") for r in results for p in r.points
                   if p.null_reasons.get("peak_allocated_bytes")}
        mem_missing = "not measured" + (f": {sorted(reasons)[0]}" if reasons else "")
    return [
        {"key": "step-time", "title": "Step time", "svg": markup(F.step_time_figure(series)),
         "missing": "no successful point to draw"},
        {"key": "throughput", "title": "Throughput", "svg": markup(F.throughput_figure(series)),
         "missing": "no successful point to draw"},
        {"key": "memory", "title": "Peak memory", "svg": markup(F.memory_figure(series)), "missing": mem_missing},
        {"key": "telemetry", "title": "GPU activity and power", "svg": markup(F.telemetry_figure(series)),
         "missing": tel_missing},
    ]
