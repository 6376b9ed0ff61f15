"""A rich progress bar fed by the sweep's progress events (the library itself prints nothing), with an
estimate of the time left, and a note before a sweep that may clearly take long."""

from __future__ import annotations

import bench.present.fmt as fmt

# A sweep that may take longer than this gets a note before it starts.
LONG_RUN_S = 15 * 60


def long_run_warning(points: int, budget_s: float, warmup_max_s: float, threshold_s: float = LONG_RUN_S) -> str | None:
    """A note for a sweep whose points could together take longer than `threshold_s`: each point
    measures for at most `budget_s` after a warm-up of at most `warmup_max_s` (the per-point limits),
    so `points` x (budget + warm-up cap) bounds the whole; None when the bound is short."""
    per_point = budget_s + warmup_max_s
    bound = points * per_point
    if bound <= threshold_s:
        return None
    return (f"{points} batch sizes planned, each measured for up to {_long(budget_s)} after up to "
            f"{_long(warmup_max_s)} of warm-up: this sweep may take up to {_long(bound)} "
            "(the progress bar shows the time left as points complete; fewer batch sizes (-b) or a smaller "
            "--budget make it shorter)")


def _long(seconds: float) -> str:
    """A duration for people: '45 s', '21 min', '2.5 h'."""
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class SweepProgress:
    """Context manager and progress callback: `run_sweep(..., progress=SweepProgress(console))`."""

    def __init__(self, console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # Time left: rich's estimate from the points done so far (each point takes about its budget
            # plus warm-up, so the pace of the first points predicts the rest).
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                      console=self.console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False

    def __call__(self, event: str, info: dict) -> None:
        p = self._progress
        if p is None:
            return
        if event == "start":
            self._task = p.add_task("sweep", total=len(info["planned"]))
        elif event == "skip":
            p.advance(self._task)
        elif event == "point":
            p.update(self._task, description=f"batch {info['batch_size']}")
        elif event == "done":
            m = info["measurement"]
            s = m.stats
            shown = fmt.duration(s.median_s) if s else (m.error or m.status)
            p.console.print(f"  batch {m.batch_size:>6}: {m.status:<5} {shown}", highlight=False)
            p.advance(self._task)
        elif event == "probe":
            p.update(self._task, description=f"largest-batch search: trying {info['batch_size']} "
                                             f"(fits {info['low']}, OOM {info['high'] or '?'})")
        elif event == "confirm":
            p.update(self._task, description=f"largest-batch search: confirming batch {info['batch_size']} "
                                             "with a full measurement")
        elif event == "confirmed":
            m = info["measurement"]
            s = m.stats
            shown = fmt.duration(s.median_s) if s else (m.error or m.status)
            p.console.print(f"  batch {m.batch_size:>6}: {m.status:<5} {shown} (confirming the largest batch)",
                            highlight=False)
