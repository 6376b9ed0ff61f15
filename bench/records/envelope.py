"""The versioned envelope every results file we write shares, and the one check of its schema and version.

A file starts with `schema` (what it is), `schema_version` (an integer, raised whenever the on-disk
shape changes), `tool` (`{"name": "bench", "version": ...}`), `created`, `finished` and `environment`
(the fingerprint of the machine that measured it). `read_header` checks the first two with one-line
errors and brings an older version up to the current one through the schema's migrations, so each
record's `from_dict` only ever reads the current shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from bench.core.errors import InvalidResultsFile
from bench.core.fingerprint import canonical_fingerprint
from bench.core.io import read_json, write_json_atomic
from bench.records.validation import json_type, validate

T = TypeVar("T")

__all__ = ["Schema", "Header", "header", "check_schema", "read_header", "json_type", "TOOL_NAME"]

TOOL_NAME = "bench"

Migration = Callable[[dict], dict]


@dataclass(frozen=True)
class Schema:
    """A file kind we write: its name, the version written now, and how to read older versions.

    `aliases` are other names the same kind was written under (read, never written). `migrations[v]`
    turns a version-v dict into a version-(v+1) dict; a version without one is read as it is (the
    shape did not change in a way the reader cares about).
    """

    name: str
    version: int
    title: str  # what it is, in words, for messages: "sweep results file"
    aliases: tuple[str, ...] = ()
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    # The JSON Schema of the current version (bench.records.validation), made on first use: every file
    # of this kind is checked against it at load, so a record's from_dict reads only well-typed data.
    json_schema: Callable[[], dict] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def check_version(self, version: Any, key: str = "schema_version") -> int:
        """`version` as an int no newer than this reader's; InvalidResultsFile in one line otherwise."""
        if version is None:
            raise InvalidResultsFile(f"{self.name} file has no {key}")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidResultsFile(f"{self.name} {key} must be a whole number, got {version!r} "
                                     f"(a JSON {json_type(version)})")
        if version < 1:
            raise InvalidResultsFile(f"{self.name} {key} {version} is not a version (versions start at 1)")
        if version > self.version:
            raise InvalidResultsFile(f"{self.name} {key} {version} is newer than this tool reads "
                                     f"({self.version}): upgrade bench")
        return version

    def upgrade(self, data: dict, version: int) -> dict:
        """`data` (at `version`) brought to the current version by the migrations in between."""
        for v in range(version, self.version):
            step = self.migrations.get(v)
            if step is not None:
                data = step(data)
        return data


@dataclass
class Header:
    """The envelope of a file as read: its schema and version (before any upgrade), who wrote it and
    when, whether it is complete, and the fingerprint with canonical key names."""

    schema: str
    schema_version: int
    tool: dict[str, Any]
    created: str | None
    finished: bool
    environment: dict[str, Any]


def header(schema: Schema, *, created: str | None, finished: bool, environment: Mapping[str, Any] | None) -> dict:
    """The envelope's keys, in order, for a file of `schema` written now (the record adds its body)."""
    from bench import __version__

    return {
        "schema": schema.name,
        "schema_version": schema.version,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "created": created,
        "finished": bool(finished),
        "environment": dict(environment or {}),
    }


def check_schema(data: Any, schema: Schema) -> int:
    """The file's version after checking that `data` is a `schema` file this tool can read."""
    if not isinstance(data, dict):
        raise InvalidResultsFile(f"not a {schema.title} (a JSON {json_type(data)}, expected an object "
                                 f"with \"schema\": {schema.name!r})")
    got = data.get("schema")
    if got not in schema.names:
        raise InvalidResultsFile(f"not a {schema.title} (schema is {got!r}, expected {schema.name!r})")
    return schema.check_version(data.get("schema_version"))


def read_header(data: Any, schema: Schema) -> tuple[Header, dict]:
    """(the envelope, the body at the current version) of a `schema` file; one-line InvalidResultsFile
    for another kind of file, a missing, non-integer or newer version, or a body that does not match
    the kind's JSON Schema (a wrong type, a missing field, a NaN)."""
    version = check_schema(data, schema)
    body = schema.upgrade(dict(data), version)
    if schema.json_schema is not None:
        validate(body, schema.json_schema(), schema.title)
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    head = Header(schema=str(data["schema"]), schema_version=version, tool=dict(tool),
                  created=data.get("created"), finished=bool(data.get("finished", False)),
                  environment=canonical_fingerprint(env))
    return head, body


def save_record(record: Any, path: str | os.PathLike) -> Path:
    """A record (anything with `to_dict`) written atomically as strict JSON to `path`."""
    return write_json_atomic(path, record.to_dict())


def load_record(path: str | os.PathLike, from_dict: Callable[[Any], T]) -> T:
    """`from_dict` of the JSON at `path`; any InvalidResultsFile is one line that names the path."""
    data = read_json(path)
    try:
        return from_dict(data)
    except InvalidResultsFile as e:
        raise InvalidResultsFile(f"{path}: {e}") from None
