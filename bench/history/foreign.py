"""Other tools' benchmark histories -> the store's records: an asv results folder
(results/MACHINE/*.json beside benchmarks.json) and a github-action-benchmark `data.js`/`data.json`.

Each keeps what its source carries and nothing more: asv's raw samples where it recorded them, else its
median with quartiles; github-action-benchmark's value with the spread and rounds its tool printed.
`Imported.missing` says in one line what the source did not carry. Every problem (a truncated file,
a data.js that is not JSON after its prefix, a unit this reader does not know) is an
InvalidResultsFile naming the file, raised before anything is stored.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core.errors import InvalidResultsFile
from bench.history.sources import (
    RATE,
    TIME,
    ResultRecord,
    RunRecord,
    content_hash,
    from_samples,
)

KIND_ASV = "asv"
KIND_GAB = "github-action-benchmark"
GAB_PREFIX = "window.BENCHMARK_DATA ="

# Units a github-action-benchmark entry may carry: time per operation (-> seconds) and rates (-> per second).
TIME_UNITS = {"ns": 1e-9, "ns/iter": 1e-9, "ns/op": 1e-9, "us": 1e-6, "µs": 1e-6, "us/iter": 1e-6, "usec": 1e-6,
              "ms": 1e-3, "ms/iter": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "s/iter": 1.0, "seconds": 1.0}
RATE_UNITS = {"ops/sec": 1.0, "ops/s": 1.0, "iter/sec": 1.0, "iter/s": 1.0, "op/s": 1.0, "ops/ms": 1e3}
# Tools whose `value` is a median (the others report a mean).
GAB_MEDIAN_TOOLS = ("cargo",)


@dataclass
class Imported:
    """What an importer read: the runs, and one line on what the source did not carry."""

    source: str
    runs: list[RunRecord] = field(default_factory=list)
    missing: str = ""
    skipped: dict[str, int] = field(default_factory=dict)   # what was left out -> how many results

    def summary(self) -> str:
        n = sum(len(r.results) for r in self.runs)
        skipped = "; left out " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())) if self.skipped else ""
        return f"{self.source}: {len(self.runs)} run(s), {n} result(s); {self.missing}{skipped}"


def _utc(ms: Any, where: str) -> tuple[datetime, str]:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not math.isfinite(ms):
        raise InvalidResultsFile(f"{where}: its date {ms!r} is not a time in milliseconds")
    t = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    return t.replace(tzinfo=None), t.isoformat()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidResultsFile(f"{path}: cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidResultsFile(f"{path}: not valid JSON (truncated?): {e.msg} at line {e.lineno}") from None


# --------------------------------------------------------------------------- asv


def asv_results_root(path: str | Path) -> Path | None:
    """The asv results folder `path` is (it holds benchmarks.json) or is a machine folder of; else None."""
    p = Path(path)
    if not p.is_dir():
        return None
    for root in (p, p.parent):
        if (root / "benchmarks.json").is_file():
            return root
    return None


def _param_names(bench: dict) -> list[str]:
    params = bench.get("params") or []
    if not params:
        return [""]
    return ["(" + ", ".join(str(v) for v in combo) + ")" for combo in itertools.product(*params)]


def _as_list(v: Any, n: int) -> list:
    if isinstance(v, list):
        return v
    return [v] * n if n == 1 else [None] * n


def _asv_entries(data: dict, where: str) -> dict[str, dict[str, list]]:
    """name -> {"result", "q1", "q3", "n", "samples"}: lists over the benchmark's parameter combinations,
    from asv's results format 2 (`result_columns`) or 1 (a dict per benchmark with `stats`)."""
    results = data.get("results")
    if not isinstance(results, dict):
        raise InvalidResultsFile(f"{where}: no `results` object (not an asv results file?)")
    cols = data.get("result_columns")
    out: dict[str, dict[str, list]] = {}
    for name, row in results.items():
        if isinstance(cols, list):
            if not isinstance(row, list):
                raise InvalidResultsFile(f"{where}: benchmark {name}: a row that is not a list")
            d = dict(zip(cols, row))
            res = d.get("result")
            n = len(res) if isinstance(res, list) else 1
            res = _as_list(res, n)
            out[name] = {"result": res, "q1": _as_list(d.get("stats_q_25"), n), "q3": _as_list(d.get("stats_q_75"), n),
                         "n": _as_list(d.get("stats_repeat"), n), "samples": _as_list(d.get("samples"), n)}
        elif isinstance(row, dict):
            res = row.get("result")
            n = len(res) if isinstance(res, list) else 1
            res = _as_list(res, n)
            stats = row.get("stats") if isinstance(row.get("stats"), list) else [None] * n
            stats = [s if isinstance(s, dict) else {} for s in stats]
            out[name] = {"result": res, "q1": [s.get("q_25") for s in stats], "q3": [s.get("q_75") for s in stats],
                         "n": [s.get("repeat") for s in stats], "samples": _as_list(row.get("samples"), n)}
        else:  # format 1's plain number (older asv)
            out[name] = {"result": [row], "q1": [None], "q3": [None], "n": [None], "samples": [None]}
    return out


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def read_asv_results(path: str | Path) -> Imported:
    """Every results file of every machine in an asv results folder (or of one machine folder in it).

    One run per results file (a commit in one environment); the run's machine is the asv machine and
    environment (a Python 3.8 and a 3.12 series are different histories); the run's time is its commit's
    date, the order asv draws and detects steps in (asv runs old commits late: empymod's whole history was
    run in one night), and when it ran is kept in the fingerprint. Time benchmarks only: track_ and memory
    benchmarks are counted in `skipped`."""
    start = Path(path)
    root = asv_results_root(start)
    if root is None:
        raise InvalidResultsFile(f"{start}: not an asv results folder (no benchmarks.json in it or above it)")
    benchmarks = _read_json(root / "benchmarks.json")
    if not isinstance(benchmarks, dict):
        raise InvalidResultsFile(f"{root / 'benchmarks.json'}: not an object of benchmarks")
    machines = [start] if start != root else sorted(d for d in root.iterdir() if d.is_dir())
    imp = Imported(source=f"asv {root}")
    counts = {"samples": 0, "quartiles": 0, "median": 0}
    for mdir in machines:
        info = _read_json(mdir / "machine.json") if (mdir / "machine.json").is_file() else {}
        info = info if isinstance(info, dict) else {}
        for f in sorted(mdir.glob("*.json")):
            if f.name == "machine.json":
                continue
            data = _read_json(f)
            if not isinstance(data, dict):
                raise InvalidResultsFile(f"{f}: not an asv results object")
            imp.runs.append(_asv_run(f, data, info, benchmarks, imp, counts))
    if not imp.runs:
        raise InvalidResultsFile(f"{start}: an asv results folder with no results file in it")
    parts = [f"raw samples in {counts['samples']}", f"median with quartiles only in {counts['quartiles']}"]
    if counts["median"]:
        parts.append(f"a bare median in {counts['median']}")
    imp.missing = ("results: " + ", ".join(parts) + "; no 95% CI recorded (asv keeps a 99% interval): "
                   "nights without samples are judged from their quartiles and their series' own noise")
    return imp


def _asv_started(data: dict) -> Any:
    """When the run ran: the earliest `started_at` of its benchmarks (format 2: a column; format 1: a dict),
    else the commit's date (kept in the fingerprint: runs are ordered by commit date, as asv orders them,
    since asv runs old commits late, e.g. a whole history backfilled in one night)."""
    cols = data.get("result_columns")
    stamps: list = []
    if isinstance(cols, list) and "started_at" in cols and isinstance(data.get("results"), dict):
        k = cols.index("started_at")
        stamps = [row[k] for row in data["results"].values() if isinstance(row, list) and len(row) > k]
    elif isinstance(data.get("started_at"), dict):
        stamps = list(data["started_at"].values())
    stamps = [v for v in stamps if _num(v) is not None]
    return min(stamps) if stamps else data.get("date")


def _asv_run(f: Path, data: dict, machine: dict, benchmarks: dict, imp: Imported, counts: dict) -> RunRecord:
    where = str(f)
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    mname = str(params.get("machine") or machine.get("machine") or f.parent.name)
    env = str(data.get("env_name") or "")
    time, text = _utc(data.get("date"), where)
    results: list[ResultRecord] = []
    for name, entry in _asv_entries(data, where).items():
        spec = benchmarks.get(name)
        if not isinstance(spec, dict):
            imp.skipped["result(s) of benchmarks not in benchmarks.json"] = \
                imp.skipped.get("result(s) of benchmarks not in benchmarks.json", 0) + 1
            continue
        if spec.get("type") != "time":
            key = f"{spec.get('type') or 'untyped'} benchmark result(s)"
            imp.skipped[key] = imp.skipped.get(key, 0) + 1
            continue
        if spec.get("unit", "seconds") != "seconds":
            raise InvalidResultsFile(f"{where}: benchmark {name}: unknown unit {spec.get('unit')!r} for a time benchmark")
        labels = _param_names(spec)
        for i, label in enumerate(labels):
            r = ResultRecord(name + label, TIME, timer="asv")
            value = _num(entry["result"][i]) if i < len(entry["result"]) else None
            samples = entry["samples"][i] if i < len(entry["samples"]) else None
            if isinstance(samples, list) and len([s for s in samples if _num(s) is not None]) >= 2:
                from_samples(r, [s for s in samples if _num(s) is not None])
                counts["samples"] += 1
            elif value is not None:
                r.median = value
                r.q1 = _num(entry["q1"][i]) if i < len(entry["q1"]) else None
                r.q3 = _num(entry["q3"][i]) if i < len(entry["q3"]) else None
                n = entry["n"][i] if i < len(entry["n"]) else None
                r.n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
                counts["quartiles" if r.q1 is not None and r.q3 is not None else "median"] += 1
            else:
                r.status, r.error = "error", "asv recorded no value (failed or skipped)"
            results.append(r)
    label = " ".join(x for x in (mname, f"({env})" if env else "", machine.get("cpu") or "") if x)
    return RunRecord(kind=KIND_ASV, path=where, content_hash=content_hash({"asv": data, "machine": mname}),
                     size_bytes=f.stat().st_size, time=time, time_text=text, commit=data.get("commit_hash"),
                     dirty=None, hardware_key=f"asv:{mname}:{env}", hardware_label=label, fingerprint_hash=None,
                     software_hash=None, fingerprint={"asv_machine": machine, "asv_params": params, "asv_env": env,
                                                      "started_at_ms": _asv_started(data)},
                     results=results)


# --------------------------------------------------------------------------- github-action-benchmark


def is_gab_file(path: str | Path) -> bool:
    """A github-action-benchmark data file: data.js with its `window.BENCHMARK_DATA =` prefix, or a
    JSON file that starts like one (`{"lastUpdate": ..., "entries": ...}`)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(256).decode("utf-8", "replace").lstrip()
    except OSError:
        return False
    return head.startswith(GAB_PREFIX) or (p.suffix == ".js") or (
        head.startswith("{") and ('"lastUpdate"' in head or '"entries"' in head))


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _first_number(text: str) -> float | None:
    m = _NUMBER.search(text or "")
    return float(m.group(0).replace(",", "")) if m else None


def read_gab_file(path: str | Path, *, skip_unknown_units: bool = False) -> Imported:
    """Every entry of every suite in a github-action-benchmark data.js/data.json: one run per entry.

    The run's machine is the suite (each suite is one workflow's job); its time is the entry's `date`.
    `value` becomes the mean (the median for cargo, whose libtest prints a median); a `range` of
    "stddev: X" or "± X" the standard deviation, "±X%" (benchmark.js) the 95% margin of the mean;
    `extra`'s "rounds: N" / "N samples" the number of rounds; pytest-benchmark's "mean: X usec" the
    time itself. A unit this reader does not know is an error (or, with `skip_unknown_units`, left out
    and counted)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidResultsFile(f"{p}: cannot be read: {e}") from None
    body = text.strip()
    if body.startswith(GAB_PREFIX):
        body = body[len(GAB_PREFIX):].strip().rstrip(";")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise InvalidResultsFile(f"{p}: not JSON after its `{GAB_PREFIX}` prefix: {e.msg} at line {e.lineno}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise InvalidResultsFile(f"{p}: no `entries` object (not a github-action-benchmark data file)")
    imp = Imported(source=f"github-action-benchmark {p}")
    spread = {"with a spread": 0, "without": 0}
    for suite, runs in entries.items():
        if not isinstance(runs, list):
            raise InvalidResultsFile(f"{p}: suite {suite!r} is not a list of runs")
        for j, e in enumerate(runs):
            where = f"{p}: suite {suite!r} run #{j}"
            if not isinstance(e, dict) or not isinstance(e.get("benches"), list):
                raise InvalidResultsFile(f"{where}: not a run with `benches`")
            commit = e.get("commit") if isinstance(e.get("commit"), dict) else {}
            time, ttext = _utc(e.get("date"), where)
            results: list[ResultRecord] = []
            seen: set[str] = set()
            for b in e["benches"]:
                r = _gab_result(b, str(e.get("tool") or ""), where, imp, skip_unknown_units)
                if r is None:
                    continue
                if r.benchmark in seen:  # the same name twice in one run: keep the first, count the rest
                    imp.skipped["repeated benchmark name(s) in one run"] = \
                        imp.skipped.get("repeated benchmark name(s) in one run", 0) + 1
                    continue
                seen.add(r.benchmark)
                spread["with a spread" if (r.stddev or r.ci_rel_halfwidth) else "without"] += 1
                results.append(r)
            imp.runs.append(RunRecord(
                kind=KIND_GAB, path=f"{p}#{suite}/{j}", content_hash=content_hash({"gab": suite, "run": e}),
                size_bytes=len(json.dumps(e)), time=time, time_text=ttext, commit=commit.get("id"), dirty=None,
                hardware_key=f"gab:{suite}", hardware_label=f"{suite} ({e.get('tool')})", fingerprint_hash=None,
                software_hash=None, fingerprint={"github_action_benchmark": {"suite": suite, "tool": e.get("tool"),
                                                                              "commit": commit}},
                results=results))
    imp.missing = (f"no raw samples (a value per benchmark: {spread['with a spread']} with a spread, "
                   f"{spread['without']} without, judged by their series' own noise); no quartiles")
    return imp


def _gab_result(b: Any, tool: str, where: str, imp: Imported, skip_unknown: bool) -> ResultRecord | None:
    if not isinstance(b, dict) or not isinstance(b.get("name"), str):
        raise InvalidResultsFile(f"{where}: a bench without a name")
    name, unit = b["name"], str(b.get("unit") or "").strip()
    value = _num(b.get("value"))
    if unit in TIME_UNITS:
        metric, scale = TIME, TIME_UNITS[unit]
    elif unit in RATE_UNITS:
        metric, scale = RATE, RATE_UNITS[unit]
    elif skip_unknown:
        key = f"result(s) in unknown units ({unit!r})"
        imp.skipped[key] = imp.skipped.get(key, 0) + 1
        return None
    else:
        raise InvalidResultsFile(f"{where}: bench {name!r}: unknown unit {unit!r} (known: "
                                 f"{', '.join(sorted(TIME_UNITS) + sorted(RATE_UNITS))})")
    r = ResultRecord(name, metric, timer=f"github-action-benchmark {tool}".strip())
    rng, extra = str(b.get("range") or ""), str(b.get("extra") or "")
    rounds = re.search(r"rounds:\s*(\d+)", extra) or re.search(r"(\d+)\s+samples", extra)
    r.n = int(rounds.group(1)) if rounds else None
    mean_time = re.search(r"mean:\s*([0-9.eE+-]+)\s*(\S+)", extra)
    if tool == "pytest" and mean_time and mean_time.group(2) in TIME_UNITS:
        # pytest-benchmark: the value is 1/mean in iter/sec; the mean time and its stddev (seconds) are the data
        r = ResultRecord(name, TIME, timer=r.timer, n=r.n)
        r.mean = float(mean_time.group(1)) * TIME_UNITS[mean_time.group(2)]
        r.stddev = _first_number(rng) if rng.startswith("stddev") else None
    elif value is None or value <= 0:
        r.status, r.error = "error", "no positive value"
    else:
        v = value * scale
        if tool in GAB_MEDIAN_TOOLS:
            r.median = v
        else:
            r.mean = v
        x = _first_number(rng)
        if x is not None and rng.rstrip().endswith("%"):
            r.ci_rel_halfwidth = abs(x) / 100.0
        elif x is not None and ("±" in rng or "+/-" in rng or rng.startswith("stddev")):
            r.stddev = abs(x) * scale
    if r.status == "ok" and r.mean is None and r.median is None:
        r.status, r.error = "error", "no value"
    return r


# --------------------------------------------------------------------------- what `bench history ingest` reads


def read_inputs(items: list[str], *, skip_unknown_units: bool = False) -> tuple[list[RunRecord], list[str]]:
    """Every input of an ingest, read and checked before anything is stored: (runs, one note per foreign
    source on what it did not carry). An item is an asv results folder (or one machine folder in it), a
    github-action-benchmark data.js/data.json, a results file, or a folder of results files (*.json)."""
    from bench.history.sources import read_results_file

    records: list[RunRecord] = []
    notes: list[str] = []
    for item in items:
        p = Path(item)
        if asv_results_root(p) is not None:
            imp = read_asv_results(p)
        elif p.is_file() and is_gab_file(p):
            imp = read_gab_file(p, skip_unknown_units=skip_unknown_units)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*.json") if f.is_file())
            if not found:
                raise InvalidResultsFile(f"{p}: a folder with no *.json file in it")
            records += [read_results_file(f) for f in found]
            continue
        else:
            records.append(read_results_file(p))
            continue
        records += imp.runs
        notes.append(imp.summary())
    return records, notes


def empty_runs(records: list[RunRecord]) -> list[RunRecord]:
    """The runs that carry no benchmark result at all (stored, but worth a warning)."""
    return [r for r in records if not r.results]
