"""The step-time verdict: the sentences `bench sweep` and the report print, made from the typed analysis on
synthetic curves with known answers (never more certain than the analysis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis.steptime import PointSummary, StepTimeAnalysis, analyse_step_times
from bench.present.steptime import (
    noise_sentence,
    steptime_verdict,
    sweep_analysis,
    sweep_verdict,
    throughput_sentence,
)
from bench.records.sweep import SweepResult

BATCHES = [2**i for i in range(11)]  # 1 .. 1024
OLD_SWEEP = Path(__file__).parent / "data" / "sweep-v1-with-verdict.json"


def point(batch: int, t_s: float, rel_ci: float = 0.002, spread: float | None = 0.001) -> PointSummary:
    return PointSummary(batch, t_s, t_s * (1 - rel_ci), t_s * (1 + rel_ci), spread)


def hinge_curve(batch: int) -> float:
    """1 ms up to batch 64, then +0.02 ms per sample."""
    return 1e-3 if batch <= 64 else 1e-3 + 2e-5 * (batch - 64)


def linear_curve(batch: int) -> float:
    """1 ms fixed + 0.01 ms per sample: a/b = 100."""
    return 1e-3 + 1e-5 * batch


def verdict(points, **kw) -> list[str]:
    return steptime_verdict(analyse_step_times(points, **kw))


def test_hinge_verdict_mentions_range_slope_knee_and_largest_batch():
    v = verdict([point(b, hinge_curve(b)) for b in BATCHES], largest_batch_that_fits=1536)
    first = v[0]
    assert "within 5% of batch 1's (1 ms)" in first
    assert "up to batch 64" in first
    assert "+0.02 ms per sample" in first
    assert "knee ≈ 64" in first
    assert v[-1] == "The largest batch that fits is 1536."
    assert 2 <= len(v) <= 4


def test_linear_verdict_reports_slope_and_a_over_b():
    first = verdict([point(b, linear_curve(b)) for b in BATCHES])[0]
    assert "+0.01 ms per sample" in first and "a/b ≈ 100" in first and "about linearly" in first


def test_all_flat_says_the_knee_lies_beyond_the_largest_batch():
    first = verdict([point(b, 1e-3) for b in BATCHES])[0]
    assert first == ("Step time stays within 5% of batch 1's (1 ms) at every batch measured, up to 1024 (95% CIs): "
                     "the knee lies beyond batch 1024.")


def test_all_beyond_says_step_time_already_grows_at_the_next_batch():
    first = verdict([point(b, b * 1e-3) for b in [1, 2, 4, 8]])[0]
    assert "already exceeds batch 1's (1 ms) by more than 5% at batch 2" in first
    assert "+1 ms per sample" in first


def test_a_borderline_point_with_a_wide_ci_is_said_to_be_undecided():
    pts = [point(1, 1e-3, rel_ci=0.01), point(2, 1.04e-3, rel_ci=0.04), point(4, 1.3e-3)]
    first = verdict(pts)[0]
    assert first.startswith("At batch 2 the 95% CIs cannot tell whether step time stays within 5%")


def test_points_without_a_ci_are_said_to_be_judged_on_medians():
    pts = [PointSummary(1, 1e-3, None, None), point(2, 1.01e-3), point(4, 1.5e-3)]
    assert "batch 1 judged on medians" in verdict(pts)[0]
    none = verdict([PointSummary(b, linear_curve(b), None, None) for b in BATCHES])
    assert "judged on medians: no point has a 95% CI" in none[0]


def test_undecided_next_point_with_some_points_lacking_a_ci_reads_as_a_sentence():
    pts = [PointSummary(1, 1.0e-3, 0.99e-3, 1.01e-3), PointSummary(4, 1.04e-3, 0.98e-3, 1.10e-3),
           PointSummary(64, 5e-3, None, None), PointSummary(256, 20e-3, None, None)]
    first = verdict(pts)[0]
    assert first.startswith("At batch 4 the 95% CIs cannot tell whether step time stays within 5%")
    assert "(batch 64, 256 judged on medians for lack of a CI)" in first


def test_throughput_sentence_names_the_peak_and_the_batch_that_reaches_95_percent():
    a = analyse_step_times([point(b, 1e-3 * (1 + b / 16)) for b in BATCHES])
    assert throughput_sentence(a) == ("Throughput, from the median step time, peaks at 15,800 samples/s at batch "
                                      "1024, the largest measured (it may rise further); batch 256 already reaches "
                                      "95% of it.")


def test_noisy_points_are_named_with_their_diagnosis():
    pts = [point(b, 1e-3, spread=0.2 if b in (2, 4, 8) else 0.002) for b in BATCHES]
    pts[0] = PointSummary(1, 1e-3, 0.998e-3, 1.002e-3, None)
    a = analyse_step_times(pts, diagnoses={2: "launch-bound", 4: "launch-bound", 8: "launch-bound"})
    noise = noise_sentence(a)
    assert noise == ("Repeated timing blocks disagree by more than ±1% at batch 2, 4, 8 (launch-bound): "
                     "those points are noisy.")
    assert noise in steptime_verdict(a)
    assert noise_sentence(analyse_step_times([point(b, 1e-3) for b in (1, 2, 4)])) is None


def test_diagnoses_are_quoted_where_they_apply():
    diag = {b: "launch-bound" if b <= 64 else "compute-bound" for b in BATCHES}
    first = verdict([point(b, hinge_curve(b)) for b in BATCHES], diagnoses=diag)[0]
    assert "where the step is launch-bound" in first and "beyond (compute-bound)" in first


def test_a_non_monotone_curve_is_flagged():
    times = [1e-3, 1.3e-3, 0.8e-3, 1.2e-3, 1.0e-3, 1.1e-3, 2e-3, 4e-3, 3e-3, 8e-3, 16e-3]
    v = verdict([PointSummary(b, t, t * 0.9, t * 1.1, 0.25) for b, t in zip(BATCHES, times)])
    assert 2 <= len(v) <= 4
    assert any("falls from batch 2 to 4" in s for s in v)


def test_many_batches_are_listed_short():
    pts = [point(b, 1e-3, spread=0.2) for b in BATCHES]
    assert "at batch 1, 2, 4, …, 1024 (11 points)" in noise_sentence(analyse_step_times(pts))


def test_one_point_and_no_points_are_described_without_comparisons():
    one = verdict([point(8, 2e-3)])
    assert one[0].startswith("Only batch 8 was measured (2 ms per step, 4,000 samples/s)")
    none = verdict([], largest_batch_that_fits=4)
    assert none == ["Nothing was measured: no batch size has a successful step-time measurement, so there is "
                    "nothing to analyse.", "The largest batch that fits is 4."]


def test_the_largest_batch_sentence_can_be_left_to_the_caller():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES], largest_batch_that_fits=1536)
    assert steptime_verdict(a, largest_batch=False) == steptime_verdict(a)[:-1]


def test_a_stored_analysis_gives_the_same_sentences_as_the_record_it_came_from():
    a = analyse_step_times([point(b, hinge_curve(b)) for b in BATCHES], largest_batch_that_fits=1536,
                           diagnoses={1: "launch-bound"})
    stored = json.loads(json.dumps(a.to_dict()))
    assert steptime_verdict(sweep_analysis(stored)) == steptime_verdict(a)
    assert sweep_analysis(None) is None and sweep_analysis(a) is a


def test_a_sweep_file_written_with_its_verdict_inside_gives_the_same_sentences_said_honestly():
    """`bench sweep -b 1,8,64 --budget 0.3` as written before the analysis held no prose. Its verdict
    said step time fell from batch 8 to 64 "beyond the 95% CIs", but batch 8 has no CI: the fall rests
    on its median. Its throughput is B / median, and the sentence now says so."""
    stored = json.loads(OLD_SWEEP.read_text())
    old = stored["analysis"]["verdict"]
    made = sweep_verdict(SweepResult.from_dict(stored))
    assert made[0] == old[0]
    assert made[1] == old[1].replace("Throughput peaks", "Throughput, from the median step time, peaks")
    assert "beyond the 95% CIs" in old[2] and "beyond the 95% CIs" not in made[2]
    assert made[2] == ("Repeated timing blocks disagree by more than ±1% at batch 1, 64 (overhead-bound, then "
                       "transition): those points are noisy, and step time falls from batch 8 to 64 by more than "
                       "1% on the medians, without a 95% CI at batch 8 to judge it by.")
    assert sweep_verdict(SweepResult(config={})) == []


@pytest.mark.parametrize("eps, said", [(0.05, "5%"), (0.0333, "3.33%"), (0.1, "10%")])
def test_the_tolerance_is_quoted_as_set(eps, said):
    assert f"within {said} of batch 1's" in verdict([point(b, 1e-3) for b in (1, 2, 4)], eps=eps)[0]


def test_sentences_are_made_from_the_fields_not_read_back_from_other_sentences():
    a = StepTimeAnalysis.from_dict(analyse_step_times([point(b, 1e-3) for b in (1, 2, 4)]).to_dict())
    a.largest_batch_that_fits = 7
    assert steptime_verdict(a)[-1] == "The largest batch that fits is 7."


# ------------------------------------------------- never a CI that is not there; tails, shortfalls, load


def test_a_fall_on_medians_is_said_to_rest_on_medians_never_beyond_the_cis():
    pts = [point(b, 1e-3) for b in (1, 2, 4)] + [PointSummary(512, 0.2, None, None),
                                                  PointSummary(1024, 0.18, None, None)]
    v = verdict(pts)
    assert not any("beyond the 95% CIs" in s for s in v)
    assert ("Step time falls from batch 512 to 1024 by more than 1% on the medians, without a 95% CI at batch "
            "512, 1024 to judge it by: the curve is not monotone, so read the fits with care.") in v
    tiny = pts[:-1] + [PointSummary(1024, 0.199, None, None)]  # 0.5%: within what the points are measured to
    assert not any("falls" in s for s in verdict(tiny))


def test_the_throughput_sentence_says_it_is_from_the_mean_step():
    pts = [PointSummary(b, 1e-3, 0.99e-3, 1.01e-3, mean_s=1e-3) for b in (1, 2, 4)]
    assert throughput_sentence(analyse_step_times(pts)).startswith(
        "Throughput, from the mean step time, peaks at 4,000 samples/s at batch 4")


def test_a_heavy_tail_is_flagged_with_how_far_the_mean_exceeds_the_median():
    pts = [PointSummary(b, 1e-3, 0.99e-3, 1.01e-3, mean_s=1e-3 * (1.2 if b == 4 else 1.0)) for b in (1, 2, 4)]
    v = verdict(pts)
    assert ("The mean step time exceeds the median by more than 1% at batch 4 (by up to 20%): a heavy tail of "
            "slow steps, which a run of such steps pays for; throughput is from the mean, the equal-time calls "
            "from the median.") in v


def test_points_with_too_few_blocks_for_a_ci_across_blocks_are_named_with_the_budget_that_would_fit():
    from bench.core.budget import BlockShortfall

    def short(step_s, samples):
        return BlockShortfall(blocks=min(samples, 3), needed=6, budget_s=2.0, step_s=step_s,
                              budget_needed_s=1.0 + 6 * step_s, samples=samples)

    pts = [point(1, 1e-3), point(2, 1e-3),
           PointSummary(512, 0.4, 0.39, 0.41, block_shortfall=short(0.4, 6)),
           PointSummary(1024, 0.8, None, None, block_shortfall=short(0.8, 2))]
    v = verdict(pts)
    assert ("Fewer than 6 timed blocks fitted the 2 s budget at batch 512, 1024 (steps of 400 ms to 800 ms): "
            "the 95% CI at batch 512 rests on the pooled samples alone, which drift can make too narrow; batch "
            "1024 has too few samples for any 95% CI; a budget of about 5.8 s would fit them (--budget).") in v


def test_a_busy_machine_is_warned_about_and_a_quiet_one_is_not():
    from bench.core.load import MachineLoad

    busy = MachineLoad(window_s=60.0, mean_load=6.0, own_threads=2.0, other_load=4.0, cpus=2, free_cpus=0.0,
                       busy=True, basis="window", load_avg_1m_max=6.0)
    v = verdict([point(b, 1e-3) for b in (1, 2, 4)], machine_load=busy)
    assert ("The machine was busy while this ran: other work kept about 4.0 threads runnable on average over the "
            "60 s of measuring, while this run's own 2 threads already fill its 2 CPUs; step times "
            "may include waiting for a CPU, so compare them with a quiet run before trusting small differences.") in v
    on_gpu = MachineLoad(window_s=9.0, mean_load=16.0, own_threads=1.0, other_load=15.8, cpus=16, free_cpus=15.0,
                         busy=True, basis="cpu time", load_avg_1m_max=15.0)
    assert ("The machine was busy while this ran: other processes used about 15.8 CPUs on average over the 9 s of "
            "measuring (the machine's busy CPU time less this run's own), more than the 15 of its 16 CPUs this run "
            "leaves free (it keeps 1 busy); step times may include waiting for a CPU, so compare them with a quiet "
            "run before trusting small differences.") in verdict([point(b, 1e-3) for b in (1, 2, 4)], machine_load=on_gpu)
    quiet = MachineLoad(window_s=60.0, mean_load=2.1, own_threads=2.0, other_load=0.1, cpus=2, free_cpus=0.0,
                        busy=False, basis="window", load_avg_1m_max=2.1)
    assert not any("busy" in s for s in verdict([point(b, 1e-3) for b in (1, 2, 4)], machine_load=quiet))
