"""User-given parameters: comma lists, KEY=VALUE pairs, `package.module:function` specs, and binding
string values to a factory's typed keyword arguments. One set of rules for workloads, tasks and flags.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import sys
from typing import Any, Callable, Mapping

from bench.core.errors import BenchError

# Whole numbers given by a user fit 64 bits (torch, numpy and the store take no more): a larger one is
# refused up front instead of overflowing deep inside a run.
LARGEST_INT = 2 ** 63 - 1
# More threads than any machine bench runs on has cores; 100,000 of them exhaust memory starting up.
MAX_THREADS = 1024


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message, white space folded."""
    lines = [" ".join(line.split()) for line in str(exc).strip().splitlines()]
    text = next((line for line in lines if line), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_list(text: str | None, kind=int, what: str = "batch size", *, positive: bool = False) -> list | None:
    """"8,16,32" -> [8, 16, 32]; None stays None. BenchError names the bad item."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = kind(part)
        except ValueError:
            raise BenchError(f"{what} {part!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise BenchError(f"{what} must be a finite number, got {part!r}")
        if isinstance(value, int) and abs(value) > LARGEST_INT:
            raise BenchError(f"{what} {_digits(part)} is too large: at most {LARGEST_INT} (64 bits)")
        if positive and value <= 0:
            raise BenchError(f"{what} must be a positive {'integer' if kind is int else 'number'}, got {value}")
        out.append(value)
    if not out:
        raise BenchError(f"{what} list is empty")
    return out


def parse_key_values(items: list[str], what: str) -> dict[str, str]:
    """["seq_len=256", "d_model=512"] -> {"seq_len": "256", "d_model": "512"}; `what` names them in errors."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise BenchError(f"{what} argument {item!r} is not of the form name=value")
        if key in params:
            raise BenchError(f"{what} argument {key!r} is given twice")
        params[key] = value.strip()
    return params


def _current_folder_on_path() -> None:
    """Put the current folder first on sys.path (as `python -m`, pytest and uvicorn do), so that
    `mypkg.models:fn` imports from where the command runs without setting PYTHONPATH."""
    cwd = os.getcwd()
    if not any(p in ("", ".", cwd) for p in sys.path):
        sys.path.insert(0, cwd)


def resolve_callable(spec: str, what: str) -> Callable:
    """The callable named by "package.module:function" (dotted attributes allowed), or a one-line
    BenchError that says what is wrong; `what` ("workload", "task") names it in the message.
    The module is looked for in the current folder first, then on the usual path."""
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise BenchError(f"{what} {spec!r} is not of the form package.module:function")
    _current_folder_on_path()
    try:
        module = importlib.import_module(module_name)
    except SystemExit as e:
        raise BenchError(f"{what} module {module_name!r} called sys.exit({e.code!r}) while being imported") from None
    except Exception as e:  # any failure at import time is the user's module failing to import
        raise BenchError(f"{what} module {module_name!r} could not be imported: {one_line(e)}") from e
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise BenchError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise BenchError(f"{what} {spec!r}: {attr_path!r} is a {type(target).__name__}, not callable")
    return target


TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")
FALSE_WORDS = ("0", "false", "no", "off", "n", "f")


def parse_bool(value: Any) -> bool | None:
    """True or False from a bool or a word (TRUE_WORDS / FALSE_WORDS, any case); None for anything else."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def coerce(what: str, name: str, value: Any, default: Any) -> Any:
    """Convert a (usually string) parameter to the type of the factory's default; `what` names the
    owner ("workload mlp") in the error."""
    try:
        if isinstance(default, bool):
            flag = parse_bool(value)
            if flag is None:
                raise ValueError
            return flag
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError
            result = value if isinstance(value, int) else (
                int(value) if isinstance(value, float) and value.is_integer() else int(str(value).strip()))
            if abs(result) > LARGEST_INT:
                raise BenchError(f"{what}: parameter {name!r} is {_digits(str(result))}, too large: at most "
                                 f"{LARGEST_INT} (64 bits)")
            return result
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
            if not math.isfinite(result):
                raise ValueError
            return result
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        kind = {bool: "true/false", int: "an integer", float: "a finite number"}[type(default)]
        raise BenchError(f"{what}: parameter {name!r} must be {kind}, got {value!r}") from None
    return value  # no typed default to go by: pass it through as given


def settable_params(factory: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The factory's named parameters, and whether it also takes **kwargs."""
    sig = inspect.signature(factory)
    named = {
        n: p for n, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return named, takes_any


def describe_params(named: Mapping[str, inspect.Parameter]) -> str:
    parts = [n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}" for n, p in named.items()]
    return ", ".join(parts) if parts else "none"


def bind(what: str, factory: Callable, params: Mapping[str, Any], skip: int = 0) -> tuple[dict, dict]:
    """Check and convert params for `factory`; return (keyword args to pass, every effective value).

    `what` names the owner in errors ("workload mlp", "task digits"). `skip` leading parameters are
    filled by the loader itself (e.g. the torchvision model name).
    """
    named, takes_any = settable_params(factory)
    for n in list(named)[:skip]:
        del named[n]
    kwargs: dict[str, Any] = {}
    for name, value in params.items():
        if name not in named:
            if takes_any:
                kwargs[name] = value
                continue
            raise BenchError(f"{what} has no parameter {name!r}; accepted: {describe_params(named)}")
        default = named[name].default
        untyped = default is inspect.Parameter.empty or default is None
        kwargs[name] = value if untyped else coerce(what, name, value, default)
    missing = [n for n, p in named.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise BenchError(f"{what} needs parameter(s) {', '.join(missing)}; pass them as name=value")
    effective = {n: p.default for n, p in named.items() if p.default is not inspect.Parameter.empty}
    effective.update(kwargs)
    return kwargs, effective


def call_factory(what: str, factory: Callable, kwargs: Mapping[str, Any]) -> Any:
    """Call a user's factory; its own failure becomes a one-line BenchError naming it."""
    try:
        return factory(**kwargs)
    except BenchError:
        raise
    except SystemExit as e:
        raise BenchError(f"{what} called sys.exit({e.code!r})") from None
    except Exception as e:
        raise BenchError(f"{what} raised {one_line(e)}") from e


# --------------------------------------------------------------------------- flag types
# argparse `type=` callables: a value no command could use is refused while the flags are parsed,
# in one line naming the flag, before any work starts.


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    return _number(text)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def _digits(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_digits(text)!r} is not a whole number") from None
    if abs(value) > LARGEST_INT:
        raise argparse.ArgumentTypeError(f"{_digits(text)} is too large: at most {LARGEST_INT} (64 bits)")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """A number of CPU threads: a whole number from 1 to MAX_THREADS."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS} (more threads than any machine has cores), "
                                         f"got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value
