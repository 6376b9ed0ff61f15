"""How each rank's GPU is connected (bench.measure.telemetry.interconnect), through the fake NVML."""

from __future__ import annotations

from bench.measure.telemetry.interconnect import interconnect
from bench.testing.fake_pynvml import (
    NVML_ERROR_NO_PERMISSION,
    FakeDevice,
    make_fake_nvml,
)


def test_active_nvlink_links_make_the_link_nvlink_and_the_topology_names_each_other_gpu():
    nvml = make_fake_nvml([FakeDevice(nvlink_states=(1, 1, 0, 1), topology={1: 0}),
                           FakeDevice(uuid="GPU-other")])
    out = interconnect("cuda:0", nvml=nvml)
    assert out["link"] == "nvlink" and out["nvlink_active_links"] == 3
    assert out["topology"] == [{"gpu_uuid": "GPU-other", "level": 0, "words": "same board"}]
    assert (out["pcie_generation"], out["pcie_width"]) == (5, 16) and out["null_reasons"] == {}
    assert nvml.init_count == 0  # NVML shut down after


def test_a_gpu_without_nvlink_is_connected_by_pcie():
    out = interconnect("cuda:0", nvml=make_fake_nvml([FakeDevice(pcie_generation=4, pcie_width=8)]))
    assert out["link"] == "pcie" and out["nvlink_active_links"] == 0
    assert (out["pcie_generation"], out["pcie_width"]) == (4, 8) and out["topology"] == []


def test_what_nvml_refuses_is_null_with_its_reason():
    nvml = make_fake_nvml([FakeDevice(nvlink_states=(1,))], not_supported={"nvmlDeviceGetCurrPcieLinkWidth"})
    out = interconnect("cuda:0", nvml=nvml)
    assert out["pcie_width"] is None and "NOT_SUPPORTED" in out["null_reasons"]["pcie_width"]
    assert out["link"] == "nvlink"


def test_an_nvml_error_other_than_no_such_link_leaves_the_link_unknown():
    nvml = make_fake_nvml([FakeDevice(nvlink_states=(1,))])

    def refuse(handle, link):
        raise nvml.NVMLError(NVML_ERROR_NO_PERMISSION)

    nvml.nvmlDeviceGetNvLinkState = refuse
    out = interconnect("cuda:0", nvml=nvml)
    assert out["link"] is None and "Insufficient Permissions" in out["null_reasons"]["link"]


def test_a_cpu_or_a_missing_driver_gives_nulls_with_reasons():
    cpu = interconnect("cpu")
    assert cpu["link"] is None and cpu["null_reasons"]["link"] == "device is cpu, not a CUDA GPU"
    out = interconnect("cuda:0", nvml=make_fake_nvml(init_error=9))
    assert out["link"] is None and "NVML did not start" in out["null_reasons"]["link"]
