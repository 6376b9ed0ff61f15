"""Telemetry for sweep points: NVML/GPM sampling, FLOPs and MFU, peak tables, fingerprint.

Field meanings, units and null reasons: docs/telemetry.md. The fingerprint function lives in
`bench.measure.telemetry.fingerprint` (not re-exported here, so that name stays the module).
"""

from __future__ import annotations

from bench.measure.telemetry.flops import (
    achieved_tflops,
    flop_fields,
    flops_per_step,
    mfu,
)
from bench.measure.telemetry.peaks import (
    PeakLookup,
    PeakMeasurement,
    lookup_gpu,
    matmul_precision_for,
    measure_peak,
    peak_tflops,
)
from bench.measure.telemetry.sampler import SUMMARY_FIELDS, Telemetry

__all__ = [
    "PeakLookup", "PeakMeasurement", "SUMMARY_FIELDS", "Telemetry", "achieved_tflops",
    "flop_fields", "flops_per_step", "lookup_gpu", "matmul_precision_for",
    "measure_peak", "mfu", "peak_tflops",
]
