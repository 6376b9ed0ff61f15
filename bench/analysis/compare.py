"""Per-benchmark verdicts between two runs (or a run and a window of earlier nights, or several re-runs
of each side), and the comparison's outcome: slower, same or faster, or inconclusive.

Most of the variance of a benchmark on a real machine is between runs (clocks, cache and memory placement,
neighbours), which the samples inside one run cannot see. So every change is judged against the
uncertainty of the two runs' medians (each run's own 95% CI of its median, from raw samples or from its
summary statistics) **plus** the noise between runs (BetweenRuns): the series' own night-to-night spread
from the history store (`bench history calibrate` derives it; compare uses it given the store), a
calibrated value from the settings, or else a conservative A/A default for the machine class, measured
by scripts/compare_aa.py. The within-run test alone never decides.

Per benchmark and metric, with w the change in the worse direction (log of the median ratio), se its
standard error and t the threshold (default 5%):
- **regression**: w > t and w is significant family-wise (its two-sided interval at 1 - alpha/m, m the
  number of benchmarks compared, lies above no change);
- **improvement**: the mirror image (better by more than t, family-wise significant);
- **unchanged** (same or faster): a slowdown as large as t is ruled out (one-sided 95% upper bound of w
  below t);
- **inconclusive**: otherwise: the runs cannot tell a change of that size from noise;
- **unreliable**: a run that was throttled (clocks held down in at least THROTTLE_MIN_FRACTION of its
  samples), failed, or has no spread to judge its noise; never judged.
A change far larger than the noise is a regression however noisy the samples: noise widens the interval,
it never hides a result. The outcome: slower when any benchmark regressed, inconclusive when any is
inconclusive or unreliable, else same or faster (exit 1, 3, 0; bad input or nothing compared: 2).

Each benchmark's test sees only its own samples, so a shift that moves every benchmark at once (other
clocks, a busy or different host, a change in code every workload runs) passes each test as a change
of that benchmark. `common_shift` looks across them: when significantly more benchmarks moved one way
than the other (a two-sided sign test), the comparison says so beside the verdicts.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from bench.analysis.diagnosis import THROTTLE_MIN_FRACTION
from bench.core.errors import BenchError
from bench.core.numbers import is_number
from bench.core.vocabulary import STATUS_OK
from bench.history import query
from bench.history.sources import HIGHER, ResultRecord, RunRecord, read_results_file
from bench.history.store import open_store

REGRESSION, IMPROVEMENT, UNCHANGED, UNRELIABLE = "regression", "improvement", "unchanged", "unreliable"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REGRESSION, IMPROVEMENT, UNCHANGED, INCONCLUSIVE, UNRELIABLE)
# The comparison's outcome and its exit status (2, bad input or nothing compared, is the CLI's).
SLOWER, SAME = "slower", "same or faster"
OUTCOMES = (SLOWER, SAME, INCONCLUSIVE)
EXIT_SAME, EXIT_SLOWER, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_STATUSES = {SAME: EXIT_SAME, SLOWER: EXIT_SLOWER, INCONCLUSIVE: EXIT_INCONCLUSIVE}
RULE_SAMPLES, RULE_SUMMARY, RULE_SINGLE, RULE_WINDOW = "samples", "summary", "single value", "window"
COMPARE_RULES = {
    RULE_SAMPLES: "raw samples: ratio of the runs' medians; its uncertainty is each median's 95% CI plus the noise "
                  "between runs",
    RULE_SUMMARY: "summary statistics only (no raw samples in a file): ratio of medians; each median's uncertainty "
                  "from its CI, else IQR/1.349 or the standard deviation and the rounds, plus the noise between runs",
    RULE_SINGLE: "a single deterministic value per run: the change itself, no interval",
    RULE_WINDOW: "the candidate's median against the window's nightly medians: their spread is the noise between "
                 "runs (t distribution)",
}
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
MIN_WINDOW_NIGHTS = 3
COMMON_SHIFT_MIN_BENCHMARKS = 6  # fewer cannot reach p < COMMON_SHIFT_ALPHA in a sign test
COMMON_SHIFT_ALPHA = 0.01
Z95 = 1.959963984540054


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CompareSettings:
    """Threshold (relative change that counts), noise target (largest acceptable 95% CI half-width of a
    run's median, for the trends' unreliable nights; None: half the threshold), alpha, the noise between
    runs (the standard deviation of the log ratio of two unchanged runs' medians; None: from the store,
    else the A/A default), and per-benchmark overrides (exact name or glob)."""

    threshold: float = DEFAULT_THRESHOLD
    noise_target: float | None = None
    alpha: float = DEFAULT_ALPHA
    overrides: tuple[tuple[str, float | None, float | None], ...] = ()
    source: str | None = None  # the file the settings came from
    between_runs: float | None = None
    between_runs_overrides: tuple[tuple[str, float], ...] = ()

    def for_benchmark(self, name: str) -> tuple[float, float]:
        """(threshold, noise target) for one benchmark: an exact name wins over glob patterns, the
        first matching pattern over later ones."""
        threshold, noise = self.threshold, self.noise_target
        hit = _match(self.overrides, name)
        if hit is not None:
            threshold = hit[1] if hit[1] is not None else threshold
            noise = hit[2] if hit[2] is not None else noise
        return threshold, (noise if noise is not None else threshold / 2.0)

    def between_runs_for(self, name: str) -> float | None:
        """The noise between runs the settings give for one benchmark (None: not set)."""
        hit = _match(self.between_runs_overrides, name)
        return hit[1] if hit is not None else self.between_runs


def _match(overrides: Sequence[tuple], name: str) -> tuple | None:
    hit = next((o for o in overrides if o[0] == name), None)
    return hit if hit is not None else next((o for o in overrides if fnmatch.fnmatchcase(name, o[0])), None)


def _fraction(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < math.inf):
        raise BenchError(f"{where}: {what} must be a positive fraction such as 0.05 (5%), got {value!r}")
    return float(value)


def settings_from_table(table: dict, where: str) -> CompareSettings:
    """CompareSettings from a `[tool.bench.compare]`-shaped table (see load_settings)."""
    known = {"threshold", "noise_target", "alpha", "between_runs", "benchmarks"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise BenchError(f"{where}: unknown compare setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kw: dict[str, Any] = {"source": where}
    for k in ("threshold", "noise_target", "between_runs"):
        if k in table:
            kw[k] = _fraction(table[k], k, where)
    if "alpha" in table:
        a = table["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise BenchError(f"{where}: alpha must be between 0 and 1, got {a!r}")
        kw["alpha"] = float(a)
    overrides, between = [], []
    benches = table.get("benchmarks", {})
    if not isinstance(benches, dict):
        raise BenchError(f"{where}: benchmarks must be a table of name or pattern = threshold or {{ threshold, noise_target }}")
    for pattern, v in benches.items():
        if isinstance(v, dict):
            bad = sorted(set(v) - {"threshold", "noise_target", "between_runs"})
            if bad:
                raise BenchError(f"{where}: benchmarks.{pattern!r}: unknown key(s) {', '.join(bad)}")
            if "between_runs" in v:
                between.append((pattern, _fraction(v["between_runs"], "between_runs", where)))
            overrides.append((pattern, _fraction(v["threshold"], "threshold", where) if "threshold" in v else None,
                              _fraction(v["noise_target"], "noise_target", where) if "noise_target" in v else None))
        else:
            overrides.append((pattern, _fraction(v, f"benchmarks.{pattern!r}", where), None))
    kw["overrides"] = tuple(overrides)
    kw["between_runs_overrides"] = tuple(between)
    return CompareSettings(**kw)


def load_settings(path: str | os.PathLike | None = None, *, directory: str | os.PathLike = ".") -> CompareSettings:
    """Settings from `path` (a TOML file: `[tool.bench.compare]`, `[compare]` or top-level keys), else from
    `[tool.bench.compare]` of pyproject.toml in `directory` when it has one, else the defaults."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    def read(p: Path) -> dict:
        try:
            with open(p, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise BenchError(f"{p}: no such settings file") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise BenchError(f"{p}: not a readable TOML file ({e})") from None

    if path is not None:
        data = read(Path(path))
        table = data.get("tool", {}).get("bench", {}).get("compare") or data.get("compare")
        if table is None:
            table = {k: v for k, v in data.items() if k != "tool"}
        return settings_from_table(table, str(path))
    pyproject = Path(directory) / "pyproject.toml"
    if pyproject.is_file():
        table = read(pyproject).get("tool", {}).get("bench", {}).get("compare")
        if table is not None:
            return settings_from_table(table, f"{pyproject} [tool.bench.compare]")
    return CompareSettings()


# --------------------------------------------------------------------------- reliability


def is_single_value(r: ResultRecord) -> bool:
    return not r.samples and (r.n == 1) and r.ci_low is None and r.q1 is None


def relative_halfwidth(r: ResultRecord) -> float | None:
    """The 95% CI half-width of a result's median relative to it: recorded, else estimated from the
    IQR (or standard deviation) and the number of rounds; 0 for a single deterministic value."""
    if is_single_value(r):
        return 0.0
    if is_number(r.ci_rel_halfwidth):
        return float(r.ci_rel_halfwidth)
    if not (is_number(r.median) and r.median > 0):
        return None
    if is_number(r.ci_low) and is_number(r.ci_high):
        return (r.ci_high - r.ci_low) / 2.0 / r.median
    sigma = (r.q3 - r.q1) / 1.349 if is_number(r.q1) and is_number(r.q3) else (r.stddev if is_number(r.stddev) else None)
    if sigma is None or not r.n or r.n < 2:
        return None
    return Z95 * 1.2533 * sigma / math.sqrt(r.n) / r.median  # SE of a median ~ 1.2533 sigma / sqrt(n)


def unreliable_reason(r: ResultRecord, noise_target: float) -> str | None:
    """Why a result cannot support a verdict (None: it can). The one home of the rule: compare,
    change points and trends all use it."""
    if r.status != STATUS_OK:
        return f"{r.status}" + (f": {r.error}" if r.error else "")
    if not (is_number(r.median) and r.median > 0):
        return "no value"
    if r.throttled and (r.throttled_fraction is None or r.throttled_fraction >= THROTTLE_MIN_FRACTION):
        share = f" in {r.throttled_fraction:.0%} of samples" if is_number(r.throttled_fraction) else ""
        return f"throttled: clocks held down{share}"
    hw = relative_halfwidth(r)
    if hw is None:
        return "no spread to judge its noise (fewer than 2 samples)"
    if hw > noise_target:  # judged on the unrounded values; shown with the digits that tell them apart
        shown, target = percents_apart(hw, noise_target)
        return f"noisy: its median's 95% CI is ±{shown}, wider than the noise target ±{target}"
    return None


def percents_apart(a: float, b: float, max_decimals: int = 4) -> tuple[str, str]:
    """`a` and `b` as percentages with the fewest decimals (at least one) that show them different:
    (0.02504, 0.025) -> ('2.504%', '2.500%'), never '2.5%' wider than '2.5%'."""
    for d in range(1, max_decimals + 1):
        shown = f"{a:.{d}%}", f"{b:.{d}%}"
        if shown[0] != shown[1]:
            break
    return shown


# --------------------------------------------------------------------------- the two sides


class NoBaseline(BenchError):
    """`--against` found no earlier run to compare with (e.g. a machine's first night)."""


@dataclass
class Side:
    """One run as compare sees it: where it came from and its results by (benchmark, metric)."""

    name: str
    hardware_key: str
    hardware_label: str
    time_text: str | None = None
    commit: str | None = None
    run_id: int | None = None
    path: str | None = None
    content_hash: str | None = None
    software_hash: str | None = None
    time: Any = None
    results: dict[tuple[str, str], ResultRecord] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "run_id": self.run_id, "path": self.path, "time": self.time_text,
                "commit": self.commit, "hardware": self.hardware_key, "hardware_label": self.hardware_label}


def side_from_record(rec: RunRecord) -> Side:
    return Side(name=rec.path, hardware_key=rec.hardware_key, hardware_label=rec.hardware_label,
                time_text=rec.time_text, commit=rec.commit, path=rec.path, content_hash=rec.content_hash,
                software_hash=rec.software_hash, time=rec.time,
                results={(r.benchmark, r.metric): r for r in rec.results})


def side_from_run(store, run_id: int) -> Side:
    info = query.get_run(store, run_id)
    return Side(name=f"run {info.id} ({info.time_text})", hardware_key=info.hardware_key,
                hardware_label=info.hardware_label, time_text=info.time_text, commit=info.commit, run_id=info.id,
                path=info.path, content_hash=info.content_hash, software_hash=info.software_hash, time=info.time,
                results={(r.benchmark, r.metric): r for r in query.run_results(store, info.id)})


def _run_ref(spec: str) -> int | None:
    s = spec[4:] if spec.startswith("run:") else spec
    return int(s) if s.isdigit() else None


def load_side(spec: str, *, db: str | None = None) -> Side:
    """A results file (an existing path), or a run in the store (`run:ID` or a bare ID)."""
    if os.path.exists(spec) or _run_ref(spec) is None:
        return side_from_record(read_results_file(spec))
    with open_store(db) as store:
        return side_from_run(store, _run_ref(spec))


def baseline_for(candidate: Side, against: str, *, db: str | None = None) -> Side | list[Side]:
    """The baseline named by `--against`: `last` (the newest earlier run on the candidate's hardware),
    `last-good` (the same, skipping runs a recorded compare found regressed), `window:N` (the N newest
    earlier runs) or a run id."""
    with open_store(db) as store:
        ref = _run_ref(against)
        if ref is not None:
            return side_from_run(store, ref)
        exclude = []
        if candidate.run_id is not None:
            exclude.append(candidate.run_id)
        elif candidate.content_hash:
            same = query.run_by_content_hash(store, candidate.content_hash)
            if same is not None:
                exclude.append(same.id)
        if against in ("last", "last-good"):
            found = query.earlier_runs(store, candidate.hardware_key, before=candidate.time, exclude=exclude,
                                       limit=1, skip_regressed=against == "last-good")
            if not found:
                raise NoBaseline(f"--against {against}: no earlier run on {candidate.hardware_label} in "
                                 f"{store.where}")
            return side_from_run(store, found[0].id)
        if against.startswith("window:") and against[7:].isdigit() and int(against[7:]) >= MIN_WINDOW_NIGHTS:
            n = int(against[7:])
            found = query.earlier_runs(store, candidate.hardware_key, before=candidate.time, exclude=exclude,
                                       limit=n, skip_regressed=True)
            if len(found) < MIN_WINDOW_NIGHTS:
                raise NoBaseline(f"--against {against}: only {len(found)} earlier run(s) on "
                                 f"{candidate.hardware_label} in {store.where}, need at least {MIN_WINDOW_NIGHTS}")
            return [side_from_run(store, r.id) for r in found]
    raise BenchError(f"--against {against!r}: expected last, last-good, window:N (N >= {MIN_WINDOW_NIGHTS}) or a run id")


# --------------------------------------------------------------------------- verdicts


@dataclass
class BenchmarkVerdict:
    benchmark: str
    metric: str
    unit: str
    better: str
    verdict: str
    rule: str | None
    threshold: float
    noise_target: float
    baseline: float | None = None        # median
    candidate: float | None = None
    change: float | None = None          # candidate / baseline - 1 (signed; > 0 is a larger value)
    change_low: float | None = None      # its 95% interval
    change_high: float | None = None
    p_value: float | None = None
    baseline_n: int | None = None
    candidate_n: int | None = None
    reason: str | None = None
    between_runs: float | None = None    # sigma of the log ratio of two unchanged runs that was assumed
    noise_source: str | None = None      # where it came from (BetweenRuns.source, or "window")
    detectable: float | None = None      # the smallest change these runs can call (family-wise)
    baseline_runs: int = 1               # runs pooled on each side (re-runs, or a window's nights)
    candidate_runs: int = 1

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class CommonShift:
    """Benchmarks that moved the same way between the runs: of `n` that changed at all (one metric each,
    unreliable ones included: a shift of the machine makes points noisy too), `better` got better and
    `worse` worse; `median_change` is the median signed change of the benchmarks in the majority's
    direction; `p_value` the two-sided sign test of better against worse."""

    n: int
    better: int
    worse: int
    median_change: float
    p_value: float

    @property
    def direction(self) -> str:
        return IMPROVEMENT if self.better > self.worse else REGRESSION

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "direction": self.direction}


def common_shift(verdicts: Sequence["BenchmarkVerdict"], alpha: float = COMMON_SHIFT_ALPHA) -> CommonShift | None:
    """A shift shared by the benchmarks, or None: per benchmark its first metric's change (step time
    and throughput of one benchmark are one observation, not two), then a two-sided sign test of how
    many got better against how many got worse; None below COMMON_SHIFT_MIN_BENCHMARKS or when p >= alpha."""
    first: dict[str, BenchmarkVerdict] = {}
    for v in sorted(verdicts, key=lambda v: (v.benchmark, v.metric)):
        if is_number(v.change) and v.change != 0 and v.benchmark not in first:
            first[v.benchmark] = v
    if len(first) < COMMON_SHIFT_MIN_BENCHMARKS:
        return None
    better = [v for v in first.values() if (v.change < 0) == (v.better != HIGHER)]
    worse = [v for v in first.values() if v not in better]
    p = float(sps.binomtest(len(better), len(first), 0.5).pvalue)
    if p >= alpha:
        return None
    majority = better if len(better) > len(worse) else worse
    return CommonShift(len(first), len(better), len(worse), float(np.median([v.change for v in majority])), p)


@dataclass
class Comparison:
    baseline: dict
    candidate: dict
    settings: dict
    verdicts: list[BenchmarkVerdict] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    cross_hardware: bool = False
    software_changed: bool | None = None
    common_shift: CommonShift | None = None
    between_runs: dict = field(default_factory=dict)   # the noise assumed: sources, counts, the default's value
    reruns: dict = field(default_factory=dict)         # runs pooled per side when re-runs were made

    def count(self, verdict: str) -> int:
        return sum(1 for v in self.verdicts if v.verdict == verdict)

    @property
    def regressed(self) -> bool:
        return self.count(REGRESSION) > 0

    @property
    def outcome(self) -> str:
        """SLOWER when any benchmark regressed; INCONCLUSIVE when any is inconclusive or could not be
        judged (a slowdown among them is not ruled out); else SAME."""
        if self.regressed:
            return SLOWER
        if self.count(INCONCLUSIVE) or self.count(UNRELIABLE) or not self.verdicts:
            return INCONCLUSIVE
        return SAME

    def to_dict(self) -> dict:
        return {"outcome": self.outcome if self.verdicts else None, "exit_status": exit_status(self),
                "baseline": self.baseline, "candidate": self.candidate, "settings": self.settings,
                "cross_hardware": self.cross_hardware, "software_changed": self.software_changed,
                "between_runs": self.between_runs, "reruns": self.reruns or None,
                "counts": {v: self.count(v) for v in VERDICTS}, "rules": COMPARE_RULES,
                "verdicts": [v.to_dict() for v in self.verdicts],
                "only_in_baseline": self.only_in_baseline, "only_in_candidate": self.only_in_candidate,
                "common_shift": self.common_shift.to_dict() if self.common_shift else None}


def exit_status(c: Comparison) -> int:
    """EXIT_SAME (0) same or faster, EXIT_SLOWER (1) a regression, EXIT_INCONCLUSIVE (3) the runs cannot
    tell; EXIT_BAD_INPUT (2) when nothing was compared (and for bad input, the CLI's)."""
    return EXIT_STATUSES[c.outcome] if c.verdicts else EXIT_BAD_INPUT


# --------------------------------------------------------------------------- noise between runs


@dataclass(frozen=True)
class BetweenRuns:
    """The noise between two runs of unchanged code: `sigma`, the standard deviation of the log ratio of
    their medians; `source` says where it came from (SOURCE_DEFAULT, SOURCE_HISTORY, SOURCE_SETTINGS),
    `machine_class` the class a default was measured on, `nights` how many nights a history had."""

    sigma: float
    source: str
    machine_class: str | None = None
    nights: int | None = None

    @property
    def halfwidth(self) -> float:
        """Two unchanged runs differ by up to this much, 95% of the time (relative)."""
        return math.expm1(Z95 * self.sigma)

    def to_dict(self) -> dict:
        return {"sigma": self.sigma, "halfwidth_95": self.halfwidth, "source": self.source,
                "machine_class": self.machine_class, "nights": self.nights}


SOURCE_DEFAULT, SOURCE_HISTORY, SOURCE_SETTINGS = "A/A default", "history", "settings"
CPU_RUNNERS, GPU_RUNNERS = "CPU runners", "GPU runners"
# sigma of log(median ratio) of two back-to-back runs of unchanged code: bench.analysis.calibrate's rule
# (the larger of the robust and the tail estimate) over 180 consecutive pairs of scripts/compare_aa.py's
# plain file, two sets of 31 runs on a 2-core machine under load average 7 to 13 (2026-12-06,
# docs/compare.md). Conservative for a quieter runner: calibrate a store for a series' own noise. No A/A
# data for GPU runners yet: they get the CPU value, and the output says so.
AA_DEFAULT_SIGMA = {CPU_RUNNERS: 0.48}


def machine_class(side: "Side") -> str:
    """GPU runners when any result was timed with CUDA events, else CPU runners."""
    timers = {r.timer for r in side.results.values()}
    return GPU_RUNNERS if any(t and "cuda" in t for t in timers) else CPU_RUNNERS


def default_between_runs(side: "Side") -> BetweenRuns:
    cls = machine_class(side)
    return BetweenRuns(AA_DEFAULT_SIGMA.get(cls, AA_DEFAULT_SIGMA[CPU_RUNNERS]), SOURCE_DEFAULT,
                       cls if cls in AA_DEFAULT_SIGMA else CPU_RUNNERS)


# --------------------------------------------------------------------------- one benchmark


def _judged(r: ResultRecord) -> str | None:
    """Why a result cannot be judged at all (None: it can). Noise is not a reason: it widens the interval."""
    return unreliable_reason(r, math.inf)


def _log_se(r: ResultRecord) -> float:
    """Standard error of the log of a run's median, from its 95% CI half-width."""
    return (relative_halfwidth(r) or 0.0) / Z95


def family_z(alpha: float, family: int) -> float:
    """Two-sided normal quantile for `family` benchmarks judged at once (Bonferroni)."""
    return float(sps.norm.isf(alpha / (2 * max(1, family))))


def _decide(v: BenchmarkVerdict, d: float, se: float, z_family: float, z_same: float) -> None:
    """The rule of the module docstring on the log change `d` (signed: > 0 is a larger value) with
    standard error `se`; fills the verdict, its 95% interval, p and the smallest change it could call."""
    v.change = math.expm1(d)
    v.change_low, v.change_high = math.expm1(d - Z95 * se), math.expm1(d + Z95 * se)
    v.p_value = float(2 * sps.norm.sf(abs(d) / se)) if se > 0 else (0.0 if d else 1.0)
    v.detectable = math.expm1(z_family * se)
    w = d if v.better != HIGHER else -d
    t = math.log1p(v.threshold)
    if w > t and w - z_family * se > 0:
        v.verdict = REGRESSION
    elif w < -t and w + z_family * se < 0:
        v.verdict = IMPROVEMENT
    elif w + z_same * se <= t:
        v.verdict = UNCHANGED
    else:
        v.verdict = INCONCLUSIVE
        v.reason = (f"the runs cannot tell a change of {v.detectable:.0%} from noise "
                    f"(a slowdown of {v.threshold:.0%} is not ruled out)")


def compare_results(base: ResultRecord | Sequence[ResultRecord], cand: ResultRecord | Sequence[ResultRecord],
                    threshold: float, noise_target: float | None = None, alpha: float = DEFAULT_ALPHA, *,
                    between_runs: BetweenRuns | None = None, family: int = 1) -> BenchmarkVerdict:
    """One benchmark's metric: baseline against candidate, each one run or several re-runs (pooled: the
    mean of their log medians). `between_runs`: the noise between runs (default: the A/A default for CPU
    runners); `family`: how many benchmarks are judged together (the family-wise correction)."""
    bases = list(base) if isinstance(base, (list, tuple)) else [base]
    cands = list(cand) if isinstance(cand, (list, tuple)) else [cand]
    b0, c0 = bases[0], cands[0]
    noise = between_runs or BetweenRuns(AA_DEFAULT_SIGMA[CPU_RUNNERS], SOURCE_DEFAULT, CPU_RUNNERS)
    v = BenchmarkVerdict(c0.benchmark, c0.metric, c0.unit, c0.better, UNRELIABLE, None, threshold,
                         noise_target if noise_target is not None else threshold / 2, baseline=b0.median,
                         candidate=c0.median, baseline_n=b0.n, candidate_n=c0.n, between_runs=noise.sigma,
                         noise_source=noise.source, baseline_runs=len(bases), candidate_runs=len(cands))
    reasons = [f"{side}: {why}" for side, rs in (("baseline", bases), ("candidate", cands)) for r in rs
               if (why := _judged(r))]
    if is_number(b0.median) and is_number(c0.median) and b0.median > 0:
        v.change = c0.median / b0.median - 1.0
    if reasons:
        v.reason = "; ".join(dict.fromkeys(reasons))
        return v
    if all(is_single_value(r) for r in bases + cands):
        v.rule = RULE_SINGLE
        v.baseline, v.candidate = b0.median, cands[-1].median
        v.change = v.change_low = v.change_high = cands[-1].median / b0.median - 1.0
        v.p_value, v.between_runs, v.noise_source = None, None, None
        w = v.change if v.better != HIGHER else -v.change
        v.verdict = (REGRESSION if w > threshold else IMPROVEMENT if w < -threshold else UNCHANGED)
        return v
    raw = all(r.samples and len(r.samples) >= 2 for r in bases + cands)
    v.rule = RULE_SAMPLES if raw else RULE_SUMMARY
    lb = np.log([r.median for r in bases])
    lc = np.log([r.median for r in cands])
    v.baseline, v.candidate = float(np.exp(lb.mean())), float(np.exp(lc.mean()))
    # a run's level scatters sigma/sqrt(2) around the truth; re-runs average it down, and where there are
    # enough of them their own spread is used when it is the larger
    run_var = noise.sigma ** 2 / 2.0
    dof = len(lb) + len(lc) - 2
    if dof >= 2:
        pooled = (float(np.sum((lb - lb.mean()) ** 2)) + float(np.sum((lc - lc.mean()) ** 2))) / dof
        run_var = max(run_var, pooled)
    within = sum(_log_se(r) ** 2 for r in bases) / len(bases) ** 2 + sum(_log_se(r) ** 2 for r in cands) / len(cands) ** 2
    se = math.sqrt(run_var * (1.0 / len(lb) + 1.0 / len(lc)) + within)
    z = family_z(alpha, family)
    _decide(v, float(lc.mean() - lb.mean()), se, z, float(sps.norm.isf(DEFAULT_ALPHA)))
    return v


def compare_window(window: Sequence[ResultRecord], cand: ResultRecord, threshold: float,
                   noise_target: float | None = None, alpha: float = DEFAULT_ALPHA, *,
                   family: int = 1) -> BenchmarkVerdict:
    """One benchmark's metric: the candidate against the nightly medians of a window of earlier runs,
    whose spread is the noise between runs (t distribution)."""
    v = BenchmarkVerdict(cand.benchmark, cand.metric, cand.unit, cand.better, UNRELIABLE, RULE_WINDOW, threshold,
                         noise_target if noise_target is not None else threshold / 2, candidate=cand.median,
                         candidate_n=cand.n, noise_source="window")
    why = _judged(cand)
    good = [r.median for r in window if _judged(r) is None]
    v.baseline_n = v.baseline_runs = len(good)
    if good:
        v.baseline = float(np.exp(np.mean(np.log(good))))
        if is_number(cand.median) and cand.median > 0:
            v.change = cand.median / v.baseline - 1.0
    if why:
        v.reason = f"candidate: {why}"
        return v
    if len(good) < MIN_WINDOW_NIGHTS:
        v.reason = (f"baseline: only {len(good)} reliable night(s) in the window of {len(window)}, "
                    f"need {MIN_WINDOW_NIGHTS}")
        return v
    logs = np.log(good)
    n = len(logs)
    d = math.log(cand.median) - float(np.mean(logs))
    night_var = float(np.var(logs, ddof=1))
    v.between_runs = math.sqrt(2 * night_var)
    se = math.sqrt(night_var * (1.0 + 1.0 / n) + _log_se(cand) ** 2)
    # t quantiles for the window's few nights, expressed on the normal scale _decide uses
    z_family = float(sps.t.isf(alpha / (2 * max(1, family)), n - 1))
    _decide(v, d, se, z_family, float(sps.t.isf(DEFAULT_ALPHA, n - 1)))
    v.p_value = float(2 * sps.t.sf(abs(d) / se, n - 1)) if se > 0 else (0.0 if d else 1.0)
    return v


def compare(baseline: Side | Sequence[Side], candidate: Side, settings: CompareSettings | None = None, *,
            cross_hardware: bool = False, history: dict[tuple[str, str], BetweenRuns] | None = None,
            more_baselines: Sequence[Side] = (), more_candidates: Sequence[Side] = ()) -> Comparison:
    """Every benchmark and metric the candidate shares with the baseline (a run, or a window of runs).

    The noise between runs, per benchmark: the settings' `between_runs` (calibrated) where they set one,
    else `history` (bench.analysis.calibrate.between_runs_from_store: the series' own night-to-night
    spread), else the A/A default for the machine class. `more_baselines` / `more_candidates`: re-runs of
    each side, pooled with it (not with a window)."""
    settings = settings or CompareSettings()
    window = list(baseline) if isinstance(baseline, (list, tuple)) else None
    sides = window if window is not None else [baseline, *more_baselines]
    for b in [*sides, *more_candidates]:
        if b.hardware_key != candidate.hardware_key and not cross_hardware:
            raise BenchError(f"different hardware: the baseline {b.name} ran on {b.hardware_label}, the candidate "
                             f"{candidate.name} on {candidate.hardware_label}; pass --cross-hardware to compare anyway")
    first = sides[0]
    base_desc = first.describe() if window is None else {
        "name": f"window of {len(window)} runs", "runs": [s.describe() for s in window],
        "hardware": first.hardware_key, "hardware_label": first.hardware_label}
    default = default_between_runs(candidate)
    out = Comparison(baseline=base_desc, candidate=candidate.describe(), cross_hardware=cross_hardware,
                     settings={"threshold": settings.threshold, "noise_target": settings.noise_target
                               if settings.noise_target is not None else settings.threshold / 2,
                               "alpha": settings.alpha, "overrides": [list(o) for o in settings.overrides],
                               "between_runs": settings.between_runs, "source": settings.source},
                     between_runs={"default": default.to_dict(), "sources": {}})
    if more_baselines or more_candidates:
        out.reruns = {"baseline_runs": 1 + len(more_baselines), "candidate_runs": 1 + len(more_candidates),
                      "baseline": [s.describe() for s in more_baselines],
                      "candidate": [s.describe() for s in more_candidates]}
    soft = {s.software_hash for s in sides}
    if candidate.software_hash and None not in soft:
        out.software_changed = any(h != candidate.software_hash for h in soft)
    cands = [candidate, *more_candidates]
    base_keys = set().union(*(s.results for s in sides))
    shared = []
    for key in sorted(set(candidate.results) | base_keys):
        name = f"{key[0]} ({key[1]})"
        if key not in candidate.results:
            out.only_in_baseline.append(name)
        elif key not in base_keys:
            out.only_in_candidate.append(name)
        else:
            shared.append(key)
    family = len({k[0] for k in shared})  # step time and throughput of one benchmark are one observation
    sources: dict[str, int] = {}
    for key in shared:
        threshold, noise = settings.for_benchmark(key[0])
        if window is not None:
            v = compare_window([s.results[key] for s in window if key in s.results], candidate.results[key],
                               threshold, noise, settings.alpha, family=family)
        else:
            calibrated = settings.between_runs_for(key[0])
            between = (BetweenRuns(calibrated, SOURCE_SETTINGS) if calibrated is not None
                       else (history or {}).get(key) or default)
            v = compare_results([s.results[key] for s in sides if key in s.results],
                                [s.results[key] for s in cands if key in s.results], threshold, noise,
                                settings.alpha, between_runs=between, family=family)
        out.verdicts.append(v)
        if v.noise_source:
            sources[v.noise_source] = sources.get(v.noise_source, 0) + 1
    out.between_runs["sources"] = sources
    order = {REGRESSION: 0, INCONCLUSIVE: 1, UNRELIABLE: 2, IMPROVEMENT: 3, UNCHANGED: 4}
    out.verdicts.sort(key=lambda v: (order[v.verdict], v.benchmark, v.metric))
    out.common_shift = common_shift(out.verdicts)
    return out
