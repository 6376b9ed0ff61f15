"""Step times in interleaved rounds (A B C …, B C … A, …): every batch size gets one block of steps per
round, so a change in the machine's load during the measurement hits every batch size alike and their
ratios can be taken round by round. Built on the measuring functions of bench.measure.timing (its
warm-up and timers); the rounds loop is the only thing added.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from bench.core.devices import free_memory, resolve_device
from bench.core.errors import BenchError
from bench.core.load import machine_load
from bench.core.params import one_line
from bench.measure.conditions import read_conditions
from bench.measure.timing import FixedCountRule, MeasureLimits, measure, timer_for
from bench.records.tta import StepTimeRounds

DEFAULT_ROUNDS = 12
DEFAULT_BLOCK_S = 0.1  # each batch size's block in a round lasts about this long
WARMUP_BUDGET_S = 1.0  # per batch size before the rounds, at most: the timing module's warm-up, then a few steps


def measure_rounds(workload, batch_sizes: Sequence[int], *, device="cpu", step_options=None, seed: int = 0,
                   rounds: int = DEFAULT_ROUNDS, block_s: float = DEFAULT_BLOCK_S,
                   warmup_budget_s: float | None = None, conditions: Callable[[], dict] = read_conditions,
                   timer=None, progress: Callable[[str, dict], None] | None = None) -> StepTimeRounds:
    """Time a training step of `workload` at every batch size in `rounds` interleaved rounds.

    Each batch size is built once and warmed up (`bench.measure.timing.measure` with its warm-up rule and
    a short budget, whose median sizes the blocks); then round r runs one block of about `block_s` at
    each batch size, in the order rotated by r. A batch size that fails to build or to run is left out
    with its reason in `missing`; the machine's readings at the start and end of each round give the
    machine load."""
    from bench.measure.step import StepOptions, TrainStep

    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 2:
        raise BenchError(f"interleaved rounds must be a whole number >= 2, got {rounds!r}")
    if not block_s > 0:
        raise BenchError(f"the block time of a round must be > 0 seconds, got {block_s!r}")
    dev = resolve_device(device)
    timer = timer or timer_for(dev)
    notify = progress or (lambda event, info: None)
    sizes = sorted({int(b) for b in batch_sizes})
    if warmup_budget_s is None:
        warmup_budget_s = min(WARMUP_BUDGET_S, 10.0 * block_s)
    out = StepTimeRounds(batch_sizes=sizes, rounds=rounds, block_s=float(block_s))
    steps, per_block = {}, {}
    t0 = time.perf_counter()
    try:
        for b in sizes:
            try:
                step = TrainStep(workload, b, dev, step_options or StepOptions(), seed=seed)
                warm = measure(step, timer=timer, rule=FixedCountRule(count=10),
                               limits=MeasureLimits(budget_s=warmup_budget_s))
                typical = sorted(warm.samples_s)[len(warm.samples_s) // 2]
                steps[b] = step
                per_block[b] = max(1, int(round(block_s / typical))) if typical > 0 else 1
            except BenchError:
                raise
            except Exception as e:  # noqa: BLE001 - a batch size that cannot run is a result, not a crash
                out.missing[str(b)] = f"could not be timed in rounds: {one_line(e)}"
                free_memory(dev)
        live = [b for b in sizes if b in steps]
        out.steps_per_block = {str(b): per_block[b] for b in live}
        out.samples_s = {str(b): [] for b in live}
        for r in range(rounds):
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            start = conditions()
            for b in order:
                if str(b) in out.missing:
                    continue
                try:
                    out.samples_s[str(b)].append(timer.time_block(steps[b], per_block[b]))
                except Exception as e:  # noqa: BLE001
                    out.missing[str(b)] = f"failed in round {r + 1}: {one_line(e)}"
                    out.samples_s.pop(str(b), None)
            out.conditions.append([start, conditions()])
            out.round_orders.append(order)
            notify("round", {"round": r + 1, "rounds": rounds})
    finally:
        for step in steps.values():
            step.release()
        free_memory(dev)
    out.wall_time_s = time.perf_counter() - t0
    load, why = machine_load([tuple(pair) for pair in out.conditions], dev.type)
    out.machine_load = load.to_dict() if load is not None else None
    if why:
        out.null_reasons["machine_load"] = why
    return out
