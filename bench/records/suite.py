"""Read results written by other tools into our records: pytest-benchmark JSON -> SweepResult(s).

`load_results(path)` is the one entry point for report, history and regression tools: it accepts a
`bench.run.sweep` file or a pytest-benchmark JSON file (from `--benchmark-json`, `--benchmark-save` or
`--benchmark-autosave`) and returns SweepResults either way. The suites' out-of-memory and failed cases,
which pytest-benchmark leaves out of `benchmarks`, come back from `bench_failed_cases` as oom/error points.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any

from bench.core.errors import BenchError, InvalidResultsFile
from bench.core.io import read_json
from bench.core.vocabulary import STATUS_ERROR, STATUS_OOM
from bench.records.sweep import SWEEP_SCHEMA, Case, Measurement, Probe, SweepResult
from bench.run.suite import (
    EXTRA_INFO_SCHEMA,
    EXTRA_INFO_VERSION,
    FAILED_CASES_KEY,
    parse_case_id,
)

PYTEST_BENCHMARK_FORMAT = "pytest-benchmark"
HOST_TIMER = "pytest-benchmark host"
_FALLBACK_REASON = ("not in this pytest-benchmark file: the benchmark carries no bench extra_info, so its "
                    "samples are pytest-benchmark's host-clock round times")


def is_pytest_benchmark(data: Any) -> bool:
    """Does `data` look like pytest-benchmark's JSON (machine_info, commit_info, a list of benchmarks)?"""
    return (isinstance(data, dict) and isinstance(data.get("benchmarks"), list)
            and isinstance(data.get("machine_info"), dict) and "commit_info" in data)


def load_results(path: str | os.PathLike) -> list[SweepResult]:
    """SweepResults from a `bench.run.sweep` file or a pytest-benchmark JSON file; BenchError otherwise."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("schema") == SWEEP_SCHEMA:
        try:
            return [SweepResult.from_dict(data)]
        except InvalidResultsFile as e:
            raise InvalidResultsFile(f"{path}: {e}") from None
    if is_pytest_benchmark(data):
        return sweeps_from_pytest_benchmark(data, source=str(path))
    what = f"an object with keys {', '.join(sorted(map(str, data))[:6])}" if isinstance(data, dict) else type(data).__name__
    raise InvalidResultsFile(f"{path}: neither a bench sweep results file (schema {SWEEP_SCHEMA!r}) nor a "
                             f"pytest-benchmark JSON file (it holds {what})")


def load_pytest_benchmark(path: str | os.PathLike) -> list[SweepResult]:
    """One SweepResult per suite and case-without-batch-size in a pytest-benchmark JSON file."""
    data = read_json(path)
    if not is_pytest_benchmark(data):
        raise InvalidResultsFile(f"{path}: not a pytest-benchmark JSON file (expected machine_info, commit_info "
                                 "and a list of benchmarks)")
    return sweeps_from_pytest_benchmark(data, source=str(path))


def sweeps_from_pytest_benchmark(data: dict, source: str | None = None) -> list[SweepResult]:
    """The parsed form of `load_pytest_benchmark`: group benchmarks, and the failed cases pytest-benchmark
    leaves out of them (FAILED_CASES_KEY), into sweeps and rebuild their points."""
    where = source or "pytest-benchmark data"
    groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
    failed = data.get(FAILED_CASES_KEY) or []
    if not isinstance(failed, list):
        raise InvalidResultsFile(f"{where}: {FAILED_CASES_KEY} is not a list")
    entries = [("benchmark", i, b, _measurement) for i, b in enumerate(data.get("benchmarks") or [])]
    entries += [("failed case", i, f, _failed_measurement) for i, f in enumerate(failed)]
    for what, i, bench, read in entries:
        if not isinstance(bench, dict):
            raise InvalidResultsFile(f"{where}: {what} #{i} is not an object")
        try:
            m, info, suite = read(bench)
        except (KeyError, TypeError, ValueError, InvalidResultsFile) as e:
            name = bench.get("fullname") or bench.get("name") or f"#{i}"
            raise InvalidResultsFile(f"{where}: {what} {name}: {type(e).__name__}: {e}") from None
        args = info.get("workload_args") or {}
        key = f"{suite}|{m.case.group_key}|{json.dumps(args, sort_keys=True, default=str)}"
        g = groups.setdefault(key, {"suite": suite, "points": [], "names": [], "failed_names": [], "infos": []})
        g["points"].append(m)
        g["names" if what == "benchmark" else "failed_names"].append(bench.get("fullname") or bench.get("name"))
        g["infos"].append(info)
    environment = _environment(data)
    return [_sweep(g, environment, data, source) for g in groups.values()]


def _measurement(bench: dict) -> tuple[Measurement, dict, str]:
    info = bench.get("extra_info") or {}
    if info.get("bench_schema") == EXTRA_INFO_SCHEMA and isinstance(info.get("measurement"), dict):
        version = info.get("bench_schema_version")
        if not isinstance(version, int) or version > EXTRA_INFO_VERSION:
            raise InvalidResultsFile(f"extra_info version {version!r} is newer than this tool reads ({EXTRA_INFO_VERSION})")
        m = Measurement.from_dict(info["measurement"])
        return m, info, str(info.get("suite") or "pytest")
    return _fallback_measurement(bench), {}, "pytest"


def _failed_measurement(record: dict) -> tuple[Measurement, dict, str]:
    """An oom/error point from an entry of FAILED_CASES_KEY (a case pytest-benchmark did not time)."""
    status, error = record.get("status"), record.get("error")
    if status not in (STATUS_OOM, STATUS_ERROR):
        raise InvalidResultsFile(f"status {status!r} is not a failure (expected {STATUS_OOM!r} or {STATUS_ERROR!r})")
    info = record.get("extra_info") or {}
    if info.get("bench_schema") != EXTRA_INFO_SCHEMA or not isinstance(info.get("measurement"), dict):
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


def _environment(data: dict) -> dict[str, Any]:
    machine = data.get("machine_info") or {}
    fp = machine.get("bench_fingerprint")
    env: dict[str, Any] = dict(fp) if isinstance(fp, dict) else {}
    null = dict(env.get("null_reasons") or {})
    if not env:
        env["pytest_benchmark_machine_info"] = machine
        null["hash"] = "no bench fingerprint in machine_info (the run did not load bench.pytest_plugin)"
        env["hash"] = None
    commit = data.get("commit_info") or {}
    env["git_commit"] = commit.get("id")
    env["git_dirty"] = commit.get("dirty")
    if env["git_commit"] is None:
        null["git_commit"] = f"pytest-benchmark commit_info has no commit id ({commit.get('error') or 'not a repository?'})"
    env["null_reasons"] = null
    return env


def _sweep(group: dict, environment: dict, data: dict, source: str | None) -> SweepResult:
    from bench.analysis.steptime import analyse_step_times, summaries_from_measurements

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
    config["source"] = {"format": PYTEST_BENCHMARK_FORMAT, "version": data.get("version"), "path": source,
                        "benchmarks": group["names"], "failed_cases": group["failed_names"]}
    result = SweepResult(config=config, environment=dict(environment), points=points,
                         created=data.get("datetime"), finished=True)

    searches = [i["largest_batch"] for i in infos if isinstance(i.get("largest_batch"), dict)]
    if searches:
        s = searches[-1]
        result.largest_batch_that_fits = None if s.get("limited") else s.get("batch_size")
        result.largest_batch_reason = s.get("reason")
        result.probes = [Probe(int(p["batch_size"]), bool(p["fits"]), p.get("error")) for p in s.get("probes") or []]
    else:
        result.largest_batch_reason = "not searched: these points come from a pytest-benchmark run"

    if len({p.case.batch_size for p in points}) != len(points):
        # Repeated batch sizes (e.g. one benchmark saved twice) have no single curve to analyse.
        result.analysis = None
        config["analysis_reason"] = "two or more points share a batch size"
        return result
    try:
        analysis = analyse_step_times(summaries_from_measurements(points), eps=float(config.get("eps", 0.05)),
                                      noise_target=float(config.get("ci_target", 0.01)),
                                      largest_batch_that_fits=result.largest_batch_that_fits)
        result.analysis = analysis.to_dict()
    except (BenchError, ValueError) as e:
        result.analysis = None
        config["analysis_reason"] = f"step-time analysis failed: {e}"
    return result
