"""Test doubles for code that needs a GPU: a fake `pynvml` module (bench.testing.fake_pynvml), and a
workload that runs out of memory or raises on purpose (bench.testing.workloads).

Shipped with the library so users' own tests of telemetry-consuming code can run on a CPU too.
"""
