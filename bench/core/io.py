"""Files on disk: strict-JSON conversion, atomic writes, output checks, and reading JSON with one-line errors.

Every results file and report goes through `write_text_atomic`: a reader never sees a half-written
file and an interrupted write leaves the old one intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError, InvalidResultsFile


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


def write_text_atomic(path: str | os.PathLike, text: str, *, replace: bool = True) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`.

    With `replace=False` an existing file is never replaced, even one created meanwhile: the final
    step is a hard link, which fails if the name exists (BenchError).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); results are shared artefacts, so use the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
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
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """`data` as strict JSON (see `json_safe`), written atomically to `path`."""
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def check_output_file(path: str | os.PathLike, *, resume: bool | None = False, overwrite: bool = False) -> Path:
    """Fail before any work if results could not be written at `path`, or would replace a file.

    An existing file is kept unless `resume` (continue it) or `overwrite` (replace it) is asked for;
    `resume=None` says the output cannot be resumed at all. Creates missing parent folders, then
    writes and removes a temporary file there: permission bits mislead root and ACLs, so writing is
    the honest test.
    """
    p = Path(path)
    if p.is_dir():
        raise BenchError(f"output {p} is a directory, expected a file name")
    if p.exists() and not (resume or overwrite):
        hint = "--resume to continue it or --overwrite to replace it" if resume is not None else "--overwrite to replace it"
        raise BenchError(f"output {p} exists: pass {hint}")
    existing = p.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BenchError(f"cannot write {p}: {existing} is not a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p.parent):
            pass
    except OSError as e:
        raise BenchError(f"cannot write {p}: {existing} is not writable ({e.strerror or e})") from None
    return p


def read_json(path: str | os.PathLike) -> Any:
    """Parse a UTF-8 JSON file; anything unreadable is a one-line InvalidResultsFile naming the path."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InvalidResultsFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidResultsFile(f"{path}: is a directory, expected a JSON file") from None
    except json.JSONDecodeError as e:
        raise InvalidResultsFile(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise InvalidResultsFile(f"{path}: not UTF-8 text, so not a JSON results file") from None
    except OSError as e:
        raise InvalidResultsFile(f"{path}: cannot read ({e.strerror})") from None
