"""pytest plugin for the suites in suites/: `--bench-*` options, case parametrisation, the fingerprint in
pytest-benchmark's machine_info, and the cases pytest-benchmark leaves out of its JSON (out of memory,
failed) under `bench_failed_cases`. Thin: what is measured and how lives in bench.run.suite, what is
written (extra_info, failed-case records) in bench.records.suite.

Load it from a conftest.py by importing its hooks into the conftest's namespace:

    from bench.pytest_plugin import *  # noqa: F401,F403

(`pytest_addoption` in a conftest takes effect only for a conftest pytest finds at start-up, i.e. one in
or above the paths given on the command line: `pytest suites/` does.)

`--benchmark-json PATH` is written as every bench file is (bench.core.io): the path is checked before
any case runs (exit 2, one line, if it could not be written), the file is written to a temporary file
beside it and renamed (a full disk leaves last night's file whole), never through a symbolic link, and
a run stopped by Ctrl-C writes what it timed to PATH's `.interrupted` sibling, marked so, not over PATH.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.records.suite import FAILED_CASES_KEY, INTERRUPTED_KEY, failed_case_record
from bench.run.suite import SuiteOptions, SuiteSettings, select_cases, suite_fingerprint

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_sessionstart",
    "pytest_report_header",
    "pytest_generate_tests",
    "pytest_runtest_makereport",
    "pytest_benchmark_update_machine_info",
    "pytest_benchmark_update_json",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "bench_settings",
    "bench_options",
]

# A test asks for its cases by the fixture name: test_x(step_case) gets the step_time suite's cases.
CASE_FIXTURES = {"step_case": "step_time", "memory_case": "memory", "largest_batch_case": "largest_batch"}

_OPTIONS_KEY = pytest.StashKey[SuiteOptions]()
_FINGERPRINT_KEY = pytest.StashKey[dict]()
_FAILED_KEY = pytest.StashKey[list]()
_JSON_KEY = pytest.StashKey[Path]()          # where --benchmark-json goes, checked at configure
_SESSION_KEY = pytest.StashKey[object]()
_WRITE_ERROR_KEY = pytest.StashKey[str]()    # why --benchmark-json could not be written at the end
# The exit status of a run whose --benchmark-json cannot be written: bench's own for "a file that cannot
# be read or written" (pytest's 2 is also "interrupted"; the one line on stderr says which).
EXIT_CANNOT_WRITE = 2


def pytest_addoption(parser) -> None:
    g = parser.getgroup("bench", "bench suites (training step time; see docs/suites.md)")
    g.addoption("--bench-workloads", metavar="LIST", default=None,
                help="comma-separated workloads to run (mlp, cnn, transformer, resnet50); default: all")
    g.addoption("--bench-precisions", metavar="LIST", default=None,
                help="comma-separated precisions to run (fp32, tf32, bf16, fp16); default: each case's own")
    g.addoption("--bench-batch-sizes", metavar="LIST", default=None,
                help="comma-separated batch sizes replacing each case's own (not the largest-batch search)")
    g.addoption("--bench-device", default="auto", choices=["auto", "cpu", "cuda"],
                help="auto: the CPU subset, and the GPU cases when CUDA is available; cpu: CPU subset only; "
                     "cuda: GPU cases only (default: auto)")
    g.addoption("--bench-subset", default="full", choices=["cpu", "full"],
                help="cpu: only the fast CPU subset (tiny models, fp32/bf16); full: also the GPU tier "
                     "(default: full; GPU cases are skipped with a reason where there is no GPU)")
    g.addoption("--bench-budget", metavar="SECONDS", default=None,
                help=f"measuring time per case, at most, for the library and again for pytest-benchmark's rounds "
                     f"(default: {SuiteSettings().budget_s:g})")
    g.addoption("--bench-cpu-threads", metavar="N", default=None,
                help="torch.set_num_threads(N) for the run (default: torch's own choice)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own configure reads its output options
def pytest_configure(config) -> None:
    from bench.measure.distributed import launched, main_rank

    if launched() and not main_rank():
        # Under torchrun every rank runs the suites and rank 0's JSON holds every rank's samples: the
        # other ranks write nothing, so they cannot overwrite it.
        for name, off in (("benchmark_json", None), ("benchmark_save", None), ("benchmark_autosave", False)):
            if hasattr(config.option, name):
                setattr(config.option, name, off)
    try:
        options = SuiteOptions.parse(
            workloads=config.getoption("bench_workloads", None),
            precisions=config.getoption("bench_precisions", None),
            batch_sizes=config.getoption("bench_batch_sizes", None),
            device=config.getoption("bench_device", "auto"),
            subset=config.getoption("bench_subset", "full"),
            budget=config.getoption("bench_budget", None),
            cpu_threads=config.getoption("bench_cpu_threads", None),
        )
    except BenchError as e:
        raise pytest.UsageError(str(e)) from None
    if options.device == "cuda":
        from bench.run.suite import cuda_available

        if not cuda_available():
            # Asked for the GPU explicitly: skipping every case would let a broken GPU node pass.
            raise pytest.UsageError("--bench-device cuda asked for, but CUDA is not available here")
    config.stash[_OPTIONS_KEY] = options
    _check_json_output(config)
    if options.cpu_threads is not None:
        import torch

        torch.set_num_threads(options.cpu_threads)


def _check_json_output(config) -> None:
    """Before any case runs: could --benchmark-json be written? Refused in one line, exit 2."""
    from bench.core.io import check_output_file

    path = getattr(config.option, "benchmark_json", None)
    if path is None:
        return
    try:
        config.stash[_JSON_KEY] = check_output_file(path, resume=None, overwrite=True)  # each night replaces it
    except BenchError as e:
        pytest.exit(f"--benchmark-json: {e}; nothing was run", returncode=EXIT_CANNOT_WRITE)


def pytest_sessionstart(session) -> None:
    # pytest-benchmark writes --benchmark-json itself, by opening the path: ours replaces its writer.
    config = session.config
    config.stash[_SESSION_KEY] = session
    bs = getattr(config, "_benchmarksession", None)
    if bs is not None and _JSON_KEY in config.stash and getattr(bs, "json", None):
        bs.save_json = lambda output_json: _save_json(config, bs, output_json)


def interrupted_path(path: Path) -> Path:
    """Where a run stopped by Ctrl-C writes what it timed: `NAME.interrupted.json` beside `NAME.json`."""
    return path.with_name(f"{path.stem}.interrupted{path.suffix or '.json'}")


def _save_json(config, bs, output_json: dict) -> None:
    from pytest_benchmark.utils import safe_dumps

    from bench.core.io import OutputWriteError, write_text_atomic
    from bench.run.runner import save_elsewhere

    path = config.stash[_JSON_KEY]
    session = config.stash.get(_SESSION_KEY, None)
    interrupted = getattr(session, "exitstatus", None) == pytest.ExitCode.INTERRUPTED
    where = interrupted_path(path) if interrupted else path
    if interrupted:
        output_json[INTERRUPTED_KEY] = "stopped by Ctrl-C before every case ran"
    text = safe_dumps(output_json, ensure_ascii=True, indent=4)
    n = len(output_json.get("benchmarks") or [])
    try:
        write_text_atomic(where, text)
    except (OutputWriteError, BenchError) as e:
        rescued, _ = save_elsewhere(lambda other: write_text_atomic(other, text), where)
        kept = f"the {n} benchmark(s) are saved in {rescued} instead" if rescued else "nowhere else took them either"
        old = f"{path} keeps its last complete version" if path.exists() else f"nothing was written to {path}"
        config.stash[_WRITE_ERROR_KEY] = f"--benchmark-json: {e}; {old}; {kept}"
        return
    if interrupted:
        sys.stderr.write(f"bench: interrupted: the {n} benchmark(s) timed so far are in {where}, marked "
                         f"{INTERRUPTED_KEY}; {path} was left as it was\n")
    else:
        bs.logger.info(f"Wrote benchmark data in: {path}", purple=True)


def _options(config) -> SuiteOptions:
    return config.stash.get(_OPTIONS_KEY, None) or SuiteOptions()


def pytest_report_header(config) -> str:
    o = _options(config)
    return (f"bench suites: device={o.device} subset={o.subset} budget={o.settings.budget_s:g}s/case"
            + (f" workloads={','.join(o.workloads)}" if o.workloads else "")
            + (f" precisions={','.join(o.precisions)}" if o.precisions else "")
            + (f" batch_sizes={','.join(map(str, o.batch_sizes))}" if o.batch_sizes else ""))


def pytest_generate_tests(metafunc) -> None:
    for fixture, suite in CASE_FIXTURES.items():
        if fixture not in metafunc.fixturenames:
            continue
        options = _options(metafunc.config)
        try:
            selected = select_cases(suite, options)
        except BenchError as e:
            raise pytest.UsageError(str(e)) from None
        params = [pytest.param(s.case, id=s.case.id,
                               marks=[pytest.mark.skip(reason=s.skip_reason)] if s.skip_reason else [])
                  for s in selected]
        if not params:
            reason = f"no {suite} case matches the options ({pytest_report_header(metafunc.config)})"
            params = [pytest.param(None, id="no-case", marks=pytest.mark.skip(reason=reason))]
        metafunc.parametrize(fixture, params)


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    """The hardware/software fingerprint (and its hash) beside pytest-benchmark's own machine_info."""
    fp = config.stash.get(_FINGERPRINT_KEY, None)
    if fp is None:
        from bench.run.suite import cuda_available

        o = _options(config)
        device = "cuda" if o.device != "cpu" and o.subset == "full" and cuda_available() else "cpu"
        fp = config.stash[_FINGERPRINT_KEY] = suite_fingerprint(device)
    machine_info["bench_fingerprint"] = fp


# --------------------------------------------------------------------------- cases pytest-benchmark leaves out


def record_failed_case(config, record: dict) -> None:
    """Keep one `bench.records.suite.failed_case_record` for this run's JSON."""
    config.stash.setdefault(_FAILED_KEY, []).append(record)


def failed_cases(config) -> list[dict]:
    """The failed cases recorded so far in this run (what goes under FAILED_CASES_KEY)."""
    return list(config.stash.get(_FAILED_KEY, []))


@pytest.hookimpl(hookwrapper=True)  # old-style, as pytest-benchmark's own: pytest >= 7.4 has it
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        _record_if_not_timed(item, call, outcome.get_result())


def _record_if_not_timed(item, call, report) -> None:
    # pytest-benchmark writes a benchmark only when its fixture recorded statistics without error; a
    # case that ran out of memory returns before timing, so its extra_info would be lost with it.
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    session = getattr(item.config, "_benchmarksession", None)
    if fixture is None or getattr(session, "disabled", False):
        return
    timed = getattr(fixture, "stats", None) is not None and not getattr(fixture, "has_error", False)
    info = getattr(fixture, "extra_info", None) or {}
    excinfo = call.excinfo
    exception = excinfo.value if excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception) else None
    if timed or not isinstance(info, dict) or (info.get("status") == "ok" and exception is None):
        return
    record = failed_case_record(info, name=fixture.name, fullname=fixture.fullname,
                                group=getattr(fixture, "group", None), param=getattr(fixture, "param", None),
                                test_outcome=report.outcome, exception=exception)
    if record is not None:
        record_failed_case(item.config, record)


def pytest_benchmark_update_json(config, benchmarks, output_json) -> None:
    """The failed cases beside pytest-benchmark's benchmarks (its readers ignore unknown top-level keys)."""
    output_json[FAILED_CASES_KEY] = failed_cases(config)


def pytest_sessionfinish(session) -> None:
    # Runs after pytest-benchmark saved (its hook wraps this one). With no benchmark timed at all it
    # saved nothing ("no benchmarks have been run"): write the failed cases in its format ourselves.
    from bench.measure.distributed import leave

    leave()  # the torchrun job's process group, if a case joined one
    config = session.config
    _report_write_error(session)
    bs = getattr(config, "_benchmarksession", None)
    failed = failed_cases(config)
    if bs is None or not failed or getattr(bs, "benchmarks", True) or getattr(bs, "disabled", True):
        return
    json_path, save = getattr(bs, "json", None), getattr(bs, "save", None) or getattr(bs, "autosave", None)
    if not (json_path or save):
        return
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)

    def output_json(include_data: bool) -> dict:
        out = config.hook.pytest_benchmark_generate_json(config=config, benchmarks=[], include_data=include_data,
                                                         machine_info=machine_info, commit_info=commit_info)
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=out)
        return out

    if json_path:
        bs.save_json(output_json(True))
    if save:
        bs.storage.save(output_json(bool(bs.save_data)), save)
    bs.logger.info(f"bench: no benchmark was timed; saved the {len(failed)} failed case(s) under {FAILED_CASES_KEY!r}")
    _report_write_error(session)


def _report_write_error(session) -> None:
    error = session.config.stash.get(_WRITE_ERROR_KEY, None)
    if error is not None and not getattr(session, "_bench_write_error_reported", False):
        session._bench_write_error_reported = True
        sys.stderr.write(error + "\n")
        session.exitstatus = EXIT_CANNOT_WRITE


def pytest_terminal_summary(terminalreporter) -> None:
    failed = failed_cases(terminalreporter.config)
    if not failed:
        return
    terminalreporter.section(f"bench: failed cases (kept in --benchmark-json and saved runs under {FAILED_CASES_KEY})")
    for r in failed:
        terminalreporter.write_line(f"{r.get('case_id') or r['name']}: {r['status']}: {r.get('error')}")


@pytest.fixture(scope="session")
def bench_options(request) -> SuiteOptions:
    return _options(request.config)


@pytest.fixture(scope="session")
def bench_settings(bench_options) -> SuiteSettings:
    return bench_options.settings
