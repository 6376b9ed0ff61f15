"""Curves: steps to target, and curve files from users (CSV / JSON) with clear errors for bad ones."""

import json

import pytest

from bench.core.errors import BenchError
from bench.records.curves import (
    Curve,
    CurvePoint,
    CurvesFile,
    check_batch_sizes_present,
)
from bench.records.loader import load_curves


def _curve(metrics, higher=True, every=10, stop=None):
    pts = [CurvePoint(step=i * every, examples=i * every * 4, eval_metric=m) for i, m in enumerate(metrics)]
    return Curve(task="t", batch_size=4, lr=0.1, seed=0, points=pts, higher_is_better=higher, stop_reason=stop)


def test_an_evaluation_exactly_at_the_target_is_its_step():
    c = _curve([0.1, 0.5, 0.89, 0.9, 0.95])
    st = c.steps_to_target(0.9)
    assert (st.steps, st.examples, st.first_eval_step, st.method) == (30, 120, 30, "interpolated")


def test_steps_to_target_interpolates_between_the_evaluations_either_side_of_the_crossing():
    st = _curve([0.1, 0.5, 0.7, 0.95]).steps_to_target(0.9)  # 0.7 at step 20, 0.95 at step 30
    assert st.steps == pytest.approx(20 + 10 * 0.2 / 0.25) and st.examples == pytest.approx(4 * st.steps)
    assert st.first_eval_step == 30


def test_steps_to_target_for_a_lower_is_better_metric():
    st = _curve([3.0, 1.0, 0.4, 0.2], higher=False).steps_to_target(0.5)  # 1.0 at step 10, 0.4 at step 20
    assert st.steps == pytest.approx(10 + 10 * 0.5 / 0.6) and st.first_eval_step == 20


def test_a_first_evaluation_already_past_the_target_is_its_own_step_without_interpolation():
    c = _curve([0.95, 0.97])
    for p in c.points:
        p.step += 100  # an imported curve whose first row is at step 100
    st = c.steps_to_target(0.9)
    assert (st.steps, st.first_eval_step, st.method) == (100, 100, "first evaluation")


def test_interpolated_wall_time_needs_both_evaluations_to_have_one():
    c = _curve([0.0, 1.0])
    c.points[0].wall_time_s, c.points[1].wall_time_s = 0.0, 4.0
    assert c.steps_to_target(0.25).wall_time_s == pytest.approx(1.0)
    c.points[0].wall_time_s = None
    assert c.steps_to_target(0.25).wall_time_s is None


def test_a_curve_that_never_reaches_the_target_says_within_how_many_steps():
    st = _curve([0.1, 0.2, 0.3]).steps_to_target(0.9)
    assert st.steps is None and st.reason == "not reached within 20 steps"
    st = _curve([0.1, 0.2], stop="diverged: training loss is nan at step 12").steps_to_target(0.9)
    assert st.reason == "not reached within 10 steps (diverged: training loss is nan at step 12)"


def _write_csv(tmp_path, text, name="curves.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_rows_group_into_one_curve_per_batch_seed_and_lr(tmp_path):
    p = _write_csv(tmp_path, "batch_size,step,metric,seed,lr\n"
                             "8,0,0.1,0,0.1\n8,10,0.5,0,0.1\n8,0,0.1,1,0.1\n8,10,0.6,1,0.1\n32,0,0.1,0,0.4\n32,5,0.9,0,0.4\n")
    curves = load_curves(p, metric="accuracy")
    assert [(c.batch_size, c.seed, c.lr, len(c.points)) for c in curves] == [(8, 0, 0.1, 2), (8, 1, 0.1, 2), (32, 0, 0.4, 2)]
    assert curves[2].steps_to_target(0.9).steps == 5 and curves[0].metric == "accuracy"
    assert curves[0].source.startswith("imported from")


def test_examples_without_steps_are_converted_with_the_batch_size(tmp_path):
    p = _write_csv(tmp_path, "batch_size,examples,metric\n64,0,0.1\n64,640,0.5\n64,1280,0.8\n")
    (c,) = load_curves(p)
    assert [pt.step for pt in c.points] == [0, 10, 20]


def test_json_rows_and_json_runs_are_read(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"batch_size": 16, "step": 0, "metric": 2.0}, {"batch_size": 16, "step": 4, "metric": 1.0}]))
    (c,) = load_curves(rows, metric="val_loss")
    assert not c.higher_is_better  # guessed from the name
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"metric": "accuracy", "curves": [
        {"batch_size": 16, "seed": 3, "lr": 0.1, "points": [{"step": 0, "metric": 0.1}, {"step": 8, "metric": 0.7}]}]}))
    (c,) = load_curves(runs)
    assert (c.seed, c.lr, c.steps_to_target(0.7).steps) == (3, 0.1, 8)


def test_bench_curves_files_round_trip(tmp_path):
    cf = CurvesFile(curves=[_curve([0.1, 0.95])], config={"x": 1}, finished=True)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cf.to_dict()))
    (c,) = load_curves(p)
    assert c.to_dict() == cf.curves[0].to_dict()


@pytest.mark.parametrize("text,message", [
    ("batch_size,step\n8,0\n", "missing column(s) metric"),
    ("step,metric\n0,0.1\n", "missing column(s) batch_size"),
    ("batch_size,metric\n8,0.1\n", "missing column(s) step or examples"),
    ("batch_size,step,metric\n8,0,0.1\n8,10,nan\n", "row 2: metric is 'nan'; every value must be finite"),
    ("batch_size,step,metric\n8,0,0.1\n8,10,\n", "row 2: metric is empty"),
    ("batch_size,step,metric\n8,0,0.1\n8,20,0.3\n8,10,0.5\n", "steps not increasing in run batch_size=8 seed=None lr=None (step 10 after 20)"),
    ("batch_size,step,metric\n0,0,0.1\n", "batch_size must be >= 1"),
    ("batch_size,step,metric\neight,0,0.1\n", "batch_size is not a number"),
])
def test_bad_curve_files_give_one_line_errors(tmp_path, text, message):
    p = _write_csv(tmp_path, text)
    with pytest.raises(BenchError) as e:
        load_curves(p)
    assert message in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value)


def test_a_run_without_points_is_a_batch_size_with_no_runs(tmp_path):
    p = tmp_path / "runs.json"
    p.write_text(json.dumps({"curves": [{"batch_size": 64, "points": []}]}))
    with pytest.raises(BenchError, match="batch size 64 has no points"):
        load_curves(p)


def test_a_requested_batch_size_with_no_runs_is_an_error():
    with pytest.raises(BenchError, match="batch size 128 has no runs \\(have 4\\)"):
        check_batch_sizes_present([_curve([0.1])], [4, 128])


def test_tensorboard_event_files_are_not_supported(tmp_path):
    p = tmp_path / "events.out.tfevents.123.host"
    p.write_bytes(b"\x00")
    with pytest.raises(BenchError, match="TensorBoard event files are not supported"):
        load_curves(p)
