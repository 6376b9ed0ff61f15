"""The report's inputs: find the results files among the paths given and read each through the one
loader (bench.records.loader), which tells its kind: sweep files (`bench.sweep`), time-to-accuracy
studies (`bench.tta`), training curves (`bench.curves`) and pytest-benchmark JSON (one run, or many
forming a nightly history).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import read_json
from bench.records.loader import ResultsFile, read

# One input file as read: its path, kind, the parsed JSON (for embedding) and its typed record.
Source = ResultsFile


@dataclass
class ReportInputs:
    """Everything the report shows, grouped by kind; `skipped` lists files in folders that were not results."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def of(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind]


def find_input_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each path; folders contribute every *.json inside, recursively."""
    out: list[tuple[Path, bool]] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            if not found:
                raise BenchError(f"{p}: folder holds no *.json files")
            items = [(q, False) for q in found]
        elif p.exists():
            items = [(p, True)]
        else:
            raise BenchError(f"{p}: no such file or folder")
        for q, explicit in items:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append((q, explicit))
    if not out:
        raise BenchError("no input files given")
    return out


# A \ud800-\udfff escape in the raw JSON: the only way a lone surrogate gets into the parsed strings.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_lone_surrogates(path: Path, data: Any) -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"); it parses, but no UTF-8 page can hold it."""
    try:
        if not _SURROGATE_ESCAPE.search(path.read_bytes()):
            return  # the usual case, found without re-encoding the whole file
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except OSError:
        return  # read_json has just read it: nothing to add
    except UnicodeEncodeError:
        raise InvalidResultsFile(f"{path}: holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                                 "which is not text") from None


def read_source(path: Path) -> Source:
    """Parse one results file; InvalidResultsFile (one line) if it is unreadable or of no known kind."""
    try:
        data = read_json(path)
    except UnicodeDecodeError as e:
        raise InvalidResultsFile(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    _reject_lone_surrogates(path, data)
    return read(data, path)


def load_inputs(paths: Iterable[str | os.PathLike]) -> ReportInputs:
    """Read every input. A bad file named on the command line is an error; a file found inside a folder
    that is not a results file is skipped and listed on the page (folders hold other JSON too)."""
    inputs = ReportInputs()
    for path, explicit in find_input_files(paths):
        try:
            inputs.sources.append(read_source(path))
        except BenchError as e:
            if explicit:
                raise
            inputs.skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
    if not inputs.sources:
        first = inputs.skipped[0] if inputs.skipped else ("", "")
        raise BenchError(f"no results files among the inputs ({len(inputs.skipped)} skipped; first: {first[0]}: {first[1]})")
    return inputs
