"""Measure squared gradient norms at a small and a big batch during a short run, for the noise scale.

Each step draws one big batch of B_big = k·B_small examples, takes the gradient of each of its k
micro-batches (|g_small|², averaged over the k) and of their mean (|g_big|²), then steps the optimizer
with the big-batch gradient. So the estimate costs one big-batch step per step, and both norms see the
same parameters.
"""

from __future__ import annotations

import math

import torch

from bench.analysis.noise_scale import estimate_noise_scale
from bench.core.devices import resolve_device
from bench.core.errors import BenchError
from bench.measure.optim import make_optimizer, set_lr
from bench.measure.tasks import Task
from bench.records.tta import NoiseScaleEstimate
from bench.run.train.runner import autocast


def measure_noise_scale(task: Task, *, batch_small: int, batch_big: int, steps: int, lr: float,
                        optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
                        trust_coefficient: float = 0.001, seed: int = 0, device: str = "cpu", precision: str = "fp32",
                        n_bootstrap: int = 1000) -> NoiseScaleEstimate:
    """Train `steps` steps at batch_big (lr may be 0 to hold the parameters still) and estimate B_simple.

    Models with batch normalisation see micro-batch statistics in the small-batch gradients; that
    changes the gradients slightly, so read their noise scale with that in mind.

    Where the task has a finite training set (`task.train_size` N, its batches drawn without
    replacement as `classification_task`'s are), the estimate gets the finite-population correction
    (bench.analysis.noise_scale), unless B_big > N, where a big batch repeats examples.
    """
    if batch_small < 1 or batch_big % batch_small or batch_big // batch_small < 2:
        raise BenchError(f"noise scale needs batch_big a multiple (>= 2x) of batch_small (got {batch_small}, {batch_big})")
    if steps < 1:
        raise BenchError(f"noise scale needs at least 1 step, got {steps}")
    k = batch_big // batch_small
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = task.build_model().to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, model, lr, momentum=momentum, weight_decay=weight_decay,
                         trust_coefficient=trust_coefficient)
    set_lr(opt, lr)
    stream = task.batch_stream(batch_big, seed)
    sq_small, sq_big = [], []
    for step in range(steps):
        x, y = next(stream)
        x, y = x.to(dev), y.to(dev)
        total = [torch.zeros_like(p) for p in params]
        small = 0.0
        for j in range(k):
            sl = slice(j * batch_small, (j + 1) * batch_small)
            for p in params:
                p.grad = None
            with autocast(precision, dev):
                loss = task.loss_fn(model(x[sl]), y[sl])
            loss.backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            small += float(sum(torch.sum(g.double() ** 2) for g in grads))
            for t, g in zip(total, grads):
                t.add_(g)
        for p, t in zip(params, total):
            p.grad = t / k
        big = float(sum(torch.sum(p.grad.double() ** 2) for p in params))
        if not (math.isfinite(small) and math.isfinite(big)):
            raise BenchError(f"noise scale run diverged at step {step} (non-finite gradient); lower the learning rate")
        sq_small.append(small / k)
        sq_big.append(big)
        opt.step()
    context = {"task": task.name, "lr": lr, "optimizer": optimizer, "momentum": momentum, "seed": seed,
               "steps": steps, "device": str(dev), "precision": precision,
               "window": f"the first {steps} steps of a run at batch {batch_big}"}
    n = task.train_size
    if n is None:
        context["finite_population_correction"] = "not applied: the task's data is unlimited (no train_size)"
    elif batch_big > n:
        context["finite_population_correction"] = (f"not applied: batch_big {batch_big} exceeds the {n} training "
                                                   "examples, so a big batch repeats examples")
        n = None
    else:
        context["finite_population_correction"] = f"applied: batches drawn without replacement from {n} examples"
    return estimate_noise_scale(sq_small, sq_big, batch_small, batch_big, n_bootstrap=n_bootstrap, context=context,
                                train_size=n)
