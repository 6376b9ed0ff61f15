"""One resumable runner for results files: sweeps, training grids and TTA studies all go through it.

`Resumable.open` starts a new results file, or resumes one made with the same settings on the same
hardware and software (a one-line error names the first setting that differs); an existing file is
never replaced unless asked. The caller skips the items the file already holds (`done`), and each
completed item is added and the file saved atomically (`add`), so an interrupted run loses nothing
it measured. Failed items of a resumed file are dropped, so they are tried again.

While a run is open it holds an exclusive lock on its file (`bench.core.io.OutputLock`): a second
run writing the same file is refused in one line. If the file cannot be written (a full disk), the
record is saved elsewhere if anywhere will take it, and the run stops with one line saying where.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, Iterable, Mapping, TypeVar

from bench.core.errors import BenchError
from bench.core.io import OutputLock, OutputWriteError, check_output_file, json_safe

R = TypeVar("R")  # the results record: has `finished` (bool), and a list of entries (points, curves)

_SETTINGS_HINT = "resume with the same settings or write a new file"


@dataclass(frozen=True)
class Identity:
    """What must match for a results file to be continued.

    `settings` are compared name by name (a nested mapping key by key, named `outer.inner`), so that
    every item of one file was made the same way; `environment_hash` is the hardware/software
    fingerprint's hash (None on either side: not compared).
    """

    settings: Mapping[str, Any] = field(default_factory=dict)
    environment_hash: str | None = None


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in settings.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def check_identity(path: str | os.PathLike, saved: Identity, current: Identity) -> None:
    """BenchError naming the first setting that differs, or the differing fingerprint, if a file made
    as `saved` describes cannot be continued as `current`."""
    # Compared as they are stored (JSON), so a tuple now and the list it was saved as agree.
    was, now = _flatten(json_safe(dict(saved.settings))), _flatten(json_safe(dict(current.settings)))
    for name in [*now, *(k for k in was if k not in now)]:
        if was.get(name) != now.get(name):
            raise BenchError(f"cannot resume {path}: it was made with {name}={was.get(name)!r}, "
                             f"not {now.get(name)!r}; {_SETTINGS_HINT}")
    old, new = saved.environment_hash, current.environment_hash
    if old and new and old != new:
        raise BenchError(f"cannot resume {path}: it was measured on other hardware or software "
                         f"(fingerprint {old}, here {new}); start a new file")


class ResultsNotSaved(BenchError):
    """The results file could not be written: the cause, and where the record was saved instead (or
    not). `result` is the record as it stands in memory, with everything completed so far."""

    def __init__(self, message: str, *, result: Any, path: Path, rescued_to: Path | None, cause: OutputWriteError):
        super().__init__(message)
        self.result = result
        self.path = path
        self.rescued_to = rescued_to
        self.cause = cause


def rescue_locations(path: Path) -> list[Path]:
    """Where a record that cannot be written to `path` is tried instead: the temporary folder, then
    the home folder (other file systems, usually)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    name = f"{path.stem}.rescued-{stamp}-{os.getpid()}{path.suffix or '.json'}"
    folders = [Path(tempfile.gettempdir()), Path.home()]
    return [f / name for f in dict.fromkeys(folders) if f.resolve() != path.parent.resolve()]


def save_elsewhere(save_to: Callable[[Path], object], path: Path) -> tuple[Path | None, list[str]]:
    """Save what could not be written to `path` (`save_to(other_path)`) in the first of
    `rescue_locations` that takes it: that place (None if none did), and why each other refused."""
    tried: list[str] = []
    for where in rescue_locations(path):
        try:
            save_to(where)
            return where, tried
        except (BenchError, OSError) as again:  # OutputWriteError is a BenchError
            tried.append(str(again))
    return None, tried


class Resumable(Generic[R]):
    """A results record being made, and the file it is saved to after each item (None: kept in memory).

    `entries(result)` is the record's list of completed items and `key(entry)` an item's identity
    (a batch size, a run key): `done` holds the keys already there, to be skipped. The file is
    locked from `open` until `finish` (or `close`).
    """

    def __init__(self, result: R, path: Path | None, *, save: Callable[[R, Path], object],
                 entries: Callable[[R], list], key: Callable[[Any], Hashable], resumed: bool = False,
                 lock: OutputLock | None = None):
        self.result = result
        self.path = path
        self.resumed = resumed
        self._save = save
        self._entries = entries
        self._key = key
        self._lock = lock

    @classmethod
    def open(
        cls,
        output: str | os.PathLike | None,
        *,
        create: Callable[[], R],
        load: Callable[[Path], R],
        save: Callable[[R, Path], object],
        entries: Callable[[R], list],
        key: Callable[[Any], Hashable],
        identity: Identity,
        identity_of: Callable[[R], Identity],
        failed: Callable[[Any], bool] | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> "Resumable[R]":
        """A new record (`create()`), or with `resume` the one in `output` if that file exists.

        Fails before any work, in one line: `resume` with `overwrite`; an output that cannot be
        written; an existing output without `resume` or `overwrite`; an output another process is
        writing now (locked); a resumed file that is not of the kind `load` reads, or whose
        `identity_of` differs from `identity`. Entries of a resumed file for which `failed(entry)` is
        true are dropped, to be made again.
        """
        if resume and overwrite:
            raise BenchError("resume and overwrite contradict each other: continue the file, or replace it")
        if output is None:
            return cls(create(), None, save=save, entries=entries, key=key)
        path = check_output_file(output, resume=resume, overwrite=overwrite)
        lock = OutputLock(path).acquire()
        try:
            check_output_file(path, resume=resume, overwrite=overwrite)  # again: it may have appeared meanwhile
            if resume and path.exists():
                result = load(path)
                check_identity(path, identity_of(result), identity)
                result.finished = False
                if failed is not None:
                    entries(result)[:] = [e for e in entries(result) if not failed(e)]
                return cls(result, path, save=save, entries=entries, key=key, resumed=True, lock=lock)
            return cls(create(), path, save=save, entries=entries, key=key, lock=lock)
        except BaseException:
            lock.release()
            raise

    @property
    def done(self) -> set:
        """Keys of the items the record already holds."""
        return {self._key(e) for e in self._entries(self.result)}

    def pending(self, plan: Iterable[Any], key: Callable[[Any], Hashable]) -> list:
        """The items of `plan` whose key (by `key`) the record does not hold yet, in order."""
        done = self.done
        return [item for item in plan if key(item) not in done]

    def save(self) -> None:
        """Write the record atomically (nothing without a file).

        If it cannot be written (a full disk), the record is written to the first of
        `rescue_locations` that takes it, the lock is released and ResultsNotSaved says, in one line,
        why and where it went; the record stays in memory (`self.result`) either way.
        """
        if self.path is None:
            return
        try:
            self._save(self.result, self.path)
        except OutputWriteError as e:
            n = len(self._entries(self.result))
            rescued, tried = save_elsewhere(lambda where: self._save(self.result, where), self.path)
            self.close()
            if rescued is not None:
                first = "free space, then move it" if e.errno == errno.ENOSPC else "once that folder can be written, move it"
                tail = (f"the {n} completed item(s) are saved in {rescued} instead; {first} to {self.path} "
                        "and run the same command with --resume to continue")
            else:
                kept = (f"{self.path} keeps its last complete version" if self.path.exists()
                        else f"nothing was written to {self.path}")  # never claim a version that is not there
                tail = (f"nowhere else would take the {n} completed item(s) either ({'; '.join(tried) or 'no other folder'}); "
                        f"{kept}")
            raise ResultsNotSaved(f"{e}; {tail}", result=self.result, path=self.path, rescued_to=rescued,
                                  cause=e) from None

    def close(self) -> None:
        """Release the lock on the file (finish does this too)."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "Resumable[R]":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def add(self, entry: Any) -> None:
        """One completed item: into the record, and the record onto disk."""
        self._entries(self.result).append(entry)
        self.save()

    def finish(self) -> R:
        """Mark the record finished, save it and release the lock; returns it."""
        self.result.finished = True
        try:
            self.save()
        finally:
            self.close()
        return self.result
