"""Argument parsing shared by the subcommands: comma lists and KEY=VALUE pairs, with one-line errors."""

from __future__ import annotations

from bench.core.errors import BenchError


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
