"""Offline training tasks with a held-out metric: digits, MNIST-1D, the noisy quadratic model, or a user's.

A Task is what a convergence run needs (model, a stream of training batches, loss, held-out metric);
`bench.measure.workloads.task_workload(task)` gives the sweep the same model so step time is measured on it. No task downloads.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.core.io import json_safe
from bench.core.params import bind, call_factory, resolve_callable

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Task:
    """A training problem with a held-out metric.

    build_model(): a fresh model (the runner seeds torch first, so the seed fixes the initial weights).
    batch_stream(batch_size, seed): an endless iterator of CPU training batches (inputs, targets).
    loss_fn(output, targets): the training loss (a scalar tensor).
    evaluate(model, device): the held-out metric of `model` (the runner calls it under no_grad in eval mode).
    defaults: suggested run settings (base_lr, base_batch_size, lr_rule, optimizer, momentum, max_steps,
    eval_every) for this task; callers may override any of them.
    """

    name: str
    build_model: Callable[[], nn.Module]
    batch_stream: Callable[[int, int], Iterator[Batch]]
    loss_fn: Callable[[Any, Any], torch.Tensor]
    evaluate: Callable[[nn.Module, torch.device], float]
    metric: str = "accuracy"
    higher_is_better: bool = True
    default_target: float | None = None
    train_size: int | None = None
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict:
        return {"name": self.name, "description": self.description, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "default_target": self.default_target,
                "train_size": self.train_size, "params": {k: json_safe(v) for k, v in self.params.items()}}


# ---------------------------------------------------------------------------------------------
# In-memory classification data


def epoch_stream(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    """Batches drawn without replacement, reshuffled every epoch; a batch may span two epochs, so any
    batch size (even one larger than the data) works and every example is seen equally often."""
    if batch_size < 1:
        raise BenchError(f"batch size must be >= 1, got {batch_size}")
    n = x.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=gen)
    pos = 0
    while True:
        take = []
        need = batch_size
        while need > 0:
            if pos == n:
                order, pos = torch.randperm(n, generator=gen), 0
            k = min(need, n - pos)
            take.append(order[pos:pos + k])
            pos += k
            need -= k
        idx = torch.cat(take) if len(take) > 1 else take[0]
        yield x[idx], y[idx]


def _accuracy_evaluator(x_test: torch.Tensor, y_test: torch.Tensor, chunk: int = 4096):
    def evaluate(model: nn.Module, device) -> float:
        correct = 0
        for i in range(0, x_test.shape[0], chunk):
            out = model(x_test[i:i + chunk].to(device))
            correct += int((out.argmax(dim=1).cpu() == y_test[i:i + chunk]).sum())
        return correct / x_test.shape[0]

    return evaluate


def _mlp(sizes: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def classification_task(name: str, x_train, y_train, x_test, y_test, build_model: Callable[[], nn.Module], *,
                        description: str, params: dict, default_target: float, defaults: dict) -> Task:
    """A Task over in-memory arrays: cross-entropy loss, held-out accuracy."""
    xt = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    xe = torch.as_tensor(np.asarray(x_test), dtype=torch.float32)
    ye = torch.as_tensor(np.asarray(y_test), dtype=torch.long)
    return Task(name=name, build_model=build_model,
                batch_stream=lambda b, seed: epoch_stream(xt, yt, b, seed),
                loss_fn=F.cross_entropy, evaluate=_accuracy_evaluator(xe, ye), metric="accuracy",
                higher_is_better=True, default_target=default_target, train_size=int(xt.shape[0]),
                description=description, params=params, defaults=defaults)


# ---------------------------------------------------------------------------------------------
# digits (scikit-learn's 8x8 handwritten digits, shipped with the package)


def digits(hidden: int = 64, depth: int = 1, train_examples: int = 0, test_fraction: float = 0.2,
           split_seed: int = 0) -> Task:
    """scikit-learn's 1,797 8x8 digits, an MLP (`depth` hidden layers of `hidden`), held-out accuracy.

    train_examples > 0 keeps only that many training examples (for quick tests).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise BenchError("task digits needs scikit-learn (pip install scikit-learn)") from None
    if hidden < 1 or depth < 0:
        raise BenchError(f"task digits: hidden must be >= 1 and depth >= 0 (got {hidden}, {depth})")
    if not 0 < test_fraction < 1:
        raise BenchError(f"task digits: test_fraction must be in (0, 1), got {test_fraction}")
    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    if train_examples > 0:
        x_tr, y_tr = x_tr[:train_examples], y_tr[:train_examples]
    sizes = [64] + [hidden] * depth + [10]
    return classification_task(
        "digits", x_tr, y_tr, x_te, y_te, lambda: _mlp(sizes),
        description=f"scikit-learn digits ({len(y_tr)} train / {len(y_te)} held out), MLP {'-'.join(map(str, sizes))}",
        params=dict(hidden=hidden, depth=depth, train_examples=train_examples, test_fraction=test_fraction,
                    split_seed=split_seed),
        default_target=0.96,
        defaults=dict(optimizer="sgd", momentum=0.9, base_lr=0.1, base_batch_size=32, lr_rule="linear",
                      max_steps=1000, eval_every=2, batch_sizes=[8, 16, 32, 64, 128, 256, 512]),
    )


# ---------------------------------------------------------------------------------------------
# MNIST-1D (generated locally by the mnist1d package; its downloading loader is never used)


def mnist1d(num_samples: int = 5000, hidden: int = 128, depth: int = 2, seed: int = 42) -> Task:
    """MNIST-1D (Greydanus 2020) generated on the spot with mnist1d's make_dataset, an MLP, held-out accuracy."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise BenchError("task mnist1d needs the optional package mnist1d (pip install mnist1d)") from None
    args = get_dataset_args()
    args.num_samples, args.seed = int(num_samples), int(seed)
    # make_dataset seeds Python's and NumPy's global generators; put them back as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    length = data["x"].shape[1]
    sizes = [length] + [hidden] * depth + [10]
    return classification_task(
        "mnist1d", data["x"], data["y"], data["x_test"], data["y_test"], lambda: _mlp(sizes),
        description=f"MNIST-1D ({len(data['y'])} train / {len(data['y_test'])} held out, length {length}), "
                    f"MLP {'-'.join(map(str, sizes))}",
        params=dict(num_samples=num_samples, hidden=hidden, depth=depth, seed=seed),
        default_target=0.6,
        defaults=dict(optimizer="adamw", base_lr=3e-3, base_batch_size=32, lr_rule="sqrt", max_steps=4000,
                      eval_every=20, batch_sizes=[16, 32, 64, 128, 256, 512, 1024]),
    )


# ---------------------------------------------------------------------------------------------
# The noisy quadratic model (Zhang et al. 2019)


def nqm_spectrum(dim: int, kappa_power: float = 1.0, noise_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Curvatures h_i = i^-p (i = 1..dim) and per-example gradient-noise variances c_i = s·h_i (C ∝ H)."""
    h = np.arange(1, dim + 1, dtype=float) ** (-kappa_power)
    return h, noise_scale * h


class NQMModel(nn.Module):
    """θ in R^d; per-example loss ½ θᵀHθ + ξᵀθ with ξ ~ N(0, C), so a batch of B has gradient Hθ + ξ̄,
    ξ̄ ~ N(0, C/B), and the held-out risk (the expected loss) is exactly ½ θᵀHθ."""

    def __init__(self, h: np.ndarray, theta0: np.ndarray):
        super().__init__()
        self.register_buffer("h", torch.as_tensor(h, dtype=torch.float64))
        self.theta = nn.Parameter(torch.as_tensor(theta0, dtype=torch.float64).clone())

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        quad = 0.5 * torch.sum(self.h * self.theta * self.theta)
        return quad + xi.to(self.theta.dtype) @ self.theta

    def risk(self) -> float:
        return float(0.5 * torch.sum(self.h * self.theta.detach() ** 2))


def _mean_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return output.mean()


def nqm(dim: int = 100, kappa_power: float = 1.0, noise_scale: float = 1.0, theta0: float = 1.0) -> Task:
    """The noisy quadratic model: risk ½ θᵀHθ, h_i = i^-kappa_power, gradient noise covariance C = s·H per
    example (Zhang et al. 2019 take C = H); θ0 = theta0 in every coordinate; metric = risk (lower better).

    Plain SGD on it is stable only for lr < 2/h_max (heavy-ball momentum β: lr < 2(1+β)/h_max), however
    large the batch, so the default LR grid follows the linear rule (the optimum grows about linearly
    with B while noise limits it) capped at 95% of 2/h_max (`defaults["max_lr"]`)."""
    if dim < 1 or noise_scale < 0:
        raise BenchError(f"task nqm: dim must be >= 1 and noise_scale >= 0 (got {dim}, {noise_scale})")
    h, c = nqm_spectrum(dim, kappa_power, noise_scale)
    sd = torch.as_tensor(np.sqrt(c), dtype=torch.float64)
    th0 = np.full(dim, float(theta0))

    def stream(batch_size: int, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(int(seed))
        while True:
            yield torch.randn(batch_size, dim, generator=gen, dtype=torch.float64) * sd, torch.zeros(batch_size)

    initial = 0.5 * float(np.sum(h * th0 ** 2))
    return Task(
        name="nqm", build_model=lambda: NQMModel(h, th0), batch_stream=stream, loss_fn=_mean_loss,
        evaluate=lambda model, device: model.risk(), metric="risk", higher_is_better=False,
        default_target=0.1 * initial, train_size=None,
        description=f"noisy quadratic model, d={dim}, h_i=i^-{kappa_power:g}, C={noise_scale:g}·H per example",
        params=dict(dim=dim, kappa_power=kappa_power, noise_scale=noise_scale, theta0=theta0),
        defaults=dict(optimizer="sgd", momentum=0.0, base_lr=0.8, base_batch_size=8, lr_rule="linear",
                      max_lr=0.95 * 2.0 / float(h.max()), max_steps=5000, eval_every=1,
                      batch_sizes=[1, 2, 4, 8, 16, 32, 64, 128, 256]),
    )


def nqm_expected_risk(h, c, theta0, lr: float, batch_size: int, steps: int, momentum: float = 0.0) -> np.ndarray:
    """Exact expected risk E[½ θᵀHθ] after 0..steps steps of SGD (torch's heavy-ball momentum) on the NQM.

    Per coordinate, with g = hθ + ε, Var ε = c/B, v ← βv + g, θ ← θ − αv, the second moments
    (E θ², E θv, E v²) follow a linear recurrence (noise is independent of the state):
        E v'²  = β² E v² + 2βh E θv + h² E θ² + σ²
        E θ'v' = (1−αh)h E θ² + β(1−2αh) E θv − αβ² E v² − ασ²
        E θ'²  = (1−αh)² E θ² − 2αβ(1−αh) E θv + α²β² E v² + α²σ²,   σ² = c/B.
    """
    h = np.asarray(h, dtype=float)
    s2 = np.asarray(c, dtype=float) / batch_size
    a, b = float(lr), float(momentum)
    tt = np.asarray(theta0, dtype=float) ** 2 * np.ones_like(h)
    tv = np.zeros_like(h)
    vv = np.zeros_like(h)
    out = np.empty(steps + 1)
    out[0] = 0.5 * float(np.sum(h * tt))
    q = 1.0 - a * h
    for t in range(1, steps + 1):
        vv_n = b * b * vv + 2 * b * h * tv + h * h * tt + s2
        tv_n = q * h * tt + b * (1 - 2 * a * h) * tv - a * b * b * vv - a * s2
        tt_n = q * q * tt - 2 * a * b * q * tv + a * a * b * b * vv + a * a * s2
        tt, tv, vv = tt_n, tv_n, vv_n
        out[t] = 0.5 * float(np.sum(h * tt))
    return out


# ---------------------------------------------------------------------------------------------
# Lookup: built-in names and "package.module:function"

_BUILTIN_TASKS: dict[str, Callable[..., Task]] = {"digits": digits, "mnist1d": mnist1d, "nqm": nqm}


def builtin_tasks() -> dict[str, str]:
    return {n: (inspect.getdoc(f) or "").splitlines()[0] for n, f in _BUILTIN_TASKS.items()}


def _call_with_params(spec: str, factory: Callable, params: Mapping[str, Any]) -> Any:
    kwargs, _ = bind(f"task {spec}", factory, params)
    return call_factory(f"task {spec}", factory, kwargs)


def load_task(spec: str, params: Mapping[str, Any] | None = None) -> Task:
    """Resolve "digits", "mnist1d", "nqm" or "package.module:function" (which returns a Task)."""
    params = dict(params or {})
    spec = spec.strip()
    if spec in _BUILTIN_TASKS:
        return _call_with_params(spec, _BUILTIN_TASKS[spec], params)
    if ":" not in spec:
        raise BenchError(f"unknown task {spec!r}; built-ins: {', '.join(_BUILTIN_TASKS)}; or package.module:function")
    target = resolve_callable(spec, "task")
    task = _call_with_params(spec, target, params)
    if not isinstance(task, Task):
        raise BenchError(f"task function {spec!r} returned {type(task).__name__}; expected bench.measure.tasks.Task")
    return task
