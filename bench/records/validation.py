"""The one schema check every results file gets at load: JSON Schema (draft 7, compiled to Python by
`fastjsonschema`, fast enough for a thousand nightly files), with schemas made from the record
dataclasses' own type hints, so a record and its schema cannot drift.

A value of the wrong type, a missing required field or a value out of range is refused in one line
that names where it is: `points[3].case.batch_size: expected an integer, got the string 'abc'`.
(`NaN` and `Infinity` are not JSON: `bench.core.io.read_json` refuses them while parsing.)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Mapping

from bench.core.errors import InvalidResultsFile

# --------------------------------------------------------------------------- schemas from type hints

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}

# No batch reaches 2**53 (the largest integer a double holds exactly, well inside the store's 64-bit
# integers): a batch size beyond it is a corrupt file, refused at load rather than overflowing the store.
MAX_BATCH_SIZE = 2 ** 53
BATCH_SIZE = {"minimum": 1, "maximum": MAX_BATCH_SIZE}
# A name (a benchmark, a workload) longer than this is no name: a 10 MiB one made a 100 MiB report page.
MAX_NAME_CHARS = 4096
NAME = {"type": "string", "maxLength": MAX_NAME_CHARS}


def _schema_of_type(tp: Any) -> dict:
    """The JSON Schema of one annotated type (bool, int, float, str, None, unions, list, dict, a dataclass)."""
    if tp is Any or tp is object:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_schema_of_type(a) for a in args]
        if any(o == {} for o in options):
            return {}
        return _union(options)
    if origin in (list, tuple, set, frozenset, typing.Sequence, Iterable):
        item = _schema_of_type(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin in (dict, Mapping, typing.Mapping):
        value = _schema_of_type(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if tp in (list, tuple):
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    return {}


def dataclass_schema(cls: type, overrides: Mapping[str, dict] | None = None, *,
                     required: Iterable[str] | None = None) -> dict:
    """A JSON Schema object for the dict form of dataclass `cls`: each field typed from its annotation,
    fields without a default required (or `required`), other keys allowed (newer writers may add some).
    `overrides[name]` replaces or refines one field's schema (a range, an enum, an item schema)."""
    hints = typing.get_type_hints(cls)
    props: dict[str, dict] = {}
    must: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        props[f.name] = _schema_of_type(hints.get(f.name, Any))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            must.append(f.name)
    for name, schema in (overrides or {}).items():
        props[name] = {**props.get(name, {}), **schema}
    return {"type": "object", "properties": props, "required": list(required if required is not None else must)}


def _union(options: list[dict]) -> dict:
    """One schema accepting any of `options`: their types merged when the rest of each applies only to
    its own type (properties to objects, items to arrays, ranges to numbers), else anyOf."""
    merged: dict = {"type": []}
    for o in options:
        t = o.get("type")
        types_ = t if isinstance(t, list) else [t] if t else []
        if not types_:
            return {"anyOf": options}
        for k, v in o.items():
            if k == "type":
                continue
            if k in merged and merged[k] != v:
                return {"anyOf": options}
            merged[k] = v
        merged["type"] += [x for x in types_ if x not in merged["type"]]
    if len(merged["type"]) == 1:
        merged["type"] = merged["type"][0]
    return merged


def nullable(schema: dict) -> dict:
    """`schema`, or null."""
    return _union([schema, {"type": "null"}])


def envelope_schema(body: Mapping[str, dict], *, required: Iterable[str] = ()) -> dict:
    """The schema of a whole results file: the shared envelope (bench.records.envelope) plus `body`."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "schema": {"type": "string"},
            "schema_version": {"type": "integer"},
            "tool": {"type": ["object", "null"]},
            "created": {"type": ["string", "null"]},
            "finished": {"type": "boolean"},
            "environment": {"type": ["object", "null"]},
            **body,
        },
        "required": ["schema", "schema_version", *required],
    }


# --------------------------------------------------------------------------- checking

_VALIDATORS: dict[int, tuple[dict, Any]] = {}


def _validator(schema: dict):
    """The compiled validator of `schema` (compiled once per schema object)."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        import fastjsonschema

        cached = _VALIDATORS[id(schema)] = (schema, fastjsonschema.compile(schema))
    return cached[1]


def _where(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        part = int(part) if isinstance(part, str) and part.isdigit() else part
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def json_type(v: Any) -> str:
    """What a parsed JSON value is, in JSON's words (for messages)."""
    if v is None:
        return "null"
    return {bool: "boolean", str: "string", int: "number", float: "number", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def _json_value(v: Any) -> str:
    kind = json_type(v)
    if isinstance(v, (dict, list)):
        return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    if v is None:
        return "null"
    text = repr(v)
    return f"the {kind} {text[:40] + '…' if len(text) > 40 else text}"


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "an object", "array": "an array", "null": "null"}


def _describe(e) -> str:
    """One fastjsonschema error in words."""
    rule, value, definition = e.rule, e.value, e.definition if isinstance(e.definition, dict) else {}
    if rule == "type":
        wanted = definition.get("type")
        wanted = wanted if isinstance(wanted, list) else [wanted]
        return f"expected {' or '.join(_TYPE_WORDS.get(w, str(w)) for w in wanted)}, got {_json_value(value)}"
    if rule == "required":
        missing = [k for k in definition.get("required", []) if not isinstance(value, dict) or k not in value]
        return f"field {missing[0]!r} is missing" if missing else e.message
    if rule == "enum":
        return f"{_json_value(value)} is not one of {', '.join(map(repr, definition.get('enum', [])))}"
    if rule in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[rule]
        return f"must be {sign} {definition.get(rule)}, got {value!r}"
    text = e.message.split(" ", 1)[1] if " " in e.message else e.message
    return text if len(text) <= 120 else text[:117] + "…"


def validate(data: Any, schema: dict, what: str) -> None:
    """Check parsed JSON `data` against `schema`; InvalidResultsFile in one line naming the problem's
    place (`what` is the kind of file, for the message)."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _validator(schema)(data)
    except JsonSchemaValueException as e:
        path = list(e.path or [])[1:]  # the first element is the root's name, "data"
        raise InvalidResultsFile(f"not a valid {what}: {_where(path)}: {_describe(e)}") from None
