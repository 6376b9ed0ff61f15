"""The environment section of the report: fingerprint fields side by side, differing rows marked, fields no
input recorded listed with the reason, and the one-line fingerprint beside each verdict."""

from __future__ import annotations

from bench.present.report.environment import environment_table, fingerprint_line


def test_only_rows_whose_values_differ_are_marked():
    a = {"gpu_name": "H100", "torch_version": "2.13.0", "hash": "abc", "cudnn_version": None,
         "null_reasons": {"cudnn_version": "no cuDNN on a CPU build"}}
    b = {**a, "torch_version": "2.12.0"}
    table = environment_table([("a", a), ("b", b)])
    differs = {row["key"]: row["differs"] for row in table["rows"]}
    assert differs == {"gpu_name": False, "torch_version": True, "hash": False}
    assert table["missing"] == [{"reason": "no cuDNN on a CPU build", "fields": "cudnn_version"}]
    assert environment_table([("a", {})]) is None


def test_the_fingerprint_line_names_the_device_and_software_first():
    line = fingerprint_line({"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_memory_total_bytes": 85e9,
                             "driver_version": "580.1", "torch_version": "2.13.0", "python_version": "3.11.7",
                             "hash": "abc"})
    assert line == "NVIDIA H100 80GB HBM3 · 79.2 GiB · driver 580.1 · torch 2.13.0 · Python 3.11.7 · fingerprint abc"
    assert fingerprint_line({}) == "no fingerprint recorded"
