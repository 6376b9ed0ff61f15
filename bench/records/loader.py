"""One loader for every results file we read: which kind a file is (`sniff`), and its typed record (`load`).

Kinds: our versioned files (`bench.sweep`, `bench.curves`, `bench.tta`, `bench.allreduce`; see
bench.records.envelope) and
pytest-benchmark JSON (ours, with the suites' extra_info, or any other project's). The report, resume
and the history store all read through here, so a file kind is added in one place: a `FileKind` in
KINDS. Anything else is refused in one line that names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import read_json
from bench.records.allreduce import ALLREDUCE, AllreduceResult
from bench.records.curves import CURVES, Curve, CurvesFile, curves_from_foreign
from bench.records.envelope import Schema, json_type
from bench.records.suite import PytestBenchmarkRun, is_pytest_benchmark
from bench.records.sweep import SWEEP, SweepResult
from bench.records.tta import TTA, TTAResult

KIND_SWEEP = "sweep"
KIND_CURVES = "curves"
KIND_TTA = "tta"
KIND_PYTEST = "pytest-benchmark"
KIND_ALLREDUCE = "allreduce"


@dataclass(frozen=True)
class FileKind:
    """A kind of file we read: its name, how to recognise its parsed JSON, and how to read it."""

    kind: str
    describe: str  # for messages: 'a bench.sweep file'
    recognise: Callable[[Any], bool]
    read: Callable[[Any, str | None], Any]  # (parsed JSON, source) -> typed record
    schema: Schema | None = None  # our versioned kinds


def _ours(schema: Schema) -> Callable[[Any], bool]:
    # By name alone: a bad or newer version is then refused by the record's reader, in words.
    return lambda data: isinstance(data, dict) and data.get("schema") in schema.names


KINDS: tuple[FileKind, ...] = (
    FileKind(KIND_SWEEP, f"a {SWEEP.name} file", _ours(SWEEP), lambda d, src: SweepResult.from_dict(d), SWEEP),
    FileKind(KIND_CURVES, f"a {CURVES.name} file", _ours(CURVES), lambda d, src: CurvesFile.from_dict(d), CURVES),
    FileKind(KIND_TTA, f"a {TTA.name} file", _ours(TTA), lambda d, src: TTAResult.from_dict(d), TTA),
    FileKind(KIND_ALLREDUCE, f"a {ALLREDUCE.name} file", _ours(ALLREDUCE), lambda d, src: AllreduceResult.from_dict(d),
             ALLREDUCE),
    FileKind(KIND_PYTEST, "pytest-benchmark JSON", is_pytest_benchmark, PytestBenchmarkRun.from_dict),
)
_BY_KIND = {k.kind: k for k in KINDS}


def sniff(data: Any) -> str | None:
    """The kind (KIND_SWEEP, KIND_CURVES, KIND_TTA, KIND_ALLREDUCE, KIND_PYTEST) of parsed JSON, or None."""
    return next((k.kind for k in KINDS if k.recognise(data)), None)


@dataclass
class ResultsFile:
    """One results file as read: its kind, the parsed JSON as it is on disk, and its typed record
    (SweepResult, CurvesFile, TTAResult, AllreduceResult or PytestBenchmarkRun)."""

    path: str
    kind: str
    data: Any
    record: Any

    def sweeps(self) -> list[SweepResult]:
        """The step-time sweeps it holds (a sweep file: itself; pytest-benchmark: one per suite case,
        not analysed); [] for curves and TTA files."""
        if self.kind == KIND_SWEEP:
            return [self.record]
        if self.kind == KIND_PYTEST:
            return self.record.sweeps()
        return []

    def curves(self) -> list[Curve]:
        """The training curves it holds ([] for sweeps and pytest-benchmark files)."""
        return list(self.record.curves) if self.kind in (KIND_CURVES, KIND_TTA) else []

    @property
    def environment(self) -> dict[str, Any]:
        """The fingerprint of the machine it was measured on, with canonical key names."""
        return self.record.environment


def _unknown(data: Any, expected: tuple[str, ...]) -> str:
    if isinstance(data, dict):
        schema = data.get("schema")
        what = f"schema {schema!r}" if schema is not None else (
            f"an object with keys {', '.join(sorted(map(str, data))[:6])}" if data else "an empty object")
    else:
        what = f"a JSON {json_type(data)}"
    kinds = [_BY_KIND[k].describe for k in expected]
    return f"not a results file bench reads ({what}); expected {', '.join(kinds[:-1])} or {kinds[-1]}" \
        if len(kinds) > 1 else f"not {kinds[0]} ({what})"


def read(data: Any, path: str | os.PathLike | None = None, *, kinds: tuple[str, ...] | None = None) -> ResultsFile:
    """The typed record of parsed JSON `data` (from `path`, named in errors). `kinds` limits what is
    accepted (default: every kind). One-line InvalidResultsFile for anything else."""
    where = str(path) if path is not None else None
    expected = tuple(kinds) if kinds else tuple(_BY_KIND)
    kind = sniff(data)
    if kind is None or kind not in expected:
        message = _unknown(data, expected)
        raise InvalidResultsFile(f"{where}: {message}" if where else message)
    try:
        record = _BY_KIND[kind].read(data, where)
    except InvalidResultsFile as e:
        if where and not str(e).startswith(where):
            raise InvalidResultsFile(f"{where}: {e}") from None
        raise
    return ResultsFile(where or "", kind, data, record)


def load(path: str | os.PathLike, *, kinds: tuple[str, ...] | None = None) -> ResultsFile:
    """Read and recognise one results file; InvalidResultsFile (one line, naming the path) if it cannot
    be read, is of no kind we read (or not of `kinds`), or is of a newer version than this tool reads."""
    return read(read_json(path), path, kinds=kinds)


def load_sweeps(path: str | os.PathLike) -> list[SweepResult]:
    """The sweeps of a `bench.sweep` file or a pytest-benchmark JSON file (not analysed: see
    bench.analysis.steptime.analyse_sweep); one-line InvalidResultsFile for anything else."""
    return load(path, kinds=(KIND_SWEEP, KIND_PYTEST)).sweeps()


def load_curves(path: str | os.PathLike, *, task: str | None = None, metric: str | None = None,
                higher_is_better: bool | None = None) -> list[Curve]:
    """Curves from a file: a bench.curves or bench.tta file, or another tool's CSV or JSON rows / runs
    (see `bench.records.curves.curves_from_foreign`; `task`, `metric` and `higher_is_better` describe
    those). Bad input raises a one-line BenchError naming the file (and the row)."""
    p = Path(path)
    if p.is_dir():
        raise BenchError(f"{p}: is a folder; give curves files (bench.curves or bench.tta JSON, or CSV/JSON rows "
                         "with batch_size, step or examples, metric)")
    if p.name.startswith("events.out.tfevents"):
        raise BenchError(f"{p}: TensorBoard event files are not supported; export the scalars to CSV "
                         "with columns batch_size, step, metric (and seed, lr)")
    if not p.exists():
        raise BenchError(f"{p}: no such file")
    if p.suffix.lower() == ".csv":
        return curves_from_foreign(p, task=task, metric=metric, higher_is_better=higher_is_better)
    data = read_json(p)
    if sniff(data) in (KIND_CURVES, KIND_TTA):
        return read(data, p).curves()
    return curves_from_foreign(p, data, task=task, metric=metric, higher_is_better=higher_is_better)
