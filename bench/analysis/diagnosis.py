"""Why a sweep point's step took the time it did, in plain words, from its telemetry and step-time shape.

A rule-based reading of the numbers, not a profiler: thresholds are below and in docs/telemetry.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from bench.core.errors import BenchError

REGIMES = ("flat", "transition", "linear")

# Thresholds (percent unless noted). "Activity" is time- and SM-averaged, so 100% is every SM busy
# all the time; kernel-active is only "some kernel was running", so it reads high more easily.
KERNEL_ACTIVE_LOW_PCT = 60.0     # below: the GPU had no kernel running for > 40% of the block
KERNEL_ACTIVE_HIGH_PCT = 90.0    # at or above: kernels ran back to back
SM_ACTIVITY_LOW_PCT = 40.0       # GPM SM activity below: SMs mostly idle
SM_ACTIVITY_HIGH_PCT = 70.0      # GPM SM activity at or above: SMs mostly busy
TENSOR_ACTIVITY_HIGH_PCT = 30.0  # GPM tensor activity at or above: tensor cores carry the work
DRAM_BW_HIGH_PCT = 60.0          # GPM DRAM bandwidth at or above: memory traffic near its ceiling
THROTTLE_MIN_FRACTION = 0.1      # share of samples with a throttle bit before we call it throttled

LABELS = ("launch-bound", "overhead-bound", "host-bound", "fixed-work-bound", "compute-bound", "memory-bandwidth-bound",
          "transition", "mixed", "undetermined", "power-throttled", "thermally throttled", "hardware-slowdown")


@dataclass
class Diagnosis:
    """A short label, one or two sentences, and the numbers they rest on."""

    label: str
    labels: list[str]
    sentence: str
    basis: str                       # "telemetry", "telemetry+step_time", "step_time_only", "none"
    inferred_from_step_time_only: bool
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _num(summary: Mapping[str, Any] | None, key: str) -> float | None:
    if not summary:
        return None
    v = summary.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}%"


def _regime_phrase(regime: str | None) -> str:
    return {"flat": "step time stays flat as the batch grows",
            "linear": "step time grows about linearly with the batch",
            "transition": "step time has begun to grow with the batch"}.get(regime or "", "")


def diagnose(summary: Mapping[str, Any] | None, regime: str | None = None, *, mfu: float | None = None,
             device_type: str | None = None) -> Diagnosis:
    """Label one point from its telemetry summary (`Telemetry.summary()`, may be None or all-None)
    and its step-time regime ("flat", "transition", "linear" or None).

    Without device telemetry the label rests on the step-time shape alone and says so. On the CPU
    (`device_type="cpu"`) there is no separate device to wait on, so a flat step time is called
    "overhead-bound" (fixed per-step costs) rather than launch-bound.
    """
    if regime is not None and regime not in REGIMES:
        raise BenchError(f"unknown step-time regime {regime!r} (expected one of {', '.join(REGIMES)} or None)")
    ka = _num(summary, "kernel_active_pct_mean")
    sm = _num(summary, "sm_activity_pct_mean")
    tn = _num(summary, "tensor_activity_pct_mean")
    dr = _num(summary, "dram_bw_pct_mean")
    evidence: dict[str, Any] = {"regime": regime, "kernel_active_pct_mean": ka, "sm_activity_pct_mean": sm,
                                "tensor_activity_pct_mean": tn, "dram_bw_pct_mean": dr, "mfu": mfu}
    if ka is None and sm is None:
        d = _from_step_time(regime, summary, device_type)
        d.evidence = evidence
        return d

    labels: list[str] = []
    parts: list[str] = []
    shape = _regime_phrase(regime)
    if sm is not None:
        activity = f"SM activity {_pct(sm)}, tensor activity {_pct(tn)}, DRAM bandwidth {_pct(dr)} (GPM)"
        busy = sm >= SM_ACTIVITY_HIGH_PCT or (tn is not None and tn >= TENSOR_ACTIVITY_HIGH_PCT)
        idle = sm < SM_ACTIVITY_LOW_PCT and not busy
        memory = dr is not None and dr >= DRAM_BW_HIGH_PCT and (tn is None or tn < dr)
    else:
        activity = f"a kernel was running {_pct(ka)} of the time (no GPM activity metrics)"
        busy = ka >= KERNEL_ACTIVE_HIGH_PCT
        idle = ka < KERNEL_ACTIVE_LOW_PCT
        memory = False

    if memory:
        labels.append("memory-bandwidth-bound")
        parts.append(f"Memory-bandwidth-bound: {activity}; DRAM traffic is near its ceiling while tensor cores "
                     "are less busy" + (f", and {shape}" if shape else "") + ".")
    elif busy and regime == "flat":
        labels.append("fixed-work-bound")
        parts.append(f"Busy with work that does not grow with the batch: {activity}, yet {shape} "
                     "(e.g. the optimizer update over all parameters dominates).")
    elif busy:
        labels.append("compute-bound")
        what = "" if sm is not None else " (compute or memory traffic: GPM would tell which)"
        parts.append(f"Compute-bound{what}: {activity}" + (f", and {shape}" if shape else "") + ".")
    elif idle and regime == "linear":
        labels.append("host-bound")
        parts.append(f"Host-bound: {activity}, yet {shape}: work on the CPU side (data, Python per-sample "
                     "work) grows with the batch while the GPU waits.")
    elif idle:
        labels.append("launch-bound")
        parts.append(f"Launch-bound: {activity}" + (f", and {shape}" if shape else "")
                     + ": the GPU waits on the host to launch kernels; a larger batch costs little extra time.")
    elif regime == "flat":
        labels.append("launch-bound")
        parts.append(f"Mostly launch-bound: {activity}, and {shape}.")
    elif regime == "linear":
        labels.append("compute-bound")
        parts.append(f"Mostly compute-bound: {activity}, and {shape}.")
    elif regime == "transition":
        labels.append("transition")
        parts.append(f"Between launch-bound and compute-bound: {activity}, and {shape}.")
    else:
        labels.append("mixed")
        parts.append(f"Neither clearly idle nor saturated: {activity}.")

    throttle = _throttle(summary)
    if throttle:
        labels = [l for l in labels if l not in ("mixed", "undetermined")] + [t[0] for t in throttle]
        parts.extend(t[1] for t in throttle)
    if mfu is not None:
        parts.append(f"MFU {mfu * 100:.0f}% of the peak.")
    return Diagnosis(label=", ".join(labels), labels=labels, sentence=" ".join(parts),
                     basis="telemetry+step_time" if regime else "telemetry",
                     inferred_from_step_time_only=False, evidence=evidence)


def _throttle(summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, sentence) for each kind of throttling seen in enough samples."""
    if not summary:
        return []
    fraction = _num(summary, "throttled_sample_fraction")
    if fraction is not None and fraction < THROTTLE_MIN_FRACTION:
        return []
    share = f" in {fraction * 100:.0f}% of samples" if fraction is not None else ""
    clock = _num(summary, "sm_clock_mhz_median")
    at = f" (SM clock median {clock:.0f} MHz)" if clock is not None else ""
    out = []
    if summary.get("power_capped"):
        out.append(("power-throttled", f"Power-throttled: clocks held down by the power cap{share}{at}."))
    if summary.get("thermally_throttled"):
        out.append(("thermally throttled", f"Thermally throttled: clocks held down by temperature{share}{at}."))
    if summary.get("hw_slowdown") and not out:
        out.append(("hardware-slowdown", f"Hardware slowdown engaged{share}{at} (power brake or temperature)."))
    return out


def _from_step_time(regime: str | None, summary: Mapping[str, Any] | None, device_type: str | None = None) -> Diagnosis:
    why = None
    if summary and isinstance(summary.get("null_reasons"), Mapping):
        why = summary["null_reasons"].get("kernel_active_pct_mean")
    no_tel = f"no device telemetry ({why})" if why else "no device telemetry"
    if regime is None:
        return Diagnosis("undetermined", ["undetermined"], f"Nothing to go on: {no_tel} and no step-time regime.",
                         "none", False)
    label, text = {
        "flat": ("launch-bound", "Step time stays flat as the batch grows, which suggests launch-bound: the "
                                 "device waits on the host rather than on its own work."),
        "linear": ("compute-bound", "Step time grows about linearly with the batch, which suggests the device's "
                                    "own work (compute or memory traffic) sets the pace."),
        "transition": ("transition", "Step time has begun to grow with the batch: between launch-bound and "
                                     "compute-bound."),
    }[regime]
    if device_type == "cpu" and regime == "flat":
        label, text = ("overhead-bound", "Step time stays flat as the batch grows: fixed per-step costs (Python, "
                                         "operator dispatch, small kernels) outweigh the work that scales with the batch.")
    return Diagnosis(label, [label], f"{text} Inferred from step time only; {no_tel}.", "step_time_only", True)
