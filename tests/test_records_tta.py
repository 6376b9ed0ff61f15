"""The time-to-accuracy records and the bench.tta file: round trip, refusals, and files of earlier versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis.tta import analyse_tta
from bench.core.errors import InvalidResultsFile
from bench.records.curves import Curve, CurvePoint
from bench.records.tta import StepTime, TTAResult, load_tta, save_tta, steps_model

DATA = Path(__file__).parent / "data"
SIZES = (8, 32, 128, 512, 2048)


def curves(seeds=(0, 1)) -> list[Curve]:
    out = []
    for b in SIZES:
        for seed in seeds:
            need = steps_model(b, 50.0, 200.0) * (1 + 0.02 * seed)
            pts = [CurvePoint(0, 0, eval_metric=0.0), CurvePoint(int(need), int(need) * b, eval_metric=0.5),
                   CurvePoint(int(need) + 10, (int(need) + 10) * b, eval_metric=0.6)]
            out.append(Curve("synthetic", b, 0.1, seed, pts, target=0.5))
    return out


def step_times() -> list[StepTime]:
    return [StepTime(b, 2e-3 + 1e-5 * b, 0.98 * (2e-3 + 1e-5 * b), 1.02 * (2e-3 + 1e-5 * b)) for b in SIZES]


def test_results_round_trip_through_the_versioned_schema(tmp_path):
    r = TTAResult(config={"target": 0.5}, curves=curves(), step_times=step_times(),
                  analysis=analyse_tta(curves(), step_times(), 0.5, n_bootstrap=20), finished=True,
                  environment={"hash": "0123456789abcdef", "torch_version": "2.13.0"})
    p = save_tta(r, tmp_path / "tta.json")
    data = json.loads(p.read_text())
    assert (data["schema"], data["schema_version"]) == ("bench.tta", 1)
    back = load_tta(p)
    assert back.to_dict() == json.loads(json.dumps(r.to_dict()))
    assert back.analysis.scaling_fit.b_crit == pytest.approx(r.analysis.scaling_fit.b_crit)
    assert back.analysis.scaling_fit.predict_steps(64) == pytest.approx(r.analysis.scaling_fit.predict_steps(64))


def test_loader_rejects_other_schemas_and_newer_versions(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "bench.sweep", "schema_version": 1}))
    with pytest.raises(InvalidResultsFile, match="not a time-to-accuracy file"):
        load_tta(p)
    p.write_text(json.dumps({"schema": "bench.tta", "schema_version": 99}))
    with pytest.raises(InvalidResultsFile, match="newer than this tool reads") as e:
        load_tta(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_a_committed_tta_file_of_an_earlier_version_still_loads_with_todays_fingerprint_names():
    # Written by `bench tta --task nqm` before the records moved: its environment used other key names.
    path = DATA / "tta-v1.json"
    raw = json.loads(path.read_text())
    assert {"torch", "python", "cpu"} <= set(raw["environment"])
    r = load_tta(path)
    assert r.finished and len(r.curves) == 6 and r.noise_scale is not None and r.analysis.best_time_batch is not None
    env = r.environment
    assert env["torch_version"] == raw["environment"]["torch"] and env["python_version"] == raw["environment"]["python"]
    assert env["torch_threads"] == raw["environment"]["torch_threads"] and "torch" not in env
    assert env["hash"] is None and env["null_reasons"]["hash"]  # no hash was recorded: none is made up
    assert r.analysis.scaling_fit.regime_rule and r.noise_scale.averaging == "mean over steps"
