"""`bench history calibrate` in words: each series' noise between runs and the threshold it suggests."""

from __future__ import annotations

from typing import Sequence

from bench.analysis.calibrate import MIN_PAIRS, THRESHOLD_QUANTILE
from bench.present.nightly import _table


def calibration_lines(noises: Sequence, where: str) -> list[str]:
    if not noises:
        return [f"{where}: no series to calibrate"]
    ok = [n for n in noises if n.sigma is not None]
    rows = [[n.benchmark, n.metric, n.hardware_label, str(n.nights),
             "—" if n.sigma is None else f"±{n.sigma:.1%}",
             "—" if n.threshold is None else f"{n.threshold:.1%}"] for n in noises]
    return [f"{len(ok)} of {len(noises)} series calibrated from {where} (at least {MIN_PAIRS} pairs of consecutive "
            f"reliable nights; sd of the log ratio of two nights' medians: the larger of its robust and its tail "
            f"estimate; threshold: two unchanged "
            f"nights stay within it {THRESHOLD_QUANTILE:.0%} of the time)",
            *_table(rows, ["benchmark", "metric", "machine", "nights", "between runs (sd)", "threshold"])]
