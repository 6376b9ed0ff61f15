"""Probes needed to find the exact largest batch: memory-model search vs doubling + bisection.

Fake workloads (no GPU): peak memory follows a known curve and a probe runs out of memory above a
capacity. Two starting points: after a sweep over powers of two (its points' peaks known, the first
out-of-memory batch bracketing the answer), and from scratch (as a batch-size finder starts).

Then a card-like fake (bench.testing.fake_cuda: PyTorch's caching allocator in miniature) with the
peaks of ResNet-50 bf16 on an H100 (about 12,710 MiB at batch 256, 25,012 at 512, 49,588 at 1024; a
79.5 GiB capacity told to the search): for each margin (memory outside the allocator) and each
autotuning workspace held in the sweep's peaks, the probes the search needs after the sweep.

    python scripts/largest_batch_probes.py [--markdown] [--layers N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_largest import GIB, FakeDevice, bumpy, curved, linear, sweep_state  # noqa: E402

from bench.records.sweep import Probe  # noqa: E402
from bench.run.largest import search_largest_batch  # noqa: E402
from bench.testing.fake_cuda import GIB as CARD_GIB  # noqa: E402
from bench.testing.fake_cuda import MIB, FakeConvNet, probe_on_card  # noqa: E402

CARD_BYTES = int(79.5 * CARD_GIB)
MARGINS_GIB = [0.25 * i for i in range(1, 17)]
WORKSPACES_GIB = [0.5 * i for i in range(7)]


def card_rows(layers: int) -> list[list[str]]:
    """(margin, workspace, probes, answer, exact?) for the card-like fake, after a sweep of 256, 512, 1024
    (fits) and 2048 (out of memory)."""
    rows = []
    for margin in MARGINS_GIB:
        for ws in WORKSPACES_GIB:
            net = FakeConvNet(autotune_workspace_bytes=int(ws * CARD_GIB), layers=layers)

            def probe(b, net=net, margin=margin):
                fits, peak, error, _warm = probe_on_card(CARD_BYTES, int(margin * CARD_GIB), net, b)
                return Probe(b, fits, error, peak)

            known = []
            for b in (256, 512, 1024):  # the sweep keeps the larger of its timed and warm-up peaks
                fits, peak, _error, warm = probe_on_card(CARD_BYTES, int(margin * CARD_GIB), net, b)
                known.append((b, max(peak, warm)))
            lo, hi = 1024, 2048  # the truth, by bisection on the same fake
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if probe(mid).fits else (lo, mid)
            found = search_largest_batch(probe, lo=1024, hi=2048, known_peaks=known, capacity_bytes=CARD_BYTES)
            rows.append([f"{margin:g}", f"{ws:g}", str(len(found.probes)), str(found.largest),
                         "yes" if found.largest == lo and found.smallest_oom == lo + 1 else f"no (truth {lo})"])
    return rows


def show(head: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))

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
    ap.add_argument("--layers", type=int, default=24, help="activations per step in the card-like fake")
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
    show(head, rows, args.markdown)
    print()
    net = FakeConvNet(layers=args.layers)
    peaks = [probe_on_card(CARD_BYTES, CARD_GIB, net, b)[1] // MIB for b in (256, 512, 1024)]
    print(f"card-like fake, {args.layers} layers: steady peaks {peaks[0]:,} / {peaks[1]:,} / {peaks[2]:,} MiB at "
          "batch 256 / 512 / 1024, 79.5 GiB told to the search")
    card = card_rows(args.layers)
    show(["margin GiB", "workspace GiB", "probes", "answer", "exact?"], card, args.markdown)
    n = [int(r[2]) for r in card]
    print(f"{len(card)} cases: {sum(r[4] == 'yes' for r in card)} exact, probes at most {max(n)}, "
          f"{sum(k <= 4 for k in n)} within 4")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
