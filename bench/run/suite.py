"""The cases, settings and measuring call behind the pytest-benchmark suites in suites/, without pytest.

Each suite case is measured twice on one footing: first by the library (`measure_point`: CUDA events,
adaptive stopping, memory, telemetry), whose Measurement goes into `benchmark.extra_info`; then by
pytest-benchmark's own loop, each round k steps and one device synchronise (k chosen so a round
lasts at least 10 ms), so the host-clock statistics pytest-benchmark writes are per step and include
the device work. The two medians are compared (`library_to_pytest_benchmark`) and a disagreement of
more than 10% is a warning. The nightly gate (bench compare, the history store) reads the library's
device-timed median.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

from bench.core.budget import MEASURE_DEFAULTS
from bench.core.devices import resolve_device, synchronizer
from bench.core.errors import BenchError
from bench.core.fingerprint import PROVENANCE_FIELDS
from bench.core.io import json_safe
from bench.core.params import LARGEST_INT, MAX_THREADS
from bench.core.vocabulary import PRECISIONS, STATUS_ERROR, STATUS_OOM, STEP_OPTIMIZERS
from bench.measure.telemetry.fingerprint import fingerprint
from bench.measure.timing import MeasureLimits
from bench.records.suite import extra_info
from bench.records.sweep import Case, LargestBatch, Measurement, Probe, case_id
from bench.run.sweep import DEFAULT_MAX_BATCH, FROM_DEVICE, SweepConfig

SUITES = ("step_time", "memory", "largest_batch")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
SUBSETS = ("cpu", "full")

HOST_SYNC_METHOD = "host clock around k steps and one device synchronise per round"
ROUND_MIN_S = 0.010  # a pytest-benchmark round lasts at least this long (k steps, one synchronise)
MAX_STEPS_PER_ROUND = 100_000
DISAGREEMENT = 0.10  # the library's and pytest-benchmark's medians differing by more than this is a warning


class TimingDisagreement(UserWarning):
    """pytest-benchmark's median step differs from the library's by more than DISAGREEMENT."""

Synchronize = Callable[[], object]
_AUTO: Any = object()  # "derive the synchronise function from the device"


# --------------------------------------------------------------------------- the catalogue

# The fast CPU subset: tiny models whose every step takes a millisecond or so on one core.
CPU_WORKLOADS: dict[str, dict[str, Any]] = {
    "mlp": {"in_features": 64, "hidden": 64, "depth": 2},
    "cnn": {"image_size": 16, "width": 4, "blocks": 1},
    "transformer": {"seq_len": 32, "d_model": 32, "n_layers": 1, "n_heads": 2, "vocab": 64},
}
CPU_PRECISIONS = ("fp32", "bf16")
CPU_BATCH_SIZES = (4, 16, 64)  # cnn needs >= 2 (BatchNorm over the batch)

# The GPU tier: models at real size, every precision, batch sizes from launch-bound to compute-bound.
GPU_WORKLOADS: dict[str, tuple[dict[str, Any], tuple[int, ...], bool]] = {
    # name: (workload args, batch sizes, channels_last)
    "mlp": ({}, (64, 1024, 16384), False),
    "cnn": ({"image_size": 32, "width": 32, "blocks": 2}, (32, 256, 2048), True),
    "transformer": ({"seq_len": 256, "d_model": 512, "n_layers": 6, "n_heads": 8, "vocab": 8192}, (8, 32, 128), False),
    "resnet50": ({}, (32, 64, 128, 256), True),
}
GPU_PRECISIONS = PRECISIONS
# Memory: the options that change memory most (optimizer state, autocast) at one batch size each.
MEMORY_CASES: dict[str, int] = {"resnet50": 64, "transformer": 32, "cnn": 256}
MEMORY_PRECISIONS = ("fp32", "bf16")
MEMORY_OPTIMIZERS = STEP_OPTIMIZERS
# Largest batch that fits: workloads whose limit a GPU reaches below DEFAULT_MAX_BATCH.
LARGEST_BATCH_WORKLOADS = ("resnet50", "transformer")
LARGEST_BATCH_PRECISIONS = ("fp32", "bf16")

KNOWN_WORKLOADS = tuple(dict.fromkeys([*CPU_WORKLOADS, *GPU_WORKLOADS]))
KNOWN_PRECISIONS = GPU_PRECISIONS


@dataclass(frozen=True)
class SuiteCase:
    """One parametrised benchmark: what runs, at which batch size (None: found by search), where."""

    suite: str
    workload: str
    precision: str
    batch_size: int | None
    device: str  # "cpu" or "cuda"
    workload_args: tuple[tuple[str, Any], ...] = ()
    optimizer: str = "sgd"
    channels_last: bool = False
    compile: bool = False

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.workload_args)

    @property
    def needs_cuda(self) -> bool:
        return self.device == "cuda"

    def id_for(self, batch_size: int | None = None) -> str:
        """The case id (`bench.records.sweep.case_id`), e.g. `mlp-fp32-bs64-cpu`, `...-bsmax-cuda` before a search."""
        b = batch_size if batch_size is not None else self.batch_size
        return case_id(self.workload, self.precision, b, self.device, self.optimizer, self.channels_last, self.compile)

    def case_at(self, batch_size: int) -> Case:
        """The record identity of this case at `batch_size` (its `key` is `id_for(batch_size)`)."""
        return Case(workload=self.workload, batch_size=int(batch_size), device=self.device, precision=self.precision,
                    optimizer=self.optimizer, channels_last=self.channels_last, compile=self.compile)

    @property
    def id(self) -> str:
        return self.id_for()

    def sweep_config(self, settings: "SuiteSettings", batch_size: int) -> SweepConfig:
        return SweepConfig(
            workload=self.workload, workload_args=self.args, device=self.device, precision=self.precision,
            optimizer=self.optimizer, channels_last=self.channels_last, compile=self.compile,
            batch_sizes=[int(batch_size)], ci_target=settings.ci_target, min_samples=settings.min_samples,
            min_time_s=settings.min_time_s, budget_s=settings.budget_s,
            warmup_max_s=settings.warmup_max_s, find_largest=False, telemetry=settings.telemetry,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["workload_args"] = self.args
        d["id"] = self.id
        return d


# --------------------------------------------------------------------------- settings and options


@dataclass(frozen=True)
class SuiteSettings:
    """How hard each case is measured (the library's limits and stopping rule, and pytest-benchmark's
    rounds). The measuring defaults are the library's (bench.core.budget.MEASURE_DEFAULTS)."""

    budget_s: float = MEASURE_DEFAULTS["budget_s"]  # per case by the library, and again by pytest-benchmark
    min_time_s: float | None = None  # None: the default minimum time, or the budget if smaller
    ci_target: float = MEASURE_DEFAULTS["ci_target"]
    min_samples: int = MEASURE_DEFAULTS["min_samples"]
    warmup_max_s: float = MEASURE_DEFAULTS["warmup_max_s"]
    telemetry: bool = True
    min_rounds: int = 5  # pytest-benchmark rounds, at least (its own default minimum)
    max_rounds: int = 10_000
    # Rounds of k >= round_min_s / step steps: 200 warm-up rounds are at least 2 s of steps, more than
    # the library's warm-up spends under the default budget, so the cap binds only with larger budgets.
    max_warmup_rounds: int = 200
    round_min_s: float = ROUND_MIN_S

    def __post_init__(self):
        self.limits()  # one-line errors for a bad budget, minimum time or samples
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise BenchError(f"rounds must satisfy 1 <= min_rounds <= max_rounds, got {self.min_rounds}..{self.max_rounds}")
        if not (isinstance(self.round_min_s, (int, float)) and self.round_min_s >= 0 and math.isfinite(self.round_min_s)):
            raise BenchError(f"round_min_s must be a non-negative number of seconds, got {self.round_min_s!r}")

    def limits(self) -> MeasureLimits:
        return MeasureLimits(budget_s=self.budget_s, min_time_s=self.min_time_s, min_samples=self.min_samples)

    @property
    def effective_min_time_s(self) -> float:
        return self.limits().effective_min_time_s

    def to_dict(self) -> dict:
        # The minimum time in force (as SweepConfig records it), kept under its older name too.
        return {**asdict(self), "min_time_s": self.effective_min_time_s, "effective_min_time_s": self.effective_min_time_s}


@dataclass(frozen=True)
class SuiteOptions:
    """Which cases to run: the `--bench-*` options of the pytest plugin, parsed and checked."""

    workloads: tuple[str, ...] | None = None  # None: all
    precisions: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None  # None: each case's own
    device: str = "auto"
    subset: str = "full"
    cpu_threads: int | None = None  # None: torch's default
    settings: SuiteSettings = field(default_factory=SuiteSettings)

    @classmethod
    def parse(
        cls,
        *,
        workloads: str | None = None,
        precisions: str | None = None,
        batch_sizes: str | None = None,
        device: str = "auto",
        subset: str = "full",
        budget: str | float | None = None,
        cpu_threads: str | int | None = None,
    ) -> "SuiteOptions":
        """Options from their command-line text; BenchError naming the option for bad values."""
        wl = _name_list("--bench-workloads", workloads, KNOWN_WORKLOADS)
        pr = _name_list("--bench-precisions", precisions, KNOWN_PRECISIONS)
        bs = None
        if batch_sizes is not None:
            bs = tuple(sorted({_positive_int("--bench-batch-sizes", p) for p in str(batch_sizes).split(",") if p.strip()}))
            if not bs:
                raise BenchError("--bench-batch-sizes is empty")
            _check_batches_can_fit(bs, device)
        if device not in DEVICE_CHOICES:
            raise BenchError(f"--bench-device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
        if subset not in SUBSETS:
            raise BenchError(f"--bench-subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
        settings = SuiteSettings()
        if budget is not None:
            try:
                settings = replace(settings, budget_s=float(budget))  # the limits check it
            except (ValueError, BenchError):
                raise BenchError(f"--bench-budget must be a positive number of seconds, got {budget!r}") from None
        threads = None if cpu_threads is None else _positive_int("--bench-cpu-threads", cpu_threads, MAX_THREADS)
        return cls(workloads=wl, precisions=pr, batch_sizes=bs, device=device, subset=subset,
                   cpu_threads=threads, settings=settings)

    def to_dict(self) -> dict:
        return {"workloads": list(self.workloads) if self.workloads else None,
                "precisions": list(self.precisions) if self.precisions else None,
                "batch_sizes": list(self.batch_sizes) if self.batch_sizes else None,
                "device": self.device, "subset": self.subset, "cpu_threads": self.cpu_threads,
                "settings": self.settings.to_dict()}


def _name_list(option: str, text: str | None, known: Sequence[str]) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if not names:
        raise BenchError(f"{option} is empty")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"{option}: unknown {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return names


def _positive_int(option: str, text: Any, largest: int = LARGEST_INT) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BenchError(f"{option}: {str(text).strip()[:40]!r} is not an integer") from None
    if value < 1:
        raise BenchError(f"{option}: must be a positive integer, got {value}")
    if value > largest:
        raise BenchError(f"{option}: must be at most {largest}, got {str(value)[:24]}")
    return value


def _check_batches_can_fit(batch_sizes: Sequence[int], device: str) -> None:
    """BenchError if the largest batch could not fit on any device the run may use, even at one byte
    per example (before any case is collected; the sweep bounds each workload's own inputs)."""
    from bench.run.bounds import device_memory_bytes

    devices = ["cpu"] if device == "cpu" else ["cpu", "cuda"] if cuda_available() else ["cpu"]
    sizes = [device_memory_bytes(d) for d in devices]
    known = [(m, where) for m, where in sizes if m]
    largest = max(batch_sizes)
    if known and all(largest > m for m, _ in known):
        memory, where = max(known)
        raise BenchError(f"--bench-batch-sizes: batch size {largest:,} cannot fit: even at one byte per example its "
                         f"inputs need {largest / 2 ** 30:,.0f} GiB, more than {where} ({memory / 2 ** 30:,.0f} GiB)")


# --------------------------------------------------------------------------- selecting cases


@dataclass(frozen=True)
class SelectedCase:
    """A case and, when it cannot run here, why (the skip reason pytest shows)."""

    case: SuiteCase
    skip_reason: str | None = None


def catalogue(suite: str, subset: str = "full") -> list[SuiteCase]:
    """Every case of `suite` in `subset` before filtering: the CPU subset, then the GPU tier."""
    if suite not in SUITES:
        raise BenchError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    out: list[SuiteCase] = []
    if suite == "step_time":
        for name, args in CPU_WORKLOADS.items():
            for precision in CPU_PRECISIONS:
                for b in CPU_BATCH_SIZES:
                    out.append(SuiteCase(suite, name, precision, b, "cpu", tuple(sorted(args.items()))))
    if subset == "cpu":
        return out
    if suite == "step_time":
        for name, (args, sizes, cl) in GPU_WORKLOADS.items():
            for precision in GPU_PRECISIONS:
                for b in sizes:
                    out.append(SuiteCase(suite, name, precision, b, "cuda", tuple(sorted(args.items())), channels_last=cl))
    elif suite == "memory":
        for name, b in MEMORY_CASES.items():
            args, _, cl = GPU_WORKLOADS[name]
            for precision in MEMORY_PRECISIONS:
                for opt in MEMORY_OPTIMIZERS:
                    out.append(SuiteCase(suite, name, precision, b, "cuda", tuple(sorted(args.items())),
                                         optimizer=opt, channels_last=cl))
    elif suite == "largest_batch":
        for name in LARGEST_BATCH_WORKLOADS:
            args, _, cl = GPU_WORKLOADS[name]
            for precision in LARGEST_BATCH_PRECISIONS:
                out.append(SuiteCase(suite, name, precision, None, "cuda", tuple(sorted(args.items())), channels_last=cl))
    return out


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def precision_problem(precision: str, device: str) -> str | None:
    """Why this machine's `device` cannot run `precision` (e.g. tf32 before Ampere), or None."""
    from bench.measure.step import StepOptions, check_options

    try:
        check_options(StepOptions(precision=precision), device)
    except BenchError as e:
        return str(e)
    return None


def select_cases(
    suite: str,
    options: SuiteOptions,
    *,
    has_cuda: bool | None = None,
    precision_check: Callable[[str, str], str | None] = precision_problem,
) -> list[SelectedCase]:
    """The cases of `suite` that `options` asks for, each with a skip reason where it cannot run here.

    GPU cases stay in the list on a machine without CUDA (or with `--bench-device cpu`), skipped with
    the reason, so a report shows what was not measured instead of silently measuring less.
    """
    if has_cuda is None:
        has_cuda = cuda_available()
    if options.device == "cuda" and not has_cuda:
        raise BenchError("--bench-device cuda asked for, but CUDA is not available here")
    torch_note = _torch_note()
    out: list[SelectedCase] = []
    for case in catalogue(suite, options.subset):
        if options.workloads and case.workload not in options.workloads:
            continue
        if options.precisions and case.precision not in options.precisions:
            continue
        cases = [case]
        if options.batch_sizes and case.batch_size is not None:
            cases = [replace(case, batch_size=b) for b in options.batch_sizes]
        for c in cases:
            out.append(SelectedCase(c, _skip_reason(c, options, has_cuda, precision_check, torch_note)))
    # --bench-batch-sizes gives every batch size of a case the same replacements: keep one of each id.
    return list({s.case.id: s for s in out}.values())


def _torch_note() -> str:
    try:
        import torch

        return f"torch {torch.__version__}"
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "torch not installed"


def _skip_reason(case: SuiteCase, options: SuiteOptions, has_cuda: bool,
                 precision_check: Callable[[str, str], str | None], torch_note: str) -> str | None:
    from bench.measure.distributed import launched

    if case.suite == "largest_batch" and launched():
        return ("the largest-batch search is one device's: under torchrun every rank would search its own; "
                "run this suite without torchrun")
    if case.needs_cuda:
        if options.device == "cpu":
            return "needs a CUDA GPU: --bench-device cpu leaves the GPU cases out"
        if not has_cuda:
            what = {"largest_batch": "the largest-batch search runs only on a GPU (a CPU swaps long before it runs out of memory)",
                    "memory": "allocator peak-memory statistics exist only on CUDA devices"}.get(
                        case.suite, "GPU tier (real-size models, tf32/fp16)")
            return f"needs a CUDA GPU, and CUDA is not available here ({torch_note}): {what}"
        return precision_check(case.precision, case.device)
    if options.device == "cuda":
        return "CPU subset case: --bench-device cuda leaves the CPU cases out"
    return precision_check(case.precision, case.device)


# --------------------------------------------------------------------------- measuring one case


def _synchronizer_name(sync: Synchronize | None, device, injected: bool) -> str:
    if sync is None and injected:
        return "none (turned off by the caller)"
    if sync is None:
        return f"none ({getattr(device, 'type', device)}: a step has finished its work when it returns)"
    if injected:
        return f"injected: {getattr(sync, '__qualname__', type(sync).__name__)}"
    return f"torch.{getattr(device, 'type', device)}.synchronize"


@dataclass(frozen=True)
class RoundsPlan:
    """How many pytest-benchmark rounds of `steps_per_round` steps (and one synchronise) each, how many
    warm-up rounds, and why."""

    rounds: int
    warmup_rounds: int
    reason: str
    steps_per_round: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def plan_rounds(m: Measurement, settings: SuiteSettings) -> RoundsPlan:
    """Rounds of k steps, k the fewest that last `round_min_s` at the library's median (one step when a
    step is longer), so a round times what a run of steps takes rather than one step's synchronous
    latency: enough rounds to cover the library's minimum time (and at least its minimum sample
    count), within the budget.

    Warm-up rounds repeat the warm-up the library needed, in steps (its warm-up step count divided by
    k): the pytest-benchmark loop times a freshly built step, which must warm up again (allocator,
    cuDNN autotuning, compilation); capped by `warmup_max_s` and `max_warmup_rounds`.
    """
    s = m.stats
    median = s.median_s if s and s.median_s > 0 else None
    lo, hi = settings.min_rounds, settings.max_rounds
    if median is None:
        return RoundsPlan(lo, 1, "no library median to size the rounds by: the minimum rounds of one step")
    k = max(1, min(MAX_STEPS_PER_ROUND, math.ceil(settings.round_min_s / median)))
    round_s = k * median
    want = max(settings.min_samples, math.ceil(settings.effective_min_time_s / round_s))
    reason = (f"rounds of {k} step(s) (at least {settings.round_min_s * 1e3:g} ms at the library's median), enough for "
              f"{settings.effective_min_time_s:g} s of steps, and at least {settings.min_samples}")
    cap = math.ceil(settings.budget_s / round_s)  # the last round may end just past the budget
    if want > cap:
        want, reason = cap, (f"rounds of {k} step(s), as many as fit the {settings.budget_s:g} s budget at the "
                             "library's median")
    rounds = min(max(want, lo), hi)
    if rounds == lo and want < lo:
        reason += f" (raised to the minimum of {lo})"
    elif rounds == hi and want > hi:
        reason += f" (capped at {hi})"
    warm_cap = max(1, int(settings.warmup_max_s / round_s))
    warmup = max(1, min(math.ceil(len(m.warmup_samples_s) / k), settings.max_warmup_rounds, warm_cap))
    return RoundsPlan(rounds, warmup, reason, steps_per_round=k)


def time_synchronised(benchmark, step: Callable[[], object], synchronize: Synchronize | None,
                      rounds: int, warmup_rounds: int, steps_per_round: int = 1) -> list[float] | None:
    """pytest-benchmark's pedantic loop: each round `steps_per_round` steps, then one device synchronise.

    The synchronise sits inside the timed round, after its last step, so each round's host-clock time
    covers the device work its steps queued, and pytest-benchmark divides it by the steps
    (`iterations`): its statistics are per step. Returns pytest-benchmark's raw per-step round times
    (None when benchmarks are disabled).
    """
    k = max(1, int(steps_per_round))
    if synchronize is None:
        target = step
    else:
        done = [0]

        def target():
            step()
            done[0] += 1
            if done[0] % k == 0:  # the round's last step (warm-up rounds end on one too)
                synchronize()
    benchmark.pedantic(target, rounds=int(rounds), iterations=k, warmup_rounds=int(warmup_rounds))
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    return list(inner.data) if inner is not None and getattr(inner, "data", None) else None


def benchmark_case(
    benchmark,
    case: SuiteCase,
    settings: SuiteSettings = SuiteSettings(),
    *,
    batch_size: int | None = None,
    synchronize: Synchronize | None = _AUTO,
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """Measure `case` with the library, record it in `benchmark.extra_info`, then let pytest-benchmark
    time the same step (rounds of k steps and one synchronise) for its own statistics, and compare
    the two medians: more than DISAGREEMENT apart is a warning (on the point, in extra_info, and a
    TimingDisagreement pytest shows). Returns the library's Measurement.

    A point that runs out of memory or fails is returned with that status and pytest-benchmark does
    not time it (its statistics would describe nothing); pytest-benchmark then leaves the case out of
    its JSON, and the plugin lists it under FAILED_CASES_KEY instead. `synchronize` overrides the device's
    synchronise function (tests pass a fake one); `extra` is merged into extra_info.
    """
    from bench.measure.distributed import join, rank_device, wrap_ddp
    from bench.measure.step import StepOptions, TrainStep, check_options
    from bench.measure.workloads import load_workload
    from bench.run.distributed import measure_data_parallel_point
    from bench.run.sweep import measure_point

    b = batch_size if batch_size is not None else case.batch_size
    if b is None:
        raise BenchError(f"case {case.id} has no batch size: pass batch_size")
    device = resolve_device(rank_device(case.device))  # under torchrun: this rank's GPU
    config = case.sweep_config(settings, b)
    config.validate()
    options = StepOptions(precision=case.precision, optimizer=case.optimizer,
                          channels_last=case.channels_last, compile=case.compile)
    check_options(options, device)
    workload = load_workload(case.workload, case.args)

    # Under torchrun every rank runs the suite: each case is a data-parallel point measured by all
    # ranks together (bench.run.distributed), as `bench sweep` measures one; outside it, one process.
    ranks = join(device, config.dist_timeout_s)
    if ranks is None:
        m = measure_point(workload, config, b, device)
    else:
        m = measure_data_parallel_point(measure_point, workload, config, b, device, ranks)
    sync = synchronizer(device) if synchronize is _AUTO else synchronize
    info = _extra_info(case, config, m, settings, batch_size=b)
    info.update(extra or {})
    benchmark.extra_info.update(json_safe(info))
    if not m.ok:
        return m

    plan = plan_rounds(m, settings)
    step = TrainStep(workload, b, device, options, seed=config.seed)
    if ranks is not None:
        # Every step all-reduces its gradients, so every rank must run exactly as many: rank 0's plan.
        plan = RoundsPlan(**ranks.broadcast("rounds-plan", asdict(plan) if ranks.is_main else None))
        step.wrap_model(lambda module: wrap_ddp(module, step.device, ranks))
    try:
        host_samples = time_synchronised(benchmark, step, sync, plan.rounds, plan.warmup_rounds,
                                         plan.steps_per_round)
    finally:
        step.release()
    timing = host_timing_info(m, host_samples, plan, _synchronizer_name(sync, device, injected=synchronize is not _AUTO))
    benchmark.extra_info["pytest_benchmark_timing"] = json_safe(timing)
    if timing["warning"]:
        m.warnings.append(timing["warning"])
        benchmark.extra_info["warnings"] = list(benchmark.extra_info.get("warnings") or []) + [timing["warning"]]
        measured = benchmark.extra_info.get("measurement")
        if isinstance(measured, dict):
            measured["warnings"] = list(measured.get("warnings") or []) + [timing["warning"]]
        warnings.warn(TimingDisagreement(f"{case.id_for(b)}: {timing['warning']}"), stacklevel=2)
    return m


def host_timing_info(m: Measurement, host_samples_s: Sequence[float] | None, plan: RoundsPlan,
                     synchronize_name: str) -> dict[str, Any]:
    """How pytest-benchmark's own numbers were taken (per step: its rounds are divided by their steps),
    and how they compare with the library's: `library_to_pytest_benchmark` = library median /
    pytest-benchmark median, `relative_to_library_median` = pytest-benchmark / library - 1, and
    `warning` (None unless they differ by more than DISAGREEMENT)."""
    from bench.core.stats import summarize

    compared = ("library_median_s", "library_to_pytest_benchmark", "relative_to_library_median")
    out: dict[str, Any] = {"method": HOST_SYNC_METHOD, "synchronize": synchronize_name, **plan.to_dict(),
                           "median_s": None, **{k: None for k in compared}, "warning": None, "null_reasons": {}}
    lib = m.stats
    if not host_samples_s:
        reason = "pytest-benchmark recorded no rounds (benchmarks disabled?)"
        out["null_reasons"] = {k: reason for k in ("median_s", *compared)}
        return out
    host_median = summarize(host_samples_s).median_s
    out["median_s"] = host_median
    if not (lib and lib.median_s > 0 and host_median > 0):
        out["null_reasons"].update({k: "the library has no median for this case" for k in compared})
        return out
    ratio = lib.median_s / host_median
    out["library_median_s"] = lib.median_s
    out["library_to_pytest_benchmark"] = ratio
    # > 0: the host clock also counts the synchronise and the Python loop around the steps.
    out["relative_to_library_median"] = host_median / lib.median_s - 1.0
    if abs(ratio - 1.0) > DISAGREEMENT:
        k = plan.steps_per_round
        out["warning"] = (
            f"pytest-benchmark's median step ({host_median * 1e3:.4g} ms, host clock around {k} step(s) and one "
            f"synchronise per round) and the library's device-timed median ({lib.median_s * 1e3:.4g} ms) differ by "
            f"more than {DISAGREEMENT:.0%} (library / pytest-benchmark = {ratio:.3g}): a loaded host, launch-bound "
            "steps or a heavy tail of slow steps; the nightly gate uses the library's median")
    return out


def _extra_info(case: SuiteCase, config: SweepConfig, m: Measurement, settings: SuiteSettings,
                *, batch_size: int) -> dict[str, Any]:
    """`bench.records.suite.extra_info` for `case` at `batch_size`, with this process's torch threads."""
    import torch

    return extra_info(m, case=case.case_at(batch_size), suite=case.suite, workload_args=case.args,
                      config=config.to_dict(), settings=settings.to_dict(), torch_num_threads=torch.get_num_threads())


# --------------------------------------------------------------------------- largest batch


ProbeFn = Callable[[Any, SweepConfig, int, Any], Probe]
MeasureFn = Callable[[Any, SweepConfig, int, Any], Measurement]


def find_largest_batch(workload, config: SweepConfig, device, *, start: int = 1, limit: int | None = None,
                       probe: ProbeFn | None = None, measure: MeasureFn | None = None, confirm: bool = True,
                       capacity_bytes: Any = FROM_DEVICE) -> LargestBatch:
    """The largest batch that fits: double from `start` until a probe runs out of memory, then let
    the memory model (peak = a + b·batch, fitted to the probes' peaks, against the device's capacity)
    predict the boundary, with bisection as the safeguard (`bench.run.largest`); then confirm the
    answer with a full measurement, backing off on out-of-memory.

    A failure other than out-of-memory ends the search (the reason says so). With no out-of-memory up
    to `limit` the record is `limited`, without a batch size (`largest_ran` says how far it got).
    `probe` defaults to `bench.run.sweep.probe_fits` and `measure` to `measure_point`; tests pass fake
    ones. `capacity_bytes` defaults to what the device's allocator could reserve (None off CUDA:
    doubling and bisection alone).
    """
    from bench.run.sweep import confirm_largest_batch, search_largest

    kind = getattr(device, "type", str(device).split(":")[0])
    limit = limit or DEFAULT_MAX_BATCH.get(kind, 1024)
    if start < 1 or limit < start:
        raise BenchError(f"largest-batch search needs 1 <= start <= limit, got start={start}, limit={limit}")
    search = search_largest(workload, config, device, start=start, limit=limit, probe=probe,
                            capacity_bytes=capacity_bytes)
    probes = list(search.probes)
    method = search.method
    if search.largest is None:
        if search.stopped:
            return LargestBatch(None, search.stopped, probes, method=method)
        return LargestBatch(None, f"even batch {search.smallest_oom} runs out of memory", probes, method=method)
    if search.stopped:
        head = search.stopped
    else:
        head = f"batch {search.smallest_oom} runs out of memory; found in {method}"
    if search.limited:
        return LargestBatch(None, head, probes, limited=True, method=method)
    if not confirm:
        return LargestBatch(search.largest, head, probes, method=method)
    checked = confirm_largest_batch(workload, config, device, search.largest, measure=measure)
    confirmations = [{"batch_size": m.batch_size, "status": m.status, "error": m.error} for m in checked.measured]
    if checked.backed_off:
        head = (f"batch {checked.smallest_oom} runs out of memory in a full measurement; probes found "
                f"{search.largest} in {method}")
    return LargestBatch(checked.batch_size, f"{head}; {checked.note}", probes, method=method,
                        confirmed=checked.batch_size is not None, confirmations=confirmations)


def benchmark_largest_batch(
    benchmark,
    case: SuiteCase,
    settings: SuiteSettings = SuiteSettings(),
    *,
    synchronize: Synchronize | None = _AUTO,
    probe: ProbeFn | None = None,
    measure: MeasureFn | None = None,
    start: int = 1,
    limit: int | None = None,
) -> tuple[LargestBatch, Measurement | None]:
    """Search the largest batch that fits for `case`, then benchmark a step at that batch.

    Returns the search and the Measurement at the batch found (None when no batch fits; extra_info then
    describes the smallest batch that failed, with status oom, or error when a probe failed otherwise).
    """
    from bench.measure.step import StepOptions, check_options
    from bench.measure.workloads import load_workload

    device = resolve_device(case.device)
    check_options(StepOptions(precision=case.precision, optimizer=case.optimizer,
                              channels_last=case.channels_last, compile=case.compile), device)
    workload = load_workload(case.workload, case.args)
    config = case.sweep_config(settings, start)
    t0 = time.perf_counter()
    found = find_largest_batch(workload, config, device, start=start, limit=limit, probe=probe, measure=measure)
    search = {**found.to_dict(), "search_wall_time_s": time.perf_counter() - t0}
    size = found.largest_ran if found.limited else found.batch_size
    if size is None:
        # No batch fits: the record is the smallest batch that failed, so the report shows the boundary.
        failed = [p for p in found.probes if not p.fits]
        first = min(failed, key=lambda p: p.batch_size) if failed else None
        b = first.batch_size if first else start
        at = case.sweep_config(settings, b)
        status = STATUS_OOM if first is None or first.out_of_memory else STATUS_ERROR
        m = Measurement(case=at.case(b, workload.name), status=status, error=found.reason)
        info = _extra_info(case, at, m, settings, batch_size=b)
        info["largest_batch"] = search
        benchmark.extra_info.update(json_safe(info))
        return found, None
    m = benchmark_case(benchmark, case, settings, batch_size=size, synchronize=synchronize,
                       extra={"largest_batch": search})
    return found, m


# --------------------------------------------------------------------------- fingerprint and JSON


def suite_fingerprint(device) -> dict[str, Any]:
    """The hardware/software fingerprint for pytest-benchmark's machine_info, without the git commit
    (pytest-benchmark's commit_info holds it, and it changes with every run a compare looks at)."""
    fp = dict(fingerprint(device))
    for k in PROVENANCE_FIELDS:
        fp.pop(k, None)
    if isinstance(fp.get("null_reasons"), dict):
        fp["null_reasons"] = {k: v for k, v in fp["null_reasons"].items() if k not in PROVENANCE_FIELDS}
    return json_safe(fp)


