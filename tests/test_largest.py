"""The largest-batch search: exact answers from a memory model in a few probes, bisection as the safeguard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bench.run.largest import fit_memory_line, search_largest_batch

GIB = 2**30


@dataclass
class FakeProbe:
    batch_size: int
    fits: bool
    error: str | None = None
    peak_bytes: float | None = None

    @property
    def failed_otherwise(self) -> bool:
        return not self.fits and bool(self.error) and self.error.startswith("not out of memory")


class FakeDevice:
    """A workload whose peak memory follows `memory(B)` and which runs out of memory above `capacity`."""

    def __init__(self, memory, capacity):
        self.memory, self.capacity = memory, capacity
        self.probed: list[int] = []

    def fits(self, b: int) -> bool:
        return self.memory(b) <= self.capacity

    def probe(self, b: int) -> FakeProbe:
        self.probed.append(b)
        if self.fits(b):
            return FakeProbe(b, True, peak_bytes=self.memory(b))
        return FakeProbe(b, False, error="OutOfMemoryError: CUDA out of memory")

    def truth(self, upto: int = 1 << 20) -> int:
        lo, hi = 0, upto  # memory grows with the batch in every fake here: bisect the truth exactly
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.fits(mid) else (lo, mid)
        return lo


def linear(a, b):
    return lambda B: a + b * B


def bumpy(a, b, at, jump):
    return lambda B: a + b * B + (jump if B >= at else 0.0)


def curved(a, b, c):
    return lambda B: a + b * B + c * B * B


def sweep_state(dev: FakeDevice, planned=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)):
    """What a sweep over powers of two leaves behind: measured peaks below the first OOM, and the bracket."""
    fits = [b for b in planned if dev.fits(b)]
    ooms = [b for b in planned if not dev.fits(b)]
    return max(fits), min(ooms), [(b, dev.memory(b)) for b in fits]


FAKES = {
    "linear": (linear(1.5 * GIB, 40e6), 80 * GIB),
    "large offset": (linear(30 * GIB, 40e6), 139 * GIB),
    "bump": (bumpy(2 * GIB, 60e6, 1300, 6 * GIB), 80 * GIB),
}


@pytest.mark.parametrize("name", ["linear", "large offset"])
def test_on_linear_memory_the_model_finds_the_exact_largest_batch_in_at_most_4_probes(name):
    memory, capacity = FAKES[name]
    dev = FakeDevice(memory, capacity)
    lo, hi, peaks = sweep_state(dev)
    found = search_largest_batch(dev.probe, lo=lo, hi=hi, known_peaks=peaks, capacity_bytes=capacity)
    assert found.largest == dev.truth() and found.smallest_oom == dev.truth() + 1
    assert len(found.probes) <= 4


@pytest.mark.parametrize("name", ["linear", "large offset"])
def test_bisection_alone_needs_at_least_9_probes_on_the_same_workloads(name):
    memory, capacity = FAKES[name]
    dev = FakeDevice(memory, capacity)
    lo, hi, peaks = sweep_state(dev)
    found = search_largest_batch(dev.probe, lo=lo, hi=hi, known_peaks=peaks, capacity_bytes=capacity, use_model=False)
    assert found.largest == dev.truth()
    assert len(found.probes) >= 9 and found.bisection_probes == len(found.probes)


def test_a_memory_bump_the_line_cannot_see_costs_probes_but_never_the_right_answer():
    memory, capacity = FAKES["bump"]
    dev = FakeDevice(memory, capacity)
    lo, hi, peaks = sweep_state(dev)
    found = search_largest_batch(dev.probe, lo=lo, hi=hi, known_peaks=peaks, capacity_bytes=capacity)
    bisect = search_largest_batch(FakeDevice(memory, capacity).probe, lo=lo, hi=hi, known_peaks=peaks,
                                  capacity_bytes=capacity, use_model=False)
    assert found.largest == bisect.largest == dev.truth()
    assert found.bisection_probes >= 1  # the safeguard stepped in
    assert len(found.probes) <= len(bisect.probes) + 2


def test_an_overestimated_capacity_still_gives_the_exact_answer():
    memory = linear(2 * GIB, 50e6)
    dev = FakeDevice(memory, 70 * GIB)
    lo, hi, peaks = sweep_state(dev)
    found = search_largest_batch(dev.probe, lo=lo, hi=hi, known_peaks=peaks, capacity_bytes=80 * GIB)
    assert found.largest == dev.truth()


def test_without_a_bracket_the_search_doubles_then_lets_the_model_take_over():
    memory, capacity = FAKES["linear"]
    dev = FakeDevice(memory, capacity)
    found = search_largest_batch(dev.probe, capacity_bytes=capacity, start=1, limit=1 << 16)
    plain = search_largest_batch(FakeDevice(memory, capacity).probe, start=1, limit=1 << 16, use_model=False)
    assert found.largest == plain.largest == dev.truth()
    assert found.doubling_probes == 2 and len(found.probes) <= 5
    assert len(plain.probes) >= 2 * 9


def test_everything_fitting_up_to_the_limit_is_reported_as_limited():
    dev = FakeDevice(linear(GIB, 1e6), 80 * GIB)
    found = search_largest_batch(dev.probe, capacity_bytes=80 * GIB, start=1, limit=64)
    assert found.limited and found.largest == 64 and found.smallest_oom is None


def test_a_failure_other_than_memory_stops_the_search_and_says_why():
    def probe(b):
        if b >= 8:
            return FakeProbe(b, False, error="not out of memory: ValueError: bad shape")
        return FakeProbe(b, True, peak_bytes=b * 1e6)

    found = search_largest_batch(probe, start=1, limit=1024)
    assert found.largest == 4 and "failed for another reason" in found.stopped


@pytest.mark.parametrize("seed", range(40))
def test_random_memory_curves_and_capacities_always_give_the_exact_answer(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.2, 20) * GIB, rng.uniform(1e5, 2e8)
    kind = seed % 3
    memory = (linear(a, b), bumpy(a, b, int(rng.integers(2, 5000)), rng.uniform(0, 10) * GIB),
              curved(a, b, rng.uniform(0, 1e4)))[kind]
    capacity = a + b * rng.uniform(3, 3000)
    dev = FakeDevice(memory, capacity)
    if not dev.fits(1):
        return
    misjudged = capacity * rng.uniform(0.8, 1.2)  # the device's capacity as the search is told it
    found = search_largest_batch(dev.probe, capacity_bytes=misjudged, start=1, limit=1 << 20)
    assert found.largest == dev.truth()
    assert found.smallest_oom == found.largest + 1


def test_the_memory_line_uses_the_largest_batches_and_refuses_a_flat_or_single_point():
    line = fit_memory_line([(1, 5.0), (64, 100.0), (128, 164.0), (256, 292.0)])
    assert line.slope == pytest.approx(1.0) and line.intercept == pytest.approx(36.0)
    assert line.largest_within(1036.0) == 1000
    assert fit_memory_line([(8, 10.0)]) is None
    assert fit_memory_line([(8, 10.0), (16, 10.0)]) is None


# ---------------------------------------------------------------------------------- a card-like fake

CARD = int(79.5 * GIB)


def _card(margin_gib, workspace_gib):
    from bench.records.sweep import Probe
    from bench.testing.fake_cuda import FakeConvNet, probe_on_card

    net = FakeConvNet(autotune_workspace_bytes=int(workspace_gib * GIB))
    margin = int(margin_gib * GIB)

    def probe(b):
        fits, peak, error, _ = probe_on_card(CARD, margin, net, b)
        return Probe(b, fits, error, peak)

    known = []
    for b in (256, 512, 1024):  # a sweep keeps the larger of its timed and warm-up peaks
        _, peak, _, warm = probe_on_card(CARD, margin, net, b)
        known.append((b, max(peak, warm)))
    lo, hi = 1024, 2048
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if probe(mid).fits else (lo, mid)
    return probe, known, lo


@pytest.mark.parametrize("margin_gib", [0.25, 1.0, 2.5, 4.0])
@pytest.mark.parametrize("workspace_gib", [0.0, 1.5, 3.0])
def test_on_a_card_like_fake_the_search_learns_the_ceiling_from_the_oom_text(margin_gib, workspace_gib):
    probe, known, truth = _card(margin_gib, workspace_gib)
    found = search_largest_batch(probe, lo=1024, hi=2048, known_peaks=known, capacity_bytes=CARD)
    assert found.largest == truth and found.smallest_oom == truth + 1
    assert len(found.probes) <= 4
    assert found.outside_bytes == pytest.approx(margin_gib * GIB, abs=20 * 2**20)  # read off torch's message


def test_without_reading_the_oom_text_the_same_card_costs_more_probes():
    from bench.records.sweep import Probe

    probe, known, truth = _card(2.0, 1.5)

    def mute(b):  # the same probes, their message cut to its first words
        p = probe(b)
        return Probe(p.batch_size, p.fits, p.error and "OutOfMemoryError: CUDA out of memory.", p.peak_reserved_bytes)

    learned = search_largest_batch(probe, lo=1024, hi=2048, known_peaks=known, capacity_bytes=CARD)
    blind = search_largest_batch(mute, lo=1024, hi=2048, known_peaks=known, capacity_bytes=CARD)
    assert learned.largest == blind.largest == truth
    assert len(blind.probes) > len(learned.probes) and blind.ceiling_bytes is None


def test_parse_oom_reads_torchs_message_and_nothing_else():
    from bench.run.largest import parse_oom

    text = ("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 8.00 GiB of which 0 bytes "
            "is free. Of the allocated memory 14.51 GiB is allocated by PyTorch, and 15.90 MiB is reserved by "
            "PyTorch but unallocated.")
    r = parse_oom(text)
    assert r.requested_bytes == 20 * 2**20 and r.free_bytes == 0 and r.total_bytes == 8 * GIB
    assert r.ceiling_bytes == pytest.approx(14.51 * GIB + 15.90 * 2**20)
    assert parse_oom("OutOfMemoryError: CUDA out of memory") is None and parse_oom(None) is None
