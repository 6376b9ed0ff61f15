"""Files on disk: strict-JSON conversion, atomic writes, output checks and locks, and reading JSON with
one-line errors.

Every results file and report goes through `write_text_atomic`: a reader never sees a half-written
file, an interrupted write leaves the old one intact, and a failed write (a full disk) is one line
naming the path and the cause (`OutputWriteError`). A long run holds `output_lock` on its results
file, so a second writer is refused instead of silently replacing the first one's points.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from bench.core.errors import BenchError, InvalidResultsFile

# Deeper than any file bench reads (ours nest about 8 levels, pytest-benchmark's about 6): anything
# deeper is refused at load, before code that walks it recursively can overflow the stack.
MAX_JSON_DEPTH = 64
# A temporary file left by a writer that died: `.NAME.PID-RANDOM.tmp` (older writers: `.NAME.RANDOM.tmp`).
_ORPHAN_AGE_S = 600.0
# What the longest file written beside an output adds to its name: the temporary file
# `.NAME.PID-XXXXXXXX.tmp` (22 with a 7-digit pid) and a rescued copy `STEM.rescued-STAMP-PID.SUFFIX` (32).
OUTPUT_NAME_ROOM = 32
SQLITE_MAGIC = b"SQLite format 3\x00"
# Inputs larger than this are refused unread (a nightly file with raw samples is a few MiB).
DEFAULT_MAX_INPUT_MB = 256
MAX_INPUT_ENV = "BENCH_MAX_INPUT_MB"


class OutputWriteError(BenchError):
    """A results file or report could not be written (a full disk, a lost mount): the path and the cause."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        self.path = Path(path)
        self.cause = cause
        self.errno = cause.errno
        super().__init__(f"cannot write {self.path}: {describe_os_error(cause)}")


def describe_os_error(e: OSError) -> str:
    """An OSError in words, without the Python exception around it: 'no space left on device (ENOSPC)'."""
    name = errno.errorcode.get(e.errno or 0)
    text = (e.strerror or str(e) or type(e).__name__).rstrip(".")
    text = text[:1].lower() + text[1:]
    return f"{text} ({name})" if name else text


def json_safe(obj: Any) -> Any:
    """Plain strict-JSON data: records via `to_dict`, numpy scalars via `item`, tuples and sets as
    lists, keys as strings, NaN and infinity as None ('not measured'), anything else as its repr."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    if hasattr(obj, "item"):  # numpy scalars
        return json_safe(obj.item())
    return repr(obj)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens folders; the data itself is already synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid we can ask about): assume alive
    return True


def remove_orphaned_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted write to `path` left beside it; returns those removed.

    A temporary file is an orphan when the process named in it is gone (on this machine), or, for one
    without a process id or of a process still running (another machine's, on a shared folder), when
    it is older than ten minutes: no write takes that long, so no live writer can still need it.
    """
    path = Path(path)
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(\d+)-)?[A-Za-z0-9_]+\.tmp$")
    removed: list[Path] = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for q in candidates:
        m = pattern.match(q.name)
        if not m:
            continue
        try:
            old = now - q.stat().st_mtime > _ORPHAN_AGE_S
            dead = m.group(1) is not None and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))
            if dead or old:
                q.unlink()
                removed.append(q)
        except OSError:
            continue  # gone meanwhile, or not ours to delete: leave it
    return removed


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def write_text_atomic(path: str | os.PathLike, text: str, *, replace: bool = True) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`.

    With `replace=False` an existing file is never replaced, even one created meanwhile: the final
    step is a hard link, which fails if the name exists (BenchError). A write that fails (no space
    left, a read-only or lost file system) raises OutputWriteError, one line naming the path and the
    cause; `path` itself is then as it was. Never through a symbolic link, into a FIFO or a device, or
    over an SQLite database (`refuse_unsafe_target`, BenchError). Temporary files orphaned by earlier
    interrupted writes to `path` are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputWriteError(path, e) from None
    try:
        # mkstemp makes the file private (0600); results are shared artefacts, so use the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        refuse_unsafe_target(path)  # checked last, just before the rename: what is there now
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise BenchError(f"output {path} exists: pass --overwrite to replace it") from None
            except OSError:  # no hard links on this filesystem: check, then rename
                if path.exists():
                    raise BenchError(f"output {path} exists: pass --overwrite to replace it") from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)  # make the rename itself durable
    except OSError as e:
        raise OutputWriteError(path, e) from None
    finally:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        except OSError:
            pass  # the next write to this path removes it
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, *, replace: bool = True) -> Path:
    """`data` as strict JSON (see `json_safe`), written atomically to `path` (see `write_text_atomic`
    for `replace`)."""
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    return write_text_atomic(path, text + "\n", replace=replace)


def is_sqlite_database(path: str | os.PathLike) -> bool:
    """Does the file at `path` begin as an SQLite database (a history store) does?"""
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _kind_of(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def refuse_unsafe_target(path: str | os.PathLike) -> None:
    """BenchError if a file written to `path` would go through a symbolic link, into a FIFO, a device
    or a socket, or over an SQLite database (a history store): bench replaces only regular files of
    its own. Nothing at `path` is fine."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise BenchError(f"output {p} is a directory, expected a file name")
    if not stat.S_ISREG(st.st_mode):
        raise BenchError(f"output {p} is {_kind_of(st.st_mode)}: bench writes only regular files (never through "
                         "a link or into a device or FIFO); give another file name")
    if is_sqlite_database(p):
        raise BenchError(f"output {p} is an SQLite database (a history store?): bench never replaces one; "
                         "give another file name")


def output_name_limit(folder: str | os.PathLike) -> int:
    """The longest output file name (in bytes) that `folder` takes with room for the files written
    beside it (the temporary file, the lock, a rescued copy): NAME_MAX less OUTPUT_NAME_ROOM."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    return max(1, (name_max or 255) - OUTPUT_NAME_ROOM)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_one_of(path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> bool:
    """Is `path` one of `inputs`, or a *.json file inside an input folder (which a folder input reads)?"""
    p = Path(path)
    if not p.exists():
        return False
    for item in inputs:
        q = Path(item)
        if _same_file(p, q):
            return True
        if q.is_dir() and p.suffix == ".json" and p.resolve().is_relative_to(q.resolve()):
            return True
    return False


def _check_name_length(p: Path, folder: Path) -> None:
    limit = output_name_limit(folder if folder.is_dir() else folder.parent)
    too_long = [part for part in p.parts if len(os.fsencode(part)) > limit + OUTPUT_NAME_ROOM]
    if too_long or len(os.fsencode(p.name)) > limit:
        name = too_long[0] if too_long else p.name
        raise BenchError(f"cannot write {p}: the name {name[:24]}... is {len(os.fsencode(name))} bytes long; "
                         f"at most {limit} fit there (the temporary file beside it adds up to {OUTPUT_NAME_ROOM})")


def check_output_file(path: str | os.PathLike, *, resume: bool | None = False, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Fail before any work if results could not be written at `path`, or would replace a file.

    An existing file is kept unless `resume` (continue it) or `overwrite` (replace it) is asked for;
    `resume=None` says the output cannot be resumed at all. Never, even with `overwrite`: an empty
    name, a name too long for the temporary file beside it (`output_name_limit`), a symbolic link, a
    FIFO, a device, an SQLite database (a history store), or one of the command's `inputs`. Creates
    missing parent folders, then writes and removes a temporary file there: permission bits mislead
    root and ACLs, so writing is the honest test.
    """
    if not os.fspath(path).strip():
        raise BenchError("output file name is empty: give a file name")
    p = Path(path)
    existing = p.parent
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    _check_name_length(p, existing)  # first: asking about a name too long is itself an error
    refuse_unsafe_target(p)
    if is_one_of(p, inputs):
        raise BenchError(f"output {p} is also an input of this command: bench never replaces what it reads; "
                         "give another file name")
    if p.exists() and not (resume or overwrite):
        hint = "--resume to continue it or --overwrite to replace it" if resume is not None else "--overwrite to replace it"
        raise BenchError(f"output {p} exists: pass {hint}")
    if not existing.is_dir():
        raise BenchError(f"cannot write {p}: {existing} is not a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(p), suffix=".tmp", dir=p.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            why = f"{existing} is not writable"
        elif e.errno == errno.EROFS:
            why = f"{existing} is on a read-only file system"
        elif e.errno == errno.ENOSPC:
            why = f"no space left in {existing}"
        else:
            why = f"{existing} does not accept new files"
        raise BenchError(f"cannot write {p}: {why}: {describe_os_error(e)}") from None
    return p


class OutputLock:
    """An exclusive lock on a results file for as long as a run writes it (`acquire`, `release`, or
    `with`): a second bench process writing the same file is refused in one line instead of each
    silently replacing the other's points.

    The lock is an advisory `flock` on `.NAME.lock` beside the file, which the OS drops when the
    process dies, so a killed run never leaves the file locked. Release removes the lock file while
    still holding the lock, and `acquire` keeps a lock only on a file still at that path (a
    process that opened it just before it was removed tries again), so at most one process holds
    it and nothing is left beside the results. A killed run can leave an empty, unlocked lock file;
    the next run on that output takes it and removes it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl

        if self._fd is not None:
            return self
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise BenchError(f"output {self.path} is being written by another bench process right now; "
                                     "wait for it to finish, or write to another file") from None
                except BaseException:
                    os.close(fd)
                    raise
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
                except FileNotFoundError:
                    same = False
                if same:
                    self._fd = fd
                    return self
                os.close(fd)  # its holder removed it as we opened it: lock the one at the path now
        except OSError as e:
            raise BenchError(f"cannot lock {self.path} for writing: {describe_os_error(e)}") from None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.lock_path)  # while still locked: no one else can hold a lock on this file
        except OSError:
            pass  # already gone, or a read-only folder: an empty file left is harmless
        finally:
            os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self):  # a run dropped without close (an exception through library code) lets go too
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit the os module may be gone; the OS lets go
            pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def json_depth_exceeds(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Does parsed JSON nest arrays/objects more than `limit` levels deep? (Walked without recursion.)"""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class _NotJSON(ValueError):
    pass


def _not_json(token: str):
    raise _NotJSON(token)


def max_input_bytes() -> int:
    """The largest input file bench reads: $BENCH_MAX_INPUT_MB mebibytes, else DEFAULT_MAX_INPUT_MB."""
    try:
        mb = float(os.environ.get(MAX_INPUT_ENV) or DEFAULT_MAX_INPUT_MB)
    except ValueError:
        raise BenchError(f"${MAX_INPUT_ENV} must be a number of mebibytes, got "
                         f"{os.environ.get(MAX_INPUT_ENV)!r}") from None
    if not (mb > 0 and math.isfinite(mb)):
        raise BenchError(f"${MAX_INPUT_ENV} must be a positive number of mebibytes, got {mb:g}")
    return int(mb * 2 ** 20)


def check_input_file(path: str | os.PathLike) -> int:
    """Refuse, in one line (InvalidResultsFile), an input that is not a regular file (a device such as
    /dev/zero, a FIFO, a socket: reading one may never end) or is larger than `max_input_bytes`.
    Returns the most bytes a reader should take from it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidResultsFile(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidResultsFile(f"{path}: cannot read ({describe_os_error(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidResultsFile(f"{path}: is a directory, expected a JSON file")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidResultsFile(f"{path}: is {_kind_of(st.st_mode)}, not a results file (bench reads only "
                                 "regular files)")
    limit = max_input_bytes()
    if st.st_size > limit:
        raise InvalidResultsFile(f"{path}: {st.st_size / 2 ** 20:.0f} MiB, larger than the {limit / 2 ** 20:g} MiB bench "
                                 f"reads (raise ${MAX_INPUT_ENV} if it really is a results file)")
    return limit


def read_json(path: str | os.PathLike) -> Any:
    """Parse a UTF-8 strict-JSON file; anything unreadable (including `NaN`/`Infinity`, which Python's
    json would accept, JSON nested deeper than MAX_JSON_DEPTH, an integer too long to convert, a file
    refused by `check_input_file`) is a one-line InvalidResultsFile naming the path."""
    path = Path(path)
    limit = check_input_file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
        if len(raw) > limit:  # it grew since it was checked
            raise InvalidResultsFile(f"{path}: larger than the {limit / 2 ** 20:g} MiB bench reads "
                                     f"(raise ${MAX_INPUT_ENV} if it really is a results file)")
        text = raw.decode("utf-8")
        del raw  # not kept while parsing: the bound costs no memory beyond what parsing took before
        data = json.loads(text, parse_constant=_not_json)
    except _NotJSON as e:
        raise InvalidResultsFile(f"{path}: holds {e.args[0]}, which is not a JSON number (bench writes a value "
                                 "that could not be measured as null)") from None
    except RecursionError:
        raise InvalidResultsFile(f"{path}: JSON nested too deeply to read (results files nest a few levels, "
                                 f"at most {MAX_JSON_DEPTH})") from None
    except FileNotFoundError:
        raise InvalidResultsFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidResultsFile(f"{path}: is a directory, expected a JSON file") from None
    except json.JSONDecodeError as e:
        raise InvalidResultsFile(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise InvalidResultsFile(f"{path}: not UTF-8 text, so not a JSON results file") from None
    except ValueError as e:  # Python refuses to convert an integer of more than 4,300 digits
        if "digits" not in str(e):
            raise
        raise InvalidResultsFile(f"{path}: holds an integer too long to read (more than "
                                 f"{sys.get_int_max_str_digits()} digits); no results file holds one") from None
    except OSError as e:
        raise InvalidResultsFile(f"{path}: cannot read ({describe_os_error(e)})") from None
    if json_depth_exceeds(data):
        raise InvalidResultsFile(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; results files "
                                 "nest a few levels, so this is not one")
    return data
