"""The benchmark-suites section of the report: the latest pytest-benchmark run per machine (a figure and a
table of every benchmark, its machine_info), and the sweeps the adapter rebuilds from it."""

from __future__ import annotations

import json
from typing import Any, Sequence

import bench.present.fmt as fmt
from bench.analysis.regression import (
    SOURCE_LIBRARY,
    SOURCE_PYTEST,
    benchmark_stats,
    latest_run_per_machine,
    machine_key,
)
from bench.analysis.steptime import add_analysis
from bench.core.errors import BenchError
from bench.core.numbers import as_number, is_number
from bench.present.report.common import TIMER_WORDS, cell, compact_table, markup
from bench.present.report.figures import trends as F
from bench.present.report.inputs import Source
from bench.records.sweep import SweepResult


def _x_label(sources: set[str]) -> str:
    if sources == {SOURCE_LIBRARY}:
        return "step time (bench)"
    if sources == {SOURCE_PYTEST}:
        return "time per call (pytest-benchmark)"
    return "bench step time, else pytest-benchmark time per call"


CLOCKS_NOTE = ("Two clocks: “bench step time” is the library's timing of one training step (CUDA events around "
               "each step where the device is a GPU), the number the verdicts and the trends quote; the "
               "pytest-benchmark columns time the whole benchmarked call on the host clock, set-up and "
               "synchronisation included, and can be many times larger.")


def suite_context(sources: Sequence[Source]) -> list[dict]:
    """The latest pytest-benchmark run per machine: every benchmark's numbers and its machine_info. The
    figure draws the library's step times where recorded (as the trends do), pytest-benchmark's medians
    for benchmarks without bench extra_info; the table shows both."""
    latest = latest_run_per_machine(sources)
    out = []
    for i, (key, src) in enumerate(sorted(latest.items())):
        d = src.data
        benches = [b for b in d.get("benchmarks") or [] if isinstance(b, dict)]
        rows, names, med, q1, q3, drawn_from = [], [], [], [], [], set()
        shorts = [str(b.get("name") or b.get("fullname") or "?") for b in benches]
        for b, short_name in zip(benches, shorts):
            st = b.get("stats") if isinstance(b.get("stats"), dict) else {}
            name = str(b.get("fullname") or b.get("name") or "?")
            shown = short_name if shorts.count(short_name) == 1 else name  # the full name where the short repeats
            drawn = benchmark_stats(b)  # the library's step times where recorded: what the trends use too
            names.append(shown)
            med.append(drawn.median_s if drawn else None)
            q1.append(drawn.q1_s if drawn else None)
            q3.append(drawn.q3_s if drawn else None)
            if drawn:
                drawn_from.add(drawn.source)
            lib = drawn if drawn is not None and drawn.source == SOURCE_LIBRARY else None
            extra = b.get("extra_info") or {}
            extra_brief = {k: v for k, v in extra.items() if k not in ("measurement", "config", "largest_batch")} \
                if isinstance(extra, dict) else extra
            extra_txt = json.dumps(extra_brief, default=str, ensure_ascii=False, indent=1) if extra_brief else ""
            rows.append([
                cell(shown, name, title=name),  # the short name; the full one on hover
                cell(b.get("group"), b.get("group") or ""),
                cell(fmt.duration(lib.median_s) if lib else None, lib.median_s if lib else None,
                     title=TIMER_WORDS.get(lib.timer) if lib else "no bench extra_info: pytest-benchmark's numbers only"),
                cell(fmt.duration(as_number(st.get("median"))), as_number(st.get("median")),
                     title=f"min {fmt.duration(as_number(st.get('min')))}, {fmt.quantity(st.get('ops'))} ops/s"),
                cell(f"{fmt.duration(as_number(st.get('q1')))} – {fmt.duration(as_number(st.get('q3')))}"
                     if is_number(st.get("q1")) else None, as_number(st.get("iqr"))),
                cell(f"{fmt.duration(as_number(st.get('mean')))} ± {fmt.duration(as_number(st.get('stddev')))}"
                     if is_number(st.get("mean")) else None, as_number(st.get("mean"))),
                cell(st.get("rounds"), as_number(st.get("rounds"))),
                cell(fmt.plural(len(extra_brief), "field") if extra_brief else None, len(extra_brief or ()),
                     json=extra_txt or None),
            ])
        mi = d.get("machine_info") or {}
        info_rows = [(k, v) for k, v in _flatten(mi).items() if not k.startswith("bench_fingerprint.null_reasons")
                     and not k.startswith("bench_fingerprint.hashed_fields")]
        ci = d.get("commit_info") or {}
        out.append({
            "id": f"suite-{i}",
            "path": src.path,
            "datetime": d.get("datetime"),
            "when": _when(d.get("datetime")),
            "version": d.get("version"),
            "machine": machine_key(mi)[1],
            "commit": ci.get("id"),
            "n": len(benches),
            "table": compact_table({"columns": ["benchmark", "group", "bench step time (device clock)",
                                                "pytest-benchmark median (host clock)", "IQR (q1–q3)",
                                                "mean ± sd", "rounds", "extra_info"], "rows": rows},
                                   keep=("benchmark",)),
            "clocks": CLOCKS_NOTE if any(r[2]["v"] is not None for r in rows) else None,
            "figure": {"key": "suite", "title": "Benchmarks", "missing": "no benchmark has a median",
                       "svg": markup(F.suite_figure(names, med, q1, q3, x_label=_x_label(drawn_from)))},
            "machine_info": info_rows,
        })
    return out


def _when(text: Any) -> str:
    """A run's ISO time to the minute ('2026-12-06 01:30 UTC'), or as written when it is not ISO."""
    from datetime import datetime

    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return str(text)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.utcoffset() is not None and not t.utcoffset() else "")


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
    """Curves over batch size from the latest pytest-benchmark run per machine, each analysed as a sweep
    is (bench.analysis.steptime.add_analysis): only groups with two or more batch sizes measured, since
    one point is no curve."""
    latest = latest_run_per_machine(sources)
    out = []
    for src in latest.values():
        try:
            sweeps = src.record.sweeps()
        except BenchError:
            continue  # the suite table still shows the run; only its curves are missing
        for s in sweeps:
            if len({p.case.batch_size for p in s.ok_points()}) >= 2:
                add_analysis(s)
                out.append(s)
    return out
