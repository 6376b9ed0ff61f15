"""The versioned envelope of our results files: what every file starts with, and one-line errors for
another kind of file and for a missing, non-integer, impossible or newer version."""

from __future__ import annotations

import pytest

from bench import __version__
from bench.core.errors import InvalidResultsFile
from bench.records.curves import CurvesFile
from bench.records.envelope import Schema, header, read_header
from bench.records.sweep import SweepResult
from bench.records.tta import TTAResult

DEMO = Schema("bench.demo", 2, "demo file", aliases=("bench.old_demo",))


def demo(**overrides) -> dict:
    return {**header(DEMO, created="2026-01-01T00:00:00+00:00", finished=True, environment={"hash": "h"}),
            "body": 1, **overrides}


def test_the_header_names_schema_version_tool_time_completeness_and_environment():
    h = header(DEMO, created="2026-01-01T00:00:00+00:00", finished=False, environment={"hash": "abc"})
    assert list(h) == ["schema", "schema_version", "tool", "created", "finished", "environment"]
    assert (h["schema"], h["schema_version"], h["tool"]) == ("bench.demo", 2, {"name": "bench", "version": __version__})
    assert h["finished"] is False and h["environment"] == {"hash": "abc"}


@pytest.mark.parametrize("record", [SweepResult(config={}), CurvesFile(), TTAResult()])
def test_every_file_we_write_carries_the_envelope_and_its_fingerprint(record):
    record.environment = {"hash": "0123456789abcdef", "torch_version": "2.13.0"}
    d = record.to_dict()
    assert {"schema", "schema_version", "tool", "created", "finished", "environment"} <= set(d)
    assert d["environment"]["hash"] == "0123456789abcdef"
    assert type(record).from_dict(d).environment == record.environment


def test_read_header_returns_the_envelope_and_the_body():
    head, body = read_header(demo(), DEMO)
    assert (head.schema, head.schema_version, head.finished, head.created) == ("bench.demo", 2, True, "2026-01-01T00:00:00+00:00")
    assert head.tool["name"] == "bench" and body["body"] == 1


def test_an_older_name_of_the_same_kind_is_read():
    head, _ = read_header(demo(schema="bench.old_demo"), DEMO)
    assert head.schema == "bench.old_demo"


@pytest.mark.parametrize("data, message", [
    (demo(schema="bench.other"), "not a demo file (schema is 'bench.other', expected 'bench.demo')"),
    ([1, 2], "not a demo file (a JSON array, expected an object with \"schema\": 'bench.demo')"),
    ({k: v for k, v in demo().items() if k != "schema_version"}, "bench.demo file has no schema_version"),
    (demo(schema_version="2"), "bench.demo schema_version must be a whole number, got '2' (a JSON string)"),
    (demo(schema_version=2.0), "bench.demo schema_version must be a whole number, got 2.0 (a JSON number)"),
    (demo(schema_version=True), "bench.demo schema_version must be a whole number, got True (a JSON boolean)"),
    (demo(schema_version=0), "bench.demo schema_version 0 is not a version (versions start at 1)"),
    (demo(schema_version=3), "bench.demo schema_version 3 is newer than this tool reads (2): upgrade bench"),
])
def test_bad_files_and_versions_are_one_line_errors(data, message):
    with pytest.raises(InvalidResultsFile) as e:
        read_header(data, DEMO)
    assert str(e.value) == message and "\n" not in str(e.value)


def test_an_older_version_is_brought_up_to_date_by_its_migrations():
    renamed = Schema("bench.demo", 3, "demo file", migrations={1: lambda d: {**d, "body": d.pop("old_body")},
                                                               2: lambda d: {**d, "body": d["body"] * 10}})
    head, body = read_header({**demo(schema_version=1), "old_body": 4}, renamed)
    assert head.schema_version == 1 and body["body"] == 40
    _, body = read_header(demo(schema_version=3), renamed)
    assert body["body"] == 1  # the current version is read as it is


@pytest.mark.parametrize("record", [SweepResult, CurvesFile, TTAResult])
def test_each_record_refuses_a_newer_version_of_its_own_file(record):
    d = record(config={}).to_dict()
    d["schema_version"] += 1
    with pytest.raises(InvalidResultsFile, match="is newer than this tool reads"):
        record.from_dict(d)


def test_the_fingerprint_is_read_with_todays_key_names():
    head, _ = read_header(demo(environment={"torch": "2.11.0", "python": "3.11.7", "cpu": "x86_64"}), DEMO)
    assert (head.environment["torch_version"], head.environment["python_version"], head.environment["cpu_model"]) \
        == ("2.11.0", "3.11.7", "x86_64")
