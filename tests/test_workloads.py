"""Workloads: built-ins, parameters, torchvision and user-supplied `module:function` specs."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
import torch

from bench.core.errors import BenchError
from bench.measure.workloads import (
    Workload,
    builtin_workloads,
    load_workload,
    parse_workload_args,
)

torch.set_num_threads(1)

TINY = {
    "mlp": {"in_features": "16", "hidden": "8", "depth": "2", "classes": "3"},
    "cnn": {"image_size": "8", "width": "4", "classes": "3"},
    "transformer": {"seq_len": "8", "d_model": "8", "n_layers": "1", "n_heads": "2", "vocab": "11"},
}


def test_builtin_workloads_lists_the_four_builtins_with_descriptions():
    listed = builtin_workloads()
    assert set(listed) == {"mlp", "cnn", "resnet50", "transformer"}
    assert all(desc for desc in listed.values())
    assert "seq_len=128" in listed["transformer"]


@pytest.mark.parametrize("name", sorted(TINY))
def test_builtin_batch_is_made_on_the_requested_device_with_the_right_shapes(name):
    workload = load_workload(name, TINY[name])
    inputs, targets = workload.make_batch(5, torch.device("cpu"))
    assert inputs.device.type == "cpu" and targets.device.type == "cpu"
    assert targets.dtype == torch.int64
    if name == "mlp":
        assert inputs.shape == (5, 16) and inputs.dtype == torch.float32 and targets.shape == (5,)
    elif name == "cnn":
        assert inputs.shape == (5, 3, 8, 8) and inputs.dtype == torch.float32 and targets.shape == (5,)
    else:
        assert inputs.shape == (5, 8) and inputs.dtype == torch.int64 and targets.shape == (5, 8)
        assert int(inputs.max()) < 11 and int(targets.max()) < 11


@pytest.mark.parametrize("name", sorted(TINY))
def test_builtin_model_output_gives_a_finite_scalar_loss(name):
    workload = load_workload(name, TINY[name])
    torch.manual_seed(0)
    inputs, targets = workload.make_batch(4, torch.device("cpu"))
    loss = workload.loss_fn(workload.build_model()(inputs), targets)
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_init_is_deterministic_under_manual_seed(name):
    workload = load_workload(name, TINY[name])
    torch.manual_seed(3)
    a = workload.build_model().state_dict()
    torch.manual_seed(3)
    b = workload.build_model().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_transformer_targets_are_the_inputs_shifted_by_one_token():
    workload = load_workload("transformer", TINY["transformer"])
    torch.manual_seed(0)
    inputs, targets = workload.make_batch(3, torch.device("cpu"))
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def test_transformer_attention_is_causal():
    workload = load_workload("transformer", TINY["transformer"])
    torch.manual_seed(0)
    model = workload.build_model().eval()
    tokens, _ = workload.make_batch(1, torch.device("cpu"))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 11
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :-1], model(changed)[:, :-1])


def test_transformer_head_is_tied_by_default_and_untied_on_request():
    tied = load_workload("transformer", TINY["transformer"]).build_model()
    untied = load_workload("transformer", {**TINY["transformer"], "tied": "false"}).build_model()
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight


def test_transformer_rejects_d_model_not_divisible_by_heads():
    with pytest.raises(BenchError, match="divisible"):
        load_workload("transformer", {"d_model": "10", "n_heads": "4"})


def test_image_workloads_are_marked_for_channels_last_and_others_not():
    assert load_workload("cnn").image_input and load_workload("resnet50").image_input
    assert not load_workload("mlp").image_input and not load_workload("transformer").image_input


def test_resnet50_has_the_standard_25_6_million_parameters():
    model = load_workload("resnet50").build_model()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


def test_string_params_are_converted_to_the_defaults_types_and_recorded():
    workload = load_workload("transformer", {"seq_len": "16", "tied": "no"})
    assert workload.params["seq_len"] == 16
    assert workload.params["tied"] is False
    assert workload.params["d_model"] == 32  # untouched defaults are recorded too
    assert workload.to_dict()["params"] == workload.params


def test_unknown_builtin_is_refused_with_the_list_of_builtins():
    with pytest.raises(BenchError, match="unknown workload 'nope'.*mlp, cnn, resnet50, transformer"):
        load_workload("nope")


def test_unknown_param_is_refused_naming_it_and_the_accepted_ones():
    with pytest.raises(BenchError, match=r"no parameter 'widht'.*accepted: .*width=8"):
        load_workload("cnn", {"widht": "4"})


@pytest.mark.parametrize(
    "param, value, kind",
    [("depth", "2.5", "an integer"), ("tied", "maybe", "true/false")],
)
def test_ill_typed_param_is_refused_naming_it(param, value, kind):
    name = "mlp" if param == "depth" else "transformer"
    with pytest.raises(BenchError, match=f"'{param}' must be {kind}"):
        load_workload(name, {param: value})


def test_non_positive_size_is_refused():
    with pytest.raises(BenchError, match="'hidden' must be at least 1"):
        load_workload("mlp", {"hidden": "0"})


def test_parse_workload_args_splits_name_value_pairs():
    assert parse_workload_args(["seq_len=256", "d_model = 512", "name=a=b"]) == {
        "seq_len": "256", "d_model": "512", "name": "a=b",
    }


@pytest.mark.parametrize("item", ["seq_len", "=3", "bad name=1"])
def test_parse_workload_args_refuses_malformed_items(item):
    with pytest.raises(BenchError, match="name=value"):
        parse_workload_args([item])


def test_parse_workload_args_refuses_a_repeated_name():
    with pytest.raises(BenchError, match="given twice"):
        parse_workload_args(["depth=1", "depth=2"])


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_torchvision_workload_without_torchvision_says_it_is_not_importable():
    with pytest.raises(BenchError, match="torchvision is not importable here"):
        load_workload("torchvision:resnet18")


# ---- user workloads ----------------------------------------------------------------------------

USER_MODULE = """
import torch
import torch.nn.functional as F
from torch import nn
from bench.measure.workloads import Workload

def _batch(batch_size, device):
    return torch.randn(batch_size, 4, device=device), torch.randint(0, 2, (batch_size,), device=device)

def as_tuple(hidden=3, scale=1.0, flag=False):
    global seen
    seen = (hidden, scale, flag)
    return nn.Sequential(nn.Linear(4, hidden), nn.Linear(hidden, 2)), _batch, F.cross_entropy

def as_dict():
    return {"model": lambda: nn.Linear(4, 2), "make_batch": _batch, "loss_fn": F.cross_entropy,
            "description": "a dict workload"}

def as_workload(width=2):
    return Workload("ignored", lambda: nn.Linear(4, width), _batch, F.cross_entropy, image_input=True)

def wrong_type():
    return 42

def short_tuple():
    return nn.Linear(4, 2), _batch

def dict_without_loss():
    return {"model": nn.Linear(4, 2), "make_batch": _batch}

def raises():
    raise RuntimeError("no GPU for you")

def needs(size):
    return nn.Linear(4, size), _batch, F.cross_entropy

not_callable = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_workloads.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "broken_user_workloads.py").write_text("import a_package_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_user_workloads"
    import sys

    for name in ("my_user_workloads", "broken_user_workloads"):
        sys.modules.pop(name, None)


def test_user_tuple_workload_builds_fresh_copies_and_gets_coerced_params(user_module):
    workload = load_workload(f"{user_module}:as_tuple", {"hidden": "5", "scale": "0.5", "flag": "true"})
    import my_user_workloads

    assert my_user_workloads.seen == (5, 0.5, True)
    assert workload.name == "my_user_workloads:as_tuple"
    assert workload.params == {"hidden": 5, "scale": 0.5, "flag": True}
    first, second = workload.build_model(), workload.build_model()
    assert first is not second and first[0].out_features == 5
    inputs, targets = workload.make_batch(3, torch.device("cpu"))
    assert torch.isfinite(workload.loss_fn(first(inputs), targets))


def test_user_dict_workload_keeps_its_description(user_module):
    workload = load_workload(f"{user_module}:as_dict")
    assert isinstance(workload.build_model(), torch.nn.Linear)
    assert workload.description == "a dict workload"


def test_user_workload_object_is_named_by_its_spec_and_keeps_image_input(user_module):
    workload = load_workload(f"{user_module}:as_workload", {"width": "7"})
    assert isinstance(workload, Workload)
    assert workload.name == "my_user_workloads:as_workload" and workload.image_input
    assert workload.build_model().out_features == 7 and workload.params == {"width": 7}


@pytest.mark.parametrize(
    "function, message",
    [
        ("wrong_type", "returned int; expected a Workload"),
        ("short_tuple", "tuple of 2 items"),
        ("dict_without_loss", "dict without loss_fn"),
        ("raises", "raised RuntimeError: no GPU for you"),
        ("not_callable", "'not_callable' is a int, not callable"),
        ("missing_function", "has no attribute 'missing_function'"),
        ("needs", "needs parameter.*size"),
    ],
)
def test_user_workload_problems_are_one_line_bench_errors(user_module, function, message):
    with pytest.raises(BenchError, match=message) as excinfo:
        load_workload(f"{user_module}:{function}")
    assert "\n" not in str(excinfo.value)


def test_user_workload_unknown_param_is_refused(user_module):
    with pytest.raises(BenchError, match="no parameter 'depth'.*hidden=3"):
        load_workload(f"{user_module}:as_tuple", {"depth": "2"})


def test_user_module_that_does_not_import_says_which_and_why(user_module):
    with pytest.raises(BenchError, match="'broken_user_workloads' could not be imported: .*a_package_that_is_not_there"):
        load_workload("broken_user_workloads:anything")


def test_missing_user_module_is_a_bench_error():
    with pytest.raises(BenchError, match="'no_such_module_xyz' could not be imported"):
        load_workload("no_such_module_xyz:fn")


def test_task_prefix_loads_a_training_tasks_model_for_the_sweep():
    from bench.measure.workloads import load_workload

    wl = load_workload("task:nqm")
    assert wl.name == "task:nqm"
    x, y = wl.make_batch(4, torch.device("cpu"))
    loss = wl.loss_fn(wl.build_model()(x), y)
    assert loss.ndim == 0 and torch.isfinite(loss)
