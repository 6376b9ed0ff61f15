"""The fixed set of reports the visual regression test renders in a real browser (tests/test_report_visual.py),
each built from the project's own records the way the tools write them:

- one sweep (GPU, telemetry, an out-of-memory point);
- four sweeps in one page (fast and slow workloads, throughputs past a million samples/s);
- two time-to-accuracy studies of the same task that differ only in their LR rule, and a curves file whose
  runs span under a decade of steps;
- a time-to-accuracy study from files: imported curves and a sweep on a loaded machine (mean step time
  many times the median), B* beyond the batch sizes measured;
- pytest-benchmark suites with a history (nightly runs), the library's step times beside pytest-benchmark's.

`python tests/visual_reports.py OUT` writes them as OUT/<name>.html (for looking at them).
"""

from __future__ import annotations

import math
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import report_inputs as R

from bench.records.sweep import SweepResult


def _tta_with_rule(rule: str) -> dict:
    d = R.make_tta()
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

    r = SweepResult.from_dict(R.make_sweep("task:files", batches=(8, 32, 128, 512), base_s=6e-4, slope_s=2e-7,
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


def build_inputs(d: Path) -> dict[str, list[Path]]:
    """Write every report's input files under `d`; {report name: its input paths}."""
    from bench.analysis.tta import tta_from_files
    from bench.records.tta import save_tta

    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    out["single-sweep"] = [R.write(d / "sweep.json", R.make_sweep())]
    out["several-sweeps"] = [
        R.write(d / "mlp-fp32.json", R.make_sweep("mlp", "fp32", base_s=2e-4, slope_s=5e-7, batches=(64, 256, 1024, 4096, 16384, 65536), oom_from=None)),
        R.write(d / "mlp-bf16.json", R.make_sweep("mlp", "bf16", base_s=1.5e-4, slope_s=2.5e-7, batches=(64, 256, 1024, 4096, 16384, 65536), oom_from=None, seed=1)),
        R.write(d / "resnet-fp32.json", R.make_sweep("resnet50", "fp32", base_s=0.02, slope_s=1e-4, seed=2)),
        R.write(d / "resnet-bf16.json", R.make_sweep("resnet50", "bf16", base_s=0.012, slope_s=5e-5, seed=3)),
    ]
    out["tta-studies"] = [R.write(d / "tta-linear.json", _tta_with_rule("linear")),
                          R.write(d / "tta-sqrt.json", _tta_with_rule("sqrt")),
                          R.write(d / "curves.json", _narrow_curves())]
    sweep = R.write(d / "loaded-sweep.json", _heavy_tailed_sweep())
    result = tta_from_files([_curves_csv(d / "curves.csv")], sweep_path=sweep, target=0.8, n_bootstrap=0)
    out["tta-from-files"] = [save_tta(result, d / "tta-files.json")]
    runs = []
    for i, slow in enumerate((1.0, 1.02, 0.99, 1.35)):
        medians = {f"suites/step.py::test_mlp_step[{b}]": 4e-3 * slow * (1 + b / 256) for b in (16, 64, 256)}
        library = {k: v / 100 for k, v in medians.items()}  # the library times the step alone, not the whole call
        runs.append(R.write(d / f"nightly-{i}.json", R.make_pytest_run(R.FIXED_TIME + timedelta(days=i), medians,
                                                                      library_medians=library)))
    out["suites-history"] = runs
    return out


if __name__ == "__main__":
    from bench.present.report import build_report, load_inputs

    target = Path(sys.argv[1])
    for name, paths in build_inputs(target / "inputs").items():
        (target / f"{name}.html").write_text(build_report(load_inputs(paths), generated=R.FIXED_TIME))
        print(target / f"{name}.html")
