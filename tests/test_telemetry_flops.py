"""FLOP counting, achieved TFLOP/s, MFU, the datasheet peak table and `bench peak` (on the CPU)."""

from __future__ import annotations

import argparse
import json
import statistics

import pytest
import torch

import bench.cli.peak as peak_command
from bench.core.errors import BenchError
from bench.measure.telemetry.flops import (
    achieved_tflops,
    flop_fields,
    flops_per_step,
    mfu,
)
from bench.measure.telemetry.peaks import (
    GPU_PEAKS,
    lookup_gpu,
    matmul_precision_for,
    measure_peak,
    peak_tflops,
)

B, IN, OUT = 4, 8, 16


def linear_step(input_requires_grad: bool):
    torch.manual_seed(0)
    model = torch.nn.Linear(IN, OUT, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(B, IN, requires_grad=input_requires_grad)

    def step():
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    return step


def test_linear_training_step_flops_match_the_hand_count():
    # forward x@W^T: 2*B*IN*OUT; backward: grad wrt input and wrt weight, 2*B*IN*OUT each.
    flops, reason = flops_per_step(linear_step(input_requires_grad=True))
    assert reason is None
    assert flops == 2 * B * IN * OUT + 2 * (2 * B * IN * OUT)


def test_first_layer_backward_skips_the_input_gradient_when_input_needs_none():
    flops, _ = flops_per_step(linear_step(input_requires_grad=False))
    assert flops == 2 * B * IN * OUT + 2 * B * IN * OUT


def test_step_that_raises_gives_none_and_the_error():
    def step():
        raise RuntimeError("shape mismatch\nlong trace")

    flops, reason = flops_per_step(step)
    assert flops is None
    assert reason == "FLOP counting failed: RuntimeError: shape mismatch"


def test_step_without_matmuls_gives_none_not_zero():
    flops, reason = flops_per_step(lambda: (torch.ones(4) * 2).sum())
    assert flops is None and "no FLOPs" in reason


def test_achieved_tflops_and_mfu():
    assert achieved_tflops(3e12, 0.5) == pytest.approx(6.0)
    assert mfu(6.0, 12.0) == pytest.approx(0.5)
    assert achieved_tflops(None, 0.5) is None and achieved_tflops(1e12, 0.0) is None
    assert mfu(None, 10.0) is None and mfu(1.0, None) is None


def test_flop_fields_give_reasons_for_every_missing_value():
    d = flop_fields(None, "FLOP counting failed: X", 0.01, None, None, "no datasheet peak")
    assert d["flops_per_step"] is None and d["null_reasons"]["flops_per_step"] == "FLOP counting failed: X"
    assert d["mfu"] is None and d["null_reasons"]["mfu"] == "FLOP counting failed: X"
    assert d["null_reasons"]["peak_tflops"] == "no datasheet peak"
    ok = flop_fields(int(2e12), None, 0.01, 400.0, "table:X")
    assert ok["achieved_tflops"] == pytest.approx(200.0) and ok["mfu"] == pytest.approx(0.5)
    assert ok["null_reasons"] == {}
    json.dumps(ok, allow_nan=False)


# --- peak table ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA H100 80GB HBM3", "H100-SXM"),
    ("NVIDIA H100 PCIe", "H100-PCIe"),
    ("NVIDIA H100 NVL", "H100-NVL"),
    ("NVIDIA H200", "H200-SXM"),
    ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA B200", "B200"),
    ("NVIDIA A100-SXM4-40GB", "A100-SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100-SXM"),
    ("NVIDIA A100-PCIE-40GB", "A100-PCIe"),
    ("NVIDIA A100 80GB PCIe", "A100-PCIe"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA L40S", "L40S"),
    ("Tesla V100-SXM2-16GB", "V100-SXM2"),
    ("Tesla V100-PCIE-32GB", "V100-PCIe"),
    ("Tesla T4", "T4"),
])
def test_device_names_match_their_datasheet_entry(name, key):
    assert lookup_gpu(name).key == key


def test_unknown_device_has_no_peak_and_says_how_to_get_one():
    r = peak_tflops("NVIDIA A10G", "bf16")
    assert r.tflops is None and "bench peak" in r.reason


def test_gb200_is_not_mistaken_for_a_b200():
    assert lookup_gpu("NVIDIA GB200") is None
    r = peak_tflops("NVIDIA GB200", "bf16")
    assert r.tflops is None and "no datasheet peak" in r.reason


@pytest.mark.parametrize("name", ["NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
                                  "NVIDIA H100 80GB HBM3 MIG"])
def test_mig_instance_gets_no_full_card_peak(name):
    r = peak_tflops(name, "bf16")
    assert r.tflops is None and r.reason.startswith("MIG instance:")
    assert peak_tflops(name, "bf16", overrides={"bf16": 140.0}).tflops == 140.0  # the user may know the slice's


def test_h100_pcie_dense_half_precision_is_half_of_the_sparsity_figure():
    assert peak_tflops("NVIDIA H100 PCIe", "bf16").tflops == pytest.approx(1513 / 2)
    assert peak_tflops("NVIDIA H100 PCIe", "fp16").tflops == pytest.approx(1513 / 2)


def test_table_gives_dense_not_sparsity_numbers():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16").tflops == pytest.approx(989.5)
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "tf32").tflops == pytest.approx(156.0)
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32").tflops == pytest.approx(67.0)
    assert all(p.source for p in GPU_PEAKS.values())


def test_precision_the_card_lacks_has_a_reason():
    r = peak_tflops("Tesla V100-SXM2-16GB", "bfloat16")
    assert r.tflops is None and "bf16" in r.reason


def test_caller_override_wins_over_the_table():
    r = peak_tflops("NVIDIA H100 80GB HBM3", "bf16", overrides={"bfloat16": 700.0})
    assert (r.tflops, r.source) == (700.0, "override")
    with pytest.raises(BenchError):
        peak_tflops("NVIDIA H100 80GB HBM3", "bf16", overrides={"bf16": -1})


def test_fp32_matmuls_count_against_the_tf32_peak_when_torch_allows_tf32():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert matmul_precision_for("fp32") == "fp32"
        torch.set_float32_matmul_precision("high")
        assert matmul_precision_for("fp32") == "tf32"
        assert matmul_precision_for("bf16") == "bf16"
    finally:
        torch.set_float32_matmul_precision(before)


# --- bench peak ----------------------------------------------------------------------------------

def test_measure_peak_on_cpu_returns_a_positive_rate_and_says_it_measured_the_cpu():
    (r,) = measure_peak("cpu", precisions=["fp32"], size=32, repeats=3, min_repeat_s=0.002, warmup_s=0.01)
    assert r.measured == "cpu" and "CPU" in r.note
    assert r.tflops_median > 0 and r.tflops_best >= r.tflops_median
    assert len(r.samples_tflops) == 3 and r.timer == "host"
    assert r.table_tflops is None and r.null_reasons["table_tflops"]
    json.dumps(r.to_dict(), allow_nan=False)


def test_measure_peak_skips_tf32_on_cpu_with_a_reason():
    (r,) = measure_peak("cpu", precisions=["tf32"], size=16, repeats=1, min_repeat_s=0.001, warmup_s=0.01)
    assert r.tflops_median is None and "TF32" in r.null_reasons["tflops_median"]


@pytest.mark.parametrize("kwargs", [dict(size=0), dict(repeats=0), dict(precisions=["fp8"]),
                                    dict(warmup_s=float("nan")), dict(warmup_s=float("inf")), dict(min_repeat_s=-1)])
def test_measure_peak_rejects_bad_input(kwargs):
    with pytest.raises(BenchError):
        measure_peak("cpu", **kwargs)


def test_bench_peak_command_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "peak.json"
    args = argparse.Namespace(device="cpu", precisions=["fp32"], size=16, repeats=2, min_repeat_s=0.001,
                              warmup_s=0.01, json_path=str(out))
    assert peak_command.run(args) == 0
    printed = capsys.readouterr().out
    assert "Measured the CPU" in printed and "fp32" in printed and "spread" in printed
    data = json.loads(out.read_text())
    assert data["peak"][0]["tflops_median"] > 0


def test_bench_peak_warms_up_for_its_warm_up_time_measures_longer_and_reports_the_spread():
    from bench.measure.telemetry.peaks import PEAK_DEFAULTS

    assert PEAK_DEFAULTS["warmup_s"] >= 1.0  # sustained clocks, not burst ones
    assert PEAK_DEFAULTS["repeats"] * PEAK_DEFAULTS["min_repeat_s"] >= 2.0  # was 5 x 0.05 s
    (r,) = measure_peak("cpu", precisions=["fp32"], size=32, repeats=4, min_repeat_s=0.005, warmup_s=0.1)
    assert r.warmup_s >= 0.1
    assert r.tflops_worst <= r.tflops_median <= r.tflops_best
    assert r.tflops_spread == pytest.approx((r.tflops_best - r.tflops_worst) / 2 / statistics.median(r.samples_tflops))
    (one,) = measure_peak("cpu", precisions=["fp32"], size=16, repeats=1, min_repeat_s=0.001, warmup_s=0.0)
    assert one.tflops_spread is None and "one repeat" in one.null_reasons["tflops_spread"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_peak_on_a_gpu_lands_near_its_datasheet():
    (r,) = measure_peak("cuda", precisions=["bf16"], size=4096, repeats=3)
    assert r.measured == "gpu" and r.timer == "cuda_event"
    assert r.tflops_median > 0
    if r.table_tflops:
        assert 0.2 < r.fraction_of_table < 1.2


# ---- attention (issue 21, defect 5) ----------------------------------------------------------------------

BATCH, HEADS, SEQ, DIM = 2, 4, 64, 16


def _qkv():
    torch.manual_seed(0)
    return [torch.randn(BATCH, HEADS, SEQ, DIM, requires_grad=True) for _ in range(3)]


def test_attention_on_the_cpu_is_counted_not_zero():
    q, k, v = _qkv()
    flops, reason = flops_per_step(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert reason is None
    assert flops == 2 * (2 * BATCH * HEADS * SEQ * SEQ * DIM)  # scores q·kᵀ, then weights·v


def test_causal_attention_counts_the_masked_share_only_forward_and_backward():
    from bench.measure.telemetry.flops import causal_fraction

    q, k, v = _qkv()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    full, _ = flops_per_step(lambda: sdpa(q, k, v).sum().backward())
    causal, _ = flops_per_step(lambda: sdpa(q, k, v, is_causal=True).sum().backward())
    assert causal_fraction(SEQ, SEQ) == pytest.approx((SEQ + 1) / (2 * SEQ))
    assert causal == pytest.approx(full * causal_fraction(SEQ, SEQ), rel=1e-6)


def test_the_cuda_kernels_formulas_halve_causal_attention_too():
    from bench.measure.telemetry.flops import attention_formulas

    q, k, v = _qkv()
    formulas = attention_formulas()
    flash = formulas[torch.ops.aten._scaled_dot_product_flash_attention]
    efficient = formulas[torch.ops.aten._scaled_dot_product_efficient_attention]
    full = 2 * (2 * BATCH * HEADS * SEQ * SEQ * DIM)
    assert flash(q, k, v, 0.0, False) == full
    assert flash(q, k, v, 0.0, True) == int(full * (SEQ + 1) / (2 * SEQ))
    assert efficient(q, k, v, None, True, 0.0, True) == int(full * (SEQ + 1) / (2 * SEQ))
    assert efficient(q, k, v, None, True, 0.0, False) == full


# ---- `bench peak` keeps the device busy (issue 21, defect 10) ------------------------------------------


def test_peak_repeats_are_queued_back_to_back_so_the_device_never_idles_between_them():
    from bench.measure.telemetry.peaks import timed_repeats
    from bench.testing.fake_cuda import FakeCuda, FakeDevice

    dev = FakeDevice(launch_overhead_s=1e-5, launch_latency_s=0.0)
    cuda = FakeCuda(dev)
    dev.host_work(0.01)  # the host was busy before: the device waited, which is not the repeats' doing
    times = timed_repeats(lambda count: [dev.launch(1e-3) for _ in range(count)], 5, 10, cuda)
    assert times == pytest.approx([1e-2] * 5, rel=0.01)
    assert dev.idle_s == 0.0  # one host synchronisation, at the end

    # The way it used to run: a host synchronisation after each repeat, host work before the next.
    dev2 = FakeDevice(launch_overhead_s=1e-5, launch_latency_s=0.0)
    cuda2 = FakeCuda(dev2)
    for _ in range(5):
        timed_repeats(lambda count: [dev2.launch(1e-3) for _ in range(count)], 1, 10, cuda2)
        dev2.host_work(1e-3)  # telemetry markers, bookkeeping
    assert dev2.idle_s > 4 * 1e-3
