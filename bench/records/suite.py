"""The suites' records inside pytest-benchmark's JSON, and that JSON read back into sweeps.

Writing: `extra_info` is our record of one suite case in a benchmark's `extra_info` (the library's
Measurement, flat headline numbers, config and settings); `failed_case_record` is the entry under
FAILED_CASES_KEY for a case pytest-benchmark left out (out of memory, failed). Reading:
`PytestBenchmarkRun` is a pytest-benchmark file as read (ours or another project's), and its
`sweeps()` rebuild one SweepResult per suite and case-without-batch-size, failed cases included as
oom/error points. Nothing here analyses: `bench.analysis.steptime.analyse_sweep` does, for whoever
needs it. Case ids are `bench.records.sweep.case_id`.
"""

from __future__ import annotations

import functools
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

from bench.core.devices import is_oom
from bench.core.errors import InvalidResultsFile
from bench.core.fingerprint import canonical_fingerprint
from bench.core.io import json_safe, read_json
from bench.core.vocabulary import STATUS_ERROR, STATUS_OOM
from bench.records.envelope import Schema
from bench.records.sweep import (
    Case,
    LargestBatch,
    Measurement,
    SweepResult,
    measurement_json_schema,
    parse_case_id,
)
from bench.records.validation import NAME, nullable, validate

# Marks the extra_info written here, so readers know its layout (its keys: bench_schema, bench_schema_version).
EXTRA_INFO = Schema("bench.pytest", 1, "bench extra_info")
EXTRA_INFO_SCHEMA = EXTRA_INFO.name
EXTRA_INFO_VERSION = EXTRA_INFO.version
# The top-level key of pytest-benchmark's JSON under which the plugin lists the cases pytest-benchmark
# itself leaves out (it writes only benchmarks it timed): out-of-memory and failed cases are results too.
FAILED_CASES_KEY = "bench_failed_cases"
# Set (to the reason) in the JSON of a run stopped before its end (Ctrl-C): its benchmarks are a part of
# the night's, so the store, compare and the report refuse it rather than read it as a complete run.
INTERRUPTED_KEY = "bench_interrupted"

PYTEST_BENCHMARK_FORMAT = "pytest-benchmark"
HOST_TIMER = "pytest-benchmark host"
_FALLBACK_REASON = ("not in this pytest-benchmark file: the benchmark carries no bench extra_info, so its "
                    "samples are pytest-benchmark's host-clock round times")


# --------------------------------------------------------------------------- writing


def extra_info(m: Measurement, *, case: Case, suite: str, workload_args: Mapping[str, Any],
               config: Mapping[str, Any], settings: Mapping[str, Any],
               torch_num_threads: int | None) -> dict[str, Any]:
    """Our record of one suite case for pytest-benchmark's extra_info: the Measurement (raw samples
    kept, warm-up samples counted, not listed), a few flat headline numbers, the config and the settings.

    `case` is the suite case at its batch size (its id is `case_id`, and `key` the point's own).
    """
    s = m.stats
    measurement = m.to_dict()
    measurement["warmup_steps"] = len(measurement.pop("warmup_samples_s", []) or [])
    null_reasons: dict[str, str] = {}
    if s is None:
        why = m.error or "no samples"
        for k in ("step_time_median_s", "step_time_ci_low_s", "step_time_ci_high_s", "throughput_samples_per_s"):
            null_reasons[k] = f"not measured: {m.status}: {why}"
    elif s.ci_low_s is None:
        null_reasons["step_time_ci_low_s"] = null_reasons["step_time_ci_high_s"] = (
            f"{s.n} samples are too few for a 95% CI of the median")
    for k in ("peak_allocated_bytes", "peak_reserved_bytes"):
        if getattr(m, k) is None and k in m.null_reasons:
            null_reasons[k] = m.null_reasons[k]
    return {
        "bench_schema": EXTRA_INFO.name,
        "bench_schema_version": EXTRA_INFO.version,
        "suite": suite,
        "case_id": case.key,
        "key": m.case.key,
        "workload": case.workload,
        "workload_args": dict(workload_args),
        "precision": case.precision,
        "batch_size": case.batch_size,
        "device": case.device,
        "optimizer": case.optimizer,
        "channels_last": case.channels_last,
        "compile": case.compile,
        "status": m.status,
        "error": m.error,
        "timer": m.timer,
        "step_time_median_s": s.median_s if s else None,
        "step_time_ci_low_s": s.ci_low_s if s else None,
        "step_time_ci_high_s": s.ci_high_s if s else None,
        "step_time_ci_rel_halfwidth": s.ci_rel_halfwidth if s else None,
        "throughput_samples_per_s": m.throughput,
        "peak_allocated_bytes": m.peak_allocated_bytes,
        "peak_reserved_bytes": m.peak_reserved_bytes,
        "torch_num_threads": torch_num_threads,
        "warnings": list(m.warnings),
        "null_reasons": null_reasons,
        "settings": dict(settings),
        "config": dict(config),
        "measurement": measurement,
    }


def is_ours(info: Any) -> bool:
    """Is `info` an extra_info written by `extra_info` (any version)?"""
    return isinstance(info, dict) and info.get("bench_schema") == EXTRA_INFO.name


def failed_case_record(
    extra_info: dict[str, Any],
    *,
    name: str,
    fullname: str,
    group: str | None = None,
    param: str | None = None,
    test_outcome: str | None = None,
    exception: BaseException | None = None,
) -> dict[str, Any] | None:
    """The entry under FAILED_CASES_KEY for a suite case pytest-benchmark did not time, or None when
    `extra_info` is not ours (another project's benchmark).

    `status`/`error` are the case's outcome: the library's when it failed (oom, error); when the library
    measured the point but the test then raised before pytest-benchmark timed it, the exception's
    (oom for an out-of-memory error). `extra_info` is kept whole, as the benchmark would have carried it.
    """
    if not is_ours(extra_info):
        return None
    status, error = extra_info.get("status"), extra_info.get("error")
    if status not in (STATUS_OOM, STATUS_ERROR):
        if exception is not None:
            lines = str(exception).strip().splitlines()
            status = STATUS_OOM if is_oom(exception) else STATUS_ERROR
            error = f"{type(exception).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        else:
            status, error = STATUS_ERROR, "the test ended before pytest-benchmark timed the case"
    return json_safe({
        "name": name,
        "fullname": fullname,
        "group": group,
        "param": param,
        "suite": extra_info.get("suite"),
        "case_id": extra_info.get("case_id"),
        "status": status,
        "error": error,
        "test_outcome": test_outcome,
        "extra_info": extra_info,
    })


# --------------------------------------------------------------------------- reading


def is_pytest_benchmark(data: Any) -> bool:
    """Does `data` look like pytest-benchmark's JSON (a machine_info object and a list of benchmarks)?"""
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and isinstance(data.get("machine_info"), dict)


def measurement_from_extra_info(info: dict) -> Measurement:
    """The library's Measurement inside one of our extra_info records (InvalidResultsFile if unreadable)."""
    EXTRA_INFO.check_version(info.get("bench_schema_version"), "bench_schema_version")
    if not isinstance(info.get("measurement"), dict):
        raise InvalidResultsFile("bench extra_info has no measurement")
    validate(info["measurement"], measurement_json_schema(), "bench extra_info measurement")
    return Measurement.from_dict(info["measurement"])


@functools.cache
def pytest_benchmark_json_schema() -> dict:
    """What bench reads of pytest-benchmark's JSON, checked at load: the keys it uses, with their types
    (our extra_info's measurement is checked when a benchmark is read, against the sweep point's schema)."""
    stats = {"type": "object", "properties": {"data": {"type": ["array", "null"], "items": {"type": "number", "minimum": 0}},
                                              "iterations": {"type": ["integer", "null"]}}}
    bench = {"type": "object", "properties": {
        "name": nullable(NAME), "fullname": nullable(NAME), "group": nullable(NAME), "params": {"type": ["object", "null"]},
        "stats": stats, "extra_info": {"type": ["object", "null"]}}}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {
        "machine_info": {"type": "object"}, "commit_info": {"type": ["object", "null"]},
        "benchmarks": {"type": "array", "items": bench}, "datetime": {"type": ["string", "null"]},
        FAILED_CASES_KEY: {"type": ["array", "null"], "items": {"type": "object"}}},
        "required": ["machine_info", "benchmarks"]}


@dataclass
class PytestBenchmarkRun:
    """One pytest-benchmark JSON file as read (`--benchmark-json`, `--benchmark-save`/`-autosave`): its own
    keys, the failed cases our plugin added, and our fingerprint with the commit from commit_info."""

    data: dict
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> "PytestBenchmarkRun":
        if not is_pytest_benchmark(data):
            raise InvalidResultsFile("not a pytest-benchmark JSON file (expected machine_info and a list of benchmarks)")
        validate(data, pytest_benchmark_json_schema(), "pytest-benchmark JSON file")
        if data.get(INTERRUPTED_KEY):
            raise InvalidResultsFile(f"the suites' run was interrupted ({INTERRUPTED_KEY}: {data[INTERRUPTED_KEY]}), so "
                                     "it holds only part of the benchmarks; not read as a complete run")
        return cls(data, source)

    @property
    def benchmarks(self) -> list:
        return list(self.data.get("benchmarks") or [])

    @property
    def machine_info(self) -> dict:
        return dict(self.data.get("machine_info") or {})

    @property
    def commit_info(self) -> dict:
        ci = self.data.get("commit_info")
        return dict(ci) if isinstance(ci, dict) else {}

    @property
    def datetime(self) -> str | None:
        return self.data.get("datetime")

    @property
    def failed_cases(self) -> list:
        failed = self.data.get(FAILED_CASES_KEY) or []
        if not isinstance(failed, list):
            raise InvalidResultsFile(f"{self._where}: {FAILED_CASES_KEY} is not a list")
        return failed

    @property
    def _where(self) -> str:
        return self.source or "pytest-benchmark data"

    @property
    def environment(self) -> dict[str, Any]:
        """Our fingerprint from machine_info (canonical key names) plus git_commit/git_dirty from commit_info."""
        fp = self.machine_info.get("bench_fingerprint")
        env: dict[str, Any] = canonical_fingerprint(fp) if isinstance(fp, dict) else {}
        null = dict(env.get("null_reasons") or {})
        if not env:
            env["pytest_benchmark_machine_info"] = self.machine_info
            null["hash"] = "no bench fingerprint in machine_info (the run did not load bench.pytest_plugin)"
            env["hash"] = None
        commit = self.commit_info
        env["git_commit"] = commit.get("id")
        env["git_dirty"] = commit.get("dirty")
        if env["git_commit"] is None:
            null["git_commit"] = f"pytest-benchmark commit_info has no commit id ({commit.get('error') or 'not a repository?'})"
        env["null_reasons"] = null
        return env

    def sweeps(self) -> list[SweepResult]:
        """One SweepResult per suite and case-without-batch-size: benchmarks and the failed cases
        pytest-benchmark leaves out of them (FAILED_CASES_KEY), their points rebuilt, not analysed."""
        groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
        entries = [("benchmark", i, b, _measurement) for i, b in enumerate(self.benchmarks)]
        entries += [("failed case", i, f, _failed_measurement) for i, f in enumerate(self.failed_cases)]
        for what, i, bench, read in entries:
            if not isinstance(bench, dict):
                raise InvalidResultsFile(f"{self._where}: {what} #{i} is not an object")
            try:
                m, info, suite = read(bench)
            except (KeyError, TypeError, ValueError, InvalidResultsFile) as e:
                name = bench.get("fullname") or bench.get("name") or f"#{i}"
                why = str(e) if isinstance(e, InvalidResultsFile) else f"{type(e).__name__}: {e}"
                raise InvalidResultsFile(f"{self._where}: {what} {name}: {why}") from None
            args = info.get("workload_args") or {}
            key = f"{suite}|{m.case.group_key}|{json.dumps(args, sort_keys=True, default=str)}"
            g = groups.setdefault(key, {"suite": suite, "points": [], "names": [], "failed_names": [], "infos": []})
            g["points"].append(m)
            g["names" if what == "benchmark" else "failed_names"].append(bench.get("fullname") or bench.get("name"))
            g["infos"].append(info)
        environment = self.environment
        return [self._sweep(g, environment) for g in groups.values()]

    def _sweep(self, group: dict, environment: dict) -> SweepResult:
        points: list[Measurement] = sorted(group["points"], key=lambda p: p.case.batch_size)
        infos = [i for i in group["infos"] if i]
        first = points[0].case
        config: dict[str, Any] = dict(infos[0].get("config") or {}) if infos else {}
        if not config:
            config = {"workload": first.workload, "workload_args": {}, "device": first.device,
                      "precision": first.precision, "optimizer": first.optimizer,
                      "channels_last": first.channels_last, "compile": first.compile}
        config["batch_sizes"] = [p.case.batch_size for p in points]
        config["planned_batch_sizes"] = list(config["batch_sizes"])
        config["suite"] = group["suite"]
        config["source"] = {"format": PYTEST_BENCHMARK_FORMAT, "version": self.data.get("version"), "path": self.source,
                            "benchmarks": group["names"], "failed_cases": group["failed_names"]}
        result = SweepResult(config=config, environment=dict(environment), points=points,
                             created=self.datetime, finished=True)
        searches = [i["largest_batch"] for i in infos if isinstance(i.get("largest_batch"), dict)]
        if searches:
            result.set_largest_batch(LargestBatch.from_dict(searches[-1]))
        else:
            result.largest_batch_reason = "not searched: these points come from a pytest-benchmark run"
        return result


def _measurement(bench: dict) -> tuple[Measurement, dict, str]:
    info = bench.get("extra_info") or {}
    if is_ours(info) and isinstance(info.get("measurement"), dict):
        return measurement_from_extra_info(info), info, str(info.get("suite") or "pytest")
    return _fallback_measurement(bench), {}, "pytest"


def _failed_measurement(record: dict) -> tuple[Measurement, dict, str]:
    """An oom/error point from an entry of FAILED_CASES_KEY (a case pytest-benchmark did not time)."""
    status, error = record.get("status"), record.get("error")
    if status not in (STATUS_OOM, STATUS_ERROR):
        raise InvalidResultsFile(f"status {status!r} is not a failure (expected {STATUS_OOM!r} or {STATUS_ERROR!r})")
    info = record.get("extra_info") or {}
    if not is_ours(info) or not isinstance(info.get("measurement"), dict):
        # Only the name is left to say what ran: a suite case id gives workload, precision, batch and device.
        fields = parse_case_id(str(record.get("case_id") or record.get("name") or ""))
        if fields is None or fields.get("batch_size") is None:
            raise InvalidResultsFile("no bench extra_info, and its name is not a suite case id with a batch size")
        return Measurement(case=Case(**fields), status=status, error=error), {}, str(record.get("suite") or "pytest")
    m, info, suite = _measurement({"extra_info": info})
    if m.ok:
        # The library measured the point; the test failed afterwards, before pytest-benchmark timed it.
        m.status, m.error = status, error
        m.warnings.append(f"the library measured this point, but the test then failed before pytest-benchmark "
                          f"timed it ({status}: {error})")
    return m, info, suite


def _fallback_measurement(bench: dict) -> Measurement:
    """A point from pytest-benchmark's own numbers: its round times become the samples."""
    name = str(bench.get("name") or bench.get("fullname") or "benchmark")
    fields = parse_case_id(name)
    warnings = []
    if fields is not None and fields.get("batch_size") is not None:
        case = Case(**fields)
    else:
        params = bench.get("params") or {}
        size = params.get("batch_size") if isinstance(params, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            case = Case(workload=name.split("[")[0], batch_size=size, device="unknown", precision="unknown")
        else:
            case = Case(workload=str(bench.get("fullname") or name), batch_size=1, device="unknown", precision="unknown")
            warnings.append("batch size unknown (no bench extra_info, no batch_size parameter): recorded as 1")
    m = Measurement(case=case, timer=HOST_TIMER, warnings=warnings)
    for k in ("stop_reason", "warmup_samples_s", "peak_allocated_bytes", "peak_reserved_bytes", "telemetry",
              "block_medians_s", "wall_time_s"):
        m.null_reasons[k] = _FALLBACK_REASON
    stats = bench.get("stats") if isinstance(bench.get("stats"), dict) else bench
    data = stats.get("data")
    if not data:
        m.status = STATUS_ERROR
        m.error = ("no raw timings: pytest-benchmark saved only summary statistics (use --benchmark-json, "
                   "or --benchmark-save-data with --benchmark-save/--benchmark-autosave)")
        return m
    m.samples_s = [float(v) for v in data]
    iterations = stats.get("iterations")
    if isinstance(iterations, int) and iterations > 1:
        m.warnings.append(f"each sample is the mean of {iterations} iterations of one pytest-benchmark round")
    m.warnings.append("samples are pytest-benchmark host-clock round times; device work is included only if "
                      "the benchmarked function synchronised the device")
    return m


def sweeps_from_pytest_benchmark(data: dict, source: str | None = None) -> list[SweepResult]:
    """`PytestBenchmarkRun.from_dict(data, source).sweeps()`: the sweeps of parsed pytest-benchmark JSON."""
    try:
        return PytestBenchmarkRun.from_dict(data, source).sweeps()
    except InvalidResultsFile as e:
        if source and not str(e).startswith(source):
            raise InvalidResultsFile(f"{source}: {e}") from None
        raise


def load_pytest_benchmark(path: str | os.PathLike) -> list[SweepResult]:
    """One SweepResult per suite and case-without-batch-size in a pytest-benchmark JSON file."""
    return sweeps_from_pytest_benchmark(read_json(path), source=str(path))
