"""Fingerprint: stable identity of hardware and software, and the hash that decides comparability."""

from __future__ import annotations

import json
import platform
import re
import sys

import pytest

import bench.measure.telemetry.fingerprint as fp_module
from bench.core.fingerprint import (
    GPU_FIELDS,
    LEGACY_KEYS,
    canonical_fingerprint,
    comparable,
)
from bench.measure.telemetry.fingerprint import fingerprint
from bench.testing.fake_pynvml import FakeDevice, make_fake_nvml


@pytest.fixture(autouse=True)
def _no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def fixed_git(monkeypatch):
    """Avoid running git in every test; individual tests override it."""
    monkeypatch.setattr(fp_module, "git_state", lambda repo_dir=None: ("a" * 40, False, None))


def test_hash_is_16_hex_digits_and_stable_across_calls(fixed_git):
    a, b = fingerprint("cpu"), fingerprint("cpu")
    assert re.fullmatch(r"[0-9a-f]{16}", a["hash"])
    assert a["hash"] == b["hash"] and a == b


def test_gpu_fingerprint_reads_identity_from_nvml(fixed_git):
    fake = make_fake_nvml()
    fp = fingerprint("cuda:0", nvml=fake)
    assert fp["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert fp["gpu_compute_capability"] == "9.0"
    assert fp["gpu_power_limit_w"] == 700.0
    assert fp["gpu_max_sm_clock_mhz"] == 1980
    assert fp["gpu_ecc_enabled"] is True and fp["gpu_mig_enabled"] is False
    assert fp["driver_version"] == "580.159.04" and fp["cuda_driver_version"] == "13.0"
    assert fake.init_count == 0  # init and shutdown balanced
    assert not any(k in fp["null_reasons"] for k in GPU_FIELDS)
    json.dumps(fp, allow_nan=False)


def test_hash_changes_when_a_stable_field_changes(fixed_git, monkeypatch):
    base = fingerprint("cuda:0", nvml=make_fake_nvml())
    assert fingerprint("cuda:0", nvml=make_fake_nvml(driver_version="570.86.15"))["hash"] != base["hash"]
    assert fingerprint("cuda:0", nvml=make_fake_nvml(enforced_power_limit_mw=500_000))["hash"] != base["hash"]
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.0")
    changed = fingerprint("cuda:0", nvml=make_fake_nvml())
    assert changed["hash"] != base["hash"]
    same, differ = comparable(base, changed)
    assert not same and differ == ["python_version"]


def test_hash_ignores_volatile_readings(fixed_git):
    cool = make_fake_nvml(temperature_c=35, sm_clock_mhz=1980, power_mw=90_000, memory_used_bytes=1)
    hot = make_fake_nvml(temperature_c=83, sm_clock_mhz=1440, power_mw=700_000, memory_used_bytes=70 * 2**30,
                         clock_reasons=0x4)
    assert fingerprint("cuda:0", nvml=cool)["hash"] == fingerprint("cuda:0", nvml=hot)["hash"]


def test_project_commit_is_recorded_but_not_hashed(monkeypatch):
    monkeypatch.setattr(fp_module, "git_state", lambda repo_dir=None: ("1" * 40, False, None))
    a = fingerprint("cpu")
    monkeypatch.setattr(fp_module, "git_state", lambda repo_dir=None: ("2" * 40, True, None))
    b = fingerprint("cpu")
    assert a["git_commit"] == "1" * 40 and b["git_dirty"] is True
    assert a["hash"] == b["hash"]


# ------------------------------------------------------------------------------ older key names


def test_old_environment_key_names_map_to_the_fingerprint_names():
    study = {"python": "3.11.7", "torch": "2.13.0+cpu", "platform": "Linux-6.1-x86_64", "cpu": "x86_64",
             "device": "cuda:0", "torch_threads": 4, "gpu": "NVIDIA H100 80GB HBM3"}
    env = canonical_fingerprint(study)
    assert {k: env[k] for k in ("python_version", "torch_version", "cpu_model", "gpu_name")} == {
        "python_version": "3.11.7", "torch_version": "2.13.0+cpu", "cpu_model": "x86_64",
        "gpu_name": "NVIDIA H100 80GB HBM3"}
    assert not set(LEGACY_KEYS) & set(env)
    assert (env["platform"], env["torch_threads"]) == ("Linux-6.1-x86_64", 4)  # other keys are kept
    assert env["device_type"] == "cuda"
    assert env["hash"] is None and "no fingerprint hash" in env["null_reasons"]["hash"]
    sweep_fallback = {"torch": "2.11.0", "python": "3.11.7", "cuda": "12.4", "device_type": "cuda",
                      "device_name": "NVIDIA A100-SXM4-40GB"}
    env = canonical_fingerprint(sweep_fallback)
    assert (env["cuda_runtime_version"], env["gpu_name"], env["torch_version"]) == ("12.4", "NVIDIA A100-SXM4-40GB", "2.11.0")


def test_a_fingerprint_with_todays_names_reads_unchanged(fixed_git):
    fp = json.loads(json.dumps(fingerprint("cpu")))
    assert canonical_fingerprint(fp) == fp
    assert canonical_fingerprint({}) == {} and canonical_fingerprint(None) == {}


def test_a_canonical_key_wins_over_an_old_one_and_null_reasons_follow_the_rename():
    env = canonical_fingerprint({"torch": "old", "torch_version": "new", "cpu": None,
                                 "null_reasons": {"cpu": "unknown CPU"}})
    assert env["torch_version"] == "new" and env["null_reasons"]["cpu_model"] == "unknown CPU"


def test_model_hash_ignores_which_card_of_the_same_model(fixed_git):
    a = fingerprint("cuda:0", nvml=make_fake_nvml(devices=[FakeDevice(uuid="GPU-aaaa")]))
    b = fingerprint("cuda:0", nvml=make_fake_nvml(devices=[FakeDevice(uuid="GPU-bbbb")]))
    assert a["hash"] != b["hash"]
    assert a["model_hash"] == b["model_hash"]


def test_hardware_hash_ignores_software_and_software_hash_ignores_hardware(fixed_git, monkeypatch):
    base = fingerprint("cuda:0", nvml=make_fake_nvml())
    new_driver = fingerprint("cuda:0", nvml=make_fake_nvml(driver_version="590.10.01"))
    assert new_driver["hardware_hash"] == base["hardware_hash"]
    assert new_driver["software_hash"] != base["software_hash"]
    other_model = fingerprint("cuda:0", nvml=make_fake_nvml(name="NVIDIA H200", memory_total_bytes=141 * 2**30))
    assert other_model["hardware_hash"] != base["hardware_hash"]
    assert other_model["software_hash"] == base["software_hash"]
    assert fp_module.hardware_hash({k: v for k, v in base.items() if k != "hardware_hash"}) == base["hardware_hash"]


def test_cpu_fingerprint_has_gpu_fields_none_with_reason(fixed_git):
    fp = fingerprint("cpu")
    for key in GPU_FIELDS:
        assert fp[key] is None and "not a CUDA GPU" in fp["null_reasons"][key]
    assert fp["python_version"] == platform.python_version()
    assert fp["cpu_count"] and fp["os"]


def test_cuda_device_without_pynvml_or_driver_gives_reasons_not_a_crash(fixed_git, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fp = fingerprint("cuda:0")
    assert fp["driver_version"] is None and "nvidia-ml-py" in fp["null_reasons"]["driver_version"]


def test_not_supported_identity_field_is_null_with_reason(fixed_git):
    fp = fingerprint("cuda:0", nvml=make_fake_nvml(not_supported={"nvmlDeviceGetEccMode"}))
    assert fp["gpu_ecc_enabled"] is None and "NOT_SUPPORTED" in fp["null_reasons"]["gpu_ecc_enabled"]
    assert fp["gpu_name"] is not None


def test_mig_mode_is_part_of_the_identity(fixed_git):
    fp = fingerprint("cuda:0", nvml=make_fake_nvml(mig=(1, 1)))
    assert fp["gpu_mig_enabled"] is True


def test_outside_a_git_repo_the_commit_is_null_with_reason(tmp_path):
    commit, dirty, reason = fp_module.git_state(tmp_path)
    assert commit is None and dirty is None and reason


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
def test_real_gpu_fingerprint_reads_identity_and_is_stable():
    a, b = fingerprint("cuda:0"), fingerprint("cuda:0")
    assert a["gpu_name"] and a["driver_version"] and a["gpu_uuid"].startswith("GPU-")
    assert a["gpu_max_sm_clock_mhz"] > 0 and a["gpu_power_limit_w"] > 0
    assert a["hash"] == b["hash"]


def test_settings_that_change_timing_enter_the_comparability_key_and_old_fingerprints_keep_their_hash(fixed_git):
    from bench.core.fingerprint import (
        HARDWARE_FIELDS,
        STABLE_FIELDS,
        canonical_hash,
        comparable,
    )
    from bench.history.identity import hardware_identity

    plain = fingerprint("cpu", environ={"HOME": "/root", "OMP_NUM_THREADS": "2"})
    blocking = fingerprint("cpu", environ={"CUDA_LAUNCH_BLOCKING": "1"})
    assert plain["timing_env"] == {} and plain["env_settings"] == {"OMP_NUM_THREADS": "2"}
    assert blocking["timing_env"] == {"CUDA_LAUNCH_BLOCKING": "1"}
    assert blocking["hash"] != plain["hash"] and blocking["hardware_hash"] != plain["hardware_hash"]
    assert comparable(plain, blocking)[1] == ["timing_env"]
    # A fingerprint written before the field existed hashes as one with no setting.
    old = {k: v for k, v in plain.items() if k not in ("timing_env", "env_settings")}
    assert canonical_hash(old, STABLE_FIELDS) == plain["hash"]
    assert canonical_hash(old, HARDWARE_FIELDS) == plain["hardware_hash"]
    assert comparable(old | {"hash": plain["hash"]}, plain) == (True, [])
    # `bench compare` keys machines by hardware identity: the two are different machines to it, and says why.
    key_a, _ = hardware_identity(plain)
    key_b, label_b = hardware_identity(blocking)
    assert key_a != key_b and label_b.endswith("under CUDA_LAUNCH_BLOCKING=1")


def test_bench_compare_refuses_runs_under_different_timing_settings_unless_cross_hardware(tmp_path, capsys):
    import report_inputs as R

    from bench.cli import main

    plain = R.make_sweep("mlp", "bf16", seed=1)
    blocking = R.make_sweep("mlp", "bf16", seed=2)
    blocking["environment"]["timing_env"] = {"CUDA_LAUNCH_BLOCKING": "1"}
    (tmp_path / "a.json").write_text(json.dumps(plain))
    (tmp_path / "b.json").write_text(json.dumps(blocking))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different hardware" in err[0] and "under CUDA_LAUNCH_BLOCKING=1" in err[0]
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--cross-hardware"]) in (0, 1, 3)  # judged (3: inconclusive)
    # The same runs without the setting compare as one machine.
    (tmp_path / "c.json").write_text(json.dumps(R.make_sweep("mlp", "bf16", seed=2)))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "c.json")]) in (0, 1, 3)
    assert "different hardware" not in capsys.readouterr().err
