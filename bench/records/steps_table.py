"""A table of steps to target a user already has (their own runs, an MLPerf reference convergence table, a
paper's table), and the record of its scaling fit (`bench fit`).

CSV columns: `batch_size` and one of `steps`, `examples` or `epochs` to target (epochs need the training
set size), optional `seed` and `reached` (false: the run stopped without reaching the target, and the
value is how far it got, a lower bound). Several rows per batch size are seeds. Lines starting with `#`
are comments: a table copied from a paper keeps its citation.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import check_input_file, read_json
from bench.records.tables import boolean, number, read_csv
from bench.records.tta import BatchSteps, ScalingFit

UNITS = ("steps", "examples", "epochs")


@dataclass
class StepsRow:
    """One run: its batch size, steps to target (converted from examples or epochs where given so) and
    whether it reached the target (if not, `steps` is a lower bound)."""

    batch_size: int
    steps: float
    reached: bool = True
    seed: int | None = None
    row: int | None = None  # 1-based data row in the file, for messages


@dataclass
class StepsTable:
    """The rows of a steps-to-target table, the unit it was given in, and its comment lines."""

    rows: list[StepsRow]
    unit: str = "steps"
    source: str | None = None
    dataset_size: int | None = None
    comments: list[str] = field(default_factory=list)


# MLPerf reference convergence points (mlcommons/logging, mlperf_logging/rcp_checker/training_*/rcps_*.json):
# {"<name>": {"Benchmark": ..., "BS": batch size, "Epochs to converge": [one value per reference run], ...}}.
# Despite the key, some benchmarks count training samples there, not epochs: BERT's values are samples
# (batch 256: ~2.5M, ~9.9k steps within its 13,700-step schedule).
RCP_KEY_BATCH, RCP_KEY_RUNS = "BS", "Epochs to converge"
RCP_SAMPLE_BENCHMARKS = ("bert",)


def read_rcp_table(path: str | os.PathLike, *, dataset_size: int | None = None, unit: str | None = None) -> StepsTable:
    """An MLPerf reference-convergence-point JSON (rcps_*.json) as a steps table: every value of an entry's
    "Epochs to converge" is one reference run at its batch size "BS". `unit` (default: examples for the
    benchmarks that count samples there, RCP_SAMPLE_BENCHMARKS, else epochs, which need `dataset_size`)."""
    p = Path(path)
    not_rcp = f"{p}: not an MLPerf reference-convergence-point (RCP) file"
    try:
        data = read_json(p)  # regular files under the input limit only: a FIFO or a device is refused unread
    except InvalidResultsFile as e:
        raise BenchError(f"{not_rcp}: {str(e).removeprefix(f'{p}: ')}") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(v, dict) and RCP_KEY_BATCH in v and RCP_KEY_RUNS in v for v in data.values()):
        raise BenchError(f"{not_rcp}: expected an object of entries, each with {RCP_KEY_BATCH!r} and "
                         f"{RCP_KEY_RUNS!r}")
    benchmarks = sorted({str(v.get("Benchmark", "")).lower() for v in data.values()})
    if unit is None:
        unit = "examples" if benchmarks and all(b in RCP_SAMPLE_BENCHMARKS for b in benchmarks) else "epochs"
    if unit not in UNITS:
        raise BenchError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if unit == "epochs" and dataset_size is None:
        raise BenchError(f"{p}: RCP values of {', '.join(benchmarks) or 'this benchmark'} are epochs to target; "
                         "give the training set size (--dataset-size N) to turn them into steps")
    out, row = [], 0
    for name, entry in data.items():
        b = entry[RCP_KEY_BATCH]
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise BenchError(f"{p}: entry {name!r}: {RCP_KEY_BATCH} must be a whole number >= 1, got {b!r}")
        runs = entry[RCP_KEY_RUNS]
        if not isinstance(runs, list) or not runs:
            raise BenchError(f"{p}: entry {name!r}: {RCP_KEY_RUNS!r} must be a non-empty list of numbers")
        for seed, v in enumerate(runs):
            row += 1
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > 0:
                raise BenchError(f"{p}: entry {name!r}, run {seed + 1}: {unit} to target must be a number > 0, "
                                 f"got {v!r}")
            steps = v if unit == "steps" else v / b if unit == "examples" else v * dataset_size / b
            out.append(StepsRow(b, float(steps), True, seed, row))
    comments = [f"MLPerf reference convergence points ({', '.join(benchmarks)}) from {p.name}: {len(data)} entries; "
                f"{RCP_KEY_RUNS!r} read as {unit}"]
    return StepsTable(out, unit, str(p), dataset_size, comments)


def read_steps_table(path: str | os.PathLike, *, dataset_size: int | None = None, unit: str | None = None) -> StepsTable:
    """Read a steps-to-target CSV, or an MLPerf RCP JSON (`read_rcp_table`; `unit` applies to it); one-line
    BenchError naming the file (and row) for anything wrong."""
    p = Path(path)
    check_input_file(p)  # one line for a missing file, a folder, a FIFO, a device or a file over the limit
    if dataset_size is not None and not (isinstance(dataset_size, int) and dataset_size >= 1):
        raise BenchError(f"dataset size must be a whole number >= 1, got {dataset_size!r}")
    if p.suffix.lower() == ".json":
        return read_rcp_table(p, dataset_size=dataset_size, unit=unit)
    rows = read_csv(p, required=("batch_size",), one_of=(UNITS,),
                    needs="batch_size and one of steps, examples or epochs to target [, seed, reached]")
    header = set().union(*(r.keys() for r in rows)) if rows else set()
    units = [u for u in UNITS if u in header]
    if len(units) > 1:
        raise BenchError(f"{p}: give one of steps, examples or epochs to target, not {' and '.join(units)}")
    unit = units[0] if units else "steps"
    if unit == "epochs" and dataset_size is None:
        raise BenchError(f"{p}: epochs to target need the training set size (--dataset-size N) to become steps")
    if not rows:
        raise BenchError(f"{p}: no rows")
    out = []
    for i, r in enumerate(rows):
        where = f"{p}: row {i + 1}"
        b = number(r.get("batch_size"), "batch_size", where, integer=True)
        if b < 1:
            raise BenchError(f"{where}: batch_size must be >= 1, got {b}")
        v = number(r.get(unit), unit, where)
        if not v > 0:
            raise BenchError(f"{where}: {unit} must be > 0, got {v:g}")
        steps = v if unit == "steps" else v / b if unit == "examples" else v * dataset_size / b
        out.append(StepsRow(b, float(steps), boolean(r.get("reached"), "reached", where, True),
                            number(r.get("seed"), "seed", where, integer=True, required=False), i + 1))
    try:
        comments = [line[1:].strip() for line in p.read_text(encoding="utf-8-sig").splitlines()
                    if line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError):
        comments = []
    return StepsTable(out, unit, str(p), dataset_size, comments)


@dataclass
class TableFit:
    """`bench fit`: the table's batch sizes (mean steps over seeds, or a lower bound where none
    reached), the fit S(B) = S_min·(1 + B_crit/B) with its intervals, and E_min in epochs where the
    training set size is known."""

    source: str | None
    unit: str
    dataset_size: int | None
    batches: list[BatchSteps]
    fit: ScalingFit
    e_min_epochs: float | None = None
    e_min_epochs_ci: list[float] | None = None
    critical_batch: dict[str, Any] = field(default_factory=dict)  # each definition (scaling.critical_batch_definitions)
    comments: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = [b.to_dict() for b in self.batches]
        d["fit"] = self.fit.to_dict()
        return d
