"""`bench compare` and bench.analysis.compare: verdicts per benchmark and metric judged against the noise
between runs, the rules behind them, and the exit status (0 same or faster, 1 slower, 3 inconclusive,
2 bad input or nothing compared)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.compare import (
    IMPROVEMENT,
    INCONCLUSIVE,
    REGRESSION,
    RULE_SAMPLES,
    RULE_SINGLE,
    RULE_SUMMARY,
    RULE_WINDOW,
    UNCHANGED,
    UNRELIABLE,
    BetweenRuns,
    CompareSettings,
    compare_results,
    compare_window,
    load_settings,
)
from bench.cli import main
from bench.history.simulate import fake_fingerprint, write_night
from bench.history.sources import STEP_TIME, THROUGHPUT, TIME, ResultRecord

REPO = Path(__file__).resolve().parents[1]
NAME = "suites/test_step_time.py::test_step_time[mlp-fp32-bs32-cuda]"


def result(median: float, *, spread: float = 0.005, n: int = 200, seed: int = 0, metric: str = STEP_TIME,
           **kw) -> ResultRecord:
    rng = np.random.default_rng(seed)
    x = median * np.exp(rng.normal(0, spread, n))
    from bench.history.sources import from_samples

    return from_samples(ResultRecord(NAME, metric, **kw), x.tolist())


QUIET = BetweenRuns(0.01, "settings")  # a machine whose runs agree within about ±2%


@pytest.mark.parametrize("ratio, expected", [
    (1.00, UNCHANGED),
    (1.20, REGRESSION),     # 20% slower: beyond the 5% threshold and the noise
    (0.80, IMPROVEMENT),
    (1.03, UNCHANGED),      # within the threshold, and a 5% slowdown is ruled out
])
def test_on_a_quiet_machine_a_change_counts_only_beyond_the_threshold_and_the_noise(ratio, expected):
    v = compare_results(result(0.01, seed=1), result(0.01 * ratio, seed=2), threshold=0.05, between_runs=QUIET)
    assert v.verdict == expected and v.rule == RULE_SAMPLES
    assert v.change_low <= v.change <= v.change_high
    assert v.change == pytest.approx(ratio - 1, abs=0.01)
    assert v.between_runs == 0.01 and v.noise_source == "settings"
    if expected != UNCHANGED:
        assert v.p_value < 0.05 and (v.change_low > 0 or v.change_high < 0)


def test_the_within_run_test_alone_never_decides():
    # 200 tight samples each side: within one run a 12% change is certain, but two runs of unchanged code
    # on this machine class differ by more than that, so the pair cannot tell
    v = compare_results(result(0.01, seed=1), result(0.0112, seed=2), threshold=0.05)
    assert v.verdict == INCONCLUSIVE and v.noise_source == "A/A default"
    assert "cannot tell a change of" in v.reason and v.detectable > 0.12
    assert v.change_low < 0 < v.change_high  # the interval holds the noise between runs


@pytest.mark.parametrize("sigma", [0.001, 0.01, 0.05, 0.2, 0.6])
def test_a_ten_percent_slowdown_is_never_called_same(sigma):
    v = compare_results(result(0.01, seed=1), result(0.011, seed=2), threshold=0.05,
                        between_runs=BetweenRuns(sigma, "settings"))
    assert v.verdict in (REGRESSION, INCONCLUSIVE)
    assert (v.verdict == REGRESSION) == (sigma <= 0.01)


def test_a_change_far_larger_than_the_noise_is_a_regression_however_noisy_the_samples():
    # 10x slower (+7,890% was let through as "unreliable" before): noisy samples widen the interval, they
    # never set a result aside
    noisy_base, noisy_slow = result(0.01, spread=0.3, n=30, seed=1), result(0.1, spread=0.3, n=30, seed=2)
    v = compare_results(noisy_base, noisy_slow, threshold=0.05, family=18)
    assert v.verdict == REGRESSION and v.change > 5
    # the same samples 5% apart are inconclusive, not "unchanged" and not set aside as noisy
    assert compare_results(noisy_base, result(0.0105, spread=0.3, n=30, seed=2), 0.05).verdict == INCONCLUSIVE


def test_more_benchmarks_judged_at_once_need_a_larger_change_family_wise():
    base, cand = result(0.01, seed=1), result(0.0106, seed=2)
    noise = BetweenRuns(0.02, "settings")
    alone = compare_results(base, cand, 0.05, between_runs=noise)
    among_many = compare_results(base, cand, 0.05, between_runs=noise, family=50)
    assert alone.verdict == REGRESSION and among_many.verdict == INCONCLUSIVE
    assert among_many.detectable > alone.detectable


def test_pooled_reruns_shrink_the_noise_between_runs():
    noise = BetweenRuns(0.15, "settings")
    one = compare_results(result(0.010, seed=1), result(0.013, seed=2), 0.05, between_runs=noise)
    assert one.verdict == INCONCLUSIVE
    bases = [result(0.010 * f, seed=10 + i) for i, f in enumerate((1.0, 0.98, 1.02, 1.0))]
    cands = [result(0.013 * f, seed=20 + i) for i, f in enumerate((1.0, 1.02, 0.98, 1.01))]
    pooled = compare_results(bases, cands, 0.05, between_runs=noise)
    assert pooled.verdict == REGRESSION and (pooled.baseline_runs, pooled.candidate_runs) == (4, 4)
    # re-runs that disagree among themselves more than the assumed noise widen the interval instead
    wild = [result(0.013 * f, seed=30 + i) for i, f in enumerate((0.5, 2.0, 0.6, 1.8))]
    assert compare_results(bases, wild, 0.05, between_runs=noise).verdict == INCONCLUSIVE


def test_for_throughput_higher_is_better():
    v = compare_results(result(1000, metric=THROUGHPUT, seed=1), result(800, metric=THROUGHPUT, seed=2), 0.05,
                        between_runs=QUIET)
    assert (v.verdict, v.better) == (REGRESSION, "higher")


def test_a_throttled_result_is_unreliable_never_a_regression():
    slow = result(0.02, seed=2, throttled=True, throttled_fraction=0.8)
    v = compare_results(result(0.01, seed=1), slow, 0.05, between_runs=QUIET)
    assert v.verdict == UNRELIABLE and "throttled" in v.reason
    assert v.change == pytest.approx(1.0, abs=0.02)  # the change is still shown
    # a throttle bit in a few samples only (below THROTTLE_MIN_FRACTION) does not make it unreliable
    assert compare_results(result(0.01, seed=1), result(0.02, seed=2, throttled=True, throttled_fraction=0.02),
                           0.05, between_runs=QUIET).verdict == REGRESSION


def test_summary_statistics_only_use_the_summary_rule():
    base = ResultRecord(NAME, TIME, median=0.010, q1=0.0099, q3=0.0101, n=100)
    cand = ResultRecord(NAME, TIME, median=0.012, q1=0.0119, q3=0.0121, n=100)
    v = compare_results(base, cand, 0.05, between_runs=QUIET)
    assert (v.verdict, v.rule) == (REGRESSION, RULE_SUMMARY)
    assert v.change_low < 0.2 < v.change_high
    without_spread = ResultRecord(NAME, TIME, median=0.012, n=100)
    assert compare_results(base, without_spread, 0.05).verdict == UNRELIABLE


def test_a_summary_only_speed_up_of_90x_is_faster_not_unreliable():
    # a documented 477 ms -> 5.25 ms speed-up, files with mean, stddev and rounds but no raw data: each
    # run is noisy (the stddev half the mean), yet the change is far beyond that noise and the noise between runs
    base = ResultRecord(NAME, TIME, median=0.477, mean=0.49, stddev=0.24, n=5)
    cand = ResultRecord(NAME, TIME, median=0.00525, mean=0.0056, stddev=0.0028, n=5)
    v = compare_results(base, cand, 0.05, family=52)
    assert (v.verdict, v.rule) == (IMPROVEMENT, RULE_SUMMARY) and v.change == pytest.approx(0.00525 / 0.477 - 1)
    assert compare_results(cand, base, 0.05, family=52).verdict == REGRESSION


def test_single_deterministic_values_compare_by_the_change_itself():
    from bench.history.sources import PEAK_MEMORY

    v = compare_results(ResultRecord(NAME, PEAK_MEMORY, n=1, median=1e9), ResultRecord(NAME, PEAK_MEMORY, n=1, median=1.1e9),
                        0.05)
    assert (v.verdict, v.rule, v.change) == (REGRESSION, RULE_SINGLE, pytest.approx(0.1))


def test_a_window_judges_the_candidate_against_night_to_night_noise():
    rng = np.random.default_rng(3)
    nights = [result(0.01 * float(np.exp(rng.normal(0, 0.01))), seed=i) for i in range(10)]  # 1% between nights
    assert compare_window(nights, result(0.0101, seed=99), 0.05).verdict == UNCHANGED
    v = compare_window(nights, result(0.0125, seed=99), 0.05, 0.025)
    assert (v.verdict, v.rule, v.baseline_n, v.noise_source) == (REGRESSION, RULE_WINDOW, 10, "window")
    # 3% between nights: one night 4% slower may be noise, and a 5% slowdown is not ruled out either
    noisy = [result(0.01 * float(np.exp(rng.normal(0, 0.03))), seed=i) for i in range(10)]
    level = float(np.exp(np.mean(np.log([r.median for r in noisy]))))
    assert compare_window(noisy, result(level * 1.04, seed=99), 0.05).verdict == INCONCLUSIVE
    thr = [result(0.02, seed=i, throttled=True) for i in range(10)]
    assert "reliable night" in compare_window(thr, result(0.0125, seed=99), 0.05, 0.025).reason


def test_per_benchmark_thresholds_come_from_pyproject_exact_names_before_patterns(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.bench.compare]\nthreshold = 0.04\n'
        '[tool.bench.compare.benchmarks]\n'
        f'"{NAME}" = 0.10\n'
        '"*resnet50*" = {{ threshold = 0.02, noise_target = 0.02 }}\n'.replace("{{", "{").replace("}}", "}"))
    s = load_settings(directory=tmp_path)
    assert s.for_benchmark(NAME) == (0.10, 0.05)                      # exact name, brackets and all
    assert s.for_benchmark("x::test[resnet50-bf16]") == (0.02, 0.02)  # glob
    assert s.for_benchmark("other") == (0.04, 0.02)                   # noise target: half the threshold
    assert load_settings(directory=tmp_path / "nowhere") == CompareSettings()
    bad = tmp_path / "bad.toml"
    bad.write_text("[compare]\nthreshhold = 0.1\n")
    with pytest.raises(Exception, match="unknown compare setting"):
        load_settings(bad)


# --------------------------------------------------------------------------- the command


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


QUIET_CLI = ("--between-runs", "0.01")


def test_compare_exit_status_is_0_same_1_slower_3_inconclusive_2_bad_input(tmp_path, capsys):
    base = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    same = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.010})
    slow = write_night(tmp_path, 3, {"mlp-fp32-bs32-cuda": 0.013})
    code, out, _ = _cli(capsys, "compare", base, same, *QUIET_CLI)
    assert code == 0 and out.startswith("Same or faster: none of 2 benchmark metrics is slower by 5% or more")
    code, out, _ = _cli(capsys, "compare", base, slow, "--json", *QUIET_CLI)
    data = json.loads(out)
    assert code == 1 and data["counts"]["regression"] == 2  # step time and throughput
    assert (data["outcome"], data["exit_status"]) == ("slower", 1)
    v = next(x for x in data["verdicts"] if x["metric"] == "step_time")
    assert v["verdict"] == "regression" and 0.25 < v["change"] < 0.35 and v["change_low"] > 0.2
    assert data["baseline"]["path"] == str(base) and data["candidate"]["path"] == str(slow)
    assert _cli(capsys, "compare", base, slow, "--threshold", "0.5", *QUIET_CLI)[0] == 0
    # without a store or calibrated settings: the A/A default, said in the output; +30% cannot be told apart
    code, out, _ = _cli(capsys, "compare", base, slow)
    assert code == 3 and out.startswith("INCONCLUSIVE: the runs cannot tell a change of up to")
    assert "(A/A default for CPU runners); use --db for this series' own noise" in out
    (tmp_path / "broken.json").write_text("{")
    code, _, err = _cli(capsys, "compare", base, tmp_path / "broken.json")
    assert code == 2 and err.startswith("bench compare: error:") and len(err.strip().splitlines()) == 1


def test_a_slowdown_far_beyond_the_noise_is_slower_with_noisy_samples_and_the_a_a_default(tmp_path, capsys):
    names = [f"mlp-fp32-bs{b}-cpu" for b in (4, 16, 64)]
    base = write_night(tmp_path, 1, {n: 0.01 for n in names}, spread=0.3, n=20)
    slow = write_night(tmp_path, 2, {n: 0.04 for n in names}, spread=0.3, n=20)  # 4x (+271% went through before)
    code, out, _ = _cli(capsys, "compare", base, slow)
    assert code == 1 and out.startswith("SLOWER: 6 of 6 benchmark metrics got worse")
    # 2x is within what this machine class's unchanged runs can differ by: not slower, and not a green light
    code, out, _ = _cli(capsys, "compare", base, write_night(tmp_path, 3, {n: 0.02 for n in names}, spread=0.3, n=20))
    assert code == 3 and out.startswith("INCONCLUSIVE")


def test_nothing_compared_is_exit_2_in_one_line(tmp_path, capsys):
    base = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    other = write_night(tmp_path, 2, {"cnn-fp32-bs32-cuda": 0.010})
    code, out, err = _cli(capsys, "compare", base, other)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert "nothing compared: the two runs have no benchmark in common" in err
    empty = json.loads(Path(base).read_text())
    empty["benchmarks"] = []
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    code, out, err = _cli(capsys, "compare", base, tmp_path / "empty.json", "--json")
    assert (code, out) == (2, "") and "nothing compared: the candidate has no benchmark results" in err


def test_the_verdict_line_comes_first_and_the_table_fits_100_columns(tmp_path, capsys):
    long = "transformer-bf16-bs64-cpu-with-a-rather-long-name-that-goes-on"
    base = write_night(tmp_path, 1, {long: 0.010, "mlp-fp32-bs4-cpu": 0.02})
    slow = write_night(tmp_path, 2, {long: 0.031, "mlp-fp32-bs4-cpu": 0.02})
    code, out, _ = _cli(capsys, "compare", base, slow)
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("SLOWER:")
    table = lines[lines.index("") + 1:]
    table = table[:next(i for i, t in enumerate(table) if t.startswith("rule "))]
    assert len(table) == 2 + 4 and max(map(len, table)) <= 100
    assert any(t.endswith("-goes-on] (step_time)") and "…" in t for t in table)
    code, out, _ = _cli(capsys, "compare", base, slow, "--wide")
    assert code == 1 and long in out and "detectable" in out and max(map(len, out.splitlines())) > 100


def test_a_throttled_candidate_is_never_a_green_light(tmp_path, capsys):
    base = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    slow = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.020}, throttled=["mlp-fp32-bs32-cuda"])
    code, out, _ = _cli(capsys, "compare", base, slow, "--json", *QUIET_CLI)
    assert code == 3 and {v["verdict"] for v in json.loads(out)["verdicts"]} == {"unreliable"}
    code, out, _ = _cli(capsys, "compare", base, slow, *QUIET_CLI)
    assert out.startswith("INCONCLUSIVE: 2 could not be judged") and "No regression" not in out


def test_different_hardware_is_refused_unless_cross_hardware(tmp_path, capsys):
    h100 = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    a100 = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.020}, fingerprint=fake_fingerprint("NVIDIA A100-SXM4-80GB"))
    code, _, err = _cli(capsys, "compare", h100, a100)
    assert code == 2 and "different hardware" in err and "--cross-hardware" in err
    code, out, _ = _cli(capsys, "compare", h100, a100, "--cross-hardware", *QUIET_CLI)
    assert code == 1 and "different hardware (--cross-hardware)" in out
    # a software upgrade on the same hardware is compared, and said
    newer = write_night(tmp_path, 3, {"mlp-fp32-bs32-cuda": 0.010}, fingerprint=fake_fingerprint(torch_version="2.14.0"))
    code, out, _ = _cli(capsys, "compare", h100, newer, *QUIET_CLI)
    assert code == 0 and "the software (driver, CUDA, torch, Python, OS) differs" in out


def test_against_last_and_last_good_take_the_baseline_from_the_store(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    n1 = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    n2 = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.013})  # regressed
    n3 = write_night(tmp_path, 3, {"mlp-fp32-bs32-cuda": 0.013})  # still slow
    assert _cli(capsys, "history", "ingest", n1, n2, n3, "--db", db)[0] == 0
    assert _cli(capsys, "compare", n2, "--against", "last", "--db", db, "--record", *QUIET_CLI)[0] == 1
    code, out, _ = _cli(capsys, "compare", n3, "--against", "last", "--db", db, "--json", *QUIET_CLI)
    assert code == 0 and json.loads(out)["baseline"]["run_id"] == 2  # against the slow night: unchanged
    code, out, _ = _cli(capsys, "compare", n3, "--against", "last-good", "--db", db, "--json", *QUIET_CLI)
    assert code == 1 and json.loads(out)["baseline"]["run_id"] == 1  # skips the night recorded as regressed
    assert _cli(capsys, "compare", "run:1", "run:3", "--db", db, *QUIET_CLI)[0] == 1
    code, _, err = _cli(capsys, "compare", n1, "--against", "last", "--db", db)
    assert code == 2 and "no earlier run" in err
    code, _, err = _cli(capsys, "compare", n3, "--against", "window:7", "--db", db)
    assert code == 2 and "need at least 3" in err
    assert _cli(capsys, "compare", n1, n2, n3)[0] == 2


def _quiet_history(tmp_path, capsys, nights=8, sigma=0.01):
    """A store of `nights` unchanged nights whose medians scatter `sigma` (log scale) night to night."""
    db = tmp_path / "h.sqlite"
    rng = np.random.default_rng(7)
    files = [write_night(tmp_path, i, {"mlp-fp32-bs32-cuda": 0.010 * float(np.exp(rng.normal(0, sigma))),
                                       "cnn-fp32-bs32-cuda": 0.020 * float(np.exp(rng.normal(0, 0.2)))})
             for i in range(nights)]
    assert _cli(capsys, "history", "ingest", *files, "--db", db)[0] == 0
    return db, files


def test_with_the_store_each_series_is_judged_against_its_own_night_to_night_noise(tmp_path, capsys):
    db, files = _quiet_history(tmp_path, capsys)
    slow = write_night(tmp_path, 20, {"mlp-fp32-bs32-cuda": 0.0112, "cnn-fp32-bs32-cuda": 0.022})
    code, out, _ = _cli(capsys, "compare", files[-1], slow, "--json")  # files alone: the A/A default
    assert code == 3 and json.loads(out)["between_runs"]["sources"] == {"A/A default": 4}
    code, out, _ = _cli(capsys, "compare", files[-1], slow, "--db", db, "--json")
    data = json.loads(out)
    assert code == 1 and data["between_runs"]["sources"] == {"history": 4}
    v = {(x["benchmark"], x["metric"]): x for x in data["verdicts"]}
    quiet, noisy = v[(f"{NAME[:-19]}mlp-fp32-bs32-cuda]", "step_time")], v[(f"{NAME[:-19]}cnn-fp32-bs32-cuda]", "step_time")]
    assert quiet["verdict"] == "regression" and quiet["between_runs"] < 0.03
    assert noisy["verdict"] == "inconclusive" and noisy["between_runs"] > 0.1
    _, text, _ = _cli(capsys, "compare", files[-1], slow, "--db", db)
    assert "4 from each series' own night-to-night spread in the store" in text


def test_calibrate_prints_and_stores_per_benchmark_thresholds_that_compare_uses(tmp_path, capsys):
    db, files = _quiet_history(tmp_path, capsys)
    code, out, _ = _cli(capsys, "history", "calibrate", "--db", db, "--json")
    rows = {(r["benchmark"].split("[")[1], r["metric"]): r for r in json.loads(out)}
    assert code == 0 and rows[("mlp-fp32-bs32-cuda]", "step_time")]["pairs"] == 7
    assert rows[("mlp-fp32-bs32-cuda]", "step_time")]["sigma"] < rows[("cnn-fp32-bs32-cuda]", "step_time")]["sigma"]
    settings = tmp_path / "calibrated.toml"
    code, out, _ = _cli(capsys, "history", "calibrate", "--db", db, "-o", settings)
    assert code == 0 and "mlp-fp32-bs32-cuda" in out and settings.is_file()
    slow = write_night(tmp_path, 20, {"mlp-fp32-bs32-cuda": 0.0112, "cnn-fp32-bs32-cuda": 0.022})
    code, out, _ = _cli(capsys, "compare", files[-1], slow, "--config", settings, "--json")
    data = json.loads(out)
    assert code == 1 and data["between_runs"]["sources"] == {"settings": 4}
    code, _, err = _cli(capsys, "history", "calibrate", "--db", tmp_path / "none.sqlite")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_record_refuses_an_inconclusive_night_as_a_good_baseline(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    n1 = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    n2 = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.0112})  # +12%: the A/A default cannot tell
    n3 = write_night(tmp_path, 3, {"mlp-fp32-bs32-cuda": 0.010})
    assert _cli(capsys, "history", "ingest", n1, n2, n3, "--db", db)[0] == 0
    code, out, _ = _cli(capsys, "compare", n2, "--against", "last", "--db", db, "--record")
    assert code == 3 and "--record: stored as inconclusive; refused as a good baseline" in out
    code, out, _ = _cli(capsys, "compare", n3, "--against", "last-good", "--db", db, "--json")
    assert json.loads(out)["baseline"]["run_id"] == 1  # the inconclusive night is skipped
    code, out, _ = _cli(capsys, "history", "list", "--db", db, "--json")
    assert [r["verdict"] for r in json.loads(out)] == [None, "inconclusive", None]


FAKE_RUN = """import sys
from pathlib import Path
from bench.history.simulate import write_night
out, median, i = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
write_night(out.parent, 100 + i, {"mlp-fp32-bs32-cuda": median}, name=out.name)
"""


def test_rerun_pools_interleaved_reruns_of_both_sides_into_the_verdict(tmp_path, capsys):
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    base = write_night(tmp_path, 1, {"mlp-fp32-bs32-cuda": 0.010})
    slow = write_night(tmp_path, 2, {"mlp-fp32-bs32-cuda": 0.013})
    noise = ("--between-runs", "0.15")
    code, out, _ = _cli(capsys, "compare", base, slow, *noise)
    assert code == 3
    log = tmp_path / "order.txt"
    run = f"{sys.executable} {fake} {{out}} {{median}} 1 && echo {{side}} >> {log}"
    code, out, err = _cli(capsys, "compare", base, slow, *noise, "--json", "--reruns", "3",
                          "--rerun", run.replace("{median}", "0.013").replace("{side}", "c"),
                          "--rerun-baseline", run.replace("{median}", "0.010").replace("{side}", "b"))
    data = json.loads(out)
    assert code == 1 and data["reruns"]["baseline_runs"] == 4 and data["reruns"]["candidate_runs"] == 4
    assert log.read_text().split() == ["b", "c"] * 3  # interleaved
    assert "re-running the candidate (3 of 3)" in err
    # a same-or-faster first verdict runs nothing; a command that fails is one line, exit 2
    assert _cli(capsys, "compare", base, base, "--between-runs", "0.01", "--rerun", "false {out}")[0] == 0
    code, _, err = _cli(capsys, "compare", base, slow, *noise, "--rerun", "exit 7 {out}")
    errors = [line for line in err.splitlines() if "error" in line]  # beside the progress lines
    assert code == 2 and len(errors) == 1 and "the candidate re-run exited 7" in errors[0]
    code, _, err = _cli(capsys, "compare", base, slow, "--rerun", "pytest")
    assert code == 2 and "{out}" in err


# --------------------------------------------------------------------------- real files

def _run_pytest(args: list[str], cwd: Path, env: dict | None = None) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _scaled(data: dict, factor: float, *, throttle: bool = False) -> dict:
    """The same run with every step `factor` times as long (device samples and host rounds)."""
    out = copy.deepcopy(data)
    for b in out["benchmarks"]:
        b["stats"]["data"] = [v * factor for v in b["stats"]["data"]]
        for k in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
            b["stats"][k] *= factor
        m = b["extra_info"]["measurement"]
        m["samples_s"] = [v * factor for v in m["samples_s"]]
        m["block_medians_s"] = [v * factor for v in m.get("block_medians_s") or []]
        m.pop("stats", None)  # the summary written beside the samples: recomputed from the scaled ones
        if throttle:
            m["telemetry"] = {**(m.get("telemetry") or {}), "throttled": True, "throttled_sample_fraction": 0.5}
    return out


@pytest.mark.slow
def test_compare_on_real_suite_files_from_this_repository(tmp_path, capsys):
    """`pytest suites/ --benchmark-json` with tiny settings, then the same run made slower, faster, and
    slower with its clocks held down, by a factor beyond the spread of its own samples (so the expected
    verdict does not depend on how loaded this machine was)."""
    a = tmp_path / "a.json"
    _run_pytest(["suites/", "--bench-subset", "cpu", "--bench-workloads", "mlp", "--bench-precisions", "fp32",
                 "--bench-batch-sizes", "4,16", "--bench-budget", "0.5", "--bench-cpu-threads", "1",
                 "--benchmark-json", str(a)], cwd=REPO)
    data = json.loads(a.read_text())
    assert len(data["benchmarks"]) == 2
    measurements = [b["extra_info"]["measurement"] for b in data["benchmarks"]]
    assert min(len(m["samples_s"]) for m in measurements) >= 5
    spread = max(max(m["samples_s"]) / min(m["samples_s"]) for m in measurements) * 1.01
    files = {}
    for name, factor, throttle in (("slow", spread, False), ("fast", 1 / spread, False), ("throttled", spread, True)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(_scaled(data, factor, throttle=throttle)))

    # the same file twice: no change, never slower; with the A/A default the pair cannot rule out 5%
    code, out, _ = _cli(capsys, "compare", a, a, "--json")
    verdicts = json.loads(out)["verdicts"]
    assert code == 3 and len(verdicts) == 4  # 2 benchmarks x (step time, throughput)
    assert all(v["verdict"] == "inconclusive" and v["change"] == 0 for v in verdicts)
    # on a machine whose runs agree within ±2%, the verdicts follow the change (a factor beyond the samples' spread)
    quiet = ["--between-runs", "0.01"]
    for name, verdict, status in (("slow", "regression", 1), ("fast", "improvement", 0), ("throttled", "unreliable", 3)):
        code, out, _ = _cli(capsys, "compare", a, files[name], "--json", *quiet)
        assert (code, {v["verdict"] for v in json.loads(out)["verdicts"]}) == (status, {verdict}), out


FOREIGN_SUITE = '''
import os
import time


def test_sleep(benchmark):
    benchmark.pedantic(time.sleep, args=(float(os.environ["FOREIGN_SLEEP_S"]),), rounds=40, iterations=1)


def test_sum(benchmark):
    benchmark(sum, range(1000))
'''


@pytest.mark.slow
def test_compare_works_on_another_projects_plain_pytest_benchmark_files(tmp_path, capsys):
    suite = tmp_path / "foreign"
    suite.mkdir()
    (suite / "test_foreign.py").write_text(FOREIGN_SUITE)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _run_pytest(["test_foreign.py", "--benchmark-json", str(a)], cwd=suite, env={"FOREIGN_SLEEP_S": "0.002"})
    _run_pytest(["test_foreign.py", "--benchmark-json", str(b)], cwd=suite, env={"FOREIGN_SLEEP_S": "0.050"})
    sleep = "test_foreign.py::test_sleep"
    code, out, _ = _cli(capsys, "compare", a, b, "--json")  # 25x: beyond even the A/A default noise, and a busy host
    v = {x["benchmark"]: x for x in json.loads(out)["verdicts"]}
    assert v[sleep]["verdict"] == "regression" and v[sleep]["rule"] == "samples" and code == 1
    assert v[sleep]["metric"] == "time" and v[sleep]["change"] > 2
    code, out, _ = _cli(capsys, "compare", a, a, "--json", "--between-runs", "0.001")
    assert code in (0, 3) and {x["verdict"] for x in json.loads(out)["verdicts"]} <= {"unchanged", "inconclusive"}
    # saved without raw rounds: the summary rule, and the output says so
    summary = json.loads(b.read_text())
    for bench in summary["benchmarks"]:
        del bench["stats"]["data"]
    s = tmp_path / "summary.json"
    s.write_text(json.dumps(summary))
    code, out, _ = _cli(capsys, "compare", a, s)
    assert code == 1 and "rule 'summary': summary statistics only" in out


def _verdicts(changes, *, metric=STEP_TIME, better="lower"):
    from bench.analysis.compare import BenchmarkVerdict

    return [BenchmarkVerdict(f"b{i}", metric, "s", better, UNRELIABLE, None, 0.05, 0.025, change=c)
            for i, c in enumerate(changes)]


def test_benchmarks_that_all_moved_one_way_are_a_common_shift_by_a_sign_test():
    from bench.analysis.compare import common_shift

    cs = common_shift(_verdicts([-0.08, -0.2, -0.12, -0.3, -0.05, -0.1, -0.15, -0.09]))
    assert (cs.n, cs.better, cs.worse) == (8, 8, 0) and cs.direction == IMPROVEMENT
    assert cs.p_value == pytest.approx(2 * 0.5 ** 8) and cs.median_change == pytest.approx(-0.11)
    # Throughput is higher-is-better: falling everywhere is worse everywhere.
    assert common_shift(_verdicts([-0.1] * 8, metric=THROUGHPUT, better="higher")).direction == REGRESSION
    # Mixed directions, or too few benchmarks to tell, are no common shift.
    assert common_shift(_verdicts([-0.1, 0.1] * 5)) is None
    assert common_shift(_verdicts([-0.1] * 5)) is None  # 2 · 0.5^5 = 0.0625 cannot reach p < 0.01


def test_step_time_and_throughput_of_one_benchmark_count_once():
    from bench.analysis.compare import common_shift

    both = _verdicts([-0.1] * 4) + _verdicts([0.11] * 4, metric=THROUGHPUT, better="higher")
    assert common_shift(both) is None  # 4 benchmarks, not 8 observations


def test_compare_says_when_every_benchmark_moved_together(tmp_path, capsys):
    medians = {f"suites/test_step_time.py::test_step_time[mlp-fp32-bs{b}-cpu]": 1e-3 * b for b in range(1, 9)}
    base = write_night(tmp_path, 0, medians)
    cand = write_night(tmp_path, 1, {k: v * 0.8 for k, v in medians.items()})  # a faster machine, say
    assert main(["compare", str(base), str(cand), "--between-runs", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "the benchmarks moved together: 8 of 8 got better (median change -20.0%; two-sided sign test p = 0.0078)" in out
    assert main(["compare", str(base), str(cand), "--json", "--between-runs", "0.01"]) == 0
    shift = json.loads(capsys.readouterr().out)["common_shift"]
    assert shift["better"] == 8 and shift["direction"] == IMPROVEMENT


def test_a_noisy_reason_never_shows_the_ci_rounded_to_the_target():
    from bench.analysis.compare import percents_apart, unreliable_reason

    assert percents_apart(0.02504, 0.025) == ("2.504%", "2.500%")
    assert percents_apart(0.031, 0.025) == ("3.1%", "2.5%")
    def summary(halfwidth):
        return ResultRecord(NAME, STEP_TIME, n=30, median=0.01, ci_rel_halfwidth=halfwidth)

    why = unreliable_reason(summary(0.02504), 0.025)
    assert why == "noisy: its median's 95% CI is ±2.504%, wider than the noise target ±2.500%"
    assert unreliable_reason(summary(0.025), 0.025) is None  # equal is not wider


def test_the_a_a_script_counts_false_alarms_and_catches_from_the_runs_it_collected(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_aa", REPO / "scripts" / "compare_aa.py")
    aa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(aa)
    rng = np.random.default_rng(11)
    for i in range(12):  # 12 unchanged runs whose medians scatter 1% between runs
        write_night(tmp_path, i, {f"mlp-fp32-bs{b}-cpu": 0.01 * b * float(np.exp(rng.normal(0, 0.01)))
                                  for b in (4, 16)}, name=f"a{i:03d}.json")
    quiet = aa.judge(tmp_path, sigma=0.02)
    assert quiet["pairs"]["A/A"]["n"] == 11 and "1" not in quiet["pairs"]["A/A"]["exit"]
    assert quiet["pairs"]["A/A"]["exit"]["0"] >= 8
    assert quiet["pairs"]["next A run's samples x3"]["exit"] == {"1": 11}
    assert "0" not in quiet["pairs"]["next A run's samples x1.1"]["exit"]
    loud = aa.judge(tmp_path, sigma=0.5, reruns=2)  # the pair cannot tell; re-runs are pooled, never a false alarm
    assert loud["pairs"]["A/A"]["exit"].get("1", 0) == 0 and loud["reruns"] == 2
    own = aa.judge(tmp_path, calibrated=True)
    assert own["pairs"]["A/A"]["n"] == 10 and own["pairs"]["A/A"]["exit"].get("1", 0) == 0
    assert set(own["between_runs"]) == {f"suites/test_step_time.py::test_step_time[mlp-fp32-bs{b}-cpu] ({m})"
                                        for b in (4, 16) for m in ("step_time", "throughput")}


def test_calibrated_settings_keep_any_benchmark_name_and_need_enough_nights(tmp_path):
    from bench.analysis.calibrate import MIN_PAIRS, SeriesNoise, settings_toml, spread

    assert spread([0.01] * MIN_PAIRS) == (None, None)  # MIN_PAIRS - 1 pairs: too few
    sigma, q = spread([0.01, 0.0102, 0.0099, 0.0101, 0.01, 0.0103, 0.0098])
    assert 0.005 < sigma < 0.05 and 0 < q < 0.05
    # one wild pair among quiet ones: the tail estimate keeps the gate from trusting the quiet middle alone
    wild, _ = spread([0.01, 0.0101, 0.01, 0.0101, 0.01, 0.0101, 0.01, 0.0101, 0.03, 0.0101, 0.01])
    assert wild > 0.1
    name = 'odd "name" \\ with [brackets]\tand a tab'
    path = tmp_path / "cal.toml"
    path.write_text(settings_toml([SeriesNoise("h", "H", name, STEP_TIME, 9, 8, 0.031, 0.07, 0.0725)]))
    s = load_settings(path)
    assert s.between_runs_for(name) == pytest.approx(0.031) and s.for_benchmark(name)[0] == pytest.approx(0.0725)
