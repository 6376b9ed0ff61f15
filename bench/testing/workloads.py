"""A workload that fails on purpose: a tiny linear model that runs out of memory, raises or kills its
process at chosen batch sizes on one rank only, as a GPU at its memory limit or a bug on one machine
would. `bench sweep -w bench.testing.workloads:failing -a plan=4:oom` (alone, or under torchrun)
shows how a job reports and records such failures; tests/test_distributed_launch.py runs it on two
ranks, and users' own tests of a nightly pipeline's failure handling can too."""

import os

import torch
from torch import nn

KINDS = ("oom", "error", "late-error", "exit")


class FailsOnOneRank(nn.Module):
    def __init__(self, rank, plan, after_calls):
        super().__init__()
        self.lin = nn.Linear(8, 2)
        self.rank, self.plan, self.after_calls = rank, plan, after_calls
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        kind = self.plan.get(x.shape[0])
        if kind is None or int(os.environ.get("RANK", "0")) != self.rank:
            return self.lin(x)
        late = kind in ("late-error", "exit")
        if late and self.calls <= self.after_calls:
            return self.lin(x)
        if kind == "exit":  # the process dies, as one the kernel's OOM killer ends would
            os._exit(3)
        if kind == "oom":
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake). Tried to allocate {x.shape[0]} MiB")
        raise ValueError(f"the fake workload raised on rank {self.rank} at batch {x.shape[0]}")


def failing(rank: int = 1, plan: str = "4:oom", after_calls: int = 0):
    """Rank `rank` fails in the forward pass as `plan` says, batch by batch ("2:error,4:oom"): `oom`
    (torch.cuda.OutOfMemoryError) and `error` (ValueError) on the first call, so in the pre-flight
    steps; `late-error` and `exit` (the process dies) after `after_calls` calls of a point's model,
    so in the middle of its timing."""
    spec = {}
    for item in plan.split(","):
        batch, _, kind = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown failure {kind!r}; choose one of {KINDS}")
        spec[int(batch)] = kind
    return {"model": lambda: FailsOnOneRank(rank, spec, after_calls),
            "make_batch": lambda b, device: (torch.randn(b, 8, device=device), torch.randint(0, 2, (b,), device=device)),
            "loss_fn": nn.functional.cross_entropy}
