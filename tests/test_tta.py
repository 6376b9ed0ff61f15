"""Time to accuracy: composition S(B)·t(B), its optimum, B*, the naive estimate, files and the end-to-end study."""

import argparse
import json
import math

import pytest
from scipy import optimize

from bench.analysis.tta import (
    analyse_tta,
    b_star,
    fit_step_time_linear,
    pareto_frontier,
    step_times_from_sweep,
    tta_from_files,
)
from bench.core.errors import BenchError
from bench.records.curves import Curve, CurvePoint
from bench.records.sweep import Case, Measurement, SweepResult, save_sweep
from bench.records.tta import StepTime, load_tta, steps_model

S_MIN, B_CRIT, A_S, B_S = 50.0, 200.0, 2e-3, 1e-5  # t(B) = 2 ms + 10 µs per example
SIZES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


def curve(b, steps, seed=0, lr=0.1, target=0.5):
    pts = [CurvePoint(0, 0, eval_metric=0.0), CurvePoint(steps, steps * b, eval_metric=target)]  # crosses at `steps`
    return Curve(task="synthetic", batch_size=b, lr=lr, seed=seed, points=pts, target=target, stop_reason="target reached")


def model_curves(seeds=(0, 1)):
    return [curve(b, int(round(steps_model(b, S_MIN, B_CRIT))), seed=s) for b in SIZES for s in seeds]


def step_times(energy=False, skip=()):
    out = []
    for b in SIZES:
        if b in skip:
            continue
        t = A_S + B_S * b
        out.append(StepTime(b, t, 0.98 * t, 1.02 * t, energy_per_step_j=300.0 * t if energy else None))
    return out


def test_time_to_target_is_steps_times_step_time_with_a_conservative_interval():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    for row in a.batches:
        s = round(steps_model(row.batch_size, S_MIN, B_CRIT))
        t = A_S + B_S * row.batch_size
        assert row.time_to_target_s == pytest.approx(s * t)
        assert (row.time_to_target_low_s, row.time_to_target_high_s) == (pytest.approx(s * 0.98 * t), pytest.approx(s * 1.02 * t))


def test_the_fastest_batch_is_the_minimum_and_b_star_is_where_the_fitted_model_bottoms_out():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    fit = a.scaling_fit
    assert fit.b_crit == pytest.approx(B_CRIT, rel=0.01)  # steps were rounded to whole numbers
    assert a.b_star == pytest.approx(math.sqrt(fit.b_crit * A_S / B_S), rel=1e-6)  # about 200
    numeric = optimize.minimize_scalar(lambda b: steps_model(b, fit.s_min, fit.b_crit) * (A_S + B_S * b),
                                       bounds=(1, 10 ** 5), method="bounded", options={"xatol": 1e-6}).x
    assert a.b_star == pytest.approx(numeric, rel=1e-4)
    assert a.best_time_batch in (128, 256)  # the measured sizes around B* = 200
    assert a.best_time_s == min(r.time_to_target_s for r in a.batches)
    assert a.b_star_time_s == pytest.approx(steps_model(a.b_star, fit.s_min, fit.b_crit) * (A_S + B_S * a.b_star))


def test_b_star_formula_and_its_null_reasons():
    assert b_star(100.0, 1e-3, 1e-5) == (pytest.approx(100.0), None)
    assert b_star(100.0, 1e-3, 0.0)[1].startswith("step time does not grow")
    assert b_star(None, 1e-3, 1e-5) == (None, "no fitted critical batch size")


def test_compute_optimal_is_the_fewest_examples_and_the_pareto_frontier_spans_it_to_the_fastest():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    assert a.compute_optimal_batch == 8
    assert a.compute_optimal_examples == pytest.approx(round(steps_model(8, S_MIN, B_CRIT)) * 8)
    assert a.pareto_time_examples == [b for b in SIZES if b <= a.best_time_batch]


def test_pareto_frontier_drops_dominated_points():
    assert pareto_frontier([(1, 1.0, 5.0), (2, 2.0, 4.0), (3, 3.0, 4.5), (4, 4.0, 1.0)]) == [1, 2, 4]


def test_the_naive_equal_step_time_estimate_and_how_wrong_it_is():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    t_min = A_S + B_S * 8
    big = a.batch(2048)
    assert big.naive_time_to_target_s == pytest.approx(big.steps_to_target * t_min)
    assert big.naive_rel_error == pytest.approx(t_min / (A_S + B_S * 2048) - 1)
    assert a.naive["naive_best_batch"] == 2048
    assert a.naive["penalty_rel"] == pytest.approx(big.time_to_target_s / a.best_time_s - 1)
    assert a.naive["penalty_rel"] > 0.5
    assert a.naive["naive_best_is_fastest"] is False and a.naive["reference_batch"] == 8
    assert "summary" not in a.naive and "assumption" not in a.naive  # sentences are made by bench.present.tta


def test_energy_to_target_when_energy_per_step_is_known_else_null_with_reason():
    a = analyse_tta(model_curves(), step_times(energy=True), 0.5, n_bootstrap=0)
    row = a.batch(64)
    assert row.energy_to_target_j == pytest.approx(row.steps_to_target * 300.0 * (A_S + B_S * 64))
    assert a.pareto_time_energy and a.min_energy_batch is not None
    b = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0).batch(64)
    assert b.energy_to_target_j is None and b.null_reasons["energy_to_target_j"]


def test_a_batch_without_step_time_has_null_time_with_the_sweeps_reason():
    a = analyse_tta(model_curves(), step_times(skip=(2048,)), 0.5, n_bootstrap=0,
                    step_time_missing={2048: "sweep point oom: CUDA out of memory"})
    row = a.batch(2048)
    assert row.time_to_target_s is None and row.steps_to_target is not None
    assert row.null_reasons["time_to_target_s"] == "sweep point oom: CUDA out of memory"


def test_final_metric_comparison_needs_training_past_the_target():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    assert a.generalisation["largest_batch_ends_worse"] is None and "stopped at the target" in a.generalisation["reason"]


def test_final_metrics_of_the_smallest_and_largest_batch_are_compared_when_runs_went_past_the_target():
    curves = model_curves(seeds=(0,))
    for c in curves:
        c.stop_reason = None
        c.points.append(CurvePoint(c.points[-1].step * 2, c.points[-1].examples * 2,
                                   eval_metric=0.6 if c.batch_size < 2048 else 0.55))
    g = analyse_tta(curves, step_times(), 0.5, n_bootstrap=0).generalisation
    assert (g["smallest_batch"], g["largest_batch"], g["largest_batch_ends_worse"], g["reason"]) == (8, 2048, True, None)
    assert "summary" not in g  # the sentence is made by bench.present.tta


def _sweep():
    pts = []
    for b in (8, 64, 512):
        t = A_S + B_S * b
        m = Measurement(case=Case(workload="task:synthetic", batch_size=b), samples_s=[t * (1 + 0.001 * i) for i in range(-10, 11)])
        m.telemetry["energy_per_step_j"] = 0.5
        pts.append(m)
    pts.append(Measurement(case=Case(workload="task:synthetic", batch_size=4096), status="oom", error="out of memory"))
    return SweepResult(config={"workload": "task:synthetic"}, points=pts, finished=True)


def test_step_times_come_from_the_sweeps_ok_points_and_failed_points_give_reasons():
    times, missing = step_times_from_sweep(_sweep())
    assert [s.batch_size for s in times] == [8, 64, 512]
    assert times[1].median_s == pytest.approx(A_S + B_S * 64) and times[1].ci_low_s < times[1].median_s
    assert times[0].energy_per_step_j == 0.5
    assert missing == {4096: "sweep point oom: out of memory"}


def test_tta_from_a_csv_of_curves_and_a_sweep_file(tmp_path):
    csv = tmp_path / "runs.csv"
    rows = ["batch_size,step,metric,seed"]
    for b in (8, 64, 512):
        s = int(round(steps_model(b, S_MIN, B_CRIT)))
        rows += [f"{b},0,0.1,0", f"{b},{s},0.9,0"]
    csv.write_text("\n".join(rows) + "\n")
    sweep = save_sweep(_sweep(), tmp_path / "sweep.json")
    r = tta_from_files([csv], sweep_path=sweep, target=0.9, n_bootstrap=0)
    row = r.analysis.batch(64)
    assert row.time_to_target_s == pytest.approx(row.steps_to_target * (A_S + B_S * 64), rel=1e-3)
    assert r.noise_scale is None and "curves were read from files" in r.null_reasons["noise_scale"]
    with pytest.raises(BenchError, match="give the target"):
        tta_from_files([csv], n_bootstrap=0)


def _study(**kw):
    from bench.run.study import StudyConfig

    base = dict(task="nqm", task_params={"dim": 20}, target=1.0, batch_sizes=[2, 8, 32], base_lr=0.5,
                base_batch_size=2, lr_rule="constant", lr_factors=[1.0], seeds=[0], momentum=0.0, max_steps=200,
                eval_every=1, continue_after_target=0.0, noise_steps=20, sweep_budget_s=0.05,
                sweep_min_time_s=0.01, n_bootstrap=50, step_time_rounds=3, round_block_s=0.002)
    base.update(kw)
    return StudyConfig(**base)


def test_end_to_end_study_trains_measures_noise_and_step_time_and_saves(tmp_path):
    from bench.run.study import run_study

    out = tmp_path / "tta.json"
    r = run_study(_study(), output=out)
    assert r.finished and len(r.curves) == 3 and r.noise_scale.b_simple is not None
    assert [s.batch_size for s in r.step_times] == [2, 8, 32] and "bench.run.sweep" in r.step_time_source
    assert all(b.time_to_target_s is not None for b in r.analysis.batches)
    assert load_tta(out).analysis.best_time_batch == r.analysis.best_time_batch
    # The study's file carries the same fingerprint, key for key, as a sweep here: no row of a report's
    # environment table can differ between them.
    import torch

    from bench.run.sweep import environment_info

    assert load_tta(out).environment == json.loads(json.dumps(environment_info(torch.device("cpu"))))
    assert r.environment["hash"]


def test_a_report_over_two_sweeps_and_a_study_from_this_machine_marks_no_environment_row_different(tmp_path):
    from bench.present.report import load_inputs
    from bench.present.report.environment import environment_table
    from bench.run.study import run_study
    from bench.run.sweep import SweepConfig, run_sweep

    files = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "tta.json"]
    for path, workload in zip(files[:2], ("mlp", "cnn")):
        run_sweep(SweepConfig(workload=workload, workload_args={"image_size": "8", "width": "4"} if workload == "cnn"
                              else {"in_features": "8", "hidden": "8"}, batch_sizes=[2, 4], budget_s=0.05,
                              device="cpu", telemetry=False), output=path)
    run_study(_study(batch_sizes=[2, 8]), output=files[2])
    inputs = load_inputs(files)
    table = environment_table([(s.path, s.environment) for s in inputs.sources])
    assert len(table["columns"]) == 3 and len(table["rows"]) > 5
    assert [r["key"] for r in table["rows"] if r["differs"]] == []


def test_study_resume_skips_runs_already_saved(tmp_path):
    from bench.run.study import run_study

    out = tmp_path / "tta.json"

    class Stop(Exception):
        pass

    def stop(event, info):
        if event == "done" and info["index"] == 1:
            raise Stop

    with pytest.raises(Stop):
        run_study(_study(measure_step_time=False), output=out, progress=stop)
    assert len(load_tta(out).curves) == 2 and not load_tta(out).finished
    trained = []
    r = run_study(_study(measure_step_time=False), output=out, resume=True,
                  progress=lambda e, i: trained.append(i["spec"].batch_size) if e == "run" else None)
    assert trained == [32] and len(r.curves) == 3 and r.finished
    assert r.null_reasons["step_times"].startswith("not measured")


def _cli(*argv):
    import bench.cli.tta as tta

    parser = argparse.ArgumentParser()
    tta.register(parser.add_subparsers())
    args = parser.parse_args(["tta", *argv])
    return args.func(args)


def test_cli_reads_curves_and_a_sweep_prints_the_table_and_refuses_to_overwrite(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("batch_size,step,metric\n8,0,0.1\n8,100,0.9\n64,0,0.1\n64,30,0.9\n512,0,0.1\n512,20,0.9\n")
    sweep = save_sweep(_sweep(), tmp_path / "sweep.json")
    out = tmp_path / "tta.json"
    assert _cli("--curves", str(csv), "--sweep", str(sweep), "--target", "0.9", "--bootstrap", "50", "-o", str(out)) == 0
    text = capsys.readouterr().out
    assert "Critical batch size B_crit" in text and "Fastest to target: batch" in text
    assert load_tta(out).finished
    with pytest.raises(BenchError, match="exists: pass --resume"):
        _cli("--curves", str(csv), "--target", "0.9", "-o", str(out))


def _hinge_sweep(knee, plateau_s=1e-2, slope=1e-5):
    """A sweep whose analysis chose the hinge: t = plateau up to the knee, then rising by `slope` per example."""
    lin = {"intercept_s": 5e-3, "slope_s_per_sample": 2e-5}  # what the straight line would have said
    hinge = {"plateau_s": plateau_s, "slope_s_per_sample": slope, "knee_batch": knee, "knee_position": "inside"}
    return SweepResult(config={"workload": "task:synthetic"}, points=[], finished=True,
                       analysis={"best_fit": "hinge", "linear_fit": lin, "hinge_fit": hinge})


@pytest.mark.parametrize("knee", [256.0, 512.0, 2000.0])
def test_b_star_minimises_time_to_target_under_the_sweeps_hinge_fit_when_it_chose_the_hinge(knee):
    from bench.analysis.tta import step_time_fit_from_sweep

    sf = step_time_fit_from_sweep(_hinge_sweep(knee))
    assert (sf.model, sf.knee_batch, sf.a_s) == ("hinge", knee, pytest.approx(1e-2 - 1e-5 * knee))
    a = analyse_tta(model_curves(), step_times(), 0.5, step_time_fit=sf, n_bootstrap=0)
    fit = a.scaling_fit

    def t_hinge(b):
        return 1e-2 + 1e-5 * max(0.0, b - knee)

    numeric = optimize.minimize_scalar(lambda b: steps_model(b, fit.s_min, fit.b_crit) * t_hinge(b),
                                       bounds=(1, 10 ** 4), method="bounded", options={"xatol": 1e-6}).x
    assert a.b_star == pytest.approx(numeric, rel=1e-3)
    assert a.b_star >= knee and "hinge" in a.b_star_rule
    assert a.b_star_time_s == pytest.approx(steps_model(a.b_star, fit.s_min, fit.b_crit) * t_hinge(a.b_star))
    assert ("clipped to the knee" in a.b_star_rule) == (knee > 300)  # sqrt(B_crit·a'/s) ≈ 386 at K = 256


def test_b_star_names_the_linear_fit_it_came_from():
    a = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    assert a.step_time_fit.model == "linear" and a.b_star_rule.startswith("sqrt(B_crit·a/b) from least squares")


def test_time_to_target_multiplies_steps_by_the_mean_step_time_and_keeps_the_median_for_shape():
    # Right-skewed step times (a few slow steps): a sum over steps grows with the mean, not the median.
    samples = [0.010] * 18 + [0.030] * 3
    pts = [Measurement(case=Case(workload="task:synthetic", batch_size=b), samples_s=[x * b / 8 for x in samples])
           for b in SIZES]
    times, _ = step_times_from_sweep(SweepResult(config={"workload": "task:synthetic"}, points=pts, finished=True))
    row_time = times[0]
    assert row_time.median_s == pytest.approx(0.010) and row_time.mean_s == pytest.approx(sum(samples) / 21)
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0)
    row = a.batch(8)
    assert row.time_to_target_basis == "mean" and row.step_time_s == pytest.approx(0.010)
    assert row.time_to_target_s == pytest.approx(row.steps_to_target * row_time.mean_s)
    # The interval multiplies by the mean's own CI where the step times carry one (the sweep's does) ...
    assert row.time_to_target_low_s == pytest.approx(row.steps_low * row_time.mean_ci_low_s)
    assert row.time_to_target_high_s == pytest.approx(row.steps_high * row_time.mean_ci_high_s)
    assert row.time_to_target_low_s <= row.time_to_target_s <= row.time_to_target_high_s
    # ... else by the median's CI scaled to the mean.
    for t in times:
        t.mean_ci_low_s = t.mean_ci_high_s = None
    row = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0).batch(8)
    scale = row_time.mean_s / row_time.median_s
    assert row.time_to_target_low_s == pytest.approx(row.steps_low * row_time.ci_low_s * scale)
    assert row.time_to_target_high_s == pytest.approx(row.steps_high * row_time.ci_high_s * scale)


def test_step_times_without_a_mean_fall_back_to_the_median_and_say_so():
    row = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0).batch(64)
    assert row.time_to_target_basis == "median" and row.step_time_mean_s is None
    assert "no mean" in row.null_reasons["step_time_mean_s"]


def test_one_seed_claims_no_ties_and_warns_that_intervals_ignore_run_to_run_spread():
    one = analyse_tta(model_curves(seeds=(0,)), step_times(), 0.5, n_bootstrap=0)
    assert one.best_time_ties == [] and "cannot be told" in one.null_reasons["best_time_ties"]
    assert any("one seed" in w for w in one.warnings)
    assert "run-to-run spread" in one.batch(64).null_reasons["time_to_target_interval"]
    two = analyse_tta(model_curves(seeds=(0, 1)), step_times(), 0.5, n_bootstrap=0)
    assert "best_time_ties" not in two.null_reasons and not any("one seed" in w for w in two.warnings)


def test_the_studys_step_timing_takes_the_measuring_defaults():
    from bench.core.budget import MEASURE_DEFAULTS
    from bench.run.study import StudyConfig

    assert StudyConfig().sweep_budget_s == MEASURE_DEFAULTS["budget_s"]
    assert StudyConfig().sweep_min_time_s is None  # the default minimum time, or the budget if smaller


def test_a_heavy_tailed_step_time_is_flagged_and_the_time_used_makes_the_columns_multiply():
    # A loaded machine: at batch 64 the mean step is 27x the median (16.2 ms vs 0.6 ms).
    times = step_times()
    heavy = next(t for t in times if t.batch_size == 64)
    heavy.median_s, heavy.mean_s = 0.000595, 0.0162
    heavy.ci_low_s, heavy.ci_high_s = 0.00059, 0.0006
    for t in times:
        if t.mean_s is None:
            t.mean_s = t.median_s * 1.001  # everywhere else the mean is within the 1% CI target
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0)
    row = a.batch(64)
    assert row.step_time_used_s == pytest.approx(0.0162) and row.time_to_target_basis == "mean"
    assert row.time_to_target_s == pytest.approx(row.steps_to_target * row.step_time_used_s)
    (w,) = [w for w in a.warnings if w.startswith("mean step time exceeds the median")]
    assert "by more than the 1% CI target at batch size(s) 64 (up to 27.2x, at 64)" in w
    assert not any("mean step time" in w for w in analyse_tta(model_curves(), step_times(), 0.5).warnings)


def test_b_stars_predicted_time_uses_the_mean_step_time_as_the_measured_times_do():
    times = step_times()
    for t in times:
        t.mean_s = 3.0 * t.median_s  # every step time: mean three times the median
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0)
    fit, sf = a.scaling_fit, a.step_time_fit
    assert a.b_star_time_s == pytest.approx(3.0 * fit.predict_steps(a.b_star) * sf.predict_s(a.b_star))
    assert "uses the mean step time (3x the fitted median there)" in a.b_star_rule
    fastest = a.batch(a.best_time_batch)
    assert a.b_star_time_s == pytest.approx(fastest.time_to_target_s, rel=0.15)  # model and measurement agree


def test_batch_sizes_that_never_reached_the_target_get_no_fitted_steps_and_no_regime_but_say_why():
    short = [Curve(task="synthetic", batch_size=4096, lr=0.1, seed=s, target=0.5, stop_reason="max steps",
                   points=[CurvePoint(0, 0, eval_metric=0.0), CurvePoint(40, 40 * 4096, eval_metric=0.3)])
             for s in (0, 1)]
    curves = model_curves() + short
    a = analyse_tta(curves, step_times(), 0.5, n_bootstrap=0)
    row = a.batch(4096)
    assert row.steps_to_target is None and row.fitted_steps is None and row.regime is None
    assert row.null_reasons["fitted_steps"].startswith("not reached: at least 40 steps (a lower bound")
    assert "no regime is read off a batch size that never got there" in row.null_reasons["regime"]
    assert all(b.fitted_steps is not None and b.regime is not None for b in a.batches if b.batch_size != 4096)


def _curves_csv(tmp_path, sizes=(8, 64, 512)):
    csv = tmp_path / "runs.csv"
    rows = ["batch_size,step,metric,seed"]
    for b in sizes:
        s = int(round(steps_model(b, S_MIN, B_CRIT)))
        rows += [f"{b},0,0.1,0", f"{b},{s},0.9,0"]
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_step_times_measured_elsewhere_come_from_a_csv_and_combine_with_curves(tmp_path):
    times = tmp_path / "times.csv"
    times.write_text("# measured on the cluster, 2026-01-05\n"
                     "batch_size,step_time_s,ci_low_s,ci_high_s\n"
                     f"8,{A_S + B_S * 8},{0.99 * (A_S + B_S * 8)},{1.01 * (A_S + B_S * 8)}\n"
                     f"64,{A_S + B_S * 64},,\n")
    r = tta_from_files([_curves_csv(tmp_path)], step_times_path=times, target=0.9)
    assert r.step_time_source == f"step-times file {times}"
    row = r.analysis.batch(64)
    assert row.step_time_used_s == pytest.approx(A_S + B_S * 64)
    assert row.time_to_target_s == pytest.approx(row.steps_to_target * (A_S + B_S * 64))
    assert row.null_reasons["time_to_target_interval"].startswith("step time has no CI")
    missing = r.analysis.batch(512)
    assert missing.time_to_target_s is None and missing.null_reasons["step_time_s"] == f"no step time for batch 512 in {times}"
    assert "is not recorded" in r.null_reasons["environment"]
    with pytest.raises(BenchError, match="a sweep file or a step-times CSV, not both"):
        tta_from_files([_curves_csv(tmp_path)], step_times_path=times, sweep_path=times, target=0.9)


@pytest.mark.parametrize("text, message", [
    ("batch_size,metric\n8,1\n", "missing column(s) step_time_s or median_s or mean_s"),
    ("batch_size,step_time_s\n8,0.01\n8,0.02\n", "row 2: batch size 8 appears twice"),
    ("batch_size,step_time_s\n8,-0.01\n", "row 1: step time must be > 0 seconds"),
    ("batch_size,step_time_s,ci_low_s,ci_high_s\n8,0.01,0.02,0.03\n", "does not hold the step time"),
    ("batch_size,step_time_s,ci_low_s\n8,0.01,0.009\n", "give both ci_low_s and ci_high_s"),
    ("batch_size,step_time_s\n8,fast\n", "row 1: step_time_s is not a number ('fast')"),
])
def test_a_bad_step_times_csv_is_refused_in_one_line_naming_the_row(tmp_path, text, message):
    from bench.records.tta import read_step_times

    p = tmp_path / "times.csv"
    p.write_text(text)
    with pytest.raises(BenchError) as e:
        read_step_times(p)
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_cli_takes_step_times_instead_of_a_sweep(tmp_path, capsys):
    times = tmp_path / "times.csv"
    times.write_text("batch_size,median_s,mean_s\n8,0.002,0.0021\n64,0.0026,0.0027\n512,0.0071,0.0072\n")
    out = tmp_path / "tta.json"
    assert _cli("--curves", str(_curves_csv(tmp_path)), "--step-times", str(times), "--target", "0.9", "-o", str(out)) == 0
    assert "Fastest to target: batch" in capsys.readouterr().out
    assert load_tta(out).config["step_times"] == str(times)
    with pytest.raises(BenchError, match="--step-times goes with --curves"):
        _cli("--step-times", str(times))


class _LoadedTimer:
    """A fake timer: a step at batch B takes t(B)·load(round), the machine's load changing every round by up
    to 3x, as other work starts and stops; the rounds module is told nothing about it."""

    name = "host"

    def __init__(self):
        self.calls = []
        self.round = 0

    def time_block(self, step, n):
        b = step.batch_size
        self.calls.append(b)
        factor = (1.0, 3.0, 1.5, 2.2, 1.1, 2.8)[self.round % 6]
        return [(A_S + B_S * b) * factor] * n


def _measure_loaded_rounds(rounds=6):
    from bench.measure.workloads import load_workload
    from bench.run.rounds import measure_rounds

    timer = _LoadedTimer()
    seen = []

    def progress(event, info):
        seen.append(info["round"])
        timer.round = info["round"]  # the load changes between rounds

    r = measure_rounds(load_workload("mlp", {"in_features": 4, "hidden": 4, "depth": 1, "classes": 2}),
                       [8, 64, 512], rounds=rounds, block_s=0.01, timer=timer, progress=progress,
                       warmup_budget_s=0.01)
    return r, timer, seen


def test_interleaved_rounds_time_every_batch_once_per_round_in_a_rotated_order():
    r, timer, seen = _measure_loaded_rounds()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert r.round_orders[:3] == [[8, 64, 512], [64, 512, 8], [512, 8, 64]]
    assert all(len(r.samples_s[str(b)]) == 6 for b in (8, 64, 512))
    assert len(r.conditions) == 6 and all(len(pair) == 2 for pair in r.conditions)
    assert r.machine_load is not None or r.null_reasons["machine_load"]


def test_a_load_change_that_hits_every_batch_alike_widens_step_times_but_not_their_ratio():
    from bench.analysis.tta import paired_ratio, step_times_from_rounds

    r, _, _ = _measure_loaded_rounds()
    times = {s.batch_size: s for s in step_times_from_rounds(r)}
    big = times[512]
    assert big.mean_ci_high_s / big.mean_ci_low_s > 1.5  # the load swings 3x between rounds
    ratio, lo, hi = paired_ratio(r.round_means(512), r.round_means(8))
    true = (A_S + B_S * 512) / (A_S + B_S * 8)
    assert ratio == pytest.approx(true) and lo == pytest.approx(true) and hi == pytest.approx(true)


def test_the_naive_error_gets_an_interval_from_per_round_ratios_and_it_holds_the_estimate():
    from bench.analysis.tta import step_times_from_rounds

    r, _, _ = _measure_loaded_rounds()
    # A second batch size ratio that wobbles: round 2's big-batch step is 20% slower than the load explains.
    r.samples_s["512"][2] = [x * 1.2 for x in r.samples_s["512"][2]]
    curves = [curve(b, int(round(steps_model(b, S_MIN, B_CRIT))), seed=s) for b in (8, 64, 512) for s in (0, 1)]
    a = analyse_tta(curves, step_times_from_rounds(r), 0.5, n_bootstrap=0, rounds=r)
    ref, big = a.batch(8), a.batch(512)
    assert (ref.naive_rel_error, ref.naive_rel_error_low, ref.naive_rel_error_high) == (0.0, 0.0, 0.0)
    assert big.naive_rel_error_low < big.naive_rel_error < big.naive_rel_error_high < 0
    assert big.naive_rel_error == pytest.approx(1.0 / big.step_time_ratio - 1.0)
    assert "per-round ratios over 6 interleaved rounds" in a.naive["interval_basis"]
    d = json.loads(json.dumps(a.to_dict()))["batches"][2]
    assert {"naive_rel_error", "naive_rel_error_low", "naive_rel_error_high"} <= set(d)


def test_without_rounds_the_naive_interval_comes_from_independent_mean_intervals_or_is_null_with_a_reason():
    times = step_times()
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0)
    assert a.batch(64).naive_rel_error_low is None
    assert "no interval of their mean" in a.batch(64).null_reasons["naive_rel_error_interval"]
    for t in times:
        t.mean_s, t.mean_ci_low_s, t.mean_ci_high_s = t.median_s, 0.95 * t.median_s, 1.05 * t.median_s
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0)
    row = a.batch(64)
    assert row.naive_rel_error_low < row.naive_rel_error < row.naive_rel_error_high
    assert "independent" in a.naive["interval_basis"]


def test_the_study_times_its_steps_in_interleaved_rounds_and_keeps_them(tmp_path):
    from bench.run.study import run_study

    r = run_study(_study(), output=tmp_path / "tta.json")
    rounds = load_tta(tmp_path / "tta.json").step_time_rounds
    assert rounds.rounds == 3 and rounds.batch_sizes == [2, 8, 32]
    assert "interleaved rounds" in r.step_time_source
    assert all(s.mean_ci_low_s is not None for s in r.step_times)
    assert r.analysis.batch(32).naive_rel_error_low is not None
    defs = r.analysis.critical_batch  # the three definitions side by side, B_simple from the study's own noise scale
    assert defs["b_simple"]["value"] == r.noise_scale.b_simple and defs["tolerance"]["reference_batch"] == 2
    assert defs["mccandlish"]["b_crit"] == r.analysis.scaling_fit.b_crit


def test_interleaved_rounds_must_be_zero_or_at_least_two():
    with pytest.raises(BenchError, match="interleaved rounds"):
        _study(step_time_rounds=1).validate()


def test_a_fastest_batch_at_the_edge_of_the_range_is_flagged_with_its_lr_at_the_grid_edge():
    flat = [StepTime(b, A_S, 0.98 * A_S, 1.02 * A_S) for b in SIZES]  # equal step time: the largest batch wins
    curves = [c for b in SIZES for c in (curve(b, int(round(steps_model(b, S_MIN, B_CRIT))), seed=s, lr=lr)
                                        for s in (0, 1) for lr in ((0.1, 0.2) if b == 2048 else (0.1,)))]
    a = analyse_tta(curves, flat, 0.5, n_bootstrap=0)
    assert a.best_time_batch == 2048 and a.edges["best_batch_at_edge"] == "largest"
    assert a.edges["best_lr_at_grid_edge"] is True
    assert any("is the largest tried and its best learning rate is at the edge" in w for w in a.warnings)
    interior = analyse_tta(model_curves(), step_times(), 0.5, n_bootstrap=0)
    assert interior.edges["best_batch_at_edge"] is None and interior.edges["b_star_contradicts_ranking"] is False


def test_a_model_optimum_the_measured_ranking_contradicts_is_flagged():
    times = step_times()
    fast = next(t for t in times if t.batch_size == 1024)
    fast.median_s, fast.ci_low_s, fast.ci_high_s = 0.1 * fast.median_s, 0.098 * fast.median_s, 0.102 * fast.median_s
    a = analyse_tta(model_curves(), times, 0.5, n_bootstrap=0, step_time_fit=fit_step_time_linear(step_times()))
    assert a.best_time_batch == 1024 and a.edges["b_star_nearest_batch"] in (128, 256)
    assert a.edges["b_star_contradicts_ranking"] is True
    assert any("the measured ranking contradicts the model" in w for w in a.warnings)


def test_when_the_curve_does_not_fit_b_star_comes_from_the_measured_steps_not_the_model():
    import numpy as np

    rng = np.random.default_rng(0)
    curves = [curve(b, int(round(100 * (1 + (256 / b) ** 2) ** 0.5 * float(np.exp(0.02 * rng.standard_normal())))),
                    seed=s) for b in SIZES for s in (0, 1, 2)]
    a = analyse_tta(curves, step_times(), 0.5, n_bootstrap=0)
    assert a.scaling_fit.fits is False and a.scaling_fit.b_crit_ci is None
    assert a.b_star_rule.startswith("model-free") and SIZES[0] <= a.b_star <= SIZES[-1]
    assert any("does not fit" in w for w in a.warnings)


def test_without_rounds_the_studys_step_times_keep_the_sweeps_machine_load_and_say_it(tmp_path):
    from bench.present.tta import step_time_load_sentence
    from bench.run.study import run_study

    r = run_study(_study(step_time_rounds=0), output=tmp_path / "tta.json")
    assert r.step_time_rounds is None
    assert r.step_time_load is not None or r.null_reasons["step_time_load"]
    saved = load_tta(tmp_path / "tta.json")
    assert saved.step_time_load == r.step_time_load
    s = step_time_load_sentence(saved)
    assert s.startswith("While the step times were measured, other work kept") or "unknown (" in s
