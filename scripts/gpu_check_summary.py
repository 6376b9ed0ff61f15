"""The summary of one `scripts/gpu_check.sh` run: `bench doctor`'s verdict line and the two sweeps' verdicts
(made from each file's fields by bench.present, never read back from stored prose), then a short table,
one row per section, printed last. Also writes summary.json and summary.md into OUT_DIR (default: the
results directory).

    python scripts/gpu_check_summary.py RESULTS_DIR [OUT_DIR]
"""

from __future__ import annotations

import csv
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

from bench.core.io import write_json_atomic, write_text_atomic
from bench.present.doctor import verdict_line
from bench.present.steptime import sweep_verdict
from bench.records.suite import PytestBenchmarkRun
from bench.records.sweep import load_sweep

# section name (as gpu_check.sh records it in sections.tsv) -> its results file under OUT
FILES = {"doctor": "doctor.json", "gpu-tests": "gpu-tests.xml", "resnet50": "sweep-resnet50.json",
         "transformer": "sweep-transformer.json", "suites": "suites.json", "peak": "peak.json"}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1) * 100:+.1f}%"


def gpu_tests(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {"passed": passed, **counts, "failed_tests": failed,
            "result": f"{passed} passed, {counts['skipped']} skipped, {counts['failures'] + counts['errors']} failed"}


def peak(path: Path) -> dict[str, Any]:
    rows = json.loads(path.read_text())["peak"]
    parts = [f"{r['precision']} {r['tflops_median']:.4g} TFLOP/s" + (f" ({r['fraction_of_table']:.0%} of datasheet)"
                                                                     if r.get("fraction_of_table") else "")
             for r in rows if r.get("tflops_median") is not None]
    return {"rows": rows, "result": "; ".join(parts) or "nothing measured"}


def sweep(path: Path) -> dict[str, Any]:
    result = load_sweep(path)
    ok = result.ok_points()
    lb = result.largest_batch
    counts = {k: v for k, v in lb.probe_counts.items() if v}
    probes = ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"
    confirmed = [c for c in (p for p in result.points if p.batch_size == lb.batch_size) if c.ok]
    if lb.batch_size is not None:
        largest = (f"largest batch {lb.batch_size} ({'confirmed by a full measurement' if confirmed else 'not confirmed'}"
                   f"; {len(lb.probes)} probe(s): {probes})")
    elif lb.limited or not [p for p in result.points if p.status == "oom"]:
        largest = f"no out-of-memory up to batch {max((p.batch_size for p in ok), default=lb.largest_ran)}"
    else:
        largest = f"largest batch: none ({lb.reason})"
    a = result.analysis or {}
    peak_thr = a.get("peak_throughput_samples_per_s")
    thr = f"; peak {peak_thr:,.0f} samples/s at batch {a.get('peak_throughput_batch')}" if peak_thr else ""
    steps = [p.stats.median_s for p in ok if p.stats]
    span = f"; steps {_ms(min(steps))} to {_ms(max(steps))}" if steps else ""
    return {"ok_points": [p.batch_size for p in ok], "failed_points": [(p.batch_size, p.status) for p in result.points
                                                                        if not p.ok],
            "largest_batch": lb.to_dict(), "largest_batch_confirmed": bool(confirmed),
            "verdict": sweep_verdict(result), "wall_time_s": sum(p.wall_time_s or 0 for p in result.points),
            "warnings": sorted({w for p in result.points for w in p.warnings}),
            "result": f"{len(ok)} ok point(s){span}; {largest}{thr}"}


def doctor(path: Path) -> dict[str, Any]:
    """`bench doctor`'s verdict (made again from its fields), its timer and sampler figures, what it skipped."""
    report = json.loads(path.read_text())
    parts = []
    for name, row in (report.get("timers") or {}).items():
        parts.append(f"{name}: timer {_pct(row['harness_blocks_vs_torch']['ratio_median'])}, "
                     f"wall {_pct(row['wall_vs_torch']['ratio_median'])} vs torch.utils.benchmark")
    over = report.get("sampler_overhead")
    if over:
        ci = over.get("ratio_ci95")
        parts.append(f"sampler on/off {_pct(over['ratio_median'])}"
                     + (f" ({_pct(ci[0])}..{_pct(ci[1])})" if ci else ""))
    tick = (report.get("gpu") or {}).get("sampler_tick")
    if tick:
        parts.append(f"{tick['us_per_tick_median']:.0f} µs and {tick['nvml_calls_per_tick']:.2f} NVML calls per tick")
    if report.get("skipped"):
        parts.append("skipped: " + ", ".join(sorted(report["skipped"])))
    if report.get("unfinished"):
        parts.append(f"cut off while {report['unfinished']}")
    return {"verdict": verdict_line(report), "doctor_wall_time_s": report.get("wall_time_s"),
            "result": "; ".join(parts) or "nothing measured"}


def suites(path: Path) -> dict[str, Any]:
    run = PytestBenchmarkRun.from_dict(json.loads(path.read_text()), str(path))
    cases = []
    for b in run.benchmarks:
        info = b.get("extra_info") or {}
        t = info.get("pytest_benchmark_timing") or {}
        cases.append({"name": b.get("name"), "library_median_s": info.get("step_time_median_s"),
                      "pytest_benchmark_median_s": t.get("median_s"), "steps_per_round": t.get("steps_per_round"),
                      "library_to_pytest_benchmark": t.get("library_to_pytest_benchmark"), "warning": t.get("warning")})
    ratios = [c["library_to_pytest_benchmark"] for c in cases if c["library_to_pytest_benchmark"] is not None]
    off = [c["name"] for c in cases if c["warning"]]
    span = f"library/pytest-benchmark {min(ratios):.3g}..{max(ratios):.3g}" if ratios else "no ratios"
    failed = len(run.failed_cases)
    return {"cases": cases, "failed_cases": failed,
            "result": f"{len(cases)} timed, {failed} failed; {span}; {len(off)} off by more than 10%"}


READERS: dict[str, Callable[[Path], dict]] = {"doctor": doctor, "gpu-tests": gpu_tests, "peak": peak,
                                              "resnet50": sweep, "transformer": sweep, "suites": suites}


def sections(out: Path) -> dict[str, dict]:
    """name -> {rc, seconds, limit_s} from sections.tsv (what gpu_check.sh ran, in order)."""
    path = out / "sections.tsv"
    if not path.exists():
        return {}
    rows = {}
    with path.open() as f:
        for name, rc, seconds, limit in csv.reader(f, delimiter="\t"):
            rows[name] = {"rc": int(rc), "seconds": int(seconds), "limit_s": int(limit)}
    return rows


def summarise(out: Path) -> dict[str, Any]:
    ran = sections(out)
    summary: dict[str, Any] = {"sections": {}}
    if "wheels" in ran:
        summary["wheels"] = ran["wheels"]
    for name, filename in FILES.items():
        entry: dict[str, Any] = dict(ran.get(name, {}))
        path = out / filename
        if not path.exists():
            entry["result"] = f"no {filename}" + (" (timed out)" if entry.get("rc") in (124, 137) else "")
        else:
            try:
                entry.update(READERS[name](path))
            except Exception as e:  # noqa: BLE001 - a summary reports what it could not read
                entry["result"] = f"unreadable {filename}: {type(e).__name__}: {e}"
        summary["sections"][name] = entry
    summary["total_s"] = sum(r["seconds"] for r in ran.values())
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = ["| check | exit | time | result |", "|---|---|---|---|"]
    for name, e in summary["sections"].items():
        rc = e.get("rc")
        status = "-" if rc is None else "ok" if rc == 0 else "timed out" if rc in (124, 137) else f"rc {rc}"
        took = f"{e['seconds']} s / {e['limit_s']} s" if "seconds" in e else "-"
        lines.append(f"| {name} | {status} | {took} | {e.get('result', '')} |")
    lines.append(f"| total | | {summary['total_s']} s | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = argv or sys.argv[1:] or ["docs/gpu"]
    results = Path(args[0])
    out = Path(args[1]) if len(args) > 1 else results
    summary = summarise(results)
    if summary["sections"]["doctor"].get("verdict"):
        print(f"doctor verdict: {summary['sections']['doctor']['verdict']}")
    for name in ("resnet50", "transformer"):
        verdict = summary["sections"][name].get("verdict")
        if verdict:
            print(f"{name} verdict:")
            for sentence in verdict:
                print(f"  {sentence}")
    text = table(summary)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
