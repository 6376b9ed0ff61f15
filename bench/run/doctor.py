"""`bench doctor`: can step times from this machine be trusted, and why not? One run (about a minute and
a half on a card, seconds with `quick`) that reads the device, its settings, the other processes on it
and the environment settings that change timing, and measures what must be measured rather than assumed:
how often each NVML reading refreshes, what the telemetry sampler costs, whether the timers agree, and
whether the clocks hold under sustained load. Returns one JSON-ready dict; `bench.present.doctor` says it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.core.stats import median_ci_indices

# Timer agreement and the sampler's overhead are medians of per-round ratios; a 95% CI of a median
# needs at least 6 rounds (bench.core.stats.median_ci_indices).
MIN_ROUNDS = 6
WALL_BLOCK_S = 0.010  # a synchronised wall-clock block lasts at least this long
# Sustained load: the first and the last SUSTAINED_WINDOW of the run are compared.
SUSTAINED_WINDOW = 0.2
# A clock or step time that moves by more than this between the first and last window is "not kept".
SUSTAINED_TOLERANCE = 0.03
# The sampler's cost is a problem when its 95% CI lies wholly above this slowdown.
SAMPLER_OVERHEAD_LIMIT = 0.01


@dataclass
class DoctorConfig:
    """What `run_doctor` runs. `quick` shrinks every measurement (a CPU test, a first look): the
    figures then rest on few samples, and the card says so."""

    device: str | None = None  # None: CUDA when present, else the CPU
    quick: bool = False
    sustained_s: float = 25.0
    refresh_poll_s: float = 3.0
    rounds: int = 8
    budget_s: float = 0.5
    nvml: Any = None  # the NVML module (tests pass a fake); None imports pynvml on a CUDA device
    threads: int | None = None
    # The GPU NVML reads, when not the device the steps run on: tests run the GPU path's NVML half on
    # the CPU with the fake NVML (nvml_device="cuda:0", device="cpu"), as scripts/sampler_overhead.py does.
    nvml_device: str | None = None

    def effective(self) -> "DoctorConfig":
        if not self.quick:
            return self
        return DoctorConfig(device=self.device, quick=True, sustained_s=min(self.sustained_s, 1.0),
                            refresh_poll_s=min(self.refresh_poll_s, 0.5), rounds=MIN_ROUNDS,
                            budget_s=min(self.budget_s, 0.03), nvml=self.nvml, threads=self.threads,
                            nvml_device=self.nvml_device)


def ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Median of per-round ratios and its distribution-free 95% CI (None, with a reason, under 6 rounds)."""
    out: dict[str, Any] = {"ratio_median": statistics.median(ratios) if ratios else None, "rounds": len(ratios),
                           "ratio_ci95": None}
    idx = median_ci_indices(len(ratios))
    if idx is None:
        out["ci_reason"] = f"{len(ratios)} round(s): a 95% CI of a median needs at least {MIN_ROUNDS}"
    else:
        ordered = sorted(ratios)
        out["ratio_ci95"] = [ordered[idx[0]], ordered[idx[1]]]
    return out


def median_of_block_means(samples_s: list[float], block_sizes: list[int]) -> float:
    """The median over blocks of each block's mean step: what torch.utils.benchmark reports, so the
    like-for-like figure beside it (a skewed distribution puts a per-step median below every block mean)."""
    means, i = [], 0
    for n in block_sizes:
        means.append(sum(samples_s[i:i + n]) / n)
        i += n
    return statistics.median(means)


def wall_clock_per_step(step: Callable[[], None], sync: Callable[[], None] | None, min_time_s: float,
                        typical_s: float) -> float:
    """Median over blocks of a host clock around k steps and one device synchronise, divided by k (k the
    fewest steps that last WALL_BLOCK_S), blocks repeated for `min_time_s`."""
    k = max(1, int(WALL_BLOCK_S / typical_s + 0.999)) if typical_s > 0 else 1
    per_step: list[float] = []
    start = time.perf_counter()
    while not per_step or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        if sync is not None:
            sync()
        per_step.append((time.perf_counter() - t0) / k)
    return statistics.median(per_step)


def timer_agreement(step: Callable[[], None], device: Any, *, rounds: int, budget_s: float,
                    min_time_s: float) -> dict[str, Any]:
    """The same step timed three ways in each round, the order rotating (drift favours none): the
    harness's timer (CUDA events on a GPU, the host clock per step on a CPU), a host clock around
    synchronised blocks, and torch.utils.benchmark. Ratios to torch.utils.benchmark per round, with CIs."""
    import torch
    import torch.utils.benchmark as tub

    from bench.core.devices import synchronizer
    from bench.measure.timing import CIStoppingRule, MeasureLimits, measure, timer_for

    sync = synchronizer(device)
    timer = timer_for(device)
    harness: list[float] = []
    harness_blocks: list[float] = []
    wall: list[float] = []
    theirs: list[float] = []
    methods = ("harness", "wall", "torch")
    for r in range(rounds):
        for method in methods[r % 3:] + methods[:r % 3]:
            if method == "harness":
                res = measure(step, timer=timer, rule=CIStoppingRule(ci_target=0.01),
                              limits=MeasureLimits(min_samples=10, min_time_s=min_time_s, budget_s=budget_s))
                harness.append(statistics.median(res.samples_s))
                harness_blocks.append(median_of_block_means(res.samples_s, res.block_sizes))
            elif method == "wall":
                typical = statistics.median(harness) if harness else 0.0
                wall.append(wall_clock_per_step(step, sync, min_time_s, typical))
            else:
                t = tub.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
                theirs.append(t.blocked_autorange(min_run_time=min_time_s).median)
    return {"timer": timer.name, "harness_median_s": statistics.median(harness),
            "wall_median_s": statistics.median(wall), "torch_benchmark_median_s": statistics.median(theirs),
            "harness_block_mean_median_s": statistics.median(harness_blocks),
            "harness_vs_torch": ratio_summary([a / b for a, b in zip(harness, theirs)]),
            "harness_blocks_vs_torch": ratio_summary([a / b for a, b in zip(harness_blocks, theirs)]),
            "wall_vs_torch": ratio_summary([a / b for a, b in zip(wall, theirs)]),
            "harness_round_medians_s": harness, "harness_round_block_mean_medians_s": harness_blocks,
            "wall_round_medians_s": wall,
            "torch_benchmark_round_medians_s": theirs}


def sampler_overhead(step: Callable[[], None], device: Any, telemetry: Any, *, rounds: int,
                     budget_s: float) -> dict[str, Any]:
    """Median step time with the telemetry sampler running (as a sweep point runs it: one thread for
    the point, blocks marked within it) over the same without, per round, the order alternating."""
    from bench.measure.timing import CIStoppingRule, MeasureLimits, measure, timer_for

    rule = CIStoppingRule(ci_target=0.005)
    limits = MeasureLimits(min_samples=20, min_time_s=min(0.3, budget_s), budget_s=budget_s)
    timer = timer_for(device)
    on: list[float] = []
    off: list[float] = []
    for r in range(rounds):
        for sampling in ((False, True) if r % 2 == 0 else (True, False)):
            if sampling:
                with telemetry.sampling():
                    res = measure(step, timer=timer, rule=rule, limits=limits, around_block=telemetry.measuring)
                telemetry.reset()
            else:
                res = measure(step, timer=timer, rule=rule, limits=limits)
            (on if sampling else off).append(statistics.median(res.samples_s))
    return {"off_median_s": statistics.median(off), "on_median_s": statistics.median(on),
            **ratio_summary([a / b for a, b in zip(on, off)]), "off_round_medians_s": off, "on_round_medians_s": on}


def sustained_load(step: Callable[[], None], sync: Callable[[], None] | None, *, duration_s: float,
                   read_state: Callable[[], dict[str, Any]], interval_s: float = 0.5,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Run `step` back to back for `duration_s`, every `interval_s` synchronising and recording the per-step
    time of the interval and `read_state()` (SM clock, power, clock-event reasons on a GPU; CPU frequency
    on a CPU). Compares the first and last SUSTAINED_WINDOW of the run: do short points, timed near the
    start of a load, run at clocks that a long run does not keep?"""
    timeline: list[dict[str, Any]] = []
    start = clock()
    while True:
        t0 = clock()
        n = 0
        while n == 0 or clock() - t0 < interval_s:
            step()
            n += 1
            if sync is not None and n % 8 == 0:
                sync()
        if sync is not None:
            sync()
        t1 = clock()
        timeline.append({"t_s": t1 - start, "step_s": (t1 - t0) / n, "steps": n, **read_state()})
        if t1 - start >= duration_s:
            break
    total = timeline[-1]["t_s"]
    first = [p for p in timeline if p["t_s"] <= total * SUSTAINED_WINDOW] or timeline[:1]
    last = [p for p in timeline if p["t_s"] >= total * (1 - SUSTAINED_WINDOW)] or timeline[-1:]
    out: dict[str, Any] = {"duration_s": total, "intervals": len(timeline), "timeline": timeline,
                           "null_reasons": {}}

    def ratio(key: str) -> float | None:
        a = [p[key] for p in first if p.get(key) is not None]
        b = [p[key] for p in last if p.get(key) is not None]
        if not a or not b or statistics.median(a) == 0:
            out["null_reasons"][f"{key}_last_over_first"] = (
                f"no {key} reading in the first and the last {SUSTAINED_WINDOW:.0%} of the run"
                + (f" ({timeline[0].get('null_reasons', {}).get(key)})" if timeline[0].get("null_reasons", {}).get(key)
                   else ""))
            return None
        return statistics.median(b) / statistics.median(a)

    out["step_s_last_over_first"] = ratio("step_s")
    out["clock_mhz_last_over_first"] = ratio("clock_mhz")
    out["power_w_last_over_first"] = ratio("power_w")
    late = sorted({r for p in last for r in (p.get("throttle_reasons") or [])})
    early = sorted({r for p in first for r in (p.get("throttle_reasons") or [])})
    out["throttle_reasons_first"] = early
    out["throttle_reasons_last"] = late
    clock_fell = (out["clock_mhz_last_over_first"] or 1.0) < 1 - SUSTAINED_TOLERANCE
    slowed = (out["step_s_last_over_first"] or 1.0) > 1 + SUSTAINED_TOLERANCE
    new_throttle = bool(set(late) - set(early) - {"gpu_idle", "applications_clocks_setting", "sync_boost",
                                                  "display_clock_setting"})
    # Clocks a long run does not keep (a falling clock, a new slowdown reason), or a step that slows with
    # the clock holding (other work, or heat the clock reading does not show).
    out["clock_not_kept"] = clock_fell or new_throttle
    out["step_slowed"] = slowed
    return out


def _cpu_state() -> dict[str, Any]:
    from bench.measure.conditions import read_cpu_frequency

    freq, null = read_cpu_frequency()
    mhz = freq.get("cpu_freq_mhz")
    return {"clock_mhz": mhz["median"] if mhz else None, "clock_source": freq.get("cpu_freq_source"),
            **({"null_reasons": {"clock_mhz": null["cpu_freq_mhz"]}} if not mhz else {})}


def _gpu_state_reader(device: Any) -> Callable[[], dict[str, Any]]:
    from bench.measure.telemetry.nvml import (
        FieldUnavailable,
        decode_clock_event_reasons,
    )

    def read() -> dict[str, Any]:
        out: dict[str, Any] = {"null_reasons": {}}
        for key, fn in (("clock_mhz", device.sm_clock_mhz), ("power_w", device.power_w),
                        ("throttle_reasons", lambda: decode_clock_event_reasons(device.clock_event_reasons()))):
            try:
                out[key] = fn()
            except FieldUnavailable as e:
                out[key] = None
                out["null_reasons"][key] = str(e)
        return out

    return read


def nvml_checks(nvml: Any, handle: Any, *, refresh_poll_s: float, busy: Callable[[], Any] | None = None,
                ticks: int = 200, clock: Callable[[], float] = time.perf_counter,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """What doctor reads and measures through NVML alone: the card's settings, the other processes on
    it, how often each reading refreshes (polled while `busy()`, called at every poll, keeps the GPU
    working) and the sampler's cost per tick. Nothing here calls CUDA but `busy` (tests run it on the
    fake NVML)."""
    from bench.measure.telemetry.gpu_state import (
        measure_refresh_periods,
        read_gpu_settings,
        read_processes,
    )
    from bench.measure.telemetry.nvml import NvmlDevice
    from bench.measure.telemetry.sampler import tick_cost

    device = NvmlDevice(nvml, handle)
    refresh = measure_refresh_periods(device, duration_s=refresh_poll_s, clock=clock, sleep=sleep, work=busy)
    return {"settings": read_gpu_settings(nvml, handle), "processes": read_processes(nvml, handle),
            "refresh": refresh, "sampler_tick": tick_cost(NvmlDevice(nvml, handle), ticks=ticks)}


def _steps(device: Any, quick: bool):
    """(launch-bound step, compute-bound step, their descriptions) for `device`."""
    from bench.measure.step import StepOptions, TrainStep
    from bench.measure.workloads import load_workload

    if device.type == "cuda":
        launch = (load_workload("mlp", {}), 1, StepOptions(precision="bf16"))
        compute = (load_workload("mlp", {"in_features": 4096, "hidden": 8192, "depth": 4}), 4096,
                   StepOptions(precision="bf16"))
    else:
        launch = (load_workload("mlp", {"in_features": 32, "hidden": 32, "depth": 2}), 1, StepOptions())
        size = 128 if quick else 512
        compute = (load_workload("mlp", {"in_features": size, "hidden": size, "depth": 2}), size, StepOptions())
    out = []
    for workload, batch, options in (launch, compute):
        out.append((TrainStep(workload, batch, device, options, seed=0),
                    f"{workload.description}, batch {batch}, {options.precision}"))
    return out


def run_doctor(config: DoctorConfig | None = None, progress: Callable[[str], None] | None = None,
               checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Everything `bench doctor` reports, as one JSON-ready dict (see docs/doctor.md for each field).
    What does not apply to the device (NVML on a CPU) is under `skipped`, with the reason.
    `progress(text)` hears which check starts; `checkpoint(report)` gets the report so far before each
    check (with its `verdict` from what is in), so a run cut off by a time limit keeps what it found."""
    import torch

    from bench.core.devices import resolve_device, synchronizer
    from bench.measure.conditions import distorting_env_settings, read_conditions
    from bench.measure.telemetry.fingerprint import fingerprint
    from bench.measure.telemetry.nvml import (
        NvmlUnavailable,
        device_handle,
        load_nvml,
        mig_enabled,
        parse_device,
        shutdown_nvml,
    )
    from bench.measure.telemetry.sampler import Telemetry

    cfg = (config or DoctorConfig()).effective()

    def say(text: str) -> None:
        if checkpoint is not None and "fingerprint" in report:
            report["verdict"] = verdict(report)
            report["unfinished"] = text
            checkpoint(report)
        if progress is not None:
            progress(text)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    report: dict[str, Any] = {"device": str(device), "quick": cfg.quick, "skipped": {}}
    say("reading the machine")
    fp = fingerprint(device, nvml=cfg.nvml)
    report["fingerprint"] = fp
    report["nccl_version"] = None
    try:
        if device.type == "cuda" and torch.distributed.is_nccl_available():
            v = torch.cuda.nccl.version()
            report["nccl_version"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    except Exception as e:  # noqa: BLE001 - a reading
        report["skipped"]["nccl_version"] = f"torch.cuda.nccl.version(): {type(e).__name__}: {e}"
    if report["nccl_version"] is None and "nccl_version" not in report["skipped"]:
        report["skipped"]["nccl_version"] = "NCCL applies to CUDA devices with a NCCL-enabled torch"
    conditions = read_conditions()
    report["conditions"] = conditions
    report["env_settings"] = conditions["env_settings"]
    report["distorting_env"] = distorting_env_settings(conditions["env_settings"])

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        """One check's result, or None with the failure under `skipped`: one failing check (an
        out-of-memory on a small card, a driver error) must not hide what the others found."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            report["skipped"][name] = f"failed: {type(e).__name__}: {e}".splitlines()[0]
            return None

    steps = _steps(device, cfg.quick)
    (launch, launch_desc), (compute, compute_desc) = steps
    report["steps"] = {"launch_bound": launch_desc, "compute_bound": compute_desc}
    sync = synchronizer(device)

    nvml = handle = None
    nvml_device = None
    nvml_target = cfg.nvml_device or device
    if parse_device(nvml_target)[0] == "cuda":
        try:
            nvml = load_nvml(cfg.nvml)
            handle = device_handle(nvml, nvml_target)
            if mig_enabled(nvml, handle):
                raise NvmlUnavailable("MIG mode is on: NVML readings cover the whole GPU, not this slice")
        except NvmlUnavailable as e:
            if nvml is not None:
                shutdown_nvml(nvml)
            nvml = None
            report["skipped"]["nvml"] = str(e)
    else:
        report["skipped"]["nvml"] = (f"device {device} is not a CUDA GPU: no NVML settings, processes, refresh "
                                     "periods or sampler")
    try:
        if nvml is not None:
            from bench.measure.telemetry.nvml import NvmlDevice

            say("polling NVML readings for their refresh periods")
            nvml_device = NvmlDevice(nvml, handle)

            # One 8192^3 bf16 product (about 1.1 TFLOP, 1-2 ms on a Hopper card) queued per 2 ms poll keeps the
            # GPU working, so power, utilisation and clocks have something to change with, without the
            # launch queue filling up and blocking the polls.
            busy = None
            if device.type == "cuda":
                a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
                b, c = torch.randn_like(a), torch.empty_like(a)

                def busy() -> None:
                    torch.mm(a, b, out=c)

            report["gpu"] = attempt("gpu", lambda: nvml_checks(nvml, handle, refresh_poll_s=cfg.refresh_poll_s,
                                                               busy=busy))
            if busy is not None:
                del a, b, c, busy  # 384 MiB the rest does not need
            if sync is not None:
                sync()
            say("timing the sampler's overhead on a launch-bound step")
            tel = Telemetry.for_device(nvml_target, nvml=cfg.nvml)
            try:
                overhead = attempt("sampler_overhead", lambda: sampler_overhead(
                    launch, device, tel, rounds=cfg.rounds, budget_s=cfg.budget_s))
                report["sampler_overhead"] = {"step": launch_desc, **overhead} if overhead else None
            finally:
                tel.close()
        else:
            for key in ("gpu", "sampler_overhead"):
                report[key] = None
            report["skipped"]["sampler_overhead"] = "no NVML sampler runs on this device"

        report["timers"] = {}
        for name, (step, desc) in (("launch_bound", steps[0]), ("compute_bound", steps[1])):
            say(f"timer agreement on the {name.replace('_', '-')} step ({desc})")
            row = attempt(f"timers.{name}", lambda: timer_agreement(
                step, device, rounds=cfg.rounds, budget_s=max(cfg.budget_s * 2, 0.05), min_time_s=cfg.budget_s))
            if row is not None:
                report["timers"][name] = {"step": desc, **row}
        say(f"sustained load for {cfg.sustained_s:g} s")
        reader = _gpu_state_reader(nvml_device) if nvml_device is not None else _cpu_state
        sustained = attempt("sustained", lambda: sustained_load(
            compute, sync, duration_s=cfg.sustained_s, read_state=reader, interval_s=min(0.5, cfg.sustained_s / 5)))
        report["sustained"] = {"step": compute_desc, **sustained} if sustained else None
        if sustained and nvml_device is None:
            report["sustained"]["clock_source"] = report["sustained"]["timeline"][0].get("clock_source")
    finally:
        for step, _ in steps:
            step.release()
        if nvml is not None:
            shutdown_nvml(nvml)
    report["verdict"] = verdict(report)
    report.pop("unfinished", None)
    report["wall_time_s"] = time.perf_counter() - started
    return report


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The agreement between timers (the widest CI bound of any like-for-like ratio, else the widest
    median: the harness's median of block means and the synchronised wall clock, each against
    torch.utils.benchmark's median of block means) and the list of what makes step times from this
    machine untrustworthy, each an item with a `kind`."""
    spans = []
    for row in (report.get("timers") or {}).values():
        for key in ("harness_blocks_vs_torch", "wall_vs_torch") if row else ():
            r = row[key]
            bounds = r["ratio_ci95"] or [r["ratio_median"]]
            spans += [abs(b - 1) for b in bounds if b is not None]
    problems: list[dict[str, Any]] = [{"kind": "env", **d} for d in report.get("distorting_env", [])]
    gpu = report.get("gpu") or {}
    procs = (gpu.get("processes") or {}).get("processes")
    if procs:
        problems.append({"kind": "processes", "processes": procs})
    settings = gpu.get("settings") or {}
    if settings.get("app_clocks_changed"):
        problems.append({"kind": "app_clocks", "app_sm_clock_mhz": settings.get("app_sm_clock_mhz"),
                         "default_app_sm_clock_mhz": settings.get("default_app_sm_clock_mhz")})
    if settings.get("power_limit_below_default"):
        problems.append({"kind": "power_limit", "power_limit_w": settings.get("power_limit_w"),
                         "default_power_limit_w": settings.get("default_power_limit_w")})
    fp = report.get("fingerprint") or {}
    if fp.get("gpu_mig_enabled"):
        problems.append({"kind": "mig"})
    overhead = report.get("sampler_overhead") or {}
    ci = overhead.get("ratio_ci95")
    if ci and ci[0] > 1 + SAMPLER_OVERHEAD_LIMIT:
        problems.append({"kind": "sampler", "ratio_median": overhead["ratio_median"], "ratio_ci95": ci})
    sustained = report.get("sustained") or {}
    if sustained.get("clock_not_kept") or sustained.get("step_slowed"):
        problems.append({"kind": "sustained", "clock_not_kept": sustained.get("clock_not_kept"), "clock_mhz_last_over_first": sustained.get("clock_mhz_last_over_first"),
                         "step_s_last_over_first": sustained.get("step_s_last_over_first"),
                         "throttle_reasons_last": sustained.get("throttle_reasons_last")})
    load = (report.get("conditions") or {}).get("load_avg")
    cpus = (report.get("conditions") or {}).get("cpus")
    if load and cpus and load[0] > cpus * 0.5:
        problems.append({"kind": "load", "load_avg_1min": load[0], "cpus": cpus})
    return {"timers_agree_within": max(spans) if spans else None, "problems": problems,
            "skipped": sorted(report.get("skipped", {}))}
