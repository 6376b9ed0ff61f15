"""scripts/compare_timer.py: the interval it prints for the per-round ratio, and one tiny run end to end."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_timer.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_timer", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_per_round_ratio_gets_an_order_statistic_interval_or_none_under_six_rounds():
    mod = _load()
    ratios = [0.95, 1.10, 1.02, 0.99, 1.01, 1.00, 0.98, 1.03]
    lo, hi = mod.ratio_ci(ratios)
    # 8 rounds: the distribution-free 95% interval of the median is [x_(1), x_(8)], the extremes.
    assert (lo, hi) == (0.95, 1.10)
    assert mod.describe_ci([lo, hi], 8) == "95% CI -5.0% to +10.0%"
    assert mod.ratio_ci(ratios[:5]) is None
    assert mod.describe_ci(None, 5) == "no 95% CI from 5 rounds: run at least 6"
    wide = sorted(ratios * 3)  # 24 rounds: the interval leaves out the extremes
    assert mod.ratio_ci(wide)[0] > min(wide) and mod.ratio_ci(wide)[1] < max(wide)


@pytest.mark.slow
def test_a_tiny_comparison_runs_and_writes_its_rounds(tmp_path, capsys):
    mod = _load()
    out = tmp_path / "cmp.json"
    rc = mod.main(["-a", "in_features=8", "-a", "hidden=8", "-a", "depth=1", "--batch-sizes", "4",
                   "--rounds", "6", "--budget", "0.2", "--min-time", "0.02", "--threads", "1", "--json", str(out)])
    assert rc == 0
    row = json.loads(out.read_text())["rows"][0]
    assert len(row["harness_round_medians_s"]) == len(row["torch_benchmark_round_medians_s"]) == 6
    lo, hi = row["paired_ratio_ci95"]
    assert lo <= row["paired_ratio_median"] <= hi
    assert "95% CI" in capsys.readouterr().out
