"""A rich progress bar fed by the sweep's progress events (the library itself prints nothing)."""

from __future__ import annotations

import bench.present.fmt as fmt


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
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
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
