"""Inputs for the report tests, built with the project's own records and analyses so the report reads what
the tools really write: sweeps, time-to-accuracy studies and pytest-benchmark runs, and helpers to build a
page and pick parts of it. conftest.py makes this importable as `report_inputs` in any import mode."""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench.analysis.steptime import analyse_sweep
from bench.present.report import build_report, load_inputs
from bench.records.suite import EXTRA_INFO_SCHEMA
from bench.records.sweep import Case, Measurement, SweepResult

EVIL = "<script>alert(1)</script>\"q'"
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def make_sweep(workload: str = "mlp", precision: str = "fp32", *, gpu: bool = True, batches=(1, 4, 16, 64, 256, 1024),
               base_s: float = 0.010, slope_s: float = 4e-5, oom_from: int | None = 1024, error: str | None = None,
               seed: int = 0, n: int = 30, finished: bool = True, analysed: bool = True) -> dict:
    """A bench.run.sweep dict: flat then linear step time, GPU memory and telemetry, an OOM at the top."""
    rng = np.random.default_rng(seed)
    device = "cuda:0" if gpu else "cpu"
    points = []
    for b in batches:
        case = Case(workload, b, device, precision)
        if oom_from is not None and b >= oom_from:
            points.append(Measurement(case, status="oom", error=error or "CUDA out of memory. Tried to allocate 2.00 GiB"))
            continue
        t = max(base_s, base_s * 0.6 + slope_s * b)
        samples = (t * (1 + 0.004 * rng.standard_normal(n))).tolist()
        m = Measurement(case, timer="cuda_event" if gpu else "host", samples_s=samples, block_medians_s=[t, t * 1.001],
                        stop_reason="ci_target" if b != 4 else "budget", warmup_reason="stable")
        if b == 4:
            m.warnings.append("time budget ran out before the 95% CI of the median reached ±1.0% (it is ±1.4%)")
        if gpu:
            m.peak_allocated_bytes = int(3e8 + 2.5e6 * b)
            m.peak_reserved_bytes = int(4e8 + 2.6e6 * b)
            busy = min(99.0, 30 + 0.2 * b)
            m.telemetry = {"telemetry_source": "nvml", "sample_period_s": 0.05, "kernel_active_pct_mean": busy,
                           "sm_activity_pct_mean": busy * 0.7, "tensor_activity_pct_mean": busy * 0.4,
                           "dram_bw_pct_mean": busy * 0.3, "power_w_energy_mean": 120 + 1.5 * b ** 0.8,
                           "power_source": "energy_counter", "power_w_mean": 71.0,  # 1 s average: mostly idle
                           "energy_per_sample_j": 0.5 / b + 0.002, "throttled": b >= 256,
                           "throttle_reasons": ["sw_power_cap"] if b >= 256 else [],
                           "diagnosis": {"label": "launch-bound" if b < 64 else "compute-bound",
                                         "sentence": "rule-based reading of the telemetry"}}
        else:
            m.null_reasons["peak_allocated_bytes"] = "allocator peak statistics exist only on CUDA devices"
            m.null_reasons["kernel_active_pct_mean"] = "device cpu is not a CUDA device"
        points.append(m)
    if error is not None:
        points.append(Measurement(Case(workload, 3, device, precision), status="error", error=error))
    env = {"device_type": "cuda" if gpu else "cpu", "device": device,
           "gpu_name": "NVIDIA H100 80GB HBM3" if gpu else None, "gpu_memory_total_bytes": 85e9 if gpu else None,
           "gpu_power_limit_w": 700.0 if gpu else None, "torch_version": "2.13.0", "python_version": "3.11.7",
           "cpu_model": "AMD EPYC", "hash": f"{precision}{workload}"[:16].ljust(16, "0"),
           "null_reasons": {} if gpu else {"gpu_name": "device is cpu, not a CUDA GPU"}}
    config = {"workload": workload, "device": device, "precision": precision, "optimizer": "sgd", "eps": 0.05,
              "ci_target": 0.01, "stopping_rule": {"name": "ci", "ci_target": 0.01, "min_samples": 10,
                                                    "min_time_s": 0.5, "budget_s": 2.0, "max_samples": 100000},
              "warmup_rule": {"min_steps": 2, "window": 3, "tolerance": 0.05, "max_steps": 200, "max_time_s": 30.0}}
    r = SweepResult(config=config, environment=env, points=points, finished=finished,
                    largest_batch_that_fits=(oom_from - 1) if oom_from and oom_from > 1 else None,
                    largest_batch_reason="bisected between the last fit and the first OOM" if oom_from else None,
                    created="2026-01-01T00:00:00+00:00")
    if analysed:
        r.analysis = analyse_sweep(r).to_dict()
    return r.to_dict()


def make_tta(task: str = "demo", n_bootstrap: int = 40) -> dict:
    """A bench.tta dict: curves whose steps to target follow S(B) = 100(1 + 64/B), one batch misses."""
    from bench.analysis.tta import analyse_tta
    from bench.records.curves import Curve, CurvePoint
    from bench.records.tta import StepTime, TTAResult

    curves = []
    for b in (8, 32, 128, 512, 2048):
        for lr in (0.05, 0.1):
            for seed in (0, 1):
                need = 100 * (1 + 64 / b) * (1.0 if lr == 0.1 else 1.3) * (1 + 0.05 * seed)
                pts = []
                for step in range(0, 1201, 20):
                    acc = 0.9 * (1 - math.exp(-2.3 * step / need)) if b < 2048 else 0.5 * (1 - math.exp(-step / 300))
                    pts.append(CurvePoint(step, step * b, step * 0.001, 1 - acc, acc))
                curves.append(Curve(task, b, lr, seed, pts, metric="accuracy", higher_is_better=True))
    times = [StepTime(b, 0.01 + 1e-5 * b, 0.0099 + 1e-5 * b, 0.0101 + 1e-5 * b) for b in (8, 32, 128, 512, 2048)]
    analysis = analyse_tta(curves, times, 0.81, n_bootstrap=n_bootstrap)
    result = TTAResult(config={"study": {"task": task, "target": 0.81, "lr_rule": "linear", "lr_factors": [0.5, 1],
                                         "seeds": [0, 1]}},
                       task={"name": task, "metric": "accuracy"}, curves=curves, step_times=times,
                       step_time_source="sweep file demo.json", analysis=analysis,
                       environment={"torch": "2.13.0", "python": "3.11.7", "device": "cpu"}, finished=True)
    return result.to_dict()


def make_pytest_run(when: datetime, medians: dict[str, float], *, spread: float = 0.01, extra=None,
                    with_data: bool = True, library_medians: dict[str, float] | None = None) -> dict:
    """A pytest-benchmark JSON dict (as `--benchmark-json` writes it) with one entry per name. Names in
    `library_medians` also carry bench's extra_info: a Measurement whose per-step samples have that median
    (what the suite helpers record, timed by the library, beside pytest-benchmark's own round times)."""
    benches = []
    for name, med in medians.items():
        q1, q3 = med * (1 - spread), med * (1 + spread)
        stats = {"min": med * 0.97, "max": med * 1.05, "mean": med, "stddev": med * spread, "rounds": 20,
                 "median": med, "iqr": q3 - q1, "q1": q1, "q3": q3, "iqr_outliers": 0, "stddev_outliers": 1,
                 "outliers": "1;0", "ld15iqr": q1, "hd15iqr": q3, "ops": 1 / med, "total": med * 20,
                 "iterations": 1}
        if with_data:
            stats["data"] = [med * (1 + spread * math.sin(i)) for i in range(20)]
        short = name.split("::")[-1]
        params = {"batch_size": int(short.split("[")[1].rstrip("]"))} if "[" in short else None
        info = dict(extra or {})
        if library_medians and name in library_medians:
            lib = library_medians[name]
            m = Measurement(Case("mlp", (params or {}).get("batch_size", 1), "cuda:0", "fp32"), timer="cuda_event",
                            samples_s=[lib * (1 + spread * math.sin(i)) for i in range(31)], stop_reason="ci_target")
            info.update({"bench_schema": EXTRA_INFO_SCHEMA, "bench_schema_version": 1, "suite": "step",
                         "step_time_median_s": m.stats.median_s, "measurement": m.to_dict()})
        benches.append({"group": None, "name": short, "fullname": name, "params": params,
                        "param": None, "extra_info": info, "options": {"timer": "perf_counter"},
                        "stats": stats})
    return {"machine_info": {"node": "runner-1", "processor": "x86_64", "machine": "x86_64",
                             "python_version": "3.11.7", "system": "Linux", "cpu": {"brand_raw": "AMD EPYC"}},
            "commit_info": {"id": "abc123", "dirty": False, "project": "bench", "branch": "main"},
            "benchmarks": benches, "datetime": when.isoformat(), "version": "5.3.1"}


def make_allreduce(*, finished: bool = True, sizes=(4096, 1 << 16, 1 << 20), world_size: int = 2) -> dict:
    """A bench.allreduce dict: 100 µs of latency then 2 GB/s, the last rank 3% slower than the others,
    a warning at the smallest size."""
    from bench.records.allreduce import AllreducePoint, AllreduceResult
    from bench.records.distributed import RankInfo

    points = []
    for k, size in enumerate(sizes):
        t = 1e-4 + size / 2e9
        samples = [t * (1 + 0.002 * (i % 5)) for i in range(40)]
        ranks = [[x * 0.97 for x in samples]] * (world_size - 1) + [samples]
        algbw = size / t
        points.append(AllreducePoint(size_bytes=size, count=size // 4, dtype="float32", samples_s=samples,
                                     rank_samples_s=ranks, algbw_bytes_per_s=algbw,
                                     busbw_bytes_per_s=algbw * 2 * (world_size - 1) / world_size,
                                     warnings=["a warning"] if k == 0 else []))
    ranks = [RankInfo(r, r, host="ab"[r % 2], device="cpu") for r in range(world_size)]
    return AllreduceResult({"world_size": world_size, "dtype": "float32", "backend": "gloo", "device": "cpu"},
                           {"hash": "abc", "torch_version": "2.13.0"}, ranks, points, "2026-11-30T00:00:00+00:00",
                           finished).to_dict()


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def build(tmp_path: Path, *named: tuple[str, object], **kw) -> str:
    paths = [write(tmp_path / name, data) for name, data in named]
    return build_report(load_inputs(paths), generated=FIXED_TIME, **kw)


def section(html: str, section_id: str) -> str:
    m = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert m, f"no section {section_id}"
    return m.group(1)


def figures_in(html_part: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for m in re.finditer(r'<figure class="fig" data-fig="([^"]+)">\s*<svg', html_part):
        found[m.group(1)] = found.get(m.group(1), 0) + 1
    return found


def source_data(html: str):
    from bench.present.report import read_embedded

    m = re.search(r'<script [^>]*id="source-data"[^>]*>(.*?)</script>', html, re.S)
    assert m
    return read_embedded(m.group(1))


# --------------------------------------------------------------------------- the visual set
#
# The fixed set of reports the visual regression test renders in a real browser (tests/test_report_visual.py),
# each built from the project's own records the way the tools write them:
#
# - one sweep (GPU, telemetry, an out-of-memory point);
# - four sweeps in one page (fast and slow workloads, throughputs past a million samples/s);
# - two time-to-accuracy studies of the same task that differ only in their LR rule, and a curves file whose
#   runs span under a decade of steps;
# - a time-to-accuracy study from files: imported curves and a sweep on a loaded machine (mean step time
#   many times the median), B* beyond the batch sizes measured;
# - pytest-benchmark suites with a history (nightly runs), the library's step times beside pytest-benchmark's;
# - a `bench allreduce` probe over 4 ranks and nine message sizes.
#
# `python tests/report_inputs.py OUT` writes them as OUT/<name>.html (for looking at them).


def _tta_with_rule(rule: str) -> dict:
    d = make_tta()
    d["config"]["study"]["lr_rule"] = rule
    d["created"] = "2026-01-01T00:00:00+00:00" if rule == "linear" else "2026-01-02T00:00:00+00:00"
    return d


def _narrow_curves() -> dict:
    """A bench.curves file whose runs span under a decade of steps (1,000 to 6,000): matplotlib would
    label the minor ticks of such an axis, in mathtext."""
    from bench.records.curves import Curve, CurvePoint, CurvesFile

    curves = [Curve("narrow", b, 0.1, 0, [CurvePoint(s, s * b, eval_metric=0.5 + 0.4 * s / 6000 * b / 64)
                                         for s in range(1000, 6001, 250)], metric="accuracy", target=0.8)
              for b in (32, 64)]
    return CurvesFile(curves=curves, config={"target": 0.8}, task={"name": "narrow"}, finished=True).to_dict()


def _heavy_tailed_sweep() -> dict:
    """A sweep timed on a loaded machine: at every point a few steps took 30x the typical one."""
    from bench.analysis.steptime import analyse_sweep

    r = SweepResult.from_dict(make_sweep("task:files", batches=(8, 32, 128, 512), base_s=6e-4, slope_s=2e-7,
                                           oom_from=None, gpu=True))
    for p in r.points:
        if p.samples_s:
            t = float(np.median(p.samples_s))
            p.samples_s = [t] * 40 + [30 * t] * 3  # mean / median about 3x
    r.analysis = analyse_sweep(r).to_dict()
    return r.to_dict()


def _curves_csv(path: Path) -> Path:
    rows = ["batch_size,step,metric,seed"]
    for b in (8, 32, 128, 512):
        for seed in (0, 1):
            need = 400 * (1 + 2000 / b) * (1 + 0.04 * seed)  # B_crit 2000: beyond the batch sizes measured
            for step in np.unique(np.geomspace(1, 2.5 * need, 30).astype(int)):
                rows.append(f"{b},{step},{0.9 * (1 - math.exp(-2.3 * step / need)):.5f},{seed}")
    path.write_text("\n".join(rows) + "\n")
    return path


def visual_inputs(d: Path) -> dict[str, list[Path]]:
    """Write every report's input files under `d`; {report name: its input paths}."""
    from bench.analysis.tta import tta_from_files
    from bench.records.tta import save_tta

    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    out["single-sweep"] = [write(d / "sweep.json", make_sweep())]
    out["several-sweeps"] = [
        write(d / "mlp-fp32.json", make_sweep("mlp", "fp32", base_s=2e-4, slope_s=5e-7, batches=(64, 256, 1024, 4096, 16384, 65536), oom_from=None)),
        write(d / "mlp-bf16.json", make_sweep("mlp", "bf16", base_s=1.5e-4, slope_s=2.5e-7, batches=(64, 256, 1024, 4096, 16384, 65536), oom_from=None, seed=1)),
        write(d / "resnet-fp32.json", make_sweep("resnet50", "fp32", base_s=0.02, slope_s=1e-4, seed=2)),
        write(d / "resnet-bf16.json", make_sweep("resnet50", "bf16", base_s=0.012, slope_s=5e-5, seed=3)),
    ]
    out["tta-studies"] = [write(d / "tta-linear.json", _tta_with_rule("linear")),
                          write(d / "tta-sqrt.json", _tta_with_rule("sqrt")),
                          write(d / "curves.json", _narrow_curves())]
    sweep = write(d / "loaded-sweep.json", _heavy_tailed_sweep())
    result = tta_from_files([_curves_csv(d / "curves.csv")], sweep_path=sweep, target=0.8, n_bootstrap=0)
    out["tta-from-files"] = [save_tta(result, d / "tta-files.json")]
    runs = []
    for i, slow in enumerate((1.0, 1.02, 0.99, 1.35)):
        medians = {f"suites/step.py::test_mlp_step[{b}]": 4e-3 * slow * (1 + b / 256) for b in (16, 64, 256)}
        library = {k: v / 100 for k, v in medians.items()}  # the library times the step alone, not the whole call
        runs.append(write(d / f"nightly-{i}.json", make_pytest_run(FIXED_TIME + timedelta(days=i), medians,
                                                                      library_medians=library)))
    out["suites-history"] = runs
    out["allreduce"] = [write(d / "allreduce.json", make_allreduce(sizes=tuple(4 ** k * 1024 for k in range(1, 10)),
                                                                   world_size=4))]
    return out


def measure_pages(pages: list[str]) -> None:
    """Print each page's laid-out height, first figure's top, text before it and bytes (headless chromium at
    1280x800; a screenshot of the first screen is written beside each page as NAME-first-screen.png)."""
    import tempfile

    from test_report_browser import page_metrics

    for page in map(Path, pages):
        with tempfile.TemporaryDirectory() as tmp:
            shot = page.with_name(page.stem + "-first-screen.png")
            print(page, json.dumps(page_metrics(page.resolve(), Path(tmp), screenshot=shot.resolve())))


if __name__ == "__main__":
    if sys.argv[1] == "measure":  # python tests/report_inputs.py measure PAGE.html...
        measure_pages(sys.argv[2:])
        sys.exit(0)
    target = Path(sys.argv[1])
    for name, paths in visual_inputs(target / "inputs").items():
        (target / f"{name}.html").write_text(build_report(load_inputs(paths), generated=FIXED_TIME))
        print(target / f"{name}.html")
