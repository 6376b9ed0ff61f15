"""Results files -> one self-contained HTML page: verdicts first, then figures, tables and the source data.

Reads sweep files (`bench.run.sweep`), pytest-benchmark JSON (one run, or many forming a nightly history),
time-to-accuracy studies (`bench.tta`) and training curves (`bench.curves`). Shows; measures nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import bench.present.fmt as fmt
import bench.present.report.figures as F
from bench import __version__
from bench.analysis.regression import (
    REGRESSION_RULE,
    BenchmarkHistory,
    benchmark_history,
    latest_run_per_machine,
    machine_key,
)
from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import check_output_file, json_safe, read_json, write_text_atomic
from bench.records.sweep import SWEEP_SCHEMA, SweepResult

TTA_SCHEMA = "bench.tta"
CURVES_SCHEMA = "bench.curves"
KIND_SWEEP, KIND_TTA, KIND_CURVES, KIND_PYTEST = "sweep", "tta", "curves", "pytest-benchmark"

DEFAULT_REPORTS_DIR = Path("reports")
# Above this the pytest-benchmark per-round times are left out of the embedded data (their summary
# statistics stay); sweep and study files are always embedded whole.
DEFAULT_MAX_EMBED_BYTES = 25 * 2 ** 20

_TEMPLATES = Path(__file__).parent / "templates"


# ---------------------------------------------------------------------------------------- inputs


@dataclass
class Source:
    """One input file as read: its kind, the parsed record(s) and the raw JSON (for embedding)."""

    path: str
    kind: str
    data: dict
    record: Any = None  # SweepResult, TTAResult or CurvesFile; None for pytest-benchmark files


@dataclass
class ReportInputs:
    """Everything the report shows, grouped by kind; `skipped` lists files in folders that were not results."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def of(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind]


def find_input_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each path; folders contribute every *.json inside, recursively."""
    out: list[tuple[Path, bool]] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            if not found:
                raise BenchError(f"{p}: folder holds no *.json files")
            items = [(q, False) for q in found]
        elif p.exists():
            items = [(p, True)]
        else:
            raise BenchError(f"{p}: no such file or folder")
        for q, explicit in items:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append((q, explicit))
    if not out:
        raise BenchError("no input files given")
    return out


def classify(data: Any) -> str | None:
    """Which kind of results `data` (parsed JSON) holds, or None."""
    if isinstance(data, dict):
        schema = data.get("schema")
        if schema == SWEEP_SCHEMA:
            return KIND_SWEEP
        if schema == TTA_SCHEMA:
            return KIND_TTA
        if schema == CURVES_SCHEMA:
            return KIND_CURVES
        if isinstance(data.get("benchmarks"), list) and isinstance(data.get("machine_info"), dict):
            return KIND_PYTEST
    return None


# A \ud800-\udfff escape in the raw JSON: the only way a lone surrogate gets into the parsed strings.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_lone_surrogates(path: Path, data: Any) -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"); it parses, but no UTF-8 page can hold it."""
    try:
        if not _SURROGATE_ESCAPE.search(path.read_bytes()):
            return  # the usual case, found without re-encoding the whole file
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except OSError:
        return  # read_json has just read it: nothing to add
    except UnicodeEncodeError:
        raise InvalidResultsFile(f"{path}: holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                                 "which is not text") from None


def read_source(path: Path) -> Source:
    """Parse one results file; InvalidResultsFile (one line) if it is unreadable or of no known kind."""
    try:
        data = read_json(path)
    except UnicodeDecodeError as e:
        raise InvalidResultsFile(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    _reject_lone_surrogates(path, data)
    kind = classify(data)
    try:
        if kind == KIND_SWEEP:
            return Source(str(path), kind, data, SweepResult.from_dict(data))
        if kind == KIND_TTA:
            from bench.analysis.tta import TTAResult

            return Source(str(path), kind, data, TTAResult.from_dict(data))
        if kind == KIND_CURVES:
            from bench.records.curves import CurvesFile

            return Source(str(path), kind, data, CurvesFile.from_dict(data))
        if kind == KIND_PYTEST:
            return Source(str(path), kind, data, None)
    except InvalidResultsFile as e:
        raise InvalidResultsFile(f"{path}: {e}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    what = f"schema {schema!r}" if schema is not None else (
        "an object without a 'schema' key" if isinstance(data, dict) else f"a JSON {type(data).__name__}")
    raise InvalidResultsFile(f"{path}: unknown results format ({what}); expected a bench.run.sweep, bench.tta or "
                             "bench.curves file, or pytest-benchmark JSON")


def load_inputs(paths: Iterable[str | os.PathLike]) -> ReportInputs:
    """Read every input. A bad file named on the command line is an error; a file found inside a folder
    that is not a results file is skipped and listed on the page (folders hold other JSON too)."""
    inputs = ReportInputs()
    for path, explicit in find_input_files(paths):
        try:
            inputs.sources.append(read_source(path))
        except BenchError as e:
            if explicit:
                raise
            inputs.skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
    if not inputs.sources:
        first = inputs.skipped[0] if inputs.skipped else ("", "")
        raise BenchError(f"no results files among the inputs ({len(inputs.skipped)} skipped; first: {first[0]}: {first[1]})")
    return inputs


# ----------------------------------------------------------------------------------- table cells


def cell(text: Any, v: Any = None, title: str | None = None, cls: str | None = None) -> dict:
    """One table cell: shown text, the value to sort by (number or string), an optional tooltip."""
    return {"text": "—" if text is None or text == "" else str(text), "v": v, "title": title, "cls": cls}


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _ok(v) else None


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def _batch_list(batches: Sequence[int], limit: int = 10) -> str:
    b = [f"{x:,}" for x in batches]
    return ", ".join(b) if len(b) <= limit else f"{', '.join(b[:4])}, …, {b[-1]} ({len(b)} batch sizes)"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


# ---------------------------------------------------------------------------------------- sweeps


TIMER_WORDS = {
    "cuda_event": "CUDA events around each step, with one host synchronisation per block of steps",
    "host": "the host clock (time.perf_counter) around each step",
    "pytest-benchmark host": "pytest-benchmark's host-clock round times",
}
STOP_WORDS = {"ci_target": "CI target reached", "budget": "time budget ran out", "max_samples": "sample cap",
              "count": "fixed count"}


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


def sweep_series(result: SweepResult, label: str, color) -> F.SweepSeries:
    analysis = result.analysis if isinstance(result.analysis, dict) else None
    per = {p.get("batch_size"): p for p in (analysis or {}).get("points", []) if isinstance(p, dict)}
    env = result.environment or {}
    s = F.SweepSeries(label=label, color=color, analysis=analysis,
                      largest_batch_that_fits=result.largest_batch_that_fits,
                      memory_total_bytes=_num(env.get("gpu_memory_total_bytes")),
                      power_limit_w=_num(env.get("gpu_power_limit_w")))
    for m in result.ok_points():
        st = m.stats
        if st is None:
            continue
        b = m.case.batch_size
        a = per.get(b, {})
        s.batch.append(b)
        s.median_s.append(st.median_s)
        s.ci_low_s.append(st.ci_low_s)
        s.ci_high_s.append(st.ci_high_s)
        s.throughput.append(m.throughput)
        s.throughput_low.append(a.get("throughput_low_samples_per_s", b / st.ci_high_s if st.ci_high_s else None))
        s.throughput_high.append(a.get("throughput_high_samples_per_s", b / st.ci_low_s if st.ci_low_s else None))
        s.peak_allocated_bytes.append(m.peak_allocated_bytes)
        s.peak_reserved_bytes.append(m.peak_reserved_bytes)
        s.telemetry.append(m.telemetry or {})
    s.failed = [(p.case.batch_size, p.status) for p in sorted(result.points, key=lambda p: p.batch_size) if not p.ok]
    return s


def method_sentences(result: SweepResult) -> list[str]:
    """How the numbers of one sweep were measured, read from its config and points."""
    c = result.config
    out = []
    timers = Counter(p.timer for p in result.points if p.timer)
    if timers:
        out.append("Timer: " + "; ".join(TIMER_WORDS.get(t, t) for t in timers) + ".")
    wr = c.get("warmup_rule") or {}
    if wr:
        out.append(f"Warm-up (discarded): at least {wr.get('min_steps', '?')} steps, until step times stop trending "
                   f"down (last {wr.get('window', '?')} within {_pct(wr.get('tolerance'))}), at most "
                   f"{wr.get('max_steps', '?')} steps or {wr.get('max_time_s', '?')} s.")
    sr = c.get("stopping_rule") or {}
    if sr:
        out.append(f"Stopping rule: at least {sr.get('min_samples', '?')} samples and {sr.get('min_time_s', '?')} s of "
                   f"timed steps; then stop once the 95% CI of the median is within ±{_pct(sr.get('ci_target'))}, or "
                   f"when the {sr.get('budget_s', '?')} s budget per point runs out"
                   + (f" (at most {sr['max_samples']:,} samples)." if _ok(sr.get("max_samples")) else "."))
    ns = [p.stats.n for p in result.points if p.ok and p.samples_s]
    if ns:
        stops = Counter(p.stop_reason for p in result.points if p.ok and p.stop_reason)
        stop_txt = ", ".join(f"{STOP_WORDS.get(k, k)} ×{v}" for k, v in stops.most_common())
        out.append(f"Samples per point: {min(ns)}–{max(ns)} (median {statistics.median(ns):g})"
                   + (f"; stopped by: {stop_txt}." if stop_txt else "."))
    eps = (result.analysis or {}).get("parameters", {}).get("eps") if isinstance(result.analysis, dict) else None
    if _ok(eps):
        out.append(f"“Equal time” means within {_pct(eps)} of the smallest batch's step time, judged with the 95% "
                   "CIs of both medians, not the medians alone.")
    tel = [p.telemetry for p in result.points if p.telemetry]
    if any(t.get("telemetry_source") for t in tel):
        period = next((t.get("sample_period_s") for t in tel if t.get("sample_period_s")), None)
        out.append("GPU telemetry: NVML" + (f" sampled every {period * 1000:g} ms" if _ok(period) else "")
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
        parts.append(" and ".join({"cuda_event": "CUDA-event timer", "host": "host timer"}.get(t, t) for t in timers))
    sr = result.config.get("stopping_rule") or {}
    if sr.get("ci_target") is not None:
        parts.append(f"stop at a ±{_pct(sr.get('ci_target'))} CI of the median or a {sr.get('budget_s', '?')} s budget")
    ns = [p.stats.n for p in result.points if p.ok and p.samples_s]
    if ns:
        parts.append(f"{min(ns)}–{max(ns)} samples per point" if min(ns) != max(ns) else f"{ns[0]} samples per point")
    return " · ".join(parts)


def _pct(v: Any) -> str:
    return f"{round(float(v) * 100, 6):g}%" if _ok(v) else "?"


def sweep_warnings(result: SweepResult) -> list[str]:
    """What a reader must know before trusting the numbers of one sweep."""
    a = result.analysis if isinstance(result.analysis, dict) else {}
    out = []
    if not result.finished:
        out.append("The sweep did not finish (interrupted, or still running): the points shown are those completed.")
    if not a:
        reason = result.config.get("analysis_reason") or "the file has no step-time analysis"
        out.append(f"No step-time analysis: {reason}.")
    budget = [p.batch_size for p in result.points if p.ok and p.stop_reason == "budget"]
    if budget:
        target = (result.config.get("stopping_rule") or {}).get("ci_target", result.config.get("ci_target"))
        out.append(f"Budget-limited: the time budget ran out before the 95% CI reached ±{_pct(target)} at batch "
                   f"{_batch_list(budget)}; their CIs are wider than the target.")
    if a.get("noisy_batches"):
        out.append(f"Noisy: repeated timing blocks disagree by more than ±{_pct((a.get('parameters') or {}).get('noise_target'))} "
                   f"at batch {_batch_list(a['noisy_batches'])}.")
    if a.get("points_without_ci"):
        out.append(f"No confidence interval (too few samples) at batch {_batch_list(a['points_without_ci'])}: "
                   "those points are judged on their medians alone.")
    throttled = [(p.batch_size, p.telemetry.get("throttle_reasons")) for p in result.points if (p.telemetry or {}).get("throttled")]
    if throttled:
        reasons = sorted({r for _, rs in throttled for r in (rs or [])})
        out.append(f"Throttled: clocks were held down (power cap, thermal or hardware slowdown) at batch "
                   f"{_batch_list([b for b, _ in throttled])}" + (f" ({', '.join(reasons)})" if reasons else "")
                   + ": those step times are slower than the card's boost clock allows.")
    skipped = [(p.batch_size, p.skipped_steps) for p in result.points if _ok(p.skipped_steps) and p.skipped_steps > 0]
    if skipped:
        out.append("fp16 gradient scaler skipped steps: " + ", ".join(f"batch {b}: {n}" for b, n in skipped) + ".")
    for p in sorted(result.points, key=lambda p: p.batch_size):
        if p.status == "oom":
            out.append(f"Batch {p.batch_size:,}: out of memory" + (f" ({p.error})" if p.error else "") + ".")
        elif p.status == "error":
            out.append(f"Batch {p.batch_size:,} failed: {p.error or 'no message'}")
    return out


def sweep_table(result: SweepResult) -> dict:
    """Every point of one sweep as a sortable table: the raw numbers behind the figures."""
    per = {p.get("batch_size"): p for p in ((result.analysis or {}).get("points") or []) if isinstance(p, dict)} \
        if isinstance(result.analysis, dict) else {}
    points = sorted(result.points, key=lambda p: p.batch_size)
    optional = [c for c in fmt.TELEMETRY_COLUMNS if any(_ok((p.telemetry or {}).get(c[1])) for p in points)]
    cols = ["batch", "status", "median step", "95% CI", "± CI", "samples/s", "n", "stop", "peak memory",
            *[c[0] for c in optional], "vs smallest", "regime", "diagnosis", "notes"]
    rows = []
    for p in points:
        s = p.stats
        a = per.get(p.batch_size, {})
        t = p.telemetry or {}
        diag = t.get("diagnosis") if isinstance(t.get("diagnosis"), dict) else {}
        label = diag.get("label") or a.get("diagnosis")
        notes = list(p.warnings)
        if a.get("noisy"):
            notes.append(f"repeated blocks disagree by ±{_pct(a.get('block_spread_rel'))}")
        if t.get("throttled"):
            notes.append("throttled: " + ", ".join(t.get("throttle_reasons") or []))
        if p.error:
            notes.append(p.error)
        ci = s and s.ci_low_s is not None
        rows.append([
            cell(f"{p.batch_size:,}", p.batch_size),
            cell(p.status, p.status, cls=None if p.ok else "bad"),
            cell(fmt.duration(s.median_s) if s else None, s.median_s if s else None),
            cell(f"{fmt.duration(s.ci_low_s)} – {fmt.duration(s.ci_high_s)}" if ci else None,
                 s.ci_low_s if ci else None, title=None if ci else "too few samples for a 95% interval of the median"),
            cell(fmt.percent(s.ci_rel_halfwidth) if s else None, s.ci_rel_halfwidth if s else None),
            cell(fmt.rate(p.throughput, "") if p.throughput else None, p.throughput),
            cell(s.n if s else None, s.n if s else None),
            cell(p.stop_reason, p.stop_reason),
            cell(fmt.nbytes(p.peak_allocated_bytes) if p.peak_allocated_bytes is not None else None,
                 p.peak_allocated_bytes, title=p.null_reasons.get("peak_allocated_bytes")),
            *[cell(show(t[key]) if _ok(t.get(key)) else None, _num(t.get(key)),
                   title=(t.get("null_reasons") or {}).get(key) or p.null_reasons.get(key)) for _, key, show in optional],
            cell(a.get("equal_time") if p.ok else None, a.get("equal_time"),
                 title=(f"t/t_ref = {a['ratio_to_reference']:.3g} (interval {a['ratio_low']:.3g}–{a['ratio_high']:.3g})"
                        if _ok(a.get("ratio_to_reference")) and _ok(a.get("ratio_low")) and _ok(a.get("ratio_high")) else None),
                 cls={"within": "good", "beyond": "warn"}.get(a.get("equal_time"))),
            cell(a.get("regime"), a.get("regime"), title=a.get("regime_reason")),
            cell(label, label, title=diag.get("sentence")),
            cell("; ".join(notes), None, cls="notes"),
        ])
    return {"columns": cols, "rows": rows}


# ------------------------------------------------------------------------------ time to accuracy


def _time(v: Any) -> str:
    return fmt.duration(v) if _ok(v) else "—"


def _fmtn(v: Any, digits: int = 3) -> str:
    if not _ok(v):
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"


def tta_summary(result) -> list[str]:
    from bench.analysis.tta import tta_verdict

    if result.analysis is None:
        return ["The study has no analysis yet (unfinished?): only its curves are shown."
                + (f" {result.null_reasons.get('analysis')}" if result.null_reasons.get("analysis") else "")]
    return tta_verdict(result, warnings=False)  # the page lists warnings in their own section


def tta_table(a) -> dict:
    cols = ["batch", "best LR", "steps to target", "seed range", "examples", "regime", "step time", "time to target",
            "interval", "naive estimate", "naive error", "energy to target", "notes"]
    rows = []
    best = a.best_time_batch
    for b in a.batches:
        notes = [f"{k}: {v}" for k, v in (b.null_reasons or {}).items() if k not in ("energy_per_step_j", "energy_to_target_j")]
        if b.best_lr_at_grid_edge:
            notes.append("best LR at the edge of the grid")
        rows.append([
            cell(f"{b.batch_size:,}", b.batch_size, cls="good" if b.batch_size == best else None),
            cell(_fmtn(b.best_lr), b.best_lr),
            cell(_fmtn(b.steps_to_target), b.steps_to_target),
            cell(f"{_fmtn(b.steps_low)}–{_fmtn(b.steps_high)}" if _ok(b.steps_low) else None, b.steps_low),
            cell(_fmtn(b.examples_to_target), b.examples_to_target),
            cell(b.regime, b.regime),
            cell(_time(b.step_time_s) if _ok(b.step_time_s) else None, b.step_time_s),
            cell(_time(b.time_to_target_s) if _ok(b.time_to_target_s) else None, b.time_to_target_s),
            cell(f"{_time(b.time_to_target_low_s)} – {_time(b.time_to_target_high_s)}" if _ok(b.time_to_target_low_s) else None,
                 b.time_to_target_low_s),
            cell(_time(b.naive_time_to_target_s) if _ok(b.naive_time_to_target_s) else None, b.naive_time_to_target_s),
            cell(f"{b.naive_rel_error:+.0%}" if _ok(b.naive_rel_error) else None, b.naive_rel_error,
                 title="naive / measured − 1"),
            cell(f"{b.energy_to_target_j:.3g} J" if _ok(b.energy_to_target_j) else None, b.energy_to_target_j,
                 title=(b.null_reasons or {}).get("energy_to_target_j")),
            cell("; ".join(notes), None, cls="notes"),
        ])
    return {"columns": cols, "rows": rows}


def tta_context(src: Source, index: int) -> dict:
    r = src.record
    a = r.analysis
    task = (r.task or {}).get("name") or (r.config.get("study") or {}).get("task") or Path(src.path).stem
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
    warnings = list(a.warnings) if a else []
    if not r.finished:
        warnings.insert(0, "The study did not finish (interrupted, or still running).")
    method = []
    if r.step_time_source:
        method.append(f"Step times: {r.step_time_source}.")
    study = r.config.get("study") or {}
    if study:
        method.append(f"Learning rate tuned per batch size ({study.get('lr_rule') or 'task default'} rule, "
                      f"{len(study.get('lr_factors') or [])} factors), {len(study.get('seeds') or [])} seed(s) each; "
                      "steps to target = interpolated between the evaluations either side of the target, averaged over seeds at the best LR.")
    if a and a.scaling_fit is not None and a.scaling_fit.bootstrap_method:
        f = a.scaling_fit
        method.append(f"B_crit interval: percentile bootstrap ({f.n_bootstrap_ok} of {f.n_bootstrap} resamples of "
                      f"{f.bootstrap_method}).")
    if a and a.scaling_fit is not None:
        method.append("Regimes " + a.scaling_fit.regime_rule + ".")
    return {
        "id": f"tta-{index}",
        "label": f"{task} · {metric} to {target:.4g}" if _ok(target) else str(task),
        "path": src.path,
        "summary": tta_summary(r),
        "warnings": warnings,
        "method": method,
        "figures": [{"key": k, "title": t, "svg": _markup(svg), "missing": None if svg else why} for k, t, svg, why in figs],
        "table": tta_table(a) if a else None,
        "pareto": a.pareto_time_examples if a else [],
    }


def curves_context(src: Source, index: int) -> dict:
    cf = src.record
    metric = cf.curves[0].metric if cf.curves else "metric"
    target = (cf.config or {}).get("target") or next((c.target for c in cf.curves if c.target is not None), None)
    svg = F.convergence_figure(cf.curves, target, metric)
    sizes = sorted({c.batch_size for c in cf.curves})
    return {"id": f"curves-{index}", "path": src.path,
            "label": f"{(cf.task or {}).get('name') or Path(src.path).stem} · {_plural(len(cf.curves), 'run')}",
            "summary": [f"{_plural(len(cf.curves), 'training run')} at batch {_batch_list(sizes)}"
                        + ("" if cf.finished else " (unfinished: more runs were planned)") + "."],
            "svg": _markup(svg)}


def _env_cell(h: BenchmarkHistory) -> dict:
    """When the software last changed between two runs, and what changed (in the tooltip)."""
    if not h.environment_changes:
        return cell(None, "")
    i = max(h.environment_changes)
    when = h.runs[i].time
    latest = i == len(h.runs) - 1
    return cell(when.strftime("%Y-%m-%d %H:%M") + (" (latest run)" if latest else ""), when.isoformat(),
                title=f"environment changed: {h.environment_changes[i]}", cls="warn" if latest else None)


def history_context(histories: list[BenchmarkHistory], n_runs: int) -> dict | None:
    """Trends per benchmark, with every regression listed; None unless some benchmark has 2+ runs."""
    multi = [h for h in histories if len(h.runs) >= 2]
    if not multi:
        return None
    machines = {h.machine for h in multi}
    by_name: OrderedDict[str, list[BenchmarkHistory]] = OrderedDict()
    for h in multi:
        by_name.setdefault(h.fullname, []).append(h)
    entries, any_decimated = [], False
    rows, regressions = [], []
    for name, hs in by_name.items():
        series = [F.TrendSeries(h.machine, [r.time for r in h.runs], [r.median_s for r in h.runs],
                                [r.q1_s for r in h.runs], [r.q3_s for r in h.runs], list(h.regressions),
                                sorted(h.environment_changes)) for h in hs]
        svg, decimated = F.trend_figure(name, series)
        any_decimated |= decimated
        entries.append({"name": name, "svg": _markup(svg), "open": any(h.latest_regressed for h in hs),
                        "n_regressions": sum(len(h.regressions) for h in hs)})
        for h in hs:
            last, prev = h.runs[-1], h.runs[-2]
            change = last.median_s / prev.median_s - 1 if prev.median_s > 0 else None
            rows.append([
                cell(name, name),
                *([cell(h.machine, h.machine)] if len(machines) > 1 else []),
                cell(len(h.runs), len(h.runs)),
                cell(fmt.duration(last.median_s), last.median_s),
                cell(f"{change:+.1%}" if change is not None else None, change,
                     cls="warn" if h.latest_regressed else None),
                cell(len(h.regressions), len(h.regressions), cls="warn" if h.regressions else None),
                cell(h.runs[h.regressions[-1]].time.strftime("%Y-%m-%d %H:%M") if h.regressions else None,
                     h.runs[h.regressions[-1]].time.isoformat() if h.regressions else ""),
                _env_cell(h),
            ])
            for i in h.regressions:
                cur, pr = h.runs[i], h.runs[i - 1]
                env = h.environment_changes.get(i)
                regressions.append({"name": name, "machine": h.machine if len(machines) > 1 else None, "time": cur.time, "latest": i == len(h.runs) - 1,
                                    "text": f"{fmt.duration(pr.median_s)} → {fmt.duration(cur.median_s)} "
                                            f"({cur.median_s / pr.median_s - 1:+.0%}; IQR {fmt.duration(pr.q1_s)}–"
                                            f"{fmt.duration(pr.q3_s)} → {fmt.duration(cur.q1_s)}–{fmt.duration(cur.q3_s)})"
                                            + (f"; environment changed: {env}" if env else "")})
    regressions.sort(key=lambda r: r["time"], reverse=True)
    cols = ["benchmark", *(["machine"] if len(machines) > 1 else []), "runs", "latest median", "vs previous run",
            "regressions", "last regression", "last environment change"]
    times = [r.time for h in multi for r in h.runs]
    latest = [r for r in regressions if r["latest"]]
    return {
        "rule": REGRESSION_RULE,
        "n_runs": n_runs,
        "n_benchmarks": len(by_name),
        "first": min(times), "last": max(times),
        "entries": entries,
        "table": {"columns": cols, "rows": rows},
        "regressions": [{**r, "time": r["time"].strftime("%Y-%m-%d %H:%M")} for r in regressions[:200]],
        "n_regressions": len(regressions),
        "latest_regressions": len(latest),
        "decimated": any_decimated,
        "max_points": F.MAX_TREND_POINTS,
    }


def suite_context(sources: Sequence[Source]) -> list[dict]:
    """The latest pytest-benchmark run per machine: every benchmark's numbers and its machine_info."""
    latest = latest_run_per_machine(sources)
    out = []
    for i, (key, src) in enumerate(sorted(latest.items())):
        d = src.data
        benches = [b for b in d.get("benchmarks") or [] if isinstance(b, dict)]
        rows, names, med, q1, q3 = [], [], [], [], []
        for b in benches:
            st = b.get("stats") if isinstance(b.get("stats"), dict) else {}
            name = str(b.get("fullname") or b.get("name") or "?")
            names.append(name)
            med.append(_num(st.get("median")))
            q1.append(_num(st.get("q1")))
            q3.append(_num(st.get("q3")))
            extra = b.get("extra_info") or {}
            extra_brief = {k: v for k, v in extra.items() if k not in ("measurement", "config", "largest_batch")} \
                if isinstance(extra, dict) else extra
            extra_txt = json.dumps(extra_brief, default=str, ensure_ascii=False) if extra_brief else ""
            rows.append([
                cell(name, name),
                cell(b.get("group"), b.get("group") or ""),
                cell(fmt.duration(_num(st.get("median"))), _num(st.get("median"))),
                cell(f"{fmt.duration(_num(st.get('q1')))} – {fmt.duration(_num(st.get('q3')))}"
                     if _ok(st.get("q1")) else None, _num(st.get("iqr"))),
                cell(f"{fmt.duration(_num(st.get('mean')))} ± {fmt.duration(_num(st.get('stddev')))}"
                     if _ok(st.get("mean")) else None, _num(st.get("mean"))),
                cell(fmt.duration(_num(st.get("min"))), _num(st.get("min"))),
                cell(st.get("rounds"), _num(st.get("rounds"))),
                cell(_fmtn(st.get("ops")), _num(st.get("ops"))),
                cell(extra_txt[:160] + ("…" if len(extra_txt) > 160 else ""), extra_txt, title=extra_txt or None,
                     cls="notes"),
            ])
        mi = d.get("machine_info") or {}
        info_rows = [(k, v) for k, v in _flatten(mi).items() if not k.startswith("bench_fingerprint.null_reasons")
                     and not k.startswith("bench_fingerprint.hashed_fields")]
        ci = d.get("commit_info") or {}
        out.append({
            "id": f"suite-{i}",
            "path": src.path,
            "datetime": d.get("datetime"),
            "version": d.get("version"),
            "machine": machine_key(mi)[1],
            "commit": ci.get("id"),
            "n": len(benches),
            "table": {"columns": ["benchmark", "group", "median", "IQR (q1–q3)", "mean ± sd", "min", "rounds", "ops/s",
                                  "extra_info"], "rows": rows},
            "svg": _markup(F.suite_figure(names, med, q1, q3)),
            "machine_info": info_rows,
        })
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        out[prefix.rstrip(".")] = ", ".join(map(str, d))
    else:
        out[prefix.rstrip(".")] = "—" if d is None else str(d)
    return out


def suite_sweeps(sources: Sequence[Source]) -> list[SweepResult]:
    """Curves over batch size from the latest pytest-benchmark run per machine (via bench.records.suite):
    only groups with two or more batch sizes measured, since one point is no curve."""
    try:
        from bench.records.suite import sweeps_from_pytest_benchmark
    except ImportError:  # pragma: no cover - the adapter ships with the package
        return []
    latest = latest_run_per_machine(sources)
    out = []
    for src in latest.values():
        try:
            sweeps = sweeps_from_pytest_benchmark(src.data, source=src.path)
        except BenchError:
            continue  # the suite table still shows the run; only its curves are missing
        out += [s for s in sweeps if len({p.case.batch_size for p in s.ok_points()}) >= 2]
    return out


# --------------------------------------------------------------------------------- environment


FINGERPRINT_ORDER = (
    "device", "gpu_name", "gpu_compute_capability", "gpu_memory_total_bytes", "gpu_power_limit_w",
    "gpu_max_sm_clock_mhz", "gpu_max_memory_clock_mhz", "gpu_ecc_enabled", "gpu_mig_enabled", "gpu_persistence_mode",
    "driver_version", "cuda_driver_version", "cuda_runtime_version", "cudnn_version", "torch_version", "torch",
    "python_version", "python", "python_implementation", "bench_version", "cpu_model", "cpu", "cpu_count",
    "torch_threads", "os", "os_release", "platform", "machine", "git_commit", "git_dirty", "hash", "model_hash",
    "hardware_hash", "software_hash",
)
_FINGERPRINT_SKIP = {"null_reasons", "hashed_fields", "fingerprint_version", "pytest_benchmark_machine_info"}


def _env_value(key: str, v: Any) -> str:
    if v is None:
        return "—"
    if key.endswith("_bytes") and _ok(v):
        return fmt.nbytes(v)
    if key.endswith("_w") and _ok(v):
        return f"{v:g} W"
    if key.endswith("_mhz") and _ok(v):
        return f"{v:g} MHz"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def environment_table(columns: Sequence[tuple[str, dict]]) -> dict | None:
    """Fingerprint fields (rows) per source (columns); rows whose values differ are marked."""
    envs = [(name, e) for name, e in columns if isinstance(e, dict) and e]
    if not envs:
        return None
    keys = [k for k in FINGERPRINT_ORDER if any(k in e for _, e in envs)]
    keys += sorted({k for _, e in envs for k in e} - set(keys) - _FINGERPRINT_SKIP)
    rows = []
    missing: dict[str, list[str]] = {}  # reason -> fields recorded by no input: listed, not tabled
    for k in keys:
        vals = [e.get(k) for _, e in envs]
        if all(v is None for v in vals):
            reason = next(((e.get("null_reasons") or {}).get(k) for _, e in envs
                           if (e.get("null_reasons") or {}).get(k)), "not recorded")
            missing.setdefault(reason, []).append(k)
            continue
        shown = [_env_value(k, v) for v in vals]
        differs = len(envs) > 1 and len(set(shown)) > 1
        rows.append({"key": k, "differs": differs,
                     "values": [{"text": s, "title": (e.get("null_reasons") or {}).get(k) if v is None else None}
                                for s, v, (_, e) in zip(shown, vals, envs)]})
    return {"columns": [n for n, _ in envs], "rows": rows,
            "missing": [{"reason": r, "fields": ", ".join(f)} for r, f in missing.items()]}


def fingerprint_line(env: dict) -> str:
    """The few fields a reader wants first: what ran it, with which software."""
    if not env:
        return "no fingerprint recorded"
    mi = env.get("pytest_benchmark_machine_info")
    if isinstance(mi, dict) and not env.get("gpu_name"):
        cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
        env = {**env, "cpu_model": cpu.get("brand_raw") or mi.get("processor"),
               "python_version": mi.get("python_version")}
    dev = env.get("gpu_name") or env.get("gpu") or env.get("cpu_model") or env.get("cpu") or env.get("device") or "?"
    parts = [str(dev)]
    if env.get("gpu_memory_total_bytes"):
        parts.append(fmt.nbytes(env["gpu_memory_total_bytes"]))
    if env.get("driver_version"):
        parts.append(f"driver {env['driver_version']}")
    if env.get("cuda_runtime_version"):
        parts.append(f"CUDA {env['cuda_runtime_version']}")
    torch_v = env.get("torch_version") or env.get("torch")
    if torch_v:
        parts.append(f"torch {torch_v}")
    py = env.get("python_version") or env.get("python")
    if py:
        parts.append(f"Python {py}")
    if env.get("hash"):
        parts.append(f"fingerprint {env['hash']}")
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------- build


def _markup(svg: str | None):
    from markupsafe import Markup

    # SVG from figures.to_svg: matplotlib's XML writer escaped every string taken from results.
    return Markup(svg) if svg else None


def _dumps(data: Any) -> str:
    """Compact strict JSON; NaN/inf become null (scrubbed only when present: the scrub is slow)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(json_safe(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can close the element or
    open a comment, and JSON.parse of the element's text gives `data` back."""
    return _inert(_dumps(data))


def _inert(text: str) -> str:
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def source_payload(inputs: ReportInputs, max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES) -> tuple[str, str | None]:
    """Everything read, as JSON to embed in the page; pytest-benchmark per-round times are left out
    (with a note, also inside the JSON) if the whole would exceed `max_embed_bytes`."""
    payload = {"generator": {"name": "bench report", "version": __version__},
               "inputs": [{"path": s.path, "kind": s.kind, "data": s.data} for s in inputs.sources],
               "skipped": [{"path": p, "reason": r} for p, r in inputs.skipped]}
    text = _dumps(payload)
    size = len(text.encode("utf-8"))
    if size <= max_embed_bytes:
        return text, None
    dropped = 0
    for item in payload["inputs"]:
        if item["kind"] != KIND_PYTEST:
            continue
        benches = []
        for b in item["data"].get("benchmarks") or []:
            if isinstance(b, dict) and isinstance(b.get("stats"), dict) and "data" in b["stats"]:
                b = {**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
                dropped += 1
            benches.append(b)
        item["data"] = {**item["data"], "benchmarks": benches}
    if not dropped:
        return text, None
    note = (f"The inputs come to {size / 2 ** 20:.1f} MiB, over the {max_embed_bytes / 2 ** 20:.0f} MiB embedding limit: "
            f"the per-round times (stats.data) of {dropped} pytest-benchmark entries are left out of the embedded "
            "data; their summary statistics, and every sweep and study file, are embedded whole.")
    payload["omitted"] = note
    return _dumps(payload), note


def _static(name: str):
    from markupsafe import Markup

    return Markup((_TEMPLATES / name).read_text(encoding="utf-8"))


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(str(_TEMPLATES)),
                       autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def default_title(inputs: ReportInputs) -> str:
    sweeps = [s.record for s in inputs.of(KIND_SWEEP)]
    kinds = {s.kind for s in inputs.sources}
    if kinds == {KIND_SWEEP} and len(sweeps) == 1:
        return f"Step time across batch sizes: {sweep_label(sweeps[0])}"
    if kinds == {KIND_SWEEP}:
        return f"Step time across batch sizes: {len(sweeps)} sweeps compared"
    if kinds == {KIND_TTA}:
        return "Time to accuracy across batch sizes"
    if kinds == {KIND_PYTEST}:
        n = len(inputs.of(KIND_PYTEST))
        return "Nightly benchmark trends" if n > 1 else "Benchmark suite results"
    return "Benchmark report"


def build_report(inputs: ReportInputs, *, title: str | None = None, generated: datetime | None = None,
                 max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES) -> str:
    """The whole page as one HTML string."""
    generated = generated or datetime.now(timezone.utc)
    sweep_sources = inputs.of(KIND_SWEEP)
    pytest_sources = inputs.of(KIND_PYTEST)
    sweeps: list[tuple[str, SweepResult]] = [(s.path, s.record) for s in sweep_sources]
    sweeps += [(r.config.get("source", {}).get("path", "?"), r) for r in suite_sweeps(pytest_sources)]

    results = [r for _, r in sweeps]
    labels = legend_labels(results) if results else []
    colors = F.palette(len(results))
    series = [sweep_series(r, lab, col) for r, lab, col in zip(results, labels, colors)]
    sweep_ctx = []
    for i, ((path, r), lab, col) in enumerate(zip(sweeps, labels, colors)):
        a = r.analysis if isinstance(r.analysis, dict) else {}
        said = any("largest batch that fits" in v.lower() for v in a.get("verdict") or [])
        lbf = None if said and r.largest_batch_that_fits is not None else (f"Largest batch that fits: {r.largest_batch_that_fits:,}" if r.largest_batch_that_fits is not None
               else "Largest batch that fits: —") + (f" ({r.largest_batch_reason})." if r.largest_batch_reason else ".")
        sweep_ctx.append({
            "id": f"sweep-{i}", "label": sweep_label(r), "legend": lab, "color": _hex(col), "path": path,
            "created": r.created, "verdict": list(a.get("verdict") or []), "largest": lbf,
            "method": method_sentences(r), "method_brief": method_brief(r), "warnings": sweep_warnings(r), "fingerprint": fingerprint_line(r.environment),
            "table": sweep_table(r),
        })
    sweep_figs = []
    if series:
        tel_missing = None
        if not F.has_telemetry(series):
            reasons = {p.null_reasons.get("kernel_active_pct_mean") for r in results for p in r.points
                       if p.null_reasons.get("kernel_active_pct_mean")}
            tel_missing = "not measured" + (f": {sorted(reasons)[0]}" if reasons else "")
        mem_missing = None
        if not any(_ok(v) for s in series for v in s.peak_allocated_bytes):
            reasons = {p.null_reasons.get("peak_allocated_bytes") for r in results for p in r.points
                       if p.null_reasons.get("peak_allocated_bytes")}
            mem_missing = "not measured" + (f": {sorted(reasons)[0]}" if reasons else "")
        sweep_figs = [
            {"key": "step-time", "title": "Step time", "svg": _markup(F.step_time_figure(series)),
             "missing": "no successful point to draw"},
            {"key": "throughput", "title": "Throughput", "svg": _markup(F.throughput_figure(series)),
             "missing": "no successful point to draw"},
            {"key": "memory", "title": "Peak memory", "svg": _markup(F.memory_figure(series)), "missing": mem_missing},
            {"key": "telemetry", "title": "GPU activity and power", "svg": _markup(F.telemetry_figure(series)),
             "missing": tel_missing},
        ]

    tta_ctx = [tta_context(s, i) for i, s in enumerate(inputs.of(KIND_TTA))]
    curves_ctx = [curves_context(s, i) for i, s in enumerate(inputs.of(KIND_CURVES))]
    suites = suite_context(pytest_sources) if pytest_sources else []
    history = history_context(benchmark_history(pytest_sources), len(pytest_sources)) if len(pytest_sources) > 1 else None

    env_cols = [(f"{c['label']}", r.environment) for c, r in zip(sweep_ctx, results)]
    env_cols += [(t["label"], s.record.environment) for t, s in zip(tta_ctx, inputs.of(KIND_TTA))]
    payload_json, embed_note = source_payload(inputs, max_embed_bytes)

    warnings = []
    for c in sweep_ctx:
        warnings += [{"where": c["label"], "anchor": c["id"], "text": w} for w in c["warnings"]]
    for t in tta_ctx:
        warnings += [{"where": t["label"], "anchor": t["id"], "text": w} for w in t["warnings"]]
    if history and history["latest_regressions"]:
        warnings.append({"where": "nightly trends", "anchor": "trends",
                         "text": f"{_plural(history['latest_regressions'], 'benchmark')} regressed in the latest run."})
    hashes = {(r.environment or {}).get("hash") for r in results if (r.environment or {}).get("hash")}
    if len(hashes) > 1:
        warnings.append({"where": "comparison", "anchor": "environment",
                         "text": f"The sweeps ran on {len(hashes)} different hardware/software fingerprints: compare "
                                 "them knowing that (the differing fields are highlighted under Environment)."})
    for path, why in inputs.skipped:
        warnings.append({"where": "inputs", "anchor": "data", "text": f"Skipped {path}: {why}"})

    nav = [(id_, name) for id_, name, on in (
        ("summary", "Verdict", True), ("warnings", "Warnings", bool(warnings)), ("step-time", "Step time", bool(sweep_ctx)),
        ("tta", "Time to accuracy", bool(tta_ctx or curves_ctx)), ("suites", "Suites", bool(suites)),
        ("trends", "Nightly trends", bool(history)), ("environment", "Environment", True), ("data", "Data", True))
        if on]
    ctx = {
        "title": title or default_title(inputs),
        "generated": generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "version": __version__,
        "inputs": [{"path": s.path, "kind": s.kind} for s in inputs.sources],
        "n_skipped": len(inputs.skipped),
        "nav": nav,
        "sweeps": sweep_ctx,
        "sweep_figures": sweep_figs,
        "ttas": tta_ctx,
        "curves": curves_ctx,
        "suites": suites,
        "history": history,
        "warnings": warnings,
        "environment": environment_table(env_cols),
        "embed_note": embed_note,
        "source_json": _json_markup(_inert(payload_json)),
        "css": _static("report.css"),
        "js": _static("report.js"),
        "capture_js": _static("capture.js"),
    }
    return _environment().get_template("report.html").render(**ctx)


def _json_markup(text: str):
    from markupsafe import Markup

    return Markup(text)  # embed_json already made it inert inside <script>


# ---------------------------------------------------------------------------------------- write


def default_output(now: datetime | None = None) -> Path:
    now = now or datetime.now()
    return DEFAULT_REPORTS_DIR / f"report-{now.strftime('%Y%m%dT%H%M%S')}.html"


def check_output(path: Path, overwrite: bool) -> None:
    check_output_file(path, resume=None, overwrite=overwrite)  # a report cannot be resumed


def write_report(html: str, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `html` atomically; refuse to replace an existing file unless `overwrite`, even one
    created while the report was being built."""
    path = Path(path)
    check_output(path, overwrite)
    try:
        return write_text_atomic(path, html, replace=overwrite)
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror or e}") from None


def make_report(paths: Iterable[str | os.PathLike], output: str | os.PathLike | None = None, *,
                title: str | None = None, overwrite: bool = False,
                max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES) -> Path:
    """Read `paths`, build the page, write it (default reports/report-<time>.html); returns its path."""
    out = Path(output) if output is not None else default_output()
    check_output(out, overwrite)  # fail before the work, not after
    inputs = load_inputs(paths)
    html = build_report(inputs, title=title, max_embed_bytes=max_embed_bytes)
    return write_report(html, out, overwrite=overwrite)
