"""The largest batch that fits, found in a handful of probes.

Batch-size finders (Lightning's, for one) double the batch until it runs out of memory, then bisect:
about 2·log2(B_max) trials. Peak memory is close to linear in the batch size, so this search fits
peak = a + b·B to the points already measured, predicts the largest batch the device's capacity
holds, probes there, and corrects from what each probe shows (a probe that fits reports its own
peak). Every answer is bracketed by a batch seen to fit and the next batch seen to run out of
memory, so a model that misfits costs probes, never a wrong answer: when a model-guided probe fails
to halve the bracket twice in a row, the next probe bisects (as Brent's method safeguards the
secant step).

A card runs out of memory before the capacity the search is told (memory outside the caching
allocator: the CUDA context, library workspaces; segment rounding; fragmentation), and the peaks a
sweep measured may hold cuDNN autotuning workspace that a probe near the limit does without. So the
search learns from each probe: a failed one's out-of-memory text says what PyTorch could reach
(allocated + reserved + free at the failure: `OomReport.ceiling_bytes`), which replaces the capacity;
a probe that fits re-anchors the model at its own peak.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from bench.core.vocabulary import PROBE_KINDS

LOCAL_SPAN = 16  # probes closer than this: the allocator's segment rounding would tilt their slope
MODEL_POINTS = 2  # a secant through the two largest batches: memory may bend at small batches

_SIZE = r"([0-9.]+) (bytes|KiB|MiB|GiB)"
_OOM_RE = re.compile(r"Tried to allocate " + _SIZE + r"\. GPU (\d+) has a total capacity of " + _SIZE + r" of which "
                     + _SIZE + r" is free\..*?Of the allocated memory " + _SIZE + r" is allocated by PyTorch, .*?"
                     r"and " + _SIZE + r" is reserved by PyTorch but unallocated")
_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


@dataclass(frozen=True)
class OomReport:
    """What torch's CUDA out-of-memory message says (sizes in bytes, to its two decimals)."""

    requested_bytes: float
    device_index: int
    total_bytes: float
    free_bytes: float
    allocated_bytes: float
    reserved_unallocated_bytes: float

    @property
    def ceiling_bytes(self) -> float:
        """What PyTorch's allocator could hold on this device: what it held at the failure plus what
        was free. The rest of the capacity is outside the allocator (context, other libraries)."""
        return self.allocated_bytes + self.reserved_unallocated_bytes + self.free_bytes

    @property
    def outside_bytes(self) -> float:
        return self.total_bytes - self.ceiling_bytes


def parse_oom(text: str | None) -> OomReport | None:
    """The numbers in torch's "CUDA out of memory. Tried to allocate ..." message; None for any other text."""
    m = _OOM_RE.search(text or "")
    if m is None:
        return None
    g = m.groups()

    def size(i: int) -> float:
        return float(g[i]) * _UNITS[g[i + 1]]

    return OomReport(size(0), int(g[2]), size(3), size(5), size(7), size(9))


class ProbeOutcome(Protocol):
    batch_size: int
    fits: bool
    error: str | None
    peak_bytes: float | None

    @property
    def failed_otherwise(self) -> bool: ...


ProbeFn = Callable[[int], ProbeOutcome]


@dataclass(frozen=True)
class MemoryLine:
    """peak_bytes ≈ intercept + slope · batch_size, fitted by least squares."""

    intercept: float
    slope: float
    points: int

    def largest_within(self, capacity_bytes: float) -> int:
        """The largest batch whose predicted peak is within `capacity_bytes`."""
        return int(math.floor((capacity_bytes - self.intercept) / self.slope))


def fit_memory_line(points: Iterable[tuple[int, float]], max_points: int = MODEL_POINTS) -> MemoryLine | None:
    """A line through the `max_points` largest batches with a known peak; None when fewer than two
    distinct batches are known or memory does not grow with the batch."""
    by_batch = {int(b): float(p) for b, p in points if p is not None and math.isfinite(p) and b > 0}
    chosen = sorted(by_batch)[-max_points:]
    if len(chosen) < 2:
        return None
    x = [float(b) for b in chosen]
    y = [by_batch[b] for b in chosen]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((xi - mx) ** 2 for xi in x)
    slope = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
    if not slope > 0:
        return None
    return MemoryLine(intercept=my - slope * mx, slope=slope, points=len(chosen))


def _memory_line(known: dict[int, float], seen: dict[int, float]) -> MemoryLine | None:
    """The model's slope: through this search's own probes when they lie far enough apart (they are
    taken the way the next probe's will be, and near it); else through the known peaks (far apart, so
    the allocator's rounding hardly tilts them), the probes' added when fewer than two were known."""
    if len(seen) >= 2 and max(seen) - min(seen) >= LOCAL_SPAN:
        line = fit_memory_line(seen.items())
        if line is not None:
            return line
    # One probe's peak anchors the line but does not tilt it: the known peaks may hold workspace the
    # probe did without.
    return fit_memory_line(known.items()) or fit_memory_line({**known, **seen}.items())


@dataclass
class LargestBatchSearch:
    """What a search found: `largest` fits and `largest + 1` (= `smallest_oom`) does not, both seen;
    `stopped` says why it ended early (a failure other than memory, or the limit)."""

    largest: int | None
    smallest_oom: int | None
    probes: list = field(default_factory=list)
    kinds: list = field(default_factory=list)  # how each probe's batch was chosen: doubling, model, bisection
    model_probes: int = 0
    bisection_probes: int = 0
    doubling_probes: int = 0
    stopped: str | None = None
    limited: bool = False
    ceiling_bytes: float | None = None  # what the allocator could reach, read off an out-of-memory message
    outside_bytes: float | None = None  # the capacity less that: memory outside PyTorch's allocator

    @property
    def method(self) -> str:
        return describe_probes(self.kinds)

    @property
    def counts(self) -> dict[str, int]:
        """Probes of each kind (every kind present, zeros included)."""
        return {k: self.kinds.count(k) for k in PROBE_KINDS}


_KIND_WORDS = {"doubling": "doubling", "model": "memory-model", "bisection": "bisection"}


def describe_probes(kinds: Sequence[str | None]) -> str:
    """e.g. "5 probe(s) (2 doubling, 3 memory-model)": every probe counted, by how it was chosen."""
    parts = [f"{kinds.count(k)} {_KIND_WORDS[k]}" for k in PROBE_KINDS if kinds.count(k)]
    unknown = sum(1 for k in kinds if k not in PROBE_KINDS)
    if unknown:
        parts.append(f"{unknown} of unrecorded kind")
    return f"{len(kinds)} probe(s)" + (f" ({', '.join(parts)})" if parts else "")


def search_largest_batch(probe: ProbeFn, *, lo: int = 0, hi: int | None = None,
                         known_peaks: Sequence[tuple[int, float]] = (), capacity_bytes: float | None = None,
                         start: int = 1, limit: int | None = None, use_model: bool = True,
                         before_probe: Callable[[int, str, int, int | None], None] | None = None,
                         on_probe: Callable[[ProbeOutcome, str], None] | None = None) -> LargestBatchSearch:
    """Find the largest batch that fits, given `lo` (largest seen to fit, 0 if none) and `hi` (smallest
    seen to run out of memory, None if none yet).

    `known_peaks` are (batch, peak bytes) of batches already measured to fit; `capacity_bytes` what the
    device can hold. Without a capacity or two known peaks the search doubles from `start` (or from
    `lo`) and bisects, as the usual finders do, until the probes themselves give the model its points.
    `limit` caps the batch sizes tried (the result is then `limited` when everything up to it fits).
    `before_probe(batch, kind, lo, hi)` and `on_probe(outcome, kind)` are told of each probe (e.g. to
    show progress, or to record each probe as it completes).
    """
    if hi is not None and hi <= lo:
        raise ValueError(f"bracket needs lo < hi, got lo={lo}, hi={hi}")
    known = {int(b): float(p) for b, p in known_peaks if p is not None}
    seen: dict[int, float] = {}  # peaks of this search's probes: taken as the probe ran, near the limit
    out = LargestBatchSearch(largest=lo or None, smallest_oom=hi)
    reach = capacity_bytes  # what the allocator can hold: the capacity told, until a failure says
    bisect_next = False
    slow_steps = 0

    while hi is None or hi - lo > 1:
        ceiling = (hi - 1) if hi is not None else limit
        if ceiling is not None and ceiling <= lo:  # everything up to the limit fits
            out.limited = True
            out.stopped = f"no out-of-memory up to batch {lo}, the limit: the largest lies beyond"
            break
        guess, kind, edge = None, None, False
        line = _memory_line(known, seen) if use_model and reach else None
        if line is not None and not bisect_next:
            predicted = line.largest_within(reach)
            anchor = seen.get(lo, known.get(lo))
            if anchor is not None:  # anchor at the largest batch seen to fit: its own peak corrects the offset
                room = (reach - anchor) / line.slope
                # A reach read off an out-of-memory message is the allocator's own: its nearest batch
                # (the rounding errs either way); a capacity told is an upper bound: stay under it.
                predicted = lo + int(round(room) if out.ceiling_bytes is not None else math.floor(room))
            # A prediction beyond the bracket is contradicted by a probe already made: bisect instead.
            # Predicting `lo` itself, or `hi` from a reach read off an out-of-memory message (to its
            # rounding), is the model off by one: the batch next to it inside the bracket is then
            # the best guess.
            at_hi = hi is not None and predicted == hi and out.ceiling_bytes is not None
            if predicted >= lo and (hi is None or predicted < hi or at_hi):
                guess, kind = predicted, "model"
                edge = predicted == lo or at_hi  # a probe next to a bound, to confirm it
        if guess is None:
            if hi is not None:
                guess, kind = (lo + hi) // 2, "bisection"
            else:
                guess, kind = (lo * 2 if lo else start), "doubling"
        guess = max(guess, lo + 1)
        if ceiling is not None:
            guess = min(guess, ceiling)
        width_before = (hi - lo) if hi is not None else None

        if before_probe is not None:
            before_probe(guess, kind, lo, hi)
        p = probe(guess)
        out.probes.append(p)
        out.kinds.append(kind)
        setattr(out, f"{kind}_probes", getattr(out, f"{kind}_probes") + 1)
        if on_probe is not None:
            on_probe(p, kind)
        if p.fits:
            lo = guess
            if p.peak_bytes is not None:
                seen[guess] = float(p.peak_bytes)
        elif p.failed_otherwise:
            out.stopped = f"search stopped: batch {guess} failed for another reason ({p.error})"
            break
        else:
            hi = guess
            report = parse_oom(p.error)
            if report is not None and (reach is None or report.ceiling_bytes < reach):
                reach = report.ceiling_bytes  # what the allocator can really reach on this device
                out.ceiling_bytes, out.outside_bytes = report.ceiling_bytes, report.outside_bytes
        # Safeguard: after two model steps in a row that did not halve a known bracket, bisect once.
        # (A probe next to a bound that the model pointed at confirms it, and counts as no slow step.)
        if kind == "model" and not edge and width_before is not None and (hi - lo) * 2 > width_before:
            slow_steps += 1
        else:
            slow_steps = 0
        bisect_next = slow_steps >= 2
        if bisect_next:
            slow_steps = 0

    out.largest = lo or None
    out.smallest_oom = hi
    return out
