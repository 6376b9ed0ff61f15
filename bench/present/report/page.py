"""Assembling the report: every section's context into the one template, the source data embedded
inert, and the page written atomically. `make_report` is the whole path from files (and the history
store) to page.

Nightly trends come from a history store: the one given (`db`; its trend summaries, not its raw samples,
are drawn and embedded), else the pytest-benchmark files among the inputs, read into a temporary store
so that files and stores are judged by the same rules. With both, the files add their own sections
(sweeps, studies, the latest suite run) and the trends are the store's alone.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import bench.present.fmt as fmt
from bench import __version__
from bench.core.errors import BenchError
from bench.core.io import check_output_file, json_safe, write_text_atomic
from bench.history.identity import is_bench_fingerprint
from bench.history.sources import content_hash
from bench.present.report.allreduce import allreduce_context, allreduce_labels
from bench.present.report.common import distinct, markup
from bench.present.report.environment import environment_table
from bench.present.report.figures import sweeps as SF
from bench.present.report.figures.common import palette
from bench.present.report.history import history_context
from bench.present.report.inputs import ReportInputs, load_inputs
from bench.present.report.store_history import (
    SOURCE_STORE,
    NightlyHistory,
    history_from_db,
    history_from_files,
)
from bench.present.report.suites import suite_context, suite_sweeps
from bench.present.report.sweeps import (
    caveat_line,
    legend_labels,
    sweep_context,
    sweep_figures,
    sweep_label,
    sweep_series,
)
from bench.present.report.tta import curves_context, study_labels, tta_context
from bench.records.loader import (
    KIND_ALLREDUCE,
    KIND_CURVES,
    KIND_PYTEST,
    KIND_SWEEP,
    KIND_TTA,
)
from bench.records.sweep import SweepResult

DEFAULT_REPORTS_DIR = Path("reports")
# Above this the pytest-benchmark per-round times are left out of the embedded data (their summary
# statistics stay); sweep and study files are always embedded whole.
DEFAULT_MAX_EMBED_BYTES = 25 * 2 ** 20

_TEMPLATES = Path(__file__).parent / "templates"


def _dumps(data: Any) -> str:
    """Compact strict JSON; NaN/inf become null (scrubbed only when present: the scrub is slow)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(json_safe(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def embed_json(data: Any) -> str:
    """`data` as the page embeds it: compact JSON, gzipped (no timestamp: the same data gives the same
    page) and base64-encoded. The base64 alphabet has no '<', '>' or '&', so nothing in the data can
    close the <script> element it sits in; gzip keeps a page with every raw sample small."""
    return embed_text(_dumps(data))


def embed_text(json_text: str) -> str:
    return base64.b64encode(gzip.compress(json_text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def read_embedded(encoded: str) -> Any:
    """The data a page embeds, back from the text of its source-data element (embed_json's inverse)."""
    return json.loads(gzip.decompress(base64.b64decode(encoded)).decode("utf-8"))


def source_payload(inputs: ReportInputs, max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES,
                   history: NightlyHistory | None = None) -> tuple[str, str | None]:
    """Everything read, as JSON to embed in the page: the input files, and the history's trend summaries
    (never its raw samples); pytest-benchmark per-round times are left out (with a note, also inside the
    JSON) if the whole would exceed `max_embed_bytes`."""
    payload = {"generator": {"name": "bench report", "version": __version__},
               "inputs": [{"path": s.path, "kind": s.kind, "data": s.data} for s in inputs.sources],
               "skipped": [{"path": p, "reason": r} for p, r in inputs.skipped]}
    if history is not None:
        payload["history"] = history.payload()
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


def default_title(inputs: ReportInputs, history: NightlyHistory | None = None) -> str:
    sweeps = [s.record for s in inputs.of(KIND_SWEEP)]
    kinds = {s.kind for s in inputs.sources}
    if history is not None and history.source == SOURCE_STORE and kinds <= {KIND_PYTEST}:
        return "Nightly benchmark trends"
    if kinds == {KIND_SWEEP} and len(sweeps) == 1:
        return f"Step time across batch sizes: {sweep_label(sweeps[0])}"
    if kinds == {KIND_SWEEP}:
        return f"Step time across batch sizes: {len(sweeps)} sweeps compared"
    if kinds == {KIND_TTA}:
        return "Time to accuracy across batch sizes"
    if kinds == {KIND_ALLREDUCE}:
        return "All-reduce bandwidth across message sizes"
    if kinds == {KIND_PYTEST}:
        n = len(inputs.of(KIND_PYTEST))
        return "Nightly benchmark trends" if n > 1 else "Benchmark suite results"
    return "Benchmark report"


def build_report(inputs: ReportInputs, *, title: str | None = None, generated: datetime | None = None,
                 max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES, history: NightlyHistory | None = None,
                 settings=None, nights: int | None = None) -> str:
    """The whole page as one HTML string: each section's context from its module, then the template.

    `history`: the nightly history from a store (store_history.history_from_db); without one, two or more
    pytest-benchmark inputs are read into a temporary store for their trends. `settings`: bench compare's
    settings (bench.analysis.compare.CompareSettings; default: its defaults) and `nights` (each machine's
    last N drawn) for the files' trends."""
    generated = generated or datetime.now(timezone.utc)
    sweep_sources = inputs.of(KIND_SWEEP)
    pytest_sources = inputs.of(KIND_PYTEST)
    sweeps: list[tuple[str, SweepResult]] = [(s.path, s.record) for s in sweep_sources]
    sweeps += [(r.config.get("source", {}).get("path", "?"), r) for r in suite_sweeps(pytest_sources)]

    results = [r for _, r in sweeps]
    labels = legend_labels(results) if results else []
    colors = palette(len(results))
    series = [sweep_series(r, lab, col) for r, lab, col in zip(results, labels, colors)]
    titles = distinct([sweep_label(r) for r in results],
                      [[lab, r.created or "", Path(path).name] for (path, r), lab in zip(sweeps, labels)])
    sweep_ctx = [sweep_context(i, path, r, lab, col, title)
                 for i, ((path, r), lab, col, title) in enumerate(zip(sweeps, labels, colors, titles))]
    sweep_figs = sweep_figures(results, series)

    tta_sources = inputs.of(KIND_TTA)
    tta_ctx = [tta_context(s, i, lab) for i, (s, lab) in enumerate(zip(tta_sources, study_labels(tta_sources)))]
    curves_ctx = [curves_context(s, i) for i, s in enumerate(inputs.of(KIND_CURVES))]
    allreduce_sources = inputs.of(KIND_ALLREDUCE)
    allreduce_ctx = [allreduce_context(s, i, lab)
                     for i, (s, lab) in enumerate(zip(allreduce_sources, allreduce_labels(allreduce_sources)))]
    suites = suite_context(pytest_sources) if pytest_sources else []
    if history is None and len(pytest_sources) > 1:
        history = history_from_files(pytest_sources, settings=settings, nights=nights)
    history_ctx = history_context(history)
    not_in_store = []
    if history is not None and history.source == SOURCE_STORE:
        not_in_store = [s.path for s in pytest_sources if content_hash(s.data) not in history.content_hashes]

    env_cols = [(f"{c['label']}", r.environment) for c, r in zip(sweep_ctx, results)]
    env_cols += [(t["label"], s.record.environment) for t, s in zip(tta_ctx, inputs.of(KIND_TTA))]
    env_cols += [(a["label"], s.record.environment) for a, s in zip(allreduce_ctx, allreduce_sources)]
    if history is not None and history.source == SOURCE_STORE:
        env_cols += [(f"{m['label']} (latest night)", fp) for m, fp in zip(history.trends["machines"],
                                                                           history.fingerprints)
                     if is_bench_fingerprint(fp)]
    payload_json, embed_note = source_payload(inputs, max_embed_bytes, history)
    warnings = page_warnings(inputs, results, sweep_ctx, tta_ctx + allreduce_ctx, history_ctx, not_in_store)

    nav = [(id_, name) for id_, name, on in (
        ("summary", "Verdict", True), ("warnings", "Warnings", bool(warnings)), ("step-time", "Step time", bool(sweep_ctx)),
        ("tta", "Time to accuracy", bool(tta_ctx or curves_ctx)), ("allreduce", "All-reduce", bool(allreduce_ctx)),
        ("suites", "Suites", bool(suites)),
        ("trends", "Nightly trends", bool(history_ctx)), ("environment", "Environment", True), ("data", "Data", True))
        if on]
    cards = verdict_cards(sweep_sources, sweep_ctx, series, tta_ctx, curves_ctx, allreduce_ctx, suites, history_ctx)
    if len(series) == 1 and len(sweep_sources) == 1:  # the one sweep's step-time figure is its card's: not drawn twice
        sweep_figs = [f for f in sweep_figs if f["key"] != "step-time"]
    ctx = {
        "title": title or default_title(inputs, history),
        "generated": generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "version": __version__,
        "inputs": [{"path": s.path, "kind": s.kind} for s in inputs.sources],
        "n_skipped": len(inputs.skipped),
        "nav": nav,
        "sweeps": sweep_ctx,
        "sweep_figures": sweep_figs,
        "ttas": tta_ctx,
        "curves": curves_ctx,
        "allreduces": allreduce_ctx,
        "suites": suites,
        "history": history_ctx,
        "store": history.where if history is not None and history.source == SOURCE_STORE else None,
        "store_empty": history is not None and history.source == SOURCE_STORE and not history.trends["benchmarks"],
        "not_in_store": not_in_store,
        "warnings": warnings,
        "warning_groups": group_warnings(warnings),
        # What every sweep lacks alike is said once for the section, not once per sweep.
        "common_left_out": _shared([c["table"]["left_out"] for c in sweep_ctx]),
        "common_no_telemetry": _shared([c["no_telemetry"] for c in sweep_ctx]),
        "cards": cards,
        "environment": environment_table(env_cols),
        "embed_note": embed_note,
        "source_json": embed_text(payload_json),
        "css": _static("report.css"),
        "js": _static("report.js"),
        "capture_js": _static("capture.js"),
    }
    return _environment().get_template("report.html").render(**ctx)


def verdict_cards(sweep_sources, sweep_ctx: Sequence[dict], series, tta_ctx: Sequence[dict], curves_ctx: Sequence[dict],
                  allreduce_ctx: Sequence[dict], suites: Sequence[dict], history: dict | None) -> list[dict]:
    """One card per input, verdict first: a title, at most five short lines and the caveats' kinds, with the
    input's headline figure beside it (taken out of its section, so no figure is drawn twice). The full
    verdict and how it was measured are in each input's section."""
    cards = []
    n_files = len(sweep_sources)
    for c, s in zip(sweep_ctx[:n_files], series[:n_files]):
        cards.append({"id": c["id"], "title": c["label"], "color": c["color"], "lines": c["headline"] or c["verdict"][:1],
                      "caveats": c["caveats"], "muted": [f"Ran on {c['ran_on']}"],
                      "figure": {"key": "step-time", "title": "Step time",
                                 "svg": markup(SF.step_time_figure([s])), "missing": "no successful point to draw"}})
    from_suites = sweep_ctx[n_files:]
    for su in suites:
        if history:
            break  # the nightly card speaks for the suite runs
        curves = [c for c in from_suites if c["path"] == su["path"]]
        lines = [f"{fmt.plural(su['n'], 'benchmark')} on {su['machine']}."]
        if curves:
            lines.append(f"{fmt.plural(len(curves), 'step-time curve')} over batch size: under Step time.")
        lines.append("One run: trends need two or more (or bench report --db).")
        cards.append({"id": su["id"], "title": f"Suite run {su['when']}", "color": None, "lines": lines,
                      "caveats": caveat_line([w for c in curves for w in c["warnings"]]), "muted": [],
                      "figure": su.pop("figure")})
    for t in tta_ctx:
        figure = next((f for f in t["figures"] if f["key"] == "tta"), None)
        t["figures"] = [f for f in t["figures"] if f is not figure]
        cards.append({"id": t["id"], "title": t["label"], "color": None, "lines": t["headline"],
                      "caveats": caveat_line(t["warnings"]), "muted": [], "figure": figure})
    for c in curves_ctx:
        cards.append({"id": c["id"], "title": c["label"], "color": None, "lines": c["summary"], "caveats": None,
                      "muted": [], "figure": c.pop("figure")})
    for a in allreduce_ctx:
        cards.append({"id": a["id"], "title": a["label"], "color": None, "lines": a["verdict"][:4],
                      "caveats": caveat_line(a["warnings"]), "muted": [f"Ran on {a['fingerprint']}"],
                      "figure": a.pop("figure")})
    if history:
        first = next((e for e in history["entries"] if e["svg"]), None)
        if first is not None:
            first["shown_above"] = True
        cards.append({"id": "trends", "title": "Nightly trends", "color": None, "lines": history["headline"],
                      "caveats": None, "muted": [],
                      "figure": {"key": "trend", "title": first["name"], "svg": first["svg"], "missing": ""} if first
                      else None})
    return cards


def page_warnings(inputs: ReportInputs, results: Sequence[SweepResult], sweep_ctx: Sequence[dict],
                  cards: Sequence[dict], history: dict | None, not_in_store: Sequence[str] = ()) -> list[dict]:
    """Every section's warnings in one list, each with its kind (how the page groups them) and a link to
    where it applies (`cards`: the study and all-reduce cards, each with its label, id and warnings)."""
    warnings = []
    for c in sweep_ctx:
        warnings += [{"where": c["label"], "anchor": c["id"], **w} for w in c["warnings"]]
    for t in cards:
        warnings += [{"where": t["label"], "anchor": t["id"], **w} for w in t["warnings"]]
    if history:
        for m in history["latest"]:
            n = (m["counts"] or {}).get("regression", 0)
            if n:
                warnings.append({"kind": "Regressed", "where": "nightly trends", "anchor": "trends-latest",
                                 "text": f"{fmt.plural(n, 'benchmark')} regressed in the latest night on {m['machine']} "
                                         f"(bench compare against the last good night, {m['baseline']})."})
            elif m["recorded"] == "regressed":
                warnings.append({"kind": "Regressed", "where": "nightly trends", "anchor": "trends-latest",
                                 "text": f"bench compare --record marked the latest night on {m['machine']} as "
                                         "regressed."})
        for path, why in history["left_out"]:
            warnings.append({"kind": "Not in the trends", "where": "nightly trends", "anchor": "trends",
                             "text": f"{path} is not in the trends: {why}"})
    if not_in_store:
        warnings.append({"kind": "Not in the store", "where": "nightly trends", "anchor": "trends",
                         "text": f"{fmt.plural(len(not_in_store), 'pytest-benchmark input')} "
                                 f"({fmt.and_list(list(not_in_store[:3]) + (['…'] if len(not_in_store) > 3 else []))}) "
                                 "are not in the history store, so not in its trends (bench history ingest adds them)."})
    hashes = {(r.environment or {}).get("hash") for r in results if (r.environment or {}).get("hash")}
    if len(hashes) > 1:
        warnings.append({"kind": "Different machines", "where": "comparison", "anchor": "environment",
                         "text": f"The sweeps ran on {len(hashes)} different hardware/software fingerprints: compare "
                                 "them knowing that (the differing fields are highlighted under Environment)."})
    for path, why in inputs.skipped:
        warnings.append({"kind": "Skipped input", "where": "inputs", "anchor": "data", "text": f"Skipped {path}: {why}"})
    return warnings


def _shared(values: Sequence[Any]) -> Any:
    """The value every item has alike (None, or nothing, when they differ or there are none)."""
    return values[0] if values and values[0] and all(v == values[0] for v in values) else None


def group_warnings(warnings: Sequence[dict]) -> list[dict]:
    """The warnings grouped by kind, in order of first appearance: {"kind", "count", "where", "items"}, where
    `where` names the inputs it concerns (the first three, then how many more)."""
    groups: dict[str, list[dict]] = {}
    for w in warnings:
        groups.setdefault(w["kind"], []).append(w)
    out = []
    for kind, items in groups.items():
        anchors: dict[str, str] = {}  # each place the kind concerns, and its anchor
        for w in items:
            anchors.setdefault(w["where"], w["anchor"])
        if len(anchors) == 1:
            said = next(iter(anchors))
        else:
            what = Counter(_PLACES.get(a.split("-")[0], "place") for a in anchors.values())
            said = "in " + fmt.and_list([fmt.plural(n, word, _PLURAL.get(word)) for word, n in what.items()])
        out.append({"kind": kind, "count": len(items), "where": said, "items": items})
    return out


# What a warning's anchor names, for "in 7 sweeps and 1 study".
_PLACES = {"sweep": "sweep", "tta": "study", "allreduce": "probe", "trends": "nightly trend", "suite": "suite run"}
_PLURAL = {"study": "studies"}


def default_output(now: datetime | None = None) -> Path:
    now = now or datetime.now()
    return DEFAULT_REPORTS_DIR / f"report-{now.strftime('%Y%m%dT%H%M%S')}.html"


def check_output(path: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    check_output_file(path, resume=None, overwrite=overwrite, inputs=inputs)  # a report cannot be resumed


def write_report(html: str, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `html` atomically; refuse to replace an existing file unless `overwrite`, even one
    created while the report was being built."""
    path = Path(path)
    check_output(path, overwrite)
    try:
        return write_text_atomic(path, html, replace=overwrite)
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror or e}") from None


def make_report(paths: Iterable[str | os.PathLike] = (), output: str | os.PathLike | None = None, *,
                title: str | None = None, overwrite: bool = False,
                max_embed_bytes: int = DEFAULT_MAX_EMBED_BYTES, db: str | os.PathLike | None = None,
                nights: int | None = None, settings=None,
                on_skipped: Callable[[str, str], None] | None = None) -> Path:
    """Read `paths` (and, with `db`, the history store's trends), build the page, write it (default
    reports/report-<time>.html); returns its path. `nights`: show each machine's last N nights of the
    history; `settings`: bench compare's (bench.analysis.compare.load_settings; default: its defaults);
    `on_skipped(path, reason)` hears of each file in a folder that was skipped (also listed on the page)."""
    out = Path(output) if output is not None else default_output()
    paths = list(paths)
    check_output(out, overwrite, paths)  # fail before the work, not after
    if not paths and db is None:
        raise BenchError("no input files given, and no history store (--db)")
    inputs = load_inputs(paths) if paths else ReportInputs()
    for path, reason in inputs.skipped if on_skipped else ():
        on_skipped(path, reason)
    history = history_from_db(db, settings=settings, nights=nights) if db is not None else None
    if history is not None and not paths and not history.trends["benchmarks"]:
        raise BenchError(f"the history store {history.where} holds no benchmark results: nothing to report "
                         "(bench history ingest FILE... first)")
    html = build_report(inputs, title=title, max_embed_bytes=max_embed_bytes, history=history, settings=settings,
                        nights=nights)
    return write_report(html, out, overwrite=overwrite)
