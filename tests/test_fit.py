"""`bench fit`: the scaling fit of a steps-to-target table a user already has (their runs, a published
table), with intervals, regimes, residuals, censored rows, epochs, JSON and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.scaling import PERFECT, fit_table
from bench.cli import main
from bench.core.errors import BenchError
from bench.records.steps_table import read_steps_table
from bench.records.tta import steps_model

MLPERF_BERT = Path(__file__).parent / "data" / "mlperf_bert_rcps_v3.1.csv"
S_MIN, B_CRIT = 100.0, 512.0
SIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]


def synthetic_table(tmp_path, unit="steps", dataset_size=50_000, seeds=3, extra_rows=()) -> Path:
    """A table of known B_crit: S = 100·(1 + 512/B) times fixed 5% log-normal seed noise."""
    rng = np.random.default_rng(2026)
    rows = [f"batch_size,{unit},seed,reached"]
    for b in SIZES:
        for s in range(seeds):
            steps = float(steps_model(b, S_MIN, B_CRIT)) * math.exp(0.05 * rng.standard_normal())
            value = {"steps": steps, "examples": steps * b, "epochs": steps * b / dataset_size}[unit]
            rows.append(f"{b},{value!r},{s},true")
    rows += list(extra_rows)
    p = tmp_path / f"table-{unit}.csv"
    p.write_text("# a synthetic table: S = 100 (1 + 512/B)\n" + "\n".join(rows) + "\n")
    return p


def test_a_synthetic_table_of_known_critical_batch_is_recovered_within_5_percent(tmp_path):
    tf = fit_table(read_steps_table(synthetic_table(tmp_path)))
    f = tf.fit
    assert f.b_crit == pytest.approx(B_CRIT, rel=0.05) and f.s_min == pytest.approx(S_MIN, rel=0.05)
    assert f.b_crit_ci[0] <= B_CRIT <= f.b_crit_ci[1]
    assert [b.n_runs for b in tf.batches] == [3] * len(SIZES)
    assert f.regimes["32"] == PERFECT and set(f.residuals) == {str(b) for b in SIZES}
    assert tf.comments == ["a synthetic table: S = 100 (1 + 512/B)"]


def test_epochs_to_target_with_the_dataset_size_give_the_same_fit_and_e_min_in_epochs(tmp_path):
    steps = fit_table(read_steps_table(synthetic_table(tmp_path))).fit
    tf = fit_table(read_steps_table(synthetic_table(tmp_path, "epochs"), dataset_size=50_000))
    assert tf.fit.b_crit == pytest.approx(steps.b_crit, rel=1e-6) and tf.unit == "epochs"
    assert tf.e_min_epochs == pytest.approx(tf.fit.e_min / 50_000)
    assert tf.e_min_epochs_ci == [pytest.approx(v / 50_000) for v in tf.fit.e_min_ci]
    examples = fit_table(read_steps_table(synthetic_table(tmp_path, "examples")))
    assert examples.fit.b_crit == pytest.approx(steps.b_crit, rel=1e-6)
    assert examples.e_min_epochs is None and "--dataset-size" in examples.null_reasons["e_min_epochs"]


def test_rows_that_did_not_reach_the_target_are_lower_bounds_not_data(tmp_path):
    table = synthetic_table(tmp_path, extra_rows=["16384,90,0,false", "16384,95,1,false"])
    tf = fit_table(read_steps_table(table))
    (censored,) = [b for b in tf.batches if not b.reached]
    assert censored.batch_size == 16384 and censored.censored_at == pytest.approx(92.5)
    assert tf.fit.censored_used == [16384] and tf.fit.regimes["16384"] is None
    assert "16384" not in tf.fit.residuals


@pytest.mark.parametrize("text, message", [
    ("batch_size,steps\n8,100\n", None),
    ("batch_size,epochs\n8,1.5\n", "epochs to target need the training set size (--dataset-size N)"),
    ("batch_size,steps,epochs\n8,1,1\n", "give one of steps, examples or epochs to target, not steps and epochs"),
    ("batch_size,loss\n8,1\n", "missing column(s) steps or examples or epochs"),
    ("batch_size,steps,reached\n8,100,maybe\n", "row 1: reached must be true or false, got 'maybe'"),
    ("batch_size,steps\n8,0\n", "row 1: steps must be > 0"),
    ("batch_size,steps\n0,10\n", "row 1: batch_size must be >= 1"),
])
def test_a_bad_table_is_refused_in_one_line_naming_the_file_and_row(tmp_path, text, message):
    p = tmp_path / "t.csv"
    p.write_text(text)
    if message is None:
        assert read_steps_table(p).rows[0].steps == 100
        return
    with pytest.raises(BenchError) as e:
        read_steps_table(p)
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_cli_prints_the_fit_the_regimes_and_the_residuals(tmp_path, capsys):
    table = synthetic_table(tmp_path, "epochs")
    assert main(["fit", str(table), "--dataset-size", "50000"]) == 0
    out = capsys.readouterr().out
    assert "Critical batch size B_crit = " in out and "(95% profile likelihood)" in out
    assert "E_min = " in out and "epochs [" in out and "of the 50,000 training examples" in out
    assert "Regimes: perfect scaling at batch 32" in out and "residual" in out


def test_cli_json_and_plot(tmp_path, capsys):
    table, svg = synthetic_table(tmp_path), tmp_path / "fit.svg"
    assert main(["fit", str(table), "--json", "--plot", str(svg)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fit"]["b_crit"] == pytest.approx(B_CRIT, rel=0.05) and data["unit"] == "steps"
    assert len(data["batches"]) == len(SIZES)
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in text
    assert "S(B) = S_min·(1 + B_crit/B)" in text
    assert main(["fit", str(table), "--plot", str(svg)]) == 2  # exists: not replaced without --overwrite
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- a published table


def test_the_published_mlperf_bert_table_goes_in_without_code_and_its_seeds_reject_the_curve(capsys):
    """MLPerf Training v3.1 BERT reference convergence points: 263 reference runs at 13 batch sizes. Its
    seeds' spread is far smaller than the curve's misses, so the lack-of-fit test rejects the hyperbola
    and no (narrow, misplaced) interval is printed."""
    tf = fit_table(read_steps_table(MLPERF_BERT))
    f = tf.fit
    assert tf.unit == "examples" and sum(b.n_runs for b in tf.batches) == 263 and len(tf.batches) == 13
    assert f.lack_of_fit["df"] == [11, 250] and f.lack_of_fit["p_value"] < 1e-40 and f.fits is False
    assert f.b_crit_ci is None and "does not fit" in f.null_reasons["b_crit_ci"]
    assert f.noise_model["sd_ratio"] < 0.5  # the seeds spread less at the large batch sizes
    assert f.b_crit == pytest.approx(11_570, rel=0.01) and f.rel_rms_residual < 0.07
    assert any("MLCommons" in c for c in tf.comments)
    assert main(["fit", str(MLPERF_BERT)]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out and "[" not in out.split("B_crit")[1].split(";")[0]


def test_without_lack_of_fit_the_fit_on_simulated_seeds_keeps_its_interval():
    import numpy as np

    from bench.records.tta import BatchSteps, LRCell, steps_model

    rng = np.random.default_rng(3)
    batches = []
    for b in (16, 32, 64, 128, 256, 512, 1024):
        per_seed = [float(steps_model(b, 100.0, 256.0)) * float(np.exp(0.1 * z)) for z in rng.standard_normal(3)]
        batches.append(BatchSteps(b, 0.1, float(np.mean(per_seed)), steps_per_seed=per_seed, seeds=[0, 1, 2],
                                  lr_cells=[LRCell(0.1, 1.0, [0, 1, 2], per_seed, float(np.mean(per_seed)))]))
    from bench.analysis.scaling import fit_scaling

    f = fit_scaling(batches)
    assert f.fits is True and f.lack_of_fit["p_value"] > 0.001 and f.b_crit_ci[0] < 256 < f.b_crit_ci[1]
    # The same means bent into a sharper knee than the hyperbola: the seeds expose it.
    for b in batches:
        bend = float(np.exp(0.3 * np.cos(1.5 * np.log2(b.batch_size))))
        b.steps_per_seed = [x * bend for x in b.steps_per_seed]
        b.steps_to_target = float(np.mean(b.steps_per_seed))
        b.lr_cells[0].steps_per_seed, b.lr_cells[0].steps_to_target = b.steps_per_seed, b.steps_to_target
    f = fit_scaling(batches)
    assert f.fits is False and f.b_crit_ci is None and any("does not fit" in w for w in f.warnings)


def test_two_independent_halves_of_the_published_seeds_reach_the_same_verdict(tmp_path):
    """Split the seeds in two: each half rejects the curve, and their point estimates agree."""
    lines = MLPERF_BERT.read_text().splitlines()
    header, rows = lines[[i for i, l in enumerate(lines) if l.startswith("batch_size")][0]], \
        [l for l in lines if l and l[0].isdigit()]
    halves = []
    for parity in (0, 1):
        p = tmp_path / f"half{parity}.csv"
        p.write_text("\n".join([header] + [r for r in rows if int(r.split(",")[2]) % 2 == parity]) + "\n")
        halves.append(fit_table(read_steps_table(p)).fit)
    a, b = halves
    assert a.fits is False and b.fits is False  # each half alone rejects the curve too
    assert a.b_crit == pytest.approx(b.b_crit, rel=0.25)


def test_bench_fit_into_a_closed_pipe_stops_in_one_line_with_exit_141():
    # `bench fit TABLE | head -1`, made deterministic: the pipe's read end is closed before bench writes.
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "bench", "fit", str(MLPERF_BERT)], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert r.stderr == "bench fit: standard output was closed (broken pipe), so it stopped\n"


def _rcp_from_csv(path, tmp_path):
    """The MLPerf RCP JSON the BERT CSV was copied from, rebuilt in its own format (rcps_bert.json)."""
    by_batch = {}
    for line in MLPERF_BERT.read_text().splitlines():
        if line and line[0].isdigit():
            b, examples, _ = line.split(",")
            by_batch.setdefault(int(b), []).append(int(examples))
    data = {f"bert_ref_{b}": {"Benchmark": "bert", "Creator": "x", "BS": b, "Hyperparams": {},
                              "Epochs to converge": v} for b, v in by_batch.items()}
    out = tmp_path / "rcps_bert.json"
    out.write_text(json.dumps(data, indent=1))
    return out


def test_an_mlperf_rcp_json_goes_in_directly_and_fits_as_the_csv_copied_from_it(tmp_path, capsys):
    rcp = _rcp_from_csv(MLPERF_BERT, tmp_path)
    from_json, from_csv = fit_table(read_steps_table(rcp)), fit_table(read_steps_table(MLPERF_BERT))
    assert from_json.unit == "examples" and sum(b.n_runs for b in from_json.batches) == 263
    assert from_json.fit.b_crit == pytest.approx(from_csv.fit.b_crit, rel=1e-9)
    assert from_json.fit.lack_of_fit["p_value"] == pytest.approx(from_csv.fit.lack_of_fit["p_value"], rel=1e-6)
    assert main(["fit", str(rcp), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fit"]["lack_of_fit"]["p_value"] < 1e-40
    # Other benchmarks count epochs there: they need the training set size.
    assert main(["fit", str(rcp), "--rcp-unit", "epochs"]) == 2
    assert "--dataset-size" in capsys.readouterr().err


@pytest.mark.parametrize("name,text,message", [
    ("x.json", '{"a": 1}', "not an MLPerf reference-convergence-point (RCP) file"),
    ("x.json", "[1, 2", "not an MLPerf reference-convergence-point (RCP) file: not valid JSON"),
    ("x.json", '{"r": {"Benchmark": "bert", "BS": 8, "Epochs to converge": [100, -5]}}', "run 2: examples to target must be a number > 0"),
    ("x.json", '{"r": {"Benchmark": "bert", "BS": 8, "Epochs to converge": [100, 120]}}', "one batch size (8)"),
    ("x.csv", "batch_size,steps,reached\n8,100,false\n16,60,false\n32,40,false\n", "no run reached the target at any"),
    ("x.csv", "batch_size,steps\n8,100\n16,-60\n", "steps must be > 0"),
])
def test_a_bad_table_or_rcp_file_is_one_line_and_exit_2(tmp_path, capsys, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    assert main(["fit", str(p)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_tolerance_critical_batch_of_a_hyperbola_is_1_2_b0_plus_0_2_b_crit_measured_and_fitted(tmp_path, capsys):
    # S = 100·(1 + 256/B) on a dense grid: where steps exceed perfect scaling from B0 = 16 by 20%,
    # a·B + b = 1.2·(a·B0 + b), i.e. B = 1.2·16 + 0.2·256 = 70.4, read off the measured steps and the fit.
    sizes = sorted({int(round(16 * 1.05 ** k)) for k in range(60)})
    p = tmp_path / "t.csv"
    p.write_text("batch_size,steps\n" + "".join(f"{b},{float(steps_model(b, 100.0, 256.0))}\n" for b in sizes))
    tf = fit_table(read_steps_table(p))
    tol = tf.critical_batch["tolerance"]
    assert tol["reference_batch"] == 16 and tol["from_fit"] == pytest.approx(1.2 * 16 + 0.2 * 256, rel=1e-6)
    assert tol["measured"] == pytest.approx(70.4, rel=0.01)
    assert tf.critical_batch["mccandlish"]["b_crit"] == pytest.approx(256, rel=1e-6)
    wider = fit_table(read_steps_table(p), reference_batch=32, tolerance=0.5)
    assert wider.critical_batch["tolerance"]["from_fit"] == pytest.approx(1.5 * 32 + 0.5 * 256, rel=1e-6)
    assert main(["fit", str(p), "--reference-batch", "15"]) == 2
    assert "reference batch 15 is not one of the batch sizes" in capsys.readouterr().err
    assert main(["fit", str(p)]) == 0
    assert "(1 + 0.2)·16 + 0.2·B_crit = 70.4" in capsys.readouterr().out.replace("\n", " ")


def test_without_seeds_a_runs_test_on_the_residual_signs_catches_a_curve_of_the_wrong_shape(tmp_path):
    sizes = [16 * 2 ** k for k in range(12)]
    sharp = tmp_path / "sharp.csv"  # a sharper knee than the hyperbola, one run per batch size
    sharp.write_text("batch_size,steps\n" + "".join(f"{b},{100 * (1 + (256 / b) ** 2) ** 0.5}\n" for b in sizes))
    f = fit_table(read_steps_table(sharp)).fit
    assert f.lack_of_fit["test"].startswith("runs test") and f.lack_of_fit["p_value"] < 0.05
    assert f.fits is False and f.b_crit_ci is None
    noisy = tmp_path / "noisy.csv"  # the hyperbola itself, alternating noise: no pattern
    noisy.write_text("batch_size,steps\n" + "".join(
        f"{b},{float(steps_model(b, 100.0, 256.0)) * (1.05 if i % 2 else 0.95)}\n" for i, b in enumerate(sizes)))
    f = fit_table(read_steps_table(noisy)).fit
    assert f.lack_of_fit["test"].startswith("runs test") and f.fits is True and f.b_crit_ci is not None
