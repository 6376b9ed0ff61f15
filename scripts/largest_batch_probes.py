"""Probes needed to find the exact largest batch: memory-model search vs doubling + bisection.

Fake workloads (no GPU): peak memory follows a known curve and a probe runs out of memory above a
capacity. Two starting points: after a sweep over powers of two (its points' peaks known, the first
out-of-memory batch bracketing the answer), and from scratch (as a batch-size finder starts).

    python scripts/largest_batch_probes.py [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_largest import GIB, FakeDevice, bumpy, curved, linear, sweep_state  # noqa: E402

from bench.run.largest import search_largest_batch  # noqa: E402

WORKLOADS = {
    "linear (1.5 GiB + 40 MB/sample, 80 GiB)": (linear(1.5 * GIB, 40e6), 80 * GIB),
    "linear, 30 GiB offset (139 GiB card)": (linear(30 * GIB, 40e6), 139 * GIB),
    "linear, small samples (0.2 MB/sample)": (linear(1 * GIB, 0.2e6), 80 * GIB),
    "6 GiB bump at batch 1300": (bumpy(2 * GIB, 60e6, 1300, 6 * GIB), 80 * GIB),
    "curved (+0.5 KB·B²)": (curved(1 * GIB, 20e6, 500.0), 80 * GIB),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    rows = []
    for name, (memory, capacity) in WORKLOADS.items():
        truth = FakeDevice(memory, capacity).truth()
        cells = [name, str(truth)]
        dev = FakeDevice(memory, capacity)
        lo, hi, peaks = sweep_state(dev, planned=tuple(2**k for k in range(20)))
        for use_model in (True, False):
            found = search_largest_batch(FakeDevice(memory, capacity).probe, lo=lo, hi=hi, known_peaks=peaks,
                                         capacity_bytes=capacity, use_model=use_model)
            assert found.largest == truth, (name, use_model, found.largest, truth)
            cells.append(str(len(found.probes)))
        for use_model in (True, False):
            found = search_largest_batch(FakeDevice(memory, capacity).probe, capacity_bytes=capacity, start=1,
                                         limit=1 << 20, use_model=use_model)
            assert found.largest == truth, (name, use_model, found.largest, truth)
            cells.append(str(len(found.probes)))
        rows.append(cells)
    head = ["fake workload", "largest batch", "after sweep: model", "after sweep: bisection",
            "from scratch: model", "from scratch: doubling+bisection"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
