"""Confirmation by re-running, as careful performance teams do by hand: when a comparison is inconclusive
or slower, run the candidate's command again (interleaved with the baseline's, when there is one), and
judge the pooled runs (bench.analysis.compare.compare with more_baselines / more_candidates)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from bench.analysis.compare import (
    SAME,
    CompareSettings,
    Comparison,
    Side,
    compare,
    side_from_record,
)
from bench.core.errors import BenchError
from bench.history.sources import read_results_file

OUT = "{out}"
DEFAULT_RERUNS = 2


def check_command(command: str, option: str) -> str:
    """A re-run command must say where it writes its results file ({out})."""
    if OUT not in command:
        raise BenchError(f"{option}: the command must contain {OUT}, the results file it writes "
                         f"(e.g. 'pytest suites/ --benchmark-json {OUT}')")
    return command


def run_once(command: str, out: Path, what: str) -> Side:
    """Run a shell command with {out} replaced by `out` (quoted) and read the results file it wrote."""
    proc = subprocess.run(command.replace(OUT, shlex.quote(str(out))), shell=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"the {what} re-run exited {proc.returncode} ({tail[0][:200]})")
    if not out.is_file():
        raise BenchError(f"the {what} re-run wrote no results file at {{out}} ({out})")
    return side_from_record(read_results_file(out))


def confirm(baseline: Side, candidate: Side, settings: CompareSettings, *, rerun: str,
            rerun_baseline: str | None = None, times: int = DEFAULT_RERUNS, cross_hardware: bool = False,
            history: dict | None = None, first: Comparison | None = None,
            progress: Callable[[str], None] | None = None) -> Comparison:
    """The comparison of baseline and candidate; when it is not SAME, `times` re-runs of the candidate
    (each after a re-run of the baseline when `rerun_baseline` is given), pooled into a new verdict."""
    kw = {"cross_hardware": cross_hardware, "history": history}
    first = first or compare(baseline, candidate, settings, **kw)
    if first.outcome == SAME or not first.verdicts:
        return first
    more_b: list[Side] = []
    more_c: list[Side] = []
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        for i in range(times):
            jobs: Sequence[tuple[str, str, list]] = ([("baseline", rerun_baseline, more_b)] if rerun_baseline else []) \
                + [("candidate", rerun, more_c)]
            for what, command, into in jobs:
                if progress:
                    progress(f"re-running the {what} ({i + 1} of {times})")
                into.append(run_once(command, Path(tmp) / f"{what}-{i + 1}.json", what))
    return compare(baseline, candidate, settings, more_baselines=more_b, more_candidates=more_c, **kw)
