"""Measuring under torch.distributed (launched by torchrun): every rank's place in the job, a control
channel every rank answers in lockstep, and a timer that puts a barrier before each timed block and
takes a block's time as the slowest rank's.

A data-parallel point is measured by every rank at once, and every rank must take the same decisions
(how many steps in a block, when to stop, when a point failed), or the ranks' collectives stop
matching and the job hangs. So every decision is made from values all ranks share: the ranks' samples
are exchanged after each block and combined (`slowest_rank_per_block`), and the clock the measuring loop
reads is rank 0's, handed to every rank (`Ranks.clock`). These exchanges run on a Gloo control group
of their own (host memory, never the GPU stream), so they never sit inside a timed window.

A rank that fails (out of memory, an exception) tells the others at the next exchange, and every
rank then raises the same `RanksFailed`: a point's failure is a result, as in a single-process sweep.
A rank still waiting inside a collective for the failed one gets out when the data group's timeout
ends the wait. When the ranks cannot reach each other at all (a rank died, a control exchange timed
out) every rank raises `DistributedError`, which ends the job.

Nothing here runs without a process group: with WORLD_SIZE unset the single-process path never
touches it.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

from bench.core.devices import device_type, is_oom
from bench.core.errors import BenchError
from bench.core.params import one_line
from bench.core.vocabulary import STATUS_ERROR, STATUS_OOM

DEFAULT_TIMEOUT_S = 300.0  # how long a rank waits for another inside a collective before giving up
CONTROL_TIMEOUT_FACTOR = 2.0  # control exchanges outlast a data collective's timeout (see Ranks)
CONTROL_TIMEOUT_MARGIN_S = 30.0
ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

FAILED = "failed"
# Pieces of the messages of a collective that gave up waiting for (or lost) another rank: such a
# failure is a consequence, the other rank's is the cause.
WAITING_MARKERS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                   "nccl", "processgroup", "gloo", "collective")


class DistributedError(BenchError):
    """The ranks can no longer reach each other (a rank died, a control exchange timed out, the
    ranks' code paths diverged): the job ends."""


@dataclass(frozen=True)
class RankFailure:
    """What went wrong on one rank during a point. `waiting`: the rank failed inside a collective,
    waiting for another rank (a consequence, not the cause)."""

    rank: int
    status: str  # STATUS_OOM or STATUS_ERROR
    message: str
    waiting: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def failure_of(rank: int, exc: BaseException) -> RankFailure:
    text = one_line(exc)
    waiting = not is_oom(exc) and any(m in text.lower() for m in WAITING_MARKERS)
    return RankFailure(rank, STATUS_OOM if is_oom(exc) else STATUS_ERROR, text, waiting)


class RanksFailed(Exception):
    """One or more ranks failed during a point. Every rank raises it with the same failures."""

    def __init__(self, failures: Sequence[RankFailure]):
        self.failures = sorted(failures, key=lambda f: (f.waiting, f.rank))
        super().__init__(self.message)

    @property
    def causes(self) -> list[RankFailure]:
        """The failures that were not a rank waiting for another (all of them, when every one was)."""
        return [f for f in self.failures if not f.waiting] or list(self.failures)

    @property
    def status(self) -> str:
        return STATUS_OOM if any(f.status == STATUS_OOM for f in self.causes) else STATUS_ERROR

    @property
    def message(self) -> str:
        """One line: each cause with its rank, then which ranks waited for it."""
        causes = self.causes
        words = "; ".join(f"rank {f.rank}: {f.message}" for f in causes)
        waited = [f.rank for f in self.failures if f not in causes]
        if waited:
            words += f" (rank{'s' if len(waited) > 1 else ''} {', '.join(map(str, waited))} gave up waiting for it)"
        return words


# --------------------------------------------------------------------------- combination rule



# --------------------------------------------------------------------------- the job


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher setting WORLD_SIZE)."""
    return bool(os.environ.get("WORLD_SIZE"))


def main_rank() -> bool:
    """True for the process that writes files and prints: rank 0 of a torchrun job, or the only one."""
    return not launched() or os.environ.get("RANK", "0") == "0"


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise BenchError(f"{name} is not set: launch with torchrun, which sets {', '.join(ENV_VARS)}")
        return default
    try:
        return int(value)
    except ValueError:
        raise BenchError(f"{name}={value!r} is not a whole number") from None


def rank_device(name: str) -> str:
    """The device this rank measures on: under torchrun `cuda` means `cuda:LOCAL_RANK` (one GPU per
    process); elsewhere `name` unchanged. An explicit `cuda:N` under torchrun with more than one
    process is refused: every rank would share one GPU."""
    if not launched() or device_type(name) != "cuda":
        return name
    local = _env_int("LOCAL_RANK", 0)
    if ":" in str(name):
        if _env_int("WORLD_SIZE") > 1:
            raise BenchError(f"device {name!r} under torchrun: each rank uses its own GPU (cuda:LOCAL_RANK); "
                             "pass -d cuda")
        return name
    return f"cuda:{local}"


def backend_for(device: Any) -> str:
    return "nccl" if device_type(device) == "cuda" else "gloo"


class Ranks:
    """This process's place in the job, and the channel every rank answers in lockstep.

    `exchange(kind, payload)` hands every rank's payload to every rank (all_gather_object on the
    control group). A rank may answer any exchange with a failure instead (`announce`): then every rank
    raises `RanksFailed` with all the failures. Exchanges whose kinds differ mean the ranks' code
    diverged, and a control exchange that breaks or times out means a rank is gone: both raise
    `DistributedError`.

    The control group (Gloo) waits `control_timeout_s`: longer than a data collective's `timeout_s`,
    so that a rank announcing a failure outlasts another rank still waiting for it inside a
    collective, and that rank then arrives at the same exchange.
    """

    def __init__(self, *, rank: int, world_size: int, local_rank: int, backend: str, timeout_s: float,
                 control_group: Any = None, data_group: Any = None, owned: bool = False, dist: Any = None):
        if dist is None:
            import torch.distributed as dist
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.timeout_s = backend, float(timeout_s)
        self.control_group, self.data_group = control_group, data_group
        self.owned = owned
        self.host = socket.gethostname()
        self._dist = dist

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def control_timeout_s(self) -> float:
        return control_timeout(self.timeout_s)

    def settings(self) -> dict:
        """What a results file records of the job (and a resumed one must match)."""
        return {"world_size": self.world_size, "backend": self.backend, "timeout_s": self.timeout_s}

    # -- the control channel

    def _all_gather(self, item: Any) -> list:
        out: list = [None] * self.world_size
        try:
            self._dist.all_gather_object(out, item, group=self.control_group)
        except Exception as e:  # noqa: BLE001 - a broken or timed-out control channel ends the job
            raise DistributedError(f"rank {self.rank} lost contact with the other ranks (a rank stopped, or none "
                                   f"answered within {self.control_timeout_s:g} s): {one_line(e)}") from None
        return out

    def exchange(self, kind: str, payload: Any = None) -> list:
        """Every rank's payload, in rank order (see the class)."""
        answers = self._all_gather((kind, payload))
        failures = [RankFailure(**p) for k, p in answers if k == FAILED]
        if failures:
            raise RanksFailed(failures)
        kinds = {k for k, _ in answers}
        if len(kinds) > 1:
            where = ", ".join(f"rank {r} at {k!r}" for r, (k, _) in enumerate(answers))
            raise DistributedError(f"the ranks' code paths diverged ({where}): a bug in bench; please report it")
        return [p for _, p in answers]

    def announce(self, exc: BaseException) -> RanksFailed:
        """Tell every rank that this one failed with `exc`; returns the RanksFailed every rank now
        raises, with every rank's failure (`raise ranks.announce(e)`)."""
        if isinstance(exc, RanksFailed):
            return exc
        answers = self._all_gather((FAILED, failure_of(self.rank, exc).to_dict()))
        return RanksFailed([RankFailure(**p) for k, p in answers if k == FAILED])

    def barrier(self) -> None:
        self.exchange("barrier")

    def clock(self) -> float:
        """Rank 0's `time.perf_counter()`, the same value on every rank: the measuring loop's budget
        and block sizes then come out the same everywhere."""
        return float(self.exchange("clock", time.perf_counter() if self.is_main else None)[0])

    def broadcast(self, kind: str, value: Any = None) -> Any:
        """Rank 0's `value` on every rank."""
        return self.exchange(kind, value if self.is_main else None)[0]

    # -- the data group

    def renew_data_group(self) -> None:
        """A fresh group for the data collectives (DDP's all-reduce), after a point that failed: its
        half-done collectives must not meet the next point's."""
        old = self.data_group
        self.data_group = self._dist.new_group(backend=self.backend, timeout=timedelta(seconds=self.timeout_s))
        if old is not None and old is not self._dist.group.WORLD:
            try:
                self._dist.destroy_process_group(old)
            except Exception:  # noqa: BLE001 - a broken group may refuse; it is dropped either way
                pass


def control_timeout(timeout_s: float) -> float:
    return CONTROL_TIMEOUT_FACTOR * float(timeout_s) + CONTROL_TIMEOUT_MARGIN_S


_JOINED: Ranks | None = None


def check_timeout(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0 \
            or timeout_s != timeout_s or timeout_s == float("inf"):
        raise BenchError(f"collective timeout must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def join(device: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> Ranks | None:
    """This process's Ranks when it runs in a torchrun job (WORLD_SIZE set), else None.

    Initialises the default process group from torchrun's environment (NCCL for a CUDA device,
    Gloo otherwise) with `timeout_s` on its collectives, unless the program already did, and adds
    the Gloo control group. Idempotent: a second call returns the same Ranks.
    """
    global _JOINED
    import torch.distributed as dist

    if _JOINED is not None:
        return _JOINED
    timeout_s = check_timeout(timeout_s)
    if not dist.is_available():
        if launched():
            raise BenchError("WORLD_SIZE is set but this torch build has no torch.distributed")
        return None
    owned = False
    if not dist.is_initialized():
        if not launched():
            return None
        backend = backend_for(device)
        if backend == "nccl":
            import torch

            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        except Exception as e:  # noqa: BLE001 - rendezvous failures are the user's to fix
            raise BenchError(f"could not join the torchrun job: {one_line(e)}") from None
        owned = True
    backend = dist.get_backend()
    control = dist.new_group(backend="gloo", timeout=timedelta(seconds=control_timeout(timeout_s)))
    data = dist.new_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    _JOINED = Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK", 0),
                    backend=backend, timeout_s=timeout_s, control_group=control, data_group=data, owned=owned,
                    dist=dist)
    return _JOINED


def joined() -> Ranks | None:
    """The Ranks `join` made in this process, or None."""
    return _JOINED


def leave() -> None:
    """Destroy the process group if `join` made it (a program's own group is left alone)."""
    global _JOINED
    ranks, _JOINED = _JOINED, None
    if ranks is None or not ranks.owned:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - leaving must not hide the job's own outcome
            pass


@contextmanager
def terminated_as_error() -> Iterator[None]:
    """Within the block, SIGTERM raises DistributedError instead of killing the process.

    When a rank exits, torchrun stops the others with SIGTERM (then SIGKILL some seconds later): this
    gives rank 0 the time to record why in its results file and say so in one line. Python runs the
    handler once the main thread is back from the C++ call it waits in, which a lost peer ends.
    Only in the main thread; the previous handler is put back after.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise DistributedError("torchrun stopped this rank (SIGTERM): another rank exited; torchrun's report "
                               "names it and its exit code")

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# --------------------------------------------------------------------------- timing


class DistributedTimer:
    """Wraps a timer (CUDA events, host clock) for a data-parallel point.

    Before each block: a barrier on the control group, outside the timed window, so every rank
    starts the block together. The block itself has no host synchronisation beyond the inner
    timer's own (one per block on CUDA). After it: every rank's samples are exchanged, kept per rank
    (`rank_samples`), and the block returned to the measuring loop is that of the rank whose block took
    longest in total (`slowest_rank_per_block`: the maximum over ranks of each step would be biased
    upward by per-rank jitter), the same on every rank. A step that raises on one rank is announced to
    all (`Ranks.announce`), and every rank raises the same `RanksFailed`.
    """

    def __init__(self, inner: Any, ranks: Ranks):
        self.name = inner.name
        self._inner = inner
        self._ranks = ranks
        self._per_rank: list[list[float]] = [[] for _ in range(ranks.world_size)]

    def time_block(self, step: Callable[[], object], n: int) -> list[float]:
        self._ranks.barrier()
        try:
            block = self._inner.time_block(step, n)
        except (RanksFailed, DistributedError):
            raise
        except Exception as e:  # noqa: BLE001 - this rank's failure becomes every rank's RanksFailed
            raise self._ranks.announce(e) from None
        blocks = self._ranks.exchange("samples", [float(v) for v in block])
        for r, b in enumerate(blocks):
            self._per_rank[r] += b
        from bench.core.stats import (
            slowest_rank_per_block,  # numpy and scipy: not at `bench sweep --help`
        )

        return slowest_rank_per_block(blocks)

    def rank_samples(self, last: int) -> list[list[float]]:
        """Each rank's own times of the last `last` steps (the timed ones, after warm-up)."""
        return [list(s[len(s) - last:]) if last else [] for s in self._per_rank]


def wrap_ddp(module: Any, device: Any, ranks: Ranks) -> Any:
    """`module` in DistributedDataParallel over the data group (one device per process)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device_type(device) == "cuda":
        import torch

        ids = [torch.device(device).index if torch.device(device).index is not None else ranks.local_rank]
    return DistributedDataParallel(module, device_ids=ids, process_group=ranks.data_group)
