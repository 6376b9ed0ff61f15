"""Optimizers for timed steps and convergence runs: SGD+momentum and AdamW from torch (fused where the
device has it), layer-wise LARS and LAMB here.

LARS (You, Gitman & Ginsburg 2017, Algorithm 1) and LAMB (You et al. 2019, "Large Batch Optimization
for Deep Learning", Algorithm 2) follow the papers' update rules; each tensor is one "layer".
"""

from __future__ import annotations

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.vocabulary import OPTIMIZERS


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling on top of momentum SGD.

    For each tensor w with gradient g (paper's notation: global rate γ, trust coefficient η, weight
    decay β, momentum m):
        λ = η·‖w‖ / (‖g‖ + β·‖w‖)                    (local learning rate)
        v ← m·v + γ·λ·(g + β·w)
        w ← w − v
    λ is 1 where ‖w‖ or ‖g‖ is zero (nothing to scale against) and in groups with
    `trust_adaptation=False` (biases and norm weights, see `layerwise_param_groups`). λ stays a tensor
    on the parameter's device (also in `state["last_local_lr"]`): reading it on the host would make a
    GPU wait for every tensor at every step.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, trust_adaptation: bool = True):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError("LARS needs lr >= 0, momentum >= 0, weight_decay >= 0, trust_coefficient > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, trust_adaptation=trust_adaptation)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            eta, adapt = group["trust_coefficient"], group["trust_adaptation"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                update = g.add(p, alpha=wd) if wd else g.clone()
                if adapt:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    local_lr = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / (g_norm + wd * w_norm),
                                           torch.ones_like(w_norm))
                    update.mul_(local_lr * lr)
                else:
                    local_lr = 1.0
                    update.mul_(lr)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(m).add_(update)
                p.sub_(buf)
                state["last_local_lr"] = local_lr
        return loss


class LAMB(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments for Batch training: Adam moments, then a per-tensor trust ratio.

    For each tensor x with gradient g at step t (β1, β2, ε, decoupled weight decay λ, rate η):
        m ← β1·m + (1−β1)·g            v ← β2·v + (1−β2)·g²
        m̂ = m/(1−β1^t),  v̂ = v/(1−β2^t)   (bias correction; off with bias_correction=False)
        r = m̂/(√v̂ + ε)
        x ← x − η·φ(‖x‖)/‖r + λ·x‖ · (r + λ·x)
    φ is the identity, or clamps ‖x‖ to [lo, hi] when `weight_norm_clip=(lo, hi)`. The ratio is 1
    where φ(‖x‖) or ‖r + λx‖ is zero, and in groups with `trust_adaptation=False`. Like LARS's λ it
    stays a tensor on the device (no host sync per tensor per step).
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, bias_correction: bool = True,
                 weight_norm_clip: tuple[float, float] | None = None, trust_adaptation: bool = True):
        if lr < 0 or weight_decay < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("LAMB needs lr >= 0, weight_decay >= 0, eps >= 0 and betas in [0, 1)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, weight_norm_clip=weight_norm_clip,
                        trust_adaptation=trust_adaptation)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            clip = group["weight_norm_clip"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                if group["bias_correction"]:
                    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
                else:
                    m_hat, v_hat = m, v
                update = m_hat / (v_hat.sqrt() + eps)
                if wd:
                    update.add_(p, alpha=wd)
                ratio = 1.0
                if group["trust_adaptation"]:
                    w_norm = torch.linalg.vector_norm(p)
                    if clip is not None:
                        w_norm = w_norm.clamp(clip[0], clip[1])
                    u_norm = torch.linalg.vector_norm(update)
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(ratio)
                p.sub_(update, alpha=lr)
                state["last_trust_ratio"] = ratio
        return loss


def layerwise_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weight matrices and kernels (trust ratio and weight decay), and tensors of one
    dimension (biases, norm scales) with neither, as is usual for LARS/LAMB since their norms are
    not a meaningful scale for the step."""
    adapt, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 else adapt).append(p)
    groups = []
    if adapt:
        groups.append({"params": adapt, "weight_decay": weight_decay, "trust_adaptation": True})
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "trust_adaptation": False})
    return groups


def make_optimizer(name: str, model: nn.Module, lr: float, *, momentum: float = 0.9,
                   weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                   trust_coefficient: float = 0.001, device: torch.device | str | None = None) -> torch.optim.Optimizer:
    """Build the named optimizer (one of OPTIMIZERS) over `model`'s trainable parameters.

    SGD and AdamW take the fastest implementation the device offers: fused on CUDA, else foreach,
    else the per-tensor loop (`implementation` says which was built).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name in ("sgd", "adamw"):
        cls: type[torch.optim.Optimizer] = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
        kwargs = (dict(lr=lr, momentum=momentum, weight_decay=weight_decay) if name == "sgd"
                  else dict(lr=lr, betas=betas, weight_decay=weight_decay))
        if device is not None and torch.device(device).type == "cuda":
            for impl in ("fused", "foreach"):
                try:
                    return cls(params, **kwargs, **{impl: True})
                except (RuntimeError, TypeError, ValueError):
                    continue
        return cls(params, **kwargs, foreach=False)
    if name == "lars":
        return LARS(layerwise_param_groups(model, weight_decay), lr=lr, momentum=momentum,
                    trust_coefficient=trust_coefficient)
    if name == "lamb":
        return LAMB(layerwise_param_groups(model, weight_decay), lr=lr, betas=betas)
    raise BenchError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """Which kernel path a torch optimizer runs: "fused", "foreach" or "for-loop"."""
    defaults = getattr(optimizer, "defaults", {})
    if defaults.get("fused"):
        return "fused"
    if defaults.get("foreach"):
        return "foreach"
    return "for-loop"


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
