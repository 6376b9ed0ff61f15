"""How a GPU is connected to the others, where NVML tells it: active NVLink links (then `nvlink`, else
`pcie`), the PCIe link's current generation and width, and the topology level to each other GPU of
the machine. Recorded per rank of a data-parallel job (not hashed into the fingerprint: the same
cards can sit in another slot). Fields and null reasons: docs/telemetry.md.
"""

from __future__ import annotations

from typing import Any

from bench.measure.telemetry.nvml import (
    NvmlUnavailable,
    as_text,
    describe_error,
    device_handle,
    error_code,
    is_not_supported,
    load_nvml,
    parse_device,
    shutdown_nvml,
)

NVLINK = "nvlink"
PCIE = "pcie"
FIELDS = ("link", "nvlink_active_links", "pcie_generation", "pcie_width", "topology")
MAX_LINKS_DEFAULT = 18  # NVML_NVLINK_MAX_LINKS in older bindings (newer ones say 36)
NVML_ERROR_INVALID_ARGUMENT = 2
# nvmlDeviceGetTopologyCommonAncestor's answer, in words (nvml.h's nvmlGpuTopologyLevel_t).
TOPOLOGY_LEVELS = {0: "same board", 10: "one PCIe switch", 20: "several PCIe switches", 30: "PCIe host bridge",
                   40: "same NUMA node", 50: "across NUMA nodes"}


def _nvlink_links(nvml: Any, handle: Any) -> tuple[int | None, str | None]:
    """(active NVLink links, None), or (None, why not known). 0 on a GPU that has no NVLink."""
    active = 0
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", MAX_LINKS_DEFAULT))):
        try:
            state = nvml.nvmlDeviceGetNvLinkState(handle, link)
        except Exception as e:  # noqa: BLE001 - NVML says "no such link" or "no NVLink" by raising
            if is_not_supported(nvml, e) or error_code(nvml, e) == NVML_ERROR_INVALID_ARGUMENT:
                break  # past the last link (or none at all)
            return None, describe_error(nvml, "nvmlDeviceGetNvLinkState", e)
        active += int(state == getattr(nvml, "NVML_FEATURE_ENABLED", 1))
    return active, None


def _topology(nvml: Any, handle: Any) -> tuple[list[dict] | None, str | None]:
    try:
        count = int(nvml.nvmlDeviceGetCount())
        own = as_text(nvml.nvmlDeviceGetUUID(handle))
    except Exception as e:  # noqa: BLE001
        return None, describe_error(nvml, "nvmlDeviceGetCount", e)
    out = []
    for i in range(count):
        try:
            other = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid = as_text(nvml.nvmlDeviceGetUUID(other))
            if uuid == own:
                continue
            level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(handle, other))
        except Exception as e:  # noqa: BLE001
            return None, describe_error(nvml, "nvmlDeviceGetTopologyCommonAncestor", e)
        out.append({"gpu_uuid": uuid, "level": level, "words": TOPOLOGY_LEVELS.get(level, f"level {level}")})
    return out, None


def interconnect(device: Any = "cpu", *, nvml: Any = None) -> dict[str, Any]:
    """The GPU's links (FIELDS), each None with a reason in `null_reasons` where NVML cannot tell.

    `link` is `nvlink` when any NVLink link is active, else `pcie` (PCIe is every NVIDIA GPU's link
    to the host). `nvml` is the module to use (tests pass bench.testing.fake_pynvml). Never raises.
    """
    out: dict[str, Any] = {k: None for k in FIELDS}
    null: dict[str, str] = {}
    kind, _ = parse_device(device)
    if kind != "cuda":
        out["null_reasons"] = {k: f"device is {kind}, not a CUDA GPU" for k in FIELDS}
        return out
    try:
        module = load_nvml(nvml)
    except NvmlUnavailable as e:
        out["null_reasons"] = {k: str(e) for k in FIELDS}
        return out
    try:
        handle = device_handle(module, device)
        out["nvlink_active_links"], why = _nvlink_links(module, handle)
        if why:
            null["nvlink_active_links"] = null["link"] = why
        else:
            out["link"] = NVLINK if out["nvlink_active_links"] else PCIE
        for key, call in (("pcie_generation", "nvmlDeviceGetCurrPcieLinkGeneration"),
                          ("pcie_width", "nvmlDeviceGetCurrPcieLinkWidth")):
            try:
                out[key] = int(getattr(module, call)(handle))
            except Exception as e:  # noqa: BLE001
                null[key] = describe_error(module, call, e)
        out["topology"], why = _topology(module, handle)
        if why:
            null["topology"] = why
    except NvmlUnavailable as e:
        null.update({k: str(e) for k in FIELDS if out.get(k) is None})
    finally:
        shutdown_nvml(module)
    out["null_reasons"] = {k: v for k, v in null.items() if out.get(k) is None}
    return out
