"""FLOPs of one training step (torch's FlopCounterMode), achieved TFLOP/s and model FLOPs utilisation.

Counted once, outside any timed window: counting runs the step under a dispatch mode that is far
slower than the step itself.
"""

from __future__ import annotations

from typing import Any, Callable

# What FlopCounterMode counts: matmul-like ops (mm, addmm, bmm, baddbmm, convolution and its
# backward, scaled-dot-product attention and its backward: causal attention as its masked share, and
# the CPU kernel too, by `attention_formulas`). Elementwise ops, reductions,
# normalisation and the optimizer's update are not counted; that is the convention MFU uses.
COUNTED_OPS_NOTE = ("matmul, convolution and attention FLOPs only (torch.utils.flop_counter); elementwise ops, "
                    "normalisation and the optimizer update are not counted")


# Scaled-dot-product attention: torch counts the fused CUDA kernels as full attention, causal or not,
# and not the CPU kernel at all. These formulas count both, a causal mask's share of the score matrix only.
_SDPA_FORWARD = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
_SDPA_BACKWARD = tuple(f"{name}_backward" for name in _SDPA_FORWARD)


def causal_fraction(q_len: int, k_len: int) -> float:
    """The share of the q_len × k_len score matrix a causal mask keeps (torch's is_causal: the
    top-left-aligned lower triangle, query i sees keys 0..i): about one half for long sequences."""
    if q_len <= 0 or k_len <= 0:
        return 0.0
    kept = sum(min(i + 1, k_len) for i in range(q_len))
    return kept / (q_len * k_len)


def _sdpa_formula(op, backward: bool):
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    names = [a.name for a in op._schema.arguments]
    causal_at = names.index("is_causal") if "is_causal" in names else None

    def count(*args, out_val=None, **kwargs):
        is_causal = kwargs.get("is_causal", args[causal_at] if causal_at is not None and causal_at < len(args) else False)
        if backward:
            grad_out, q, k, v = (args[i].shape for i in range(4))
            flops = sdpa_backward_flop_count(grad_out, q, k, v)
        else:
            q, k, v = (args[i].shape for i in range(3))
            flops = sdpa_flop_count(q, k, v)
        return int(flops * causal_fraction(q[-2], k[-2])) if is_causal else flops

    count._get_raw = True  # FlopCounterMode hands over the tensors and flags as they are
    return count


def attention_formulas() -> dict:
    """FlopCounterMode's `custom_mapping` for the attention kernels this torch has."""
    import torch

    out = {}
    for names, backward in ((_SDPA_FORWARD, False), (_SDPA_BACKWARD, True)):
        for name in names:
            op = getattr(torch.ops.aten, name, None)
            if op is not None:
                out[op] = _sdpa_formula(op.default, backward)
    return out


def flops_per_step(step: Callable[[], None]) -> tuple[int | None, str | None]:
    """Run `step` once under FlopCounterMode and return (FLOPs, None), or (None, reason).

    `step` should do a whole training step (forward, backward, optimizer). It really runs, so the
    model's weights take one extra update: call this during warm-up, never inside a timed block.
    """
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except Exception as e:  # very old torch
        return None, f"torch.utils.flop_counter unavailable: {type(e).__name__}: {e}"
    try:
        counter = FlopCounterMode(display=False, custom_mapping=attention_formulas())
        with counter:
            step()
        total = int(counter.get_total_flops())
    except Exception as e:
        return None, f"FLOP counting failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if total <= 0:
        return None, ("FlopCounterMode counted no FLOPs: the step has no matmul/convolution/attention ops it "
                      "knows, or they ran outside torch dispatch (e.g. a compiled or custom kernel)")
    return total, None


def achieved_tflops(flops: int | float | None, step_time_s: float | None) -> float | None:
    """FLOPs per step / seconds per step, in TFLOP/s; None when either is missing or not positive."""
    if flops is None or step_time_s is None or flops <= 0 or step_time_s <= 0:
        return None
    return flops / step_time_s / 1e12


def mfu(achieved: float | None, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved / peak TFLOP/s (a fraction, 0..1); None when either is missing."""
    if achieved is None or peak is None or peak <= 0 or achieved < 0:
        return None
    return achieved / peak


def flop_fields(flops: int | None, flops_reason: str | None, step_time_s: float | None,
                peak_tflops: float | None, peak_source: str | None, peak_reason: str | None = None) -> dict[str, Any]:
    """The FLOP-derived fields of a point, flat and JSON-ready, with `null_reasons` for each None."""
    achieved = achieved_tflops(flops, step_time_s)
    out: dict[str, Any] = {
        "flops_per_step": flops,
        "flops_counted": COUNTED_OPS_NOTE if flops is not None else None,
        "achieved_tflops": achieved,
        "peak_tflops": peak_tflops,
        "peak_source": peak_source,
        "mfu": mfu(achieved, peak_tflops),
    }
    null: dict[str, str] = {}
    if flops is None:
        null["flops_per_step"] = flops_reason or "FLOPs not counted"
        null["flops_counted"] = null["flops_per_step"]
    if achieved is None:
        null["achieved_tflops"] = null.get("flops_per_step") or "no step time"
    if peak_tflops is None:
        null["peak_tflops"] = peak_reason or "no peak TFLOP/s known for this device and precision"
        null["peak_source"] = null["peak_tflops"]
    if out["mfu"] is None:
        null["mfu"] = null.get("achieved_tflops") or null.get("peak_tflops") or "not computable"
    out["null_reasons"] = null
    return out
