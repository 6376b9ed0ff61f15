"""The time-to-accuracy verdict: sentences made from a study's typed analysis, the same for files written
before the analysis held no prose (their `summary` fields are not read back)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.analysis.noise_scale import compare_with_critical_batch
from bench.analysis.scaling import steps_model
from bench.analysis.tta import analyse_tta
from bench.present.tta import (
    generalisation_sentence,
    naive_sentence,
    noise_scale_agreement,
    tta_verdict,
)
from bench.records.curves import Curve, CurvePoint
from bench.records.tta import StepTime, TTAResult

OLD_TTA = Path(__file__).parent / "data" / "tta-v1-with-summaries.json"
SIZES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


def curve(b, steps, seed=0, past=None):
    pts = [CurvePoint(0, 0, eval_metric=0.0), CurvePoint(steps, steps * b, eval_metric=0.5)]
    if past is not None:
        pts.append(CurvePoint(steps * 2, steps * 2 * b, eval_metric=past))
    return Curve(task="synthetic", batch_size=b, lr=0.1, seed=seed, points=pts, target=0.5,
                 stop_reason=None if past is not None else "target reached")


def study(seeds=(0, 1), past=None) -> TTAResult:
    curves = [curve(b, int(round(steps_model(b, 50.0, 200.0))), seed=s, past=past and past(b))
              for b in SIZES for s in seeds]
    times = [StepTime(b, 2e-3 + 1e-5 * b, 0.98 * (2e-3 + 1e-5 * b), 1.02 * (2e-3 + 1e-5 * b)) for b in SIZES]
    return TTAResult(curves=curves, step_times=times, analysis=analyse_tta(curves, times, 0.5, n_bootstrap=0),
                     finished=True)


def test_the_verdict_names_the_target_the_fits_the_best_batches_and_the_naive_pick():
    lines = tta_verdict(study())
    assert lines[0] == "Target: metric ≥ 0.5."
    assert lines[1].startswith("Critical batch size B_crit = 199 [198, 200] (95% profile likelihood); "
                               "S_min = 50.2 steps [50, 50.4]")
    assert any(s.startswith("Fastest to target: batch ") for s in lines)
    assert any(s.startswith("From the fits, B* = ") for s in lines)
    naive = next(s for s in lines if s.startswith("Equal-step-time rule of thumb"))
    assert "every batch size takes batch 8's step time (2.08 ms)" in naive and "it picks batch 2048" in naive
    assert "slower than the fastest, batch" in naive


def test_the_naive_error_names_what_the_rule_predicts_what_is_true_and_how_far_off_in_percent():
    a = study().analysis
    n = a.naive
    n.update(naive_best_predicted_time_s=1.2 * 3600, naive_best_true_time_s=3.4 * 3600)
    sentence = naive_sentence(a)
    assert "predicts 1.2 h to target; the real time is 3.4 h, so the equal-step-time estimate is 65% short: the real time is" in sentence


def test_warnings_come_last_unless_the_caller_shows_them_elsewhere():
    r = study(seeds=(0,))
    with_warnings, without = tta_verdict(r), tta_verdict(r, warnings=False)
    assert with_warnings[:len(without)] == without
    assert with_warnings[-1].startswith("Warning: one seed at batch size")
    assert not any(s.startswith("Warning:") for s in without)


def test_the_naive_sentence_says_when_its_pick_is_also_the_fastest():
    a = study().analysis
    a.naive["naive_best_batch"] = a.best_time_batch
    a.naive["naive_best_is_fastest"] = True
    assert naive_sentence(a).endswith("that batch is also the fastest.")
    a.naive = {"reason": "no batch size has both steps to target and a step time"}
    assert naive_sentence(a) is None


def test_generalisation_is_compared_only_past_the_target():
    assert generalisation_sentence(study().analysis).startswith("Generalisation: not compared (runs stopped at the target")
    worse = study(past=lambda b: 0.6 if b < 2048 else 0.55).analysis
    assert generalisation_sentence(worse) == ("Generalisation: final metric 0.6 at batch 8 vs 0.55 at batch 2048: "
                                              "the largest batch ends worse.")
    same = study(past=lambda b: 0.6).analysis
    assert generalisation_sentence(same).endswith("the largest batch ends no worse.")


def test_noise_scale_and_critical_batch_agreement_in_words():
    assert noise_scale_agreement(compare_with_critical_batch(40.0, 100.0)) == \
        "B_simple and B_crit differ by a factor of 2.5 (within an order of magnitude)"
    assert noise_scale_agreement(compare_with_critical_batch(90.0, 100.0)) == "B_simple and B_crit agree within a factor of 2"
    assert noise_scale_agreement(compare_with_critical_batch(2.0, 100.0)) == \
        "B_simple and B_crit differ by a factor of 50 (more than an order of magnitude)"
    assert noise_scale_agreement(compare_with_critical_batch(None, 100.0)) is None
    # a file written before `agreement` existed carries the ratio and its old summary, which is not read
    old = {"ratio_b_simple_to_b_crit": 0.4, "log10_ratio": -0.398, "reason": None, "summary": "stale words"}
    assert noise_scale_agreement(old) == "B_simple and B_crit differ by a factor of 2.5 (within an order of magnitude)"


def test_a_study_file_with_prose_summaries_inside_prints_what_bench_tta_printed_then():
    """`bench tta --batch-sizes 8,64 --seeds 0 --lr-points 1` as written (and printed) before the analysis
    held no prose; its curves are cut to a few points each, which the verdict does not read."""
    stored = json.loads(OLD_TTA.read_text())
    assert tta_verdict(TTAResult.from_dict(stored)) == [
        "Target: accuracy ≥ 0.96.",
        "No scaling fit: needs steps to target at 3 or more batch sizes; 2 reached the target.",
        "Gradient noise scale B_simple = 38.4 [29.1, 53.8] (batch 8 vs 64, 74 steps).",
        "Fastest to target: batch 64, 66.7 ms (with one seed, which batch sizes are indistinguishable from it "
        "cannot be told).",
        "Fewest examples to target (compute-optimal): batch 8, 3,040 examples.",
        "Time-vs-examples Pareto frontier: batch 8, 64.",
        "B*: — (no fitted critical batch size).",
        "Equal-step-time rule of thumb (every batch size takes batch 8's step time (789 µs)): it picks batch 64 and "
        "predicts 58.1 ms to target; the real time is 66.7 ms, so the equal-step-time estimate is 13% short: the real time is 15% longer; that batch is "
        "also the fastest.",
        "Generalisation: final accuracy 0.9556 at batch 8 vs 0.9611 at batch 64: the largest batch ends no worse.",
        "Warning: one seed at batch size 8, 64: time-to-target intervals ignore run-to-run spread; run 2 or more "
        "seeds to tell batch sizes apart.",
    ]


def test_an_unfinished_study_says_so():
    assert tta_verdict(TTAResult()) == ["The study has no analysis yet (unfinished?)."]


def test_the_naive_error_is_said_in_words_that_cannot_be_read_backwards():
    from bench.present.tta import naive_error_words

    assert naive_error_words(-0.25) == "the equal-step-time estimate is 25% short: the real time is 33% longer"
    assert naive_error_words(0.2) == "the equal-step-time estimate is 20% long: the real time is 17% shorter"
    assert "right" in naive_error_words(0.001)


def test_bench_fit_lines_say_whether_the_curve_fits_and_give_each_critical_batch_definition():
    from pathlib import Path

    from bench.analysis.scaling import fit_table
    from bench.present.tta import table_fit_lines
    from bench.records.steps_table import read_steps_table

    table = Path(__file__).parent / "data" / "mlperf_bert_rcps_v3.1.csv"
    lines = table_fit_lines(fit_table(read_steps_table(table)))
    check = next(line for line in lines if line.startswith("Fit check"))
    assert "on 11 and 250 df" in check and "does not fit, so no interval is printed" in check
    defs = next(line for line in lines if line.startswith("Critical batch size by definition"))
    assert "steps 20% above perfect linear scaling from batch 256: at batch" in defs
    assert "(1 + 0.2)·256 + 0.2·B_crit" in defs


def test_the_rounds_sentence_says_how_step_times_were_taken_and_how_busy_the_machine_was():
    from bench.present.tta import rounds_sentence
    from bench.records.tta import StepTimeRounds

    r = StepTimeRounds(batch_sizes=[8, 64], rounds=12, block_s=0.1, samples_s={"8": [[1e-3]], "64": [[2e-3]]},
                       wall_time_s=30.0, machine_load={"other_load": 1.5, "basis": "cpu time", "own_threads": 1.0,
                                                       "cpus": 2, "load_avg_1m_max": 5.2, "busy": True})
    s = rounds_sentence(r)
    assert s.startswith("Step times: 12 interleaved rounds across 2 batch sizes")
    assert "other work kept about 1.5 CPUs busy" in s and "the machine was busy" in s
    r.machine_load, r.null_reasons = None, {"machine_load": "no load-average readings"}
    assert "machine load: unknown (no load-average readings)" in rounds_sentence(r)
