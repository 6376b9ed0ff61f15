"""How `bench history changes` judges real public histories, side by side with asv's own step detection
(`asv.step_detect.detect_steps`, on the same series of nightly values, weighted by each night's own
spread as asv weighs them). A benchmark of the judgments, not a test.

Sources: the test bed written by scripts/realhist_convert.py (tests/data/realhist: a few series of each;
`--bed DIR` for the whole sources). Per source and rule it prints:
  change points       per-benchmark changes (excursions count once) + machine-wide events
  documented          documented events found (a change within +-2 runs of the event, same direction)
  in clusters         per-benchmark changes that sit in a machine-wide cluster (>= 20% of the machine's
                      series stepping the same way within +-2 runs): each should have been one event
  machine events      machine-wide events reported (bench only)
  transients          per-benchmark changes whose 20-run medians before and after agree within 2%
  series lost         series with values but no night left in the trend (the noise gate's loss)
  wall time           detection only, wall and CPU (the ingest is timed apart)

asv is installed for this script only (pip install asv); it is not a dependency of bench.

    python scripts/realhist_quality.py                      # the slices in tests/data/realhist
    python scripts/realhist_quality.py --bed reports/realhist  # the whole sources
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.analysis.trends import (
    SCOPE_MACHINE,
    analyse,
    machine_runs,
    night_rel_se,
    night_value,
)
from bench.history import query
from bench.history.foreign import read_inputs
from bench.history.store import open_store

REPO = Path(__file__).resolve().parents[1]
try:
    import asv.step_detect  # noqa: F401  (installed for this script only)

    HAVE_ASV = True
except ImportError:
    HAVE_ASV = False
WITHIN = 2            # runs: a documented event found this close, same direction
CLUSTER_SHARE = 0.2   # share of a machine's series stepping together: a machine-wide cluster
TRANSIENT_RUNS, TRANSIENT_AGREE = 20, 0.02


@dataclass(frozen=True)
class Event:
    """A documented event: on `machine` (a hardware key; one ending in ":" is a prefix, "gab:" every suite), at the
    run of commit `commit` (a prefix), on the series whose name contains `benchmark` ("" for all), in
    direction `way` (+1 slower, -1 faster, 0 not documented: either counts), and its evidence."""

    source: str
    machine: str
    commit: str
    benchmark: str
    way: int
    evidence: str


EVENTS = [
    Event("empymod", "asv:dtr-latitude:", "eeba70b", "kernel.Kernel.", -1,
          "empymod v2.0.0 (2020-04-29, commit eeba70b): 'All four kernel routines (wavenumber, greenfct, "
          "reflections, and fields) are now numba-jitted' (github.com/emsig/empymod/releases/tag/v2.0.0)"),
    Event("gab", "gab:", "da5ac2e", "", -1,
          "every suite of data.js ran faster from this run on, after a 4-month gap; GitHub moved public "
          "repositories' Linux runners to 4 vCPUs in January 2024 (from memory, not verified offline)"),
    # fd128cf changed `runs-on: ubuntu-20.04` to ubuntu-latest in catch2.yml, catch2_v2.yml and cpp.yml only
    # (and examples/cpp/Makefile): the suites those workflows run.
    *[Event("gab", f"gab:{suite}", "fd128cf", "", 0,
            "commit fd128cf 'chore: update ubuntu runner from 20.04 to latest (#312)': its diff moves this "
            "suite's workflow from ubuntu-20.04 to ubuntu-latest")
      for suite in ("C++ Benchmark", "Catch2 Benchmark", "Catch2 Benchmark (v3)")],
]
# django/django-asv: no documented performance event could be verified offline (its own commits change
# benchmarks and workflow permissions, not the runners; Django's commits are not in the snapshot).


def load_events(path: Path | None) -> list[Event]:
    return list(EVENTS)


def ingest(bed: Path, name: str, db: Path) -> tuple[float, list[str]]:
    paths = {"django": [bed / "django" / "results"], "empymod": [bed / "empymod" / "results"],
             "gab": [bed / "gab" / "data.js"]}[name]
    t0 = time.perf_counter()
    records, notes = read_inputs([str(p) for p in paths], skip_unknown_units=True)
    with open_store(db, create=True) as store:
        store.ingest_records(records)
    return time.perf_counter() - t0, notes


def asv_steps(s) -> tuple[list[tuple[int, float]], float]:
    """asv's change points in one series: (run id of the first night after, relative change)."""
    from asv.step_detect import detect_steps

    keep = [i for i, r in enumerate(s.results) if night_value(r) is not None and not (r.throttled)]
    if len(keep) < 2:
        return [], np.zeros(2)
    y = [night_value(s.results[i]) for i in keep]
    se = [night_rel_se(s.results[i]) for i in keep]
    w = [None if e is None or e <= 0 else 1.0 / (e * v) for e, v in zip(se, y)]
    t0, c0 = time.perf_counter(), time.process_time()
    steps = detect_steps(y, w)
    dt = np.array([time.perf_counter() - t0, time.process_time() - c0])
    out = []
    for a, b in zip(steps[:-1], steps[1:]):
        out.append((s.run_ids[keep[b[0]]], b[2] / a[2] - 1.0))
    return out, dt


def transient(values: list[float], at: int) -> bool:
    before = values[max(0, at - TRANSIENT_RUNS):at]
    after = values[at:at + TRANSIENT_RUNS]
    if len(before) < 3 or len(after) < 3:
        return False
    return abs(np.median(after) / np.median(before) - 1.0) < TRANSIENT_AGREE


def clusters(changes: list[tuple[str, int, int]], n_series: dict[str, int]) -> set[int]:
    """Indices of the changes (machine, position, way) inside a machine-wide cluster."""
    inside: set[int] = set()
    by = defaultdict(list)
    for i, (m, pos, way) in enumerate(changes):
        by[(m, way)].append((pos, i))
    for (m, way), items in by.items():
        for pos, _ in items:
            near = [i for p, i in items if abs(p - pos) <= WITHIN]
            if len(near) >= max(3, CLUSTER_SHARE * n_series[m]):
                inside.update(near)
    return inside


def evaluate(name: str, db: Path, events: list[Event]) -> dict[str, dict]:
    with open_store(db) as store:
        all_series = query.series(store)
    order = machine_runs(all_series)
    pos = {m: {rid: i for i, rid in enumerate(ids)} for m, ids in order.items()}
    commits = {m: [None] * len(ids) for m, ids in order.items()}
    for s in all_series:
        for rid, c in zip(s.run_ids, s.commits):
            commits[s.hardware_key][pos[s.hardware_key][rid]] = c
    n_series = defaultdict(int)
    for s in all_series:
        n_series[s.hardware_key] += 1
    values = {(s.hardware_key, s.benchmark, s.metric): (s, [night_value(r) for r in s.results]) for s in all_series}

    t0, c0 = time.perf_counter(), time.process_time()
    per_series, changes = analyse(all_series)
    bench_time = (time.perf_counter() - t0, time.process_time() - c0)
    lost = sum(1 for ss in per_series if not ss.keep and any(night_value(r) for r in ss.series.results))

    asv_time, asv_changes = np.zeros(2), []  # (machine, benchmark, metric, run id, change, worse)
    for s in (all_series if HAVE_ASV else []):
        found, dt = asv_steps(s)
        asv_time += dt
        for rid, ch in found:
            worse = ch > 0 if s.better != "higher" else ch < 0
            asv_changes.append((s.hardware_key, s.benchmark, s.metric, rid, ch, worse))

    def series_pos(key, rid):
        s, _ = values[key]
        return s.run_ids.index(rid)

    def is_transient(key, rid):
        s, v = values[key]
        i = s.run_ids.index(rid)
        kept = [(j, x) for j, x in enumerate(v) if x is not None]
        at = next((k for k, (j, _) in enumerate(kept) if j >= i), len(kept))
        return transient([x for _, x in kept], at)

    def event_runs(e: Event) -> list[tuple[str, int]]:
        """(machine, run position) of the event on every machine it names; none before a machine's 2nd run."""
        out = []
        for m in order:
            if not (m == e.machine or (e.machine.endswith(":") and m.startswith(e.machine))):
                continue
            at = next((i for i, c in enumerate(commits[m]) if c and c.startswith(e.commit)), None)
            if at:
                out.append((m, at))
        return out

    def way_ok(e: Event, worse: bool) -> bool:
        return e.way == 0 or (1 if worse else -1) == e.way

    out = {}
    # bench
    bench_rows = [c for c in changes if c.scope != SCOPE_MACHINE]
    machine_rows = [c for c in changes if c.scope == SCOPE_MACHINE]
    bench_ways = [(c.hardware, pos[c.hardware][c.run_id], 1 if c.worse else -1) for c in bench_rows if c.kind != "excursion"]
    in_cl = clusters(bench_ways, n_series)
    steps_only = [c for c in bench_rows if c.kind != "excursion"]
    trans = sum(1 for c in steps_only if is_transient((c.hardware, c.benchmark, c.metric), c.run_id))
    documented = 0
    for e in events:
        for m, at in event_runs(e):
            documented += any(abs(pos[c.hardware][c.run_id] - at) <= WITHIN and way_ok(e, c.worse) and c.hardware == m
                              and (e.benchmark in c.benchmark or any(e.benchmark in b for b in (c.benchmarks or [])))
                              for c in changes)
    out["bench"] = {"change points": len(bench_rows) + len(machine_rows), "documented": documented,
                    "in clusters": len(in_cl), "machine events": len(machine_rows),
                    "transients": f"{trans} of {len(steps_only)}", "series lost": lost,
                    "wall time": f"{bench_time[0]:.1f} s ({bench_time[1]:.1f} s CPU)"}
    # asv
    asv_ways = [(m, pos[m][rid], 1 if worse else -1) for m, b, met, rid, ch, worse in asv_changes]
    in_cl = clusters(asv_ways, n_series)
    trans = sum(1 for m, b, met, rid, ch, worse in asv_changes if is_transient((m, b, met), rid))
    documented = 0
    for e in events:
        for em, at in event_runs(e):
            documented += any(abs(pos[m][rid] - at) <= WITHIN and way_ok(e, worse) and m == em and e.benchmark in b
                              for m, b, met, rid, ch, worse in asv_changes)
    out["asv.step_detect" if HAVE_ASV else "asv.step_detect (not installed: pip install asv)"] = {"change points": len(asv_changes), "documented": documented, "in clusters": len(in_cl),
                              "machine events": "—", "transients": f"{trans} of {len(asv_changes)}",
                              "series lost": "—",
                              "wall time": f"{asv_time[0]:.1f} s ({asv_time[1]:.1f} s CPU)"}
    out["_info"] = {"series": len(all_series), "runs": sum(len(v) for v in order.values()),
                    "events": sum(len(event_runs(e)) for e in events)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bed", default=str(REPO / "tests" / "data" / "realhist"),
                    help="the test bed (scripts/realhist_convert.py's output); default: the tests' slices")
    ap.add_argument("--source", action="append", choices=("django", "empymod", "gab"))
    ap.add_argument("--stores", help="keep each source's store in this folder and reuse it on later runs "
                                     "(the ingest is then not timed again)")
    args = ap.parse_args(argv)
    bed = Path(args.bed)
    events = load_events(None)
    cols = ["change points", "documented", "in clusters", "machine events", "transients", "series lost", "wall time"]
    print(f"test bed: {bed}")
    print("| source | rule | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in args.source or ["django", "empymod", "gab"]:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(args.stores or tmp) / f"{name}.sqlite"
            db.parent.mkdir(parents=True, exist_ok=True)
            ingest_s = ingest(bed, name, db)[0] if not db.exists() else None
            res = evaluate(name, db, [e for e in events if e.source == name])
        info = res.pop("_info")
        label = f"{name} ({info['series']} series, {info['runs']} runs, {info['events']} documented events; " + \
            (f"ingest {ingest_s:.1f} s)" if ingest_s is not None else "store reused)")
        for rule, row in res.items():
            print(f"| {label} | {rule} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
