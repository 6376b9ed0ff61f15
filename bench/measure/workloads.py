"""Workloads to time: a model factory, a synthetic batch maker and a loss, by name.

Built-ins are pure PyTorch (mlp, cnn, resnet50, transformer); `torchvision:<name>` and a user's own
`package.module:function` load through the same `load_workload` call.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.core.io import json_safe
from bench.core.params import (
    bind,
    call_factory,
    describe_params,
    one_line,
    parse_key_values,
    resolve_callable,
    settable_params,
)
from bench.measure.tasks import Task, load_task


@dataclass
class Workload:
    """What one training step runs: a fresh model, a synthetic batch on a device, and a loss."""

    name: str
    build_model: Callable[[], nn.Module]
    make_batch: Callable[[int, torch.device], tuple]
    loss_fn: Callable[[Any, Any], torch.Tensor]
    description: str = ""
    image_input: bool = False
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "image_input": self.image_input,
            "params": {k: json_safe(v) for k, v in self.params.items()},
        }


# --------------------------------------------------------------------------------------------
# Shared pieces


def _classification_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, targets)


def _classification_batch(input_shape: tuple[int, ...], classes: int):
    def make_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.randn((batch_size, *input_shape), device=device)
        targets = torch.randint(0, classes, (batch_size,), device=device)
        return inputs, targets

    return make_batch


def _require_positive(workload: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise BenchError(f"workload {workload}: parameter {name!r} must be at least 1, got {value}")


# --------------------------------------------------------------------------------------------
# mlp


def mlp(in_features: int = 512, hidden: int = 512, depth: int = 4, classes: int = 10) -> Workload:
    """MLP classifier: `depth` Linear+ReLU layers and a linear head, on random vectors."""
    _require_positive("mlp", in_features=in_features, hidden=hidden, depth=depth, classes=classes)

    def build_model() -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, classes))
        return nn.Sequential(*layers)

    return Workload(
        name="mlp",
        build_model=build_model,
        make_batch=_classification_batch((in_features,), classes),
        loss_fn=_classification_loss,
        description=f"MLP {in_features}->{depth}x{hidden}->{classes}, ReLU, cross-entropy",
    )


# --------------------------------------------------------------------------------------------
# cnn (small ResNet-style) and resnet50


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Conv stem, three stages of basic residual blocks (widths w, 2w, 4w), global pool, linear head.

    The pooled features pass through a BatchNorm1d before the head, so, like any model that takes
    BatchNorm statistics over the batch alone, it cannot train at batch size 1 (ValueError).
    """

    def __init__(self, width: int, blocks: int, classes: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        in_ch = width
        for i, out_ch in enumerate((width, 2 * width, 4 * width)):
            for j in range(blocks):
                stages.append(_BasicBlock(in_ch, out_ch, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.BatchNorm1d(in_ch)
        self.fc = nn.Linear(in_ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(self.neck(torch.flatten(x, 1)))


def cnn(image_size: int = 32, width: int = 8, blocks: int = 1, classes: int = 10) -> Workload:
    """Small ResNet-style CNN with BatchNorm on random RGB images (batch 1 fails in training)."""
    _require_positive("cnn", image_size=image_size, width=width, blocks=blocks, classes=classes)
    return Workload(
        name="cnn",
        build_model=lambda: SmallResNet(width, blocks, classes),
        make_batch=_classification_batch((3, image_size, image_size), classes),
        loss_fn=_classification_loss,
        description=f"ResNet-style CNN, widths {width}/{2 * width}/{4 * width}, {blocks} block(s) per "
        f"stage, {image_size}x{image_size} RGB, {classes} classes",
        image_input=True,
    )


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # Stride on the 3x3 convolution (ResNet v1.5), as in torchvision's resnet50.
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (bottleneck blocks [3, 4, 6, 3]), layer for layer as torchvision.models.resnet50."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        layers = []
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            blocks = []
            for i in range(count):
                blocks.append(_Bottleneck(in_ch, width, stride if i == 0 else 1))
                in_ch = width * _Bottleneck.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(image_size: int = 224, classes: int = 1000) -> Workload:
    """ResNet-50 on random RGB images (pure PyTorch, no torchvision needed)."""
    _require_positive("resnet50", image_size=image_size, classes=classes)
    return Workload(
        name="resnet50",
        build_model=lambda: ResNet50(classes),
        make_batch=_classification_batch((3, image_size, image_size), classes),
        loss_fn=_classification_loss,
        description=f"ResNet-50, {image_size}x{image_size} RGB, {classes} classes",
        image_input=True,
    )


# --------------------------------------------------------------------------------------------
# transformer (decoder-only language model)


class _DecoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class DecoderLM(nn.Module):
    """Decoder-only LM: token + learned position embedding, pre-norm blocks, causal attention."""

    def __init__(self, vocab: int, seq_len: int, d_model: int, n_layers: int, n_heads: int, tied: bool):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(seq_len, d_model)
        self.blocks = nn.Sequential(*(_DecoderBlock(d_model, n_heads) for _ in range(n_layers)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)
        # GPT-2 style small init keeps the initial loss near log(vocab).
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        if tied:
            self.head.weight = self.tok_emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(tokens) + self.pos_emb(self.positions[: tokens.shape[1]])
        return self.head(self.ln_f(self.blocks(x)))


def _next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def transformer(
    seq_len: int = 128, d_model: int = 32, n_layers: int = 2, n_heads: int = 2, vocab: int = 128,
    tied: bool = True,
) -> Workload:
    """Decoder-only transformer LM on random tokens, next-token cross-entropy."""
    _require_positive(
        "transformer", seq_len=seq_len, d_model=d_model, n_layers=n_layers, n_heads=n_heads, vocab=vocab
    )
    if d_model % n_heads:
        raise BenchError(
            f"workload transformer: d_model ({d_model}) must be divisible by n_heads ({n_heads})"
        )

    def make_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(0, vocab, (batch_size, seq_len + 1), device=device)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    return Workload(
        name="transformer",
        build_model=lambda: DecoderLM(vocab, seq_len, d_model, n_layers, n_heads, tied),
        make_batch=make_batch,
        loss_fn=_next_token_loss,
        description=f"decoder-only LM, {n_layers} layers, d_model {d_model}, {n_heads} heads, "
        f"seq_len {seq_len}, vocab {vocab}, {'tied' if tied else 'untied'} head",
    )


_BUILTINS: dict[str, Callable[..., Workload]] = {
    "mlp": mlp,
    "cnn": cnn,
    "resnet50": resnet50,
    "transformer": transformer,
}


# --------------------------------------------------------------------------------------------
# torchvision


def _torchvision_loss(output: Any, targets: torch.Tensor) -> torch.Tensor:
    # Inception v3 / GoogLeNet return named tuples in training mode; the main logits come first.
    logits = getattr(output, "logits", None)
    if logits is None:
        logits = output[0] if isinstance(output, (tuple, list)) else output
    return F.cross_entropy(logits, targets)


def torchvision_workload(model_name: str, image_size: int = 224, classes: int = 1000) -> Workload:
    """A torchvision classification model by name, randomly initialised (never downloads weights)."""
    _require_positive(f"torchvision:{model_name}", image_size=image_size, classes=classes)
    try:
        import torchvision  # noqa: F401
        from torchvision import models
    except Exception as e:  # a broken install raises more than ImportError
        raise BenchError(f"torchvision is not importable here: {one_line(e)}") from e
    if hasattr(models, "list_models"):
        known = models.list_models(module=models)
        if model_name not in known:
            raise BenchError(
                f"unknown torchvision classification model {model_name!r}; e.g. "
                + ", ".join(sorted(known)[:12]) + ", ..."
            )

    def build_model() -> nn.Module:
        return models.get_model(model_name, weights=None, num_classes=classes)

    return Workload(
        name=f"torchvision:{model_name}",
        build_model=build_model,
        make_batch=_classification_batch((3, image_size, image_size), classes),
        loss_fn=_torchvision_loss,
        description=f"torchvision {model_name}, {image_size}x{image_size} RGB, {classes} classes",
        image_input=True,
    )


# --------------------------------------------------------------------------------------------
# Parameters


def parse_workload_args(items: list[str]) -> dict[str, str]:
    """Turn ["seq_len=256", "d_model=512"] into {"seq_len": "256", "d_model": "512"}."""
    
    return parse_key_values(items, "workload")


# --------------------------------------------------------------------------------------------
# User workloads: "package.module:function"


def _user_workload(spec: str, params: Mapping[str, Any]) -> Workload:
    target = resolve_callable(spec, "workload")
    kwargs, effective = bind(f"workload {spec}", target, params)
    result = call_factory(f"workload function {spec!r}", target, kwargs)
    return _as_workload(spec, result, effective)


_FORMS = "a Workload, a (model, make_batch, loss_fn) tuple, or a dict with those keys"


def _as_workload(spec: str, result: Any, effective: dict) -> Workload:
    if isinstance(result, Workload):
        return replace(result, name=spec, params={**effective, **result.params})
    extra: dict[str, Any] = {}
    if isinstance(result, tuple):
        if len(result) != 3:
            raise BenchError(
                f"workload function {spec!r} returned a tuple of {len(result)} items; expected {_FORMS}"
            )
        model, make_batch, loss_fn = result
    elif isinstance(result, Mapping):
        model = result.get("model", result.get("build_model"))
        make_batch, loss_fn = result.get("make_batch"), result.get("loss_fn")
        missing = [k for k, v in (("model", model), ("make_batch", make_batch), ("loss_fn", loss_fn)) if v is None]
        if missing:
            raise BenchError(f"workload function {spec!r} returned a dict without {', '.join(missing)}")
        extra = {k: result[k] for k in ("description", "image_input") if k in result}
    else:
        raise BenchError(
            f"workload function {spec!r} returned {type(result).__name__}; expected {_FORMS}"
        )
    if isinstance(model, nn.Module):
        template = model
        # Each step builds its own copy, so the user's instance stays untouched on the CPU.
        build_model: Callable[[], nn.Module] = lambda: copy.deepcopy(template)
    elif callable(model):
        build_model = model
    else:
        raise BenchError(
            f"workload function {spec!r}: model is a {type(model).__name__}, "
            "expected an nn.Module or a function that returns one"
        )
    for label, fn in (("make_batch", make_batch), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise BenchError(f"workload function {spec!r}: {label} is a {type(fn).__name__}, not callable")
    return Workload(
        name=spec,
        build_model=build_model,
        make_batch=make_batch,
        loss_fn=loss_fn,
        description=str(extra.get("description", "")),
        image_input=bool(extra.get("image_input", False)),
        params=effective,
    )


# --------------------------------------------------------------------------------------------
# Public entry points


def task_workload(task: Task, params: Mapping[str, Any] | None = None) -> Workload:
    """A training task's model and loss as a Workload, so the sweep times the same step `bench tta` trains.

    make_batch draws real training examples (seed 0), repeating them for batches larger than the
    training set. `params` are recorded beside the task's own.
    """
    stream_fn = task.batch_stream

    def make_batch(batch_size: int, device) -> tuple:
        x, y = next(stream_fn(batch_size, 0))
        return x.to(device), y.to(device)

    return Workload(name=f"task:{task.name}", build_model=task.build_model, make_batch=make_batch,
                    loss_fn=task.loss_fn, description=task.description, image_input=False,
                    params={**task.params, **dict(params or {})})


def builtin_workloads() -> dict[str, str]:
    """Built-in workload names, each with a one-line description and its parameters' defaults."""
    out = {}
    for name, factory in _BUILTINS.items():
        summary = (inspect.getdoc(factory) or "").splitlines()[0].rstrip(".")
        out[name] = f"{summary} ({describe_params(settable_params(factory)[0])})"
    return out


def load_workload(spec: str, params: Mapping[str, Any] | None = None) -> Workload:
    """Resolve a workload spec ("mlp", "torchvision:resnet18", "mypkg.mod:fn") with its parameters."""
    params = dict(params or {})
    spec = spec.strip()
    if spec in _BUILTINS:
        factory = _BUILTINS[spec]
        kwargs, effective = bind(f"workload {spec}", factory, params)
        return replace(factory(**kwargs), params=effective)
    if spec.startswith("torchvision:"):
        model_name = spec.partition(":")[2]
        if not model_name:
            raise BenchError("workload 'torchvision:' needs a model name, e.g. torchvision:resnet18")
        kwargs, effective = bind(f"workload {spec}", torchvision_workload, params, skip=1)
        return replace(torchvision_workload(model_name, **kwargs), params=effective)
    if spec.startswith("task:"):
        # A training task's own model and data, so a sweep times exactly the step that `bench tta` trains.
        return task_workload(load_task(spec.partition(":")[2], params))
    if ":" in spec:
        return _user_workload(spec, params)
    raise BenchError(
        f"unknown workload {spec!r}; built-ins: {', '.join(_BUILTINS)}; "
        "or torchvision:<model>, task:<training task>, or package.module:function"
    )
