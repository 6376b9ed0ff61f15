"""Reading other tools' CSV tables (curves, step times, steps to target): the rows, and each cell checked
with a one-line error naming the file, the row and the column. Lines starting with `#` are comments (a
table copied from a paper keeps its citation at the top).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.core.io import check_input_file
from bench.core.params import parse_bool


def read_csv(p: Path, required: tuple[str, ...] = (), one_of: tuple[tuple[str, ...], ...] = (),
             needs: str = "") -> list[dict[str, str]]:
    """The rows of a CSV file (header names and keys stripped), `#` comment lines skipped. BenchError
    naming the file when it cannot be read, has no header, or lacks a `required` column or one of each
    group in `one_of` (`needs` says in words what a table must have)."""
    check_input_file(p)  # a regular file of a bounded size: /dev/zero would never end
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            lines = [line for line in f if not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"{p}: cannot read CSV ({e})") from None
    try:
        reader = csv.DictReader(lines)
        rows = [dict(r) for r in reader]
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as e:
        raise BenchError(f"{p}: cannot read CSV ({e})") from None
    if not header:
        raise BenchError(f"{p}: empty CSV (no header row)")
    missing = [c for c in required if c not in header]
    missing += [" or ".join(group) for group in one_of if not any(c in header for c in group)]
    if missing:
        raise BenchError(f"{p}: missing column(s) {', '.join(missing)}" + (f"; need {needs}" if needs else ""))
    return [{(k or "").strip(): v for k, v in r.items()} for r in rows]


def number(v: Any, column: str, where: str, *, integer: bool = False, required: bool = True) -> float | int | None:
    """A finite number from a cell (an int with `integer`); None for an empty optional cell."""
    if v is None or (isinstance(v, str) and v.strip() == ""):
        if required:
            raise BenchError(f"{where}: {column} is empty")
        return None
    if isinstance(v, bool):
        raise BenchError(f"{where}: {column} is not a number ({v!r})")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BenchError(f"{where}: {column} is not a number ({v!r})") from None
    if not math.isfinite(f):
        raise BenchError(f"{where}: {column} is {v!r}; every value must be finite")
    if integer:
        if f != int(f):
            raise BenchError(f"{where}: {column} must be a whole number, got {v!r}")
        return int(f)
    return f


def boolean(v: Any, column: str, where: str, default: bool) -> bool:
    """true/false, yes/no, 1/0 from a cell; `default` for an empty one."""
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return default
    flag = parse_bool(v)
    if flag is not None:
        return flag
    raise BenchError(f"{where}: {column} must be true or false, got {v!r}")
