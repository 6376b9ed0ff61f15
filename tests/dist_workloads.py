"""Workloads for the torchrun tests (tests/test_distributed_launch.py): a tiny linear model that fails
on one rank only, as a GPU that runs out of memory or a bug on one machine would. Loaded by the
`bench` command as `dist_workloads:failing` with tests/ on PYTHONPATH."""

import os

import torch
from torch import nn


class FailsOnOneRank(nn.Module):
    def __init__(self, rank, fail, from_batch, after_calls):
        super().__init__()
        self.lin = nn.Linear(8, 2)
        self.rank, self.fail, self.from_batch, self.after_calls = rank, fail, from_batch, after_calls
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        here = int(os.environ.get("RANK", "0")) == self.rank
        if here and x.shape[0] >= self.from_batch and self.calls > self.after_calls:
            if self.fail == "exit":  # the process dies, as one killed by the kernel's OOM killer would
                os._exit(3)
            if self.fail == "oom":
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake). Tried to allocate {x.shape[0]} MiB")
            raise ValueError(f"the fake workload raised on rank {self.rank} at batch {x.shape[0]}")
        return self.lin(x)


def failing(rank: int = 1, fail: str = "oom", from_batch: int = 4, after_calls: int = 0):
    """Rank `rank` fails (`oom`, `error`, or `exit`: the process dies) in the forward pass at batches from `from_batch` on, after
    `after_calls` forward calls of each step's model (0: the first; more: in the middle of timing)."""
    return {"model": lambda: FailsOnOneRank(rank, fail, from_batch, after_calls),
            "make_batch": lambda b, device: (torch.randn(b, 8, device=device), torch.randint(0, 2, (b,), device=device)),
            "loss_fn": nn.functional.cross_entropy}
