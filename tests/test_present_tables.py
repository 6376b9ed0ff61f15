"""Terminal tables: the points of a sweep and the batch sizes of a study, as `bench sweep` and `bench tta`
print them."""

from __future__ import annotations

from rich.console import Console

from bench.analysis.steptime import analyse_sweep
from bench.analysis.tta import analyse_tta
from bench.present.tables import sweep_table, tta_table
from bench.records.curves import Curve, CurvePoint
from bench.records.sweep import Case, Measurement, SweepResult
from bench.records.tta import StepTime, TTAResult


def render(table) -> str:
    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()


def point(b, telemetry, t=0.01):
    return Measurement(case=Case("mlp", b), samples_s=[t] * 10, telemetry=telemetry)


def test_sweep_table_shows_gpu_telemetry_columns_only_when_measured():
    cpu = render(sweep_table(SweepResult(config={}, points=[point(1, {}), point(2, {})])))
    assert "kernel active" not in cpu and "power" not in cpu
    gpu = render(sweep_table(SweepResult(config={}, points=[
        point(1, {"kernel_active_pct_mean": 41.0, "power_w_energy_mean": 312.4}),
        point(2, {"kernel_active_pct_mean": 97.0})])))
    assert "kernel active" in gpu and "41%" in gpu and "97%" in gpu and "312 W" in gpu


def test_sweep_table_says_how_each_point_compares_with_the_smallest_from_the_analysis():
    result = SweepResult(config={"workload": "mlp"}, points=[point(1, {}, 0.01), point(2, {}, 0.01), point(8, {}, 0.05),
                                                             Measurement(case=Case("mlp", 16), status="oom")])
    bare = render(sweep_table(result))
    assert "within" not in bare and "beyond" not in bare  # no analysis, no comparison
    result.analysis = analyse_sweep(result).to_dict()
    text = render(sweep_table(result))
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert "within" in rows["2"] and "beyond" in rows["8"] and "oom" in rows["16"]


def test_tta_table_marks_the_fastest_batch_and_says_which_step_time_it_multiplies():
    curves = [Curve(task="demo", batch_size=b, lr=0.1, seed=0, target=0.5, stop_reason="target reached",
                    points=[CurvePoint(0, 0, eval_metric=0.0), CurvePoint(s, s * b, eval_metric=0.5)])
              for b, s in ((8, 400), (64, 80), (512, 60))]
    times = [StepTime(8, 1e-3, mean_s=1.1e-3), StepTime(64, 1.2e-3, mean_s=1.3e-3), StepTime(512, 5e-3)]
    result = TTAResult(task={"name": "demo"}, curves=curves, step_times=times,
                       analysis=analyse_tta(curves, times, 0.5, n_bootstrap=0))
    text = render(tta_table(result))
    assert "64 ★" in text and "demo · target metric ≥ 0.5" in text
    assert "1.1 ms" in text and "5 ms (median)" in text  # the mean where measured, else the median, said so


def test_a_long_error_is_shortened_at_a_word_never_cut_mid_word():
    from rich.console import Console

    from bench.records.sweep import Case, Measurement, SweepResult

    error = ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity; 77.5 GiB already "
             "allocated; 1.2 GiB free)")
    r = SweepResult(config={"workload": "mlp"}, points=[Measurement(Case("mlp", 8), status="oom", error=error)],
                    finished=True)
    console = Console(width=400, record=True)
    console.print(sweep_table(r))
    text = console.export_text()
    assert "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total …" in text


def test_sweep_table_gives_throughput_from_the_mean_step_and_labels_it():
    slow_tail = Measurement(case=Case("mlp", 100), samples_s=[0.01] * 9 + [0.11])  # mean 0.02 s, median 0.01 s
    out = render(sweep_table(SweepResult(config={}, points=[slow_tail])))
    assert "samples/s (mean)" in out and "5,000" in out and "10,000" not in out
