"""The all-reduce section of the report: one card per `bench allreduce` file (its verdict, where each rank
ran, the bandwidth figure and the per-size table: time with its CI, algbw and busbw with the intervals
the time's CI gives, each rank's median and the spread between them)."""

from __future__ import annotations

import statistics
from pathlib import Path

import bench.present.fmt as fmt
from bench.analysis.distributed import bus_bandwidth_interval
from bench.present.distributed import allreduce_verdict, rank_line
from bench.present.report.common import cell, distinct, markup
from bench.present.report.environment import fingerprint_line
from bench.present.report.figures.distributed import allreduce_figure
from bench.present.report.inputs import Source


def allreduce_label(result) -> str:
    """'all-reduce · float32 · 2 ranks · gloo': what a probe measured."""
    c = result.config
    return " · ".join(str(x) for x in ("all-reduce", c.get("dtype"), f"{result.world_size} ranks", c.get("backend"),
                                       c.get("device")) if x)


def _gbps(v: float | None) -> str | None:
    return None if v is None else f"{v / 1e9:.3g} GB/s"


def _bw_interval(i) -> str | None:
    if i is None or i.value is None:
        return None
    if i.low is None or i.high is None:
        return f"{_gbps(i.value)} (no CI)"
    return f"{_gbps(i.value)} ({i.low / 1e9:.3g}–{i.high / 1e9:.3g})"


def allreduce_table(result) -> dict:
    """One row per message size; every rank's median beside the combined time (the slowest rank's per call)."""
    n = result.world_size
    cols = ["size", "median time", "95% CI", "±", "algbw", "busbw (95% CI)", *[f"rank {r}" for r in range(n)],
            "rank spread", "samples", "status"]
    rows = []
    for p in sorted(result.points, key=lambda p: p.size_bytes):
        s = p.stats
        medians = [statistics.median(r) for r in p.rank_samples_s if r]
        spread = (max(medians) - min(medians)) / min(medians) if len(medians) > 1 and min(medians) > 0 else None
        bus = bus_bandwidth_interval(p.size_bytes, s, n)
        status = p.status + (f": {p.error}" if p.error else "")
        rows.append([
            cell(fmt.nbytes(p.size_bytes), p.size_bytes),
            cell(fmt.duration(s.median_s) if s else None, s.median_s if s else None),
            cell(f"{fmt.duration(s.ci_low_s)} – {fmt.duration(s.ci_high_s)}" if s and s.ci_low_s is not None else None,
                 s.ci_low_s if s else None),
            cell(fmt.percent(s.ci_rel_halfwidth) if s and s.ci_rel_halfwidth is not None else None,
                 s.ci_rel_halfwidth if s else None,
                 cls="warn" if s and s.ci_rel_halfwidth is not None and s.ci_rel_halfwidth > 0.05 else None),
            cell(_gbps(p.algbw_bytes_per_s), p.algbw_bytes_per_s, title=p.null_reasons.get("algbw_bytes_per_s")),
            cell(_bw_interval(bus), bus.value if bus else None, title=p.null_reasons.get("busbw_bytes_per_s")),
            *[cell(fmt.duration(medians[r]) if r < len(medians) else None, medians[r] if r < len(medians) else None)
              for r in range(n)],
            cell(fmt.percent(spread) if spread is not None else None, spread,
                 cls="warn" if spread is not None and spread > 0.05 else None),
            cell(f"{len(p.samples_s):,}", len(p.samples_s)),
            cell(status, p.status, cls="notes" if p.error else None),
        ])
    return {"columns": cols, "rows": rows}


def allreduce_context(src: Source, index: int, label: str) -> dict:
    r = src.record
    warnings = [{"kind": "All-reduce", "text": f"{fmt.nbytes(p.size_bytes)}: {w}"} for p in r.points for w in p.warnings]
    if not r.finished:
        warnings.insert(0, {"kind": "Unfinished", "text": "The probe did not finish (interrupted, or a rank failed): the "
                                                          "sizes listed are those it measured."})
    return {"id": f"allreduce-{index}", "label": label, "path": src.path, "created": r.created,
            "verdict": allreduce_verdict(r), "ranks": [rank_line(x) for x in r.ranks], "warnings": warnings,
            "fingerprint": fingerprint_line(r.environment), "table": allreduce_table(r),
            "figure": {"key": f"allreduce-{index}", "title": "All-reduce bandwidth",
                       "svg": markup(allreduce_figure(r)), "missing": "no message size was measured"}}


def allreduce_labels(sources: list[Source]) -> list[str]:
    """Each probe's label, unique on the page (the date or the file name tells apart two alike)."""
    return distinct([allreduce_label(s.record) for s in sources],
                    [[s.record.created or "", Path(s.path).name] for s in sources])
