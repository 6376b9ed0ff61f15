"""A table of steps to target a user already has (their own runs, an MLPerf reference convergence table, a
paper's table), and the record of its scaling fit (`bench fit`).

CSV columns: `batch_size` and one of `steps`, `examples` or `epochs` to target (epochs need the training
set size), optional `seed` and `reached` (false: the run stopped without reaching the target, and the
value is how far it got, a lower bound). Several rows per batch size are seeds. Lines starting with `#`
are comments: a table copied from a paper keeps its citation.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
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


def read_steps_table(path: str | os.PathLike, *, dataset_size: int | None = None) -> StepsTable:
    """Read a steps-to-target CSV; one-line BenchError naming the file (and row) for anything wrong."""
    p = Path(path)
    if not p.exists():
        raise BenchError(f"{p}: no such file")
    if dataset_size is not None and not (isinstance(dataset_size, int) and dataset_size >= 1):
        raise BenchError(f"dataset size must be a whole number >= 1, got {dataset_size!r}")
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
    comments: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = [b.to_dict() for b in self.batches]
        d["fit"] = self.fit.to_dict()
        return d
