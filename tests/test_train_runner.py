"""The training runner: curves, stopping at target / budget / divergence, grids, atomic saves and resume."""

import json

import pytest

from bench.core.errors import BenchError
from bench.measure.tasks import digits, nqm
from bench.records.curves import CurvesFile
from bench.run.train.runner import GridSpec, RunConfig, RunSpec, run_grid, train_run


@pytest.fixture(scope="module")
def small_digits():
    return digits(hidden=16, train_examples=300)


def test_a_run_records_points_from_step_zero_and_stops_at_the_target(small_digits):
    spec = RunSpec(task="digits", batch_size=32, lr=0.2, seed=0)
    curve = train_run(small_digits, spec, RunConfig(target=0.8, max_steps=400, eval_every=5))
    first = curve.points[0]
    assert (first.step, first.examples, first.train_loss) == (0, 0, None)
    assert all(p.examples == p.step * 32 for p in curve.points)
    assert curve.stop_reason == "target reached"
    st = curve.steps_to_target(0.8)
    assert st.first_eval_step == curve.points[-1].step and st.first_eval_step % 5 == 0
    assert curve.points[-1].step - 5 < st.steps <= curve.points[-1].step
    assert curve.points[-1].eval_metric >= 0.8 and curve.run_key == spec.key


def test_a_run_that_misses_the_target_keeps_its_budget_as_the_reason(small_digits):
    curve = train_run(small_digits, RunSpec(task="digits", batch_size=8, lr=0.001, seed=0),
                      RunConfig(target=0.99, max_steps=20, eval_every=10))
    assert curve.stop_reason == "max steps reached (20)"
    st = curve.steps_to_target(0.99)
    assert st.steps is None and st.reason == "not reached within 20 steps"


def test_training_continues_past_the_target_by_the_asked_fraction(small_digits):
    curve = train_run(small_digits, RunSpec(task="digits", batch_size=32, lr=0.2, seed=0),
                      RunConfig(target=0.8, max_steps=400, eval_every=5, continue_after_target=1.0))
    reached = curve.steps_to_target(0.8).first_eval_step
    assert curve.steps_run == 2 * reached
    assert curve.stop_reason == f"target reached at step {reached}; continued to step {2 * reached}"


def test_a_diverging_run_stops_and_says_so():
    curve = train_run(nqm(dim=5), RunSpec(task="nqm", batch_size=4, lr=5.0, momentum=0.0),
                      RunConfig(target=0.01, max_steps=500, eval_every=1))
    assert curve.stop_reason.startswith("diverged")
    assert curve.steps_run < 500
    assert "diverged" in curve.steps_to_target(0.01).reason


def test_a_time_budget_stops_the_run(small_digits):
    curve = train_run(small_digits, RunSpec(task="digits", batch_size=8, lr=0.001),
                      RunConfig(target=0.99, max_steps=10 ** 6, eval_every=1000, max_time_s=0.2))
    assert curve.stop_reason.startswith("time budget reached (0.2 s)")
    assert curve.points[-1].eval_metric is not None


def test_bf16_autocast_trains_on_the_cpu(small_digits):
    curve = train_run(small_digits, RunSpec(task="digits", batch_size=32, lr=0.2, precision="bf16"),
                      RunConfig(target=None, max_steps=10, eval_every=5))
    assert curve.precision == "bf16" and curve.points[-1].train_loss < curve.points[1].train_loss * 2


def test_grid_centres_each_lr_grid_on_the_rule_and_converts_warmup_epochs():
    task = digits(hidden=8, train_examples=256)
    grid = GridSpec(batch_sizes=[64, 16], base_lr=0.1, base_batch_size=32, lr_rule="linear",
                    lr_factors=[0.5, 1.0], seeds=[0, 1], warmup_epochs=1.0)
    runs = grid.runs(task)
    assert len(runs) == 8
    assert sorted({(r.batch_size, round(r.lr, 6)) for r in runs}) == [(16, 0.025), (16, 0.05), (64, 0.1), (64, 0.2)]
    assert {r.batch_size: r.warmup_steps for r in runs} == {16: 16, 64: 4}


def _grid():
    return GridSpec(batch_sizes=[4, 16], base_lr=0.5, base_batch_size=4, lr_rule="constant", seeds=[0, 1],
                    momentum=0.0)


def _config():
    return RunConfig(target=0.5, max_steps=100, eval_every=1)


def test_grid_results_are_saved_after_every_run(tmp_path):
    out = tmp_path / "curves.json"
    sizes = []

    def progress(event, info):
        if event == "done":
            sizes.append(len(json.loads(out.read_text())["curves"]))

    cf = run_grid(nqm(dim=20), _grid(), _config(), output=out, progress=progress)
    assert sizes == [1, 2, 3, 4]
    saved = CurvesFile.from_dict(json.loads(out.read_text()))
    assert saved.finished and len(saved.curves) == 4 == len(cf.curves)
    assert saved.environment["hash"] and saved.environment["device_type"] == "cpu"  # the fingerprint of the trainer


def test_resume_skips_completed_runs(tmp_path):
    out = tmp_path / "curves.json"
    task = nqm(dim=20)

    class Stop(Exception):
        pass

    def stop_after_two(event, info):
        if event == "done" and info["index"] == 1:
            raise Stop

    with pytest.raises(Stop):
        run_grid(task, _grid(), _config(), output=out, progress=stop_after_two)
    assert len(json.loads(out.read_text())["curves"]) == 2
    trained = []
    cf = run_grid(task, _grid(), _config(), output=out, resume=True,
                  progress=lambda e, i: trained.append(i["spec"].key) if e == "run" else None)
    assert len(trained) == 2 and len(cf.curves) == 4
    assert len({c.run_key for c in cf.curves}) == 4


def test_existing_results_are_not_overwritten_without_asking(tmp_path):
    out = tmp_path / "curves.json"
    out.write_text("{}")
    with pytest.raises(BenchError, match="exists: pass --resume to continue it or --overwrite"):
        run_grid(nqm(dim=2), _grid(), _config(), output=out)


def test_resume_refuses_a_file_made_with_another_target(tmp_path):
    out = tmp_path / "curves.json"
    run_grid(nqm(dim=20), _grid(), _config(), output=out)
    other = RunConfig(target=0.4, max_steps=100, eval_every=1)
    with pytest.raises(BenchError, match="target=0.5, not 0.4"):
        run_grid(nqm(dim=20), _grid(), other, output=out, resume=True)


def test_an_unwritable_output_is_a_one_line_error_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="cannot write .*not a directory"):
        run_grid(nqm(dim=2), _grid(), _config(), output=blocker / "sub" / "curves.json")


def test_a_target_already_met_before_training_is_zero_steps():
    curve = train_run(nqm(dim=5), RunSpec(task="nqm", batch_size=4, lr=0.1), RunConfig(target=100.0, max_steps=50))
    assert curve.steps_run == 0 and curve.steps_to_target(100.0).steps == 0
    assert curve.stop_reason == "target already met before training (step 0)"


def test_bench_train_command_writes_curves_and_prints_a_table(tmp_path, capsys):
    import argparse

    import bench.cli.train as train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    out = tmp_path / "c.json"
    args = parser.parse_args(["train", "nqm", "-a", "dim=10", "-b", "4,8", "--lr", "0.5", "--base-batch", "4",
                              "--lr-rule", "constant", "--seeds", "0,1", "--target", "0.8", "--max-steps", "100",
                              "--eval-every", "1", "-o", str(out)])
    assert args.func(args) == 0
    assert len(CurvesFile.from_dict(json.loads(out.read_text())).curves) == 4
    assert "steps to target" in capsys.readouterr().out


@pytest.mark.parametrize("optimizer,lr", [("lars", 1.0), ("lamb", 0.05)])
def test_layer_wise_optimizers_train_a_task_through_the_runner(small_digits, optimizer, lr):
    # The paper's trust coefficient 0.001 suits long warmed-up runs; 0.02 moves this small MLP in 30 steps.
    spec = RunSpec(task="digits", batch_size=64, lr=lr, optimizer=optimizer, trust_coefficient=0.02)
    curve = train_run(small_digits, spec,
                      RunConfig(target=None, max_steps=30, eval_every=10))
    assert curve.optimizer == optimizer
    assert curve.points[-1].eval_metric > curve.points[0].eval_metric + 0.2


def test_asking_for_cuda_without_it_is_a_one_line_error(small_digits, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="CUDA is not available"):
        train_run(small_digits, RunSpec(task="digits", batch_size=8, lr=0.1), RunConfig(target=None, max_steps=1, device="cuda"))


def test_run_keys_tell_warm_up_start_factors_apart_and_keep_the_old_key_at_the_default():
    base = RunSpec(task="nqm", batch_size=4, lr=0.5, warmup_steps=10)
    other = RunSpec(task="nqm", batch_size=4, lr=0.5, warmup_steps=10, warmup_start_factor=0.25)
    assert base.key != other.key
    assert base.key.endswith("/wu10/fp32")  # files written before the start factor was in the key still resume
    assert RunSpec(task="nqm", batch_size=4, lr=0.5, warmup_start_factor=0.25).key.endswith("/wu0/fp32")


@pytest.mark.parametrize("change,message", [
    ({"warmup_steps": 3}, "warmup_steps=0, not 3"),
    ({"warmup_start_factor": 0.5}, "warmup_start_factor=0.0, not 0.5"),
])
def test_resume_refuses_a_file_made_with_another_warm_up(tmp_path, change, message):
    out = tmp_path / "curves.json"
    grid = GridSpec(batch_sizes=[4], base_lr=0.5, base_batch_size=4, lr_rule="constant", momentum=0.0)
    run_grid(nqm(dim=5), grid, RunConfig(target=0.5, max_steps=5, eval_every=1), output=out)
    other = GridSpec(**{**grid.to_dict(), **change})
    with pytest.raises(BenchError, match=message):
        run_grid(nqm(dim=5), other, RunConfig(target=0.5, max_steps=5, eval_every=1), output=out, resume=True)


def test_resume_refuses_another_warm_up_in_epochs_instead_of_mixing_its_runs_in_as_seeds(tmp_path):
    task = digits(hidden=4, train_examples=64)
    out = tmp_path / "curves.json"
    grid = GridSpec(batch_sizes=[16], base_lr=0.1, base_batch_size=16, warmup_epochs=1.0)
    run_grid(task, grid, RunConfig(target=None, max_steps=2, eval_every=1), output=out)
    other = GridSpec(batch_sizes=[16], base_lr=0.1, base_batch_size=16, warmup_epochs=2.0)
    with pytest.raises(BenchError, match="warmup_epochs=1.0, not 2.0"):
        run_grid(task, other, RunConfig(target=None, max_steps=2, eval_every=1), output=out, resume=True)
