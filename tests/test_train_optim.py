"""LARS and LAMB single steps against the papers' update rules, computed by hand."""

import math

import pytest
import torch
from torch import nn

from bench.core.errors import BenchError
from bench.measure.optim import LAMB, LARS, layerwise_param_groups, make_optimizer


def _param(values, grad):
    p = nn.Parameter(torch.tensor(values, dtype=torch.float64))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    return p


def test_lars_step_scales_the_rate_by_the_trust_ratio():
    # |w| = 5, |g| = 1, beta = 0.1: local lr = 0.001 * 5 / (1 + 0.5) = 1/300
    # v = 2 * (1/300) * (g + 0.1 w) = (1/150) * [0.9, 1.2] = [0.006, 0.008]; w' = w - v
    p = _param([3.0, 4.0], [0.6, 0.8])
    opt = LARS([p], lr=2.0, momentum=0.9, weight_decay=0.1, trust_coefficient=0.001)
    opt.step()
    assert p.detach().tolist() == pytest.approx([2.994, 3.992], abs=1e-12)
    assert opt.state[p]["last_local_lr"] == pytest.approx(1 / 300)


def test_lars_second_step_adds_momentum_to_the_new_scaled_update():
    p = _param([3.0, 4.0], [0.6, 0.8])
    opt = LARS([p], lr=2.0, momentum=0.9, weight_decay=0.0, trust_coefficient=0.01)
    opt.step()  # local lr = 0.01*5/1 = 0.05; v1 = 2*0.05*g = [0.06, 0.08]; w1 = [2.94, 3.92]
    assert p.detach().tolist() == pytest.approx([2.94, 3.92])
    p.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    opt.step()  # |w1| = 4.9, local lr = 0.049; v2 = 0.9*v1 + 2*0.049*g = [0.1128, 0.1504]
    assert p.detach().tolist() == pytest.approx([2.94 - 0.1128, 3.92 - 0.1504])


def test_lars_without_trust_adaptation_is_momentum_sgd_with_the_rate_inside_the_buffer():
    p = _param([3.0, 4.0], [0.6, 0.8])
    opt = LARS([{"params": [p], "trust_adaptation": False}], lr=0.5, momentum=0.9)
    opt.step()
    assert p.detach().tolist() == pytest.approx([3.0 - 0.3, 4.0 - 0.4])


def test_lars_keeps_rate_one_for_a_zero_weight():
    p = _param([0.0, 0.0], [1.0, 0.0])
    LARS([p], lr=0.1, momentum=0.0).step()
    assert p.detach().tolist() == pytest.approx([-0.1, 0.0])


def _lamb_first_step(x, g, lr, wd, eps):
    # m_hat = g, v_hat = g^2 after bias correction, r = g / (|g| + eps)
    r = [gi / (abs(gi) + eps) for gi in g]
    u = [ri + wd * xi for ri, xi in zip(r, x)]
    ratio = math.hypot(*x) / math.hypot(*u)
    return [xi - lr * ratio * ui for xi, ui in zip(x, u)], ratio


def test_lamb_first_step_matches_the_hand_computed_update():
    p = _param([3.0, 4.0], [0.6, -0.8])
    opt = LAMB([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    opt.step()
    want, ratio = _lamb_first_step([3.0, 4.0], [0.6, -0.8], 0.1, 0.01, 1e-6)
    # r = [~1, ~-1]; u = [1.03, -0.96]; ratio = 5/|u| = 3.5522...
    assert ratio == pytest.approx(5 / math.hypot(1.03, -0.96), rel=1e-5)
    assert p.detach().tolist() == pytest.approx(want, rel=1e-12)
    assert opt.state[p]["last_trust_ratio"] == pytest.approx(ratio)


def test_lamb_second_step_uses_both_moments_with_bias_correction():
    g1, g2 = [0.6, -0.8], [0.2, 0.4]
    p = _param([3.0, 4.0], g1)
    opt = LAMB([p], lr=0.1, betas=(0.9, 0.99), eps=0.0, weight_decay=0.0)
    opt.step()
    x1 = p.detach().tolist()
    p.grad = torch.tensor(g2, dtype=torch.float64)
    opt.step()
    m = [0.9 * 0.1 * a + 0.1 * b for a, b in zip(g1, g2)]
    v = [0.99 * 0.01 * a * a + 0.01 * b * b for a, b in zip(g1, g2)]
    r = [(mi / (1 - 0.9 ** 2)) / math.sqrt(vi / (1 - 0.99 ** 2)) for mi, vi in zip(m, v)]
    ratio = math.hypot(*x1) / math.hypot(*r)
    assert p.detach().tolist() == pytest.approx([x - 0.1 * ratio * ri for x, ri in zip(x1, r)], rel=1e-12)


def test_lamb_clips_the_weight_norm_inside_phi():
    p = _param([3.0, 4.0], [0.6, 0.8])
    opt = LAMB([p], lr=0.1, eps=0.0, weight_norm_clip=(0.0, 1.0))
    opt.step()  # phi(5) = 1, r = [1, 1], ratio = 1/sqrt(2)
    assert opt.state[p]["last_trust_ratio"] == pytest.approx(1 / math.sqrt(2))


def test_layerwise_groups_exempt_biases_from_trust_ratio_and_weight_decay():
    groups = layerwise_param_groups(nn.Linear(3, 2), weight_decay=0.1)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert groups[0]["trust_adaptation"] and groups[0]["weight_decay"] == 0.1
    assert not groups[1]["trust_adaptation"] and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars", "lamb"])
def test_each_optimizer_reduces_a_quadratic(name):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    # Layer-wise methods move each tensor by about lr (x trust coefficient) of its norm per step.
    lr = {"sgd": 0.05, "adamw": 0.05, "lars": 1.0, "lamb": 0.1}[name]
    opt = make_optimizer(name, model, lr, trust_coefficient=0.01)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        first = first if first is not None else float(loss.detach())
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_unknown_optimizer_is_a_one_line_error():
    with pytest.raises(BenchError, match="unknown optimizer 'adagrad'"):
        make_optimizer("adagrad", nn.Linear(2, 2), 0.1)


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_layer_wise_steps_never_read_a_tensor_on_the_host(name, monkeypatch):
    # On a GPU every host read (float, bool, item) waits for the device; the trust ratios must not.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
    opt = make_optimizer(name, model, 0.1, weight_decay=0.01)
    model(torch.randn(8, 4)).pow(2).mean().backward()

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor was read on the host during the optimizer step")

    for attr in ("__float__", "__bool__", "__int__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, attr, host_read)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    monkeypatch.undo()
    assert all(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_layer_wise_steps_do_not_synchronise_a_real_gpu(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 1)).cuda()
    opt = make_optimizer(name, model, 0.1, weight_decay=0.01)
    model(torch.randn(16, 64, device="cuda")).pow(2).mean().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert all(torch.isfinite(p).all().item() for p in model.parameters())
