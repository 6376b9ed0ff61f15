"""The words of `bench doctor`'s card, made from the dict `bench.run.doctor.run_doctor` returns (it
measures; this only says what it found), and the loud warning a sweep prints under a setting that
distorts step times."""

from __future__ import annotations

from typing import Any

from bench.core.vocabulary import TIMER_CUDA_EVENT


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1) * 100:+.1f}%"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g} ms"


def _mib(n: int | None) -> str:
    return "memory unknown" if n is None else f"{n / 2**20:,.0f} MiB"


def distorting_settings_warning(distorting: list[dict[str, str]]) -> list[str]:
    """One line per setting that makes step times unrepresentative of ordinary training."""
    return [f"{d['name']}={d['value']} is set: {d['why']}; these step times describe that setting, not ordinary "
            "training (unset it to measure)" for d in distorting]


def _ratio_text(r: dict[str, Any]) -> str:
    ci = r.get("ratio_ci95")
    tail = f" (95% CI {_pct(ci[0])} to {_pct(ci[1])})" if ci else f" ({r.get('ci_reason', 'no CI')})"
    return f"{_pct(r.get('ratio_median'))}{tail}"


def _problem(p: dict[str, Any]) -> str:
    kind = p["kind"]
    if kind == "env":
        return f"{p['name']}={p['value']} ({p['why']})"
    if kind == "processes":
        return "other processes on the GPU: " + ", ".join(
            f"pid {q['pid']}{' ' + q['name'] if q.get('name') else ''} ({_mib(q.get('used_gpu_memory_bytes'))})"
            for q in p["processes"])
    if kind == "app_clocks":
        return (f"application clocks set to {p['app_sm_clock_mhz']} MHz (default {p['default_app_sm_clock_mhz']} MHz):"
                " results describe that setting")
    if kind == "power_limit":
        return f"power limit {p['power_limit_w']:g} W, below its default {p['default_power_limit_w']:g} W"
    if kind == "mig":
        return "MIG mode is on: the GPU is shared between instances"
    if kind == "sampler":
        lo, hi = p["ratio_ci95"]
        return f"the telemetry sampler slows a launch-bound step by {_pct(p['ratio_median'])} (95% CI {_pct(lo)} to " \
               f"{_pct(hi)})"
    if kind == "sustained":
        parts = []
        if p.get("clock_mhz_last_over_first") is not None:
            parts.append(f"clock {_pct(p['clock_mhz_last_over_first'])}")
        if p.get("step_s_last_over_first") is not None:
            parts.append(f"step time {_pct(p['step_s_last_over_first'])}")
        if p.get("throttle_reasons_last"):
            parts.append("clock-event reasons " + ", ".join(p["throttle_reasons_last"]))
        what = ("short points run at clocks a long run does not keep" if p.get("clock_not_kept")
                else "the step slowed under sustained load with the clock holding")
        return f"{what} (end of the sustained load against its start: " + "; ".join(parts) + ")"
    if kind == "load":
        return f"the machine is busy with other work (1-minute load {p['load_avg_1min']:.2f} on {p['cpus']} CPUs)"
    return kind


def verdict_line(report: dict[str, Any]) -> str:
    v = report["verdict"]
    within = v.get("timers_agree_within")
    agree = (f"step times from this machine agree within ±{within * 100:.1f}% between timers"
             if within is not None else "the timers were not compared")
    problems = v.get("problems") or []
    if problems:
        return f"{agree}; these settings or processes make them untrustworthy: " + "; ".join(map(_problem, problems))
    return f"{agree}; no setting, process or clock behaviour found that makes them untrustworthy"


def doctor_card(report: dict[str, Any]) -> list[str]:
    """The card, one line per fact, the verdict last."""
    fp = report.get("fingerprint") or {}
    lines = [f"device      {report['device']}" + (f": {fp['gpu_name']}" if fp.get("gpu_name") else
                                                   f" ({fp.get('cpu_model') or 'CPU model unknown'})")]
    sw = [f"torch {fp.get('torch_version')}", f"python {fp.get('python_version')}"]
    for key, label in (("driver_version", "driver"), ("cuda_driver_version", "CUDA driver"),
                       ("cuda_runtime_version", "CUDA runtime"), ("cudnn_version", "cuDNN")):
        if fp.get(key) is not None:
            sw.append(f"{label} {fp[key]}")
    if report.get("nccl_version"):
        sw.append(f"NCCL {report['nccl_version']}")
    lines.append("software    " + ", ".join(sw))
    gpu = report.get("gpu")
    if gpu:
        s = gpu["settings"]
        flags = []
        for key, label in (("gpu_persistence_mode", "persistence"), ("gpu_ecc_enabled", "ECC"),
                           ("gpu_mig_enabled", "MIG")):
            val = fp.get(key)
            flags.append(f"{label} {'?' if val is None else 'on' if val else 'off'}")
        def default(key: str, unit: str) -> str:
            return "default unknown" if s.get(key) is None else f"default {s[key]:g} {unit}"

        if s.get("power_limit_w") is not None:
            flags.append(f"power limit {s['power_limit_w']:g} W ({default('default_power_limit_w', 'W')})")
        if s.get("app_sm_clock_mhz") is not None:
            flags.append(f"application clocks SM {s['app_sm_clock_mhz']} MHz ({default('default_app_sm_clock_mhz', 'MHz')})")
        if s.get("clock_event_reasons_now") is not None:
            flags.append("clock-event reasons now: " + (", ".join(s["clock_event_reasons_now"]) or "none"))
        lines.append("gpu         " + "; ".join(flags))
        procs = gpu["processes"]
        if procs["processes"] is None:
            lines.append(f"processes   unknown ({procs['reason']})")
        else:
            lines.append("processes   " + (", ".join(f"pid {q['pid']} ({_mib(q['used_gpu_memory_bytes'])})"
                                                  for q in procs["processes"]) or "no other compute process (as NVML sees"
                                                                                  " them)"))
        refresh = []
        for name, row in gpu["refresh"].items():
            refresh.append(f"{name} {_ms(row['refresh_s'])}" if row["refresh_s"] is not None else f"{name} ?")
        res = next(iter(gpu["refresh"].values()), {}).get("resolution_s")
        lines.append("nvml        refreshes every: " + ", ".join(refresh)
                     + (f" (polled every {_ms(res)})" if res else ""))
        tick = gpu["sampler_tick"]
        lines.append(f"sampler     {tick['us_per_tick_median']:.0f} µs per tick (p90 {tick['us_per_tick_p90']:.0f} µs), "
                     f"{tick['nvml_calls_per_tick']:.2f} NVML calls per tick, a tick every {_ms(tick['period_s'])}")
    env = report.get("env_settings") or {}
    lines.append("environment " + (", ".join(f"{k}={v}" for k, v in env.items()) or
                                   "none of the settings that change timing or memory is set"))
    over = report.get("sampler_overhead")
    if over:
        lines.append(f"overhead    sampler on vs off at a launch-bound step: {_ratio_text(over)}")
    for name, row in (report.get("timers") or {}).items():
        if not row:
            continue
        first = "CUDA events" if row["timer"] == TIMER_CUDA_EVENT else "host clock per step"
        lines.append(f"timers      {name.replace('_', '-')} ({row['step']}): torch.utils.benchmark "
                     f"{_ms(row['torch_benchmark_median_s'])}; {first}, median of block means "
                     f"{_ratio_text(row['harness_blocks_vs_torch'])} (median step "
                     f"{_ratio_text(row['harness_vs_torch'])}); synchronised wall clock {_ratio_text(row['wall_vs_torch'])}")
    sus = report.get("sustained")
    if sus:
        parts = [f"step time {_pct(sus['step_s_last_over_first'])}"]
        clock = sus.get("clock_mhz_last_over_first")
        parts.append(f"clock {_pct(clock)}" if clock is not None else
                     f"clock not read ({sus['null_reasons'].get('clock_mhz_last_over_first', 'no reading')})")
        if sus.get("power_w_last_over_first") is not None:
            parts.append(f"power {_pct(sus['power_w_last_over_first'])}")
        if sus.get("throttle_reasons_last"):
            parts.append("clock-event reasons at the end: " + ", ".join(sus["throttle_reasons_last"]))
        lines.append(f"sustained   {sus['duration_s']:.0f} s of the compute-bound step, end against start: "
                     + "; ".join(parts))
    for key, why in sorted(report.get("skipped", {}).items()):
        lines.append(f"skipped     {key}: {why}")
    if report.get("quick"):
        lines.append("note        --quick: every figure rests on a few short rounds")
    lines.append(f"verdict     {verdict_line(report)}")
    return lines
