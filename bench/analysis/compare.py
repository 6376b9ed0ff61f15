"""Per-benchmark verdicts between two runs (or a run and a window of earlier nights): regression,
improvement, unchanged or unreliable, with the change, its 95% interval and the rule that decided.

The rules (COMPARE_RULES says them in words):
- **unreliable** first: a result whose clocks were held down (throttled in at least
  THROTTLE_MIN_FRACTION of its samples), whose median's 95% CI half-width exceeds the noise target
  (default: half the threshold, so a run can resolve a change of the threshold's size), that failed,
  or that has no spread to judge, is never a regression or an improvement.
- **samples** (both runs have raw samples): change = median ratio - 1; its 95% interval is a
  percentile bootstrap of the median ratio (scipy); significant when the Mann-Whitney U test gives
  p < alpha and the interval excludes 0.
- **summary** (a file with summary statistics only): the ratio of medians with a normal approximation
  from each run's 95% CI of the median (or its IQR and rounds).
- **single value** (deterministic numbers: peak memory, largest batch): the change itself.
- **window** (baseline = the last N nights): the candidate's median against the prediction interval
  of the N nightly medians (night-to-night noise, t distribution).
A change counts when it is larger than the threshold (default 5%, per-benchmark overrides) and significant;
worse is slower for latency (lower is better) and lower for throughput (higher is better).

Each benchmark's test sees only its own samples, so a shift that moves every benchmark at once (other
clocks, a busy or different host, a change in code every workload runs) passes each test as a change
of that benchmark. `common_shift` looks across them: when significantly more benchmarks moved one way
than the other (a two-sided sign test), the comparison says so beside the verdicts.
"""

from __future__ import annotations

import fnmatch
import inspect
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
VERDICTS = (REGRESSION, IMPROVEMENT, UNCHANGED, UNRELIABLE)
RULE_SAMPLES, RULE_SUMMARY, RULE_SINGLE, RULE_WINDOW = "samples", "summary", "single value", "window"
COMPARE_RULES = {
    RULE_SAMPLES: "raw samples: median ratio with a 95% percentile-bootstrap interval; significant when "
                  "Mann-Whitney U p < alpha and the interval excludes no change",
    RULE_SUMMARY: "summary statistics only (no raw samples in a file): ratio of medians, 95% interval from a "
                  "normal approximation of each median's uncertainty (its CI, else IQR/1.349 and rounds)",
    RULE_SINGLE: "a single deterministic value per run: the change itself, no interval",
    RULE_WINDOW: "the candidate's median against the 95% prediction interval of the window's nightly medians "
                 "(night-to-night noise, t distribution)",
}
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
MIN_WINDOW_NIGHTS = 3
COMMON_SHIFT_MIN_BENCHMARKS = 6  # fewer cannot reach p < COMMON_SHIFT_ALPHA in a sign test
COMMON_SHIFT_ALPHA = 0.01
Z95 = 1.959963984540054


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CompareSettings:
    """Threshold (relative change that counts), noise target (largest acceptable 95% CI half-width of a
    run's median; None: half the threshold), alpha, and per-benchmark overrides (exact name or glob)."""

    threshold: float = DEFAULT_THRESHOLD
    noise_target: float | None = None
    alpha: float = DEFAULT_ALPHA
    overrides: tuple[tuple[str, float | None, float | None], ...] = ()
    source: str | None = None  # the file the settings came from

    def for_benchmark(self, name: str) -> tuple[float, float]:
        """(threshold, noise target) for one benchmark: an exact name wins over glob patterns, the
        first matching pattern over later ones."""
        threshold, noise = self.threshold, self.noise_target
        hit = next((o for o in self.overrides if o[0] == name), None)
        if hit is None:
            hit = next((o for o in self.overrides if fnmatch.fnmatchcase(name, o[0])), None)
        if hit is not None:
            threshold = hit[1] if hit[1] is not None else threshold
            noise = hit[2] if hit[2] is not None else noise
        return threshold, (noise if noise is not None else threshold / 2.0)


def _fraction(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < math.inf):
        raise BenchError(f"{where}: {what} must be a positive fraction such as 0.05 (5%), got {value!r}")
    return float(value)


def settings_from_table(table: dict, where: str) -> CompareSettings:
    """CompareSettings from a `[tool.bench.compare]`-shaped table (see load_settings)."""
    known = {"threshold", "noise_target", "alpha", "benchmarks"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise BenchError(f"{where}: unknown compare setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kw: dict[str, Any] = {"source": where}
    for k in ("threshold", "noise_target"):
        if k in table:
            kw[k] = _fraction(table[k], k, where)
    if "alpha" in table:
        a = table["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise BenchError(f"{where}: alpha must be between 0 and 1, got {a!r}")
        kw["alpha"] = float(a)
    overrides = []
    benches = table.get("benchmarks", {})
    if not isinstance(benches, dict):
        raise BenchError(f"{where}: benchmarks must be a table of name or pattern = threshold or {{ threshold, noise_target }}")
    for pattern, v in benches.items():
        if isinstance(v, dict):
            bad = sorted(set(v) - {"threshold", "noise_target"})
            if bad:
                raise BenchError(f"{where}: benchmarks.{pattern!r}: unknown key(s) {', '.join(bad)}")
            overrides.append((pattern, _fraction(v["threshold"], "threshold", where) if "threshold" in v else None,
                              _fraction(v["noise_target"], "noise_target", where) if "noise_target" in v else None))
        else:
            overrides.append((pattern, _fraction(v, f"benchmarks.{pattern!r}", where), None))
    kw["overrides"] = tuple(overrides)
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
    if hw > noise_target:
        shown_hw, shown_target = distinct_percents(hw, noise_target)
        return f"noisy: its median's 95% CI is ±{shown_hw}, wider than the noise target ±{shown_target}"
    return None


def distinct_percents(a: float, b: float, max_digits: int = 4) -> tuple[str, str]:
    """`a` and `b` as percentages with one decimal, or more where one decimal would print two different
    numbers alike ("±2.5%, wider than ±2.5%")."""
    for digits in range(1, max_digits + 1):
        shown = f"{a:.{digits}%}", f"{b:.{digits}%}"
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

    def count(self, verdict: str) -> int:
        return sum(1 for v in self.verdicts if v.verdict == verdict)

    @property
    def regressed(self) -> bool:
        return self.count(REGRESSION) > 0

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate, "settings": self.settings,
                "cross_hardware": self.cross_hardware, "software_changed": self.software_changed,
                "counts": {v: self.count(v) for v in VERDICTS}, "rules": COMPARE_RULES,
                "verdicts": [v.to_dict() for v in self.verdicts],
                "only_in_baseline": self.only_in_baseline, "only_in_candidate": self.only_in_candidate,
                "common_shift": self.common_shift.to_dict() if self.common_shift else None}


def exit_status(c: Comparison) -> int:
    """0 nothing regressed, 1 a regression (2, bad input, is the CLI's)."""
    return 1 if c.regressed else 0


def _bootstrap_change(base: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    def ratio(b, c, axis=-1):
        return np.median(c, axis=axis) / np.median(b, axis=axis) - 1.0

    rng = np.random.default_rng(20240611)
    kw = {"rng": rng} if "rng" in inspect.signature(sps.bootstrap).parameters else {"random_state": rng}
    res = sps.bootstrap((base, cand), ratio, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                        batch=100, **kw)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _judge(v: BenchmarkVerdict, significant: bool) -> None:
    worse = v.change > 0 if v.better != HIGHER else v.change < 0
    if abs(v.change) > v.threshold and significant:
        v.verdict = REGRESSION if worse else IMPROVEMENT
    else:
        v.verdict = UNCHANGED


def compare_results(base: ResultRecord, cand: ResultRecord, threshold: float, noise_target: float,
                    alpha: float = DEFAULT_ALPHA) -> BenchmarkVerdict:
    """One benchmark's metric: baseline result against candidate result."""
    v = BenchmarkVerdict(cand.benchmark, cand.metric, cand.unit, cand.better, UNRELIABLE, None, threshold,
                         noise_target, baseline=base.median, candidate=cand.median, baseline_n=base.n,
                         candidate_n=cand.n)
    reasons = [f"{side}: {why}" for side, r in (("baseline", base), ("candidate", cand))
               if (why := unreliable_reason(r, noise_target))]
    if is_number(base.median) and is_number(cand.median) and base.median > 0:
        v.change = cand.median / base.median - 1.0
    if reasons:
        v.reason = "; ".join(reasons)
        return v
    if base.samples and cand.samples and len(base.samples) >= 2 and len(cand.samples) >= 2:
        v.rule = RULE_SAMPLES
        b, c = np.asarray(base.samples, float), np.asarray(cand.samples, float)
        v.change = float(np.median(c) / np.median(b) - 1.0)
        v.change_low, v.change_high = _bootstrap_change(b, c)
        v.p_value = float(sps.mannwhitneyu(b, c, alternative="two-sided").pvalue)
        significant = v.p_value < alpha and (v.change_low > 0 or v.change_high < 0)
    elif is_single_value(base) and is_single_value(cand):
        v.rule = RULE_SINGLE
        v.change_low = v.change_high = v.change
        significant = v.change != 0
    else:
        v.rule = RULE_SUMMARY
        hb, hc = relative_halfwidth(base), relative_halfwidth(cand)
        se = math.hypot(hb / Z95, hc / Z95)  # relative SEs ~ SEs of the log medians
        d = math.log1p(v.change)
        v.change_low, v.change_high = math.expm1(d - Z95 * se), math.expm1(d + Z95 * se)
        v.p_value = float(2 * sps.norm.sf(abs(d) / se)) if se > 0 else (0.0 if d else 1.0)
        significant = v.p_value < alpha
    _judge(v, significant)
    return v


def compare_window(window: Sequence[ResultRecord], cand: ResultRecord, threshold: float, noise_target: float,
                   alpha: float = DEFAULT_ALPHA) -> BenchmarkVerdict:
    """One benchmark's metric: the candidate against the nightly medians of a window of earlier runs."""
    v = BenchmarkVerdict(cand.benchmark, cand.metric, cand.unit, cand.better, UNRELIABLE, RULE_WINDOW, threshold,
                         noise_target, candidate=cand.median, candidate_n=cand.n)
    why = unreliable_reason(cand, noise_target)
    good = [r.median for r in window if unreliable_reason(r, noise_target) is None]
    v.baseline_n = len(good)
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
    own = relative_halfwidth(cand) / Z95
    scale = math.sqrt(float(np.var(logs, ddof=1)) * (1.0 + 1.0 / n) + own ** 2)
    t = float(sps.t.ppf(0.975, n - 1))
    v.change_low, v.change_high = math.expm1(d - t * scale), math.expm1(d + t * scale)
    v.p_value = float(2 * sps.t.sf(abs(d) / scale, n - 1)) if scale > 0 else (0.0 if d else 1.0)
    _judge(v, v.p_value < alpha)
    return v


def compare(baseline: Side | Sequence[Side], candidate: Side, settings: CompareSettings | None = None, *,
            cross_hardware: bool = False) -> Comparison:
    """Every benchmark and metric the candidate shares with the baseline (a run, or a window of runs)."""
    settings = settings or CompareSettings()
    window = list(baseline) if isinstance(baseline, (list, tuple)) else None
    sides = window if window is not None else [baseline]
    for b in sides:
        if b.hardware_key != candidate.hardware_key and not cross_hardware:
            raise BenchError(f"different hardware: the baseline {b.name} ran on {b.hardware_label}, the candidate "
                             f"{candidate.name} on {candidate.hardware_label}; pass --cross-hardware to compare anyway")
    first = sides[0]
    base_desc = first.describe() if window is None else {
        "name": f"window of {len(window)} runs", "runs": [s.describe() for s in window],
        "hardware": first.hardware_key, "hardware_label": first.hardware_label}
    out = Comparison(baseline=base_desc, candidate=candidate.describe(), cross_hardware=cross_hardware,
                     settings={"threshold": settings.threshold, "noise_target": settings.noise_target
                               if settings.noise_target is not None else settings.threshold / 2,
                               "alpha": settings.alpha, "overrides": [list(o) for o in settings.overrides],
                               "source": settings.source})
    soft = {s.software_hash for s in sides}
    if candidate.software_hash and None not in soft:
        out.software_changed = any(h != candidate.software_hash for h in soft)
    base_keys = set().union(*(s.results for s in sides))
    for key in sorted(set(candidate.results) | base_keys):
        name = f"{key[0]} ({key[1]})"
        if key not in candidate.results:
            out.only_in_baseline.append(name)
            continue
        if key not in base_keys:
            out.only_in_candidate.append(name)
            continue
        threshold, noise = settings.for_benchmark(key[0])
        cand = candidate.results[key]
        if window is None:
            out.verdicts.append(compare_results(baseline.results[key], cand, threshold, noise, settings.alpha))
        else:
            out.verdicts.append(compare_window([s.results[key] for s in window if key in s.results], cand,
                                               threshold, noise, settings.alpha))
    order = {REGRESSION: 0, UNRELIABLE: 1, IMPROVEMENT: 2, UNCHANGED: 3}
    out.verdicts.sort(key=lambda v: (order[v.verdict], v.benchmark, v.metric))
    out.common_shift = common_shift(out.verdicts)
    return out
