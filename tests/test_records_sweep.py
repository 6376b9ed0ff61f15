"""The sweep records: one case id for sweeps and suites, one largest-batch record, and sweep files
written by earlier versions still loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis.steptime import analyse_sweep
from bench.records.sweep import (
    Case,
    LargestBatch,
    Measurement,
    Probe,
    SweepResult,
    case_id,
    load_sweep,
    parse_case_id,
)
from bench.run.suite import SuiteCase

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------------------------------ case ids


def test_a_sweep_point_and_a_suite_case_share_one_id():
    suite = SuiteCase("memory", "resnet50", "bf16", 64, "cuda", optimizer="adamw", channels_last=True)
    point = Case("resnet50", 64, "cuda", "bf16", optimizer="adamw", channels_last=True)
    assert point.key == suite.id == suite.case_at(64).key == "resnet50-bf16-bs64-cuda-adamw-channels_last"
    assert Case("mlp", 64).key == "mlp-fp32-bs64-cpu"  # default options are left out
    assert case_id("resnet50", "fp32", None, "cuda") == "resnet50-fp32-bsmax-cuda"


def test_the_group_key_is_the_id_without_the_batch_size():
    assert Case("mlp", 4).group_key == Case("mlp", 64).group_key == "mlp-fp32-cpu"
    assert Case("mlp", 4, compile=True).group_key != Case("mlp", 4).group_key


def test_parse_case_id_inverts_the_id_and_rejects_other_names():
    case = SuiteCase("memory", "resnet50", "bf16", 64, "cuda", optimizer="adamw", channels_last=True)
    fields = parse_case_id(f"test_peak_memory[{case.id}]")
    assert fields == {"workload": "resnet50", "precision": "bf16", "batch_size": 64, "device": "cuda",
                      "optimizer": "adamw", "channels_last": True, "compile": False}
    assert parse_case_id("test_sort[100-items]") is None
    assert parse_case_id("test_plain") is None
    assert parse_case_id("mlp-fp32-bs4-cpu-turbo") is None  # an option that is not one


@pytest.mark.parametrize("case", [
    Case("task:my-net", 8, "cuda:1", "bf16", optimizer="lamb", compile=True),
    Case("mypkg.models:make_workload", 1024),
    Case("torchvision:resnet18", 32, "cuda", "fp16", channels_last=True),
])
def test_every_case_id_parses_back_to_its_case(case):
    assert Case(**parse_case_id(case.key)) == case


# ------------------------------------------------------------------------------------ largest batch


def test_one_largest_batch_record_serves_sweeps_and_suites():
    found = LargestBatch(300, "batch 301 runs out of memory", [Probe(256, True), Probe(512, False, "OOM")])
    assert LargestBatch.from_dict(json.loads(json.dumps(found.to_dict()))) == found
    sweep = SweepResult(config={})
    sweep.set_largest_batch(found)
    assert (sweep.largest_batch_that_fits, [p.batch_size for p in sweep.probes]) == (300, [256, 512])
    assert SweepResult.from_dict(sweep.to_dict()).largest_batch == found


def test_a_search_that_never_ran_out_of_memory_has_no_largest_batch_but_says_how_far_it_got():
    found = LargestBatch(None, "no out-of-memory up to batch 64", [Probe(32, True), Probe(64, True)], limited=True)
    assert found.largest_ran == 64
    # Suites written before the record was shared saved the largest batch that ran beside `limited`.
    old = {"batch_size": 64, "reason": "no out-of-memory up to batch 64", "limited": True, "probes": []}
    assert LargestBatch.from_dict(old).batch_size is None and LargestBatch.from_dict(old).limited


# ---------------------------------------------------------------------------------- older sweep files


@pytest.mark.parametrize("name, schema", [("sweep-v1.json", "bench.sweep"),
                                          ("sweep-v1-run-schema-name.json", "bench.run.sweep")])
def test_a_committed_sweep_file_of_an_earlier_version_still_loads(name, schema):
    path = DATA / name
    assert json.loads(path.read_text())["schema"] == schema
    r = load_sweep(path)
    assert r.finished and r.ok_points() and all(p.samples_s for p in r.ok_points())
    assert r.environment["hash"] and r.environment["torch_version"] and r.largest_batch_that_fits is None
    assert r.analysis["reference_batch"] == r.ok_points()[0].batch_size
    # Analysed again today, the same points give the same answer.
    assert analyse_sweep(r).to_dict()["equal_time_max_batch"] == r.analysis["equal_time_max_batch"]
    again = SweepResult.from_dict(r.to_dict())
    assert again.to_dict()["schema"] == "bench.sweep" and again.to_dict() == r.to_dict()


def test_a_points_throughput_is_batch_times_steps_over_their_total_time():
    m = Measurement(case=Case("mlp", 32), samples_s=[0.01] * 9 + [0.11])  # one slow step in ten
    assert m.throughput == pytest.approx(10 * 32 / 0.2)  # n·B / Σt = 1,600 samples/s, not B / median = 3,200
    assert m.to_dict()["throughput_samples_per_s"] == m.throughput


def test_a_points_conditions_travel_with_it():
    m = Measurement(case=Case("mlp", 32), samples_s=[0.01] * 10,
                    conditions={"start": {"at": 1.0, "load_avg": [0.5, 0.4, 0.3]}, "end": {"at": 3.0}})
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))).conditions == m.conditions
