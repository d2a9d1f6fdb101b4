"""The processes a training round runs in: one (the default), or N data-parallel ranks.

The trainer is written once against this small interface. `Ranks()` is the one-process
case, where every call is a no-op; `AccelerateRanks` wraps an `accelerate.Accelerator`
whose process group `accelerate launch` set up (gloo on CPU, NCCL on GPU), see
catalogcap/training/distributed.py. Rank 0 ("main") is the only rank that scores the dev
split, writes checkpoints and the adapter; the others train their share of every batch and
follow main's decisions (when to stop), which `share` hands them.
"""

from __future__ import annotations

from typing import Any

import torch


class Ranks:
    """One process: nothing to synchronise."""

    index = 0
    count = 1

    @property
    def main(self) -> bool:
        return self.index == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the ranks (in place where possible); the sum on every rank."""
        return tensor

    def barrier(self) -> None:
        """Wait until every rank got here."""

    def share(self, value: int) -> int:
        """Main's `value`, on every rank."""
        return value

    def same_start(self, params: list[torch.Tensor]) -> None:
        """Make every rank start from main's copy of `params`."""

    def split(self, items: list[Any]) -> list[Any]:
        """This rank's share of one global micro-batch."""
        return items


class AccelerateRanks(Ranks):
    """One of `accelerator.num_processes` data-parallel ranks."""

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.index = accelerator.process_index
        self.count = accelerator.num_processes
        self.device = accelerator.device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        on = tensor.to(self.device)
        dist.all_reduce(on, op=dist.ReduceOp.SUM)
        if on is not tensor:
            tensor.copy_(on)
        return tensor

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def share(self, value: int) -> int:
        import torch.distributed as dist

        flag = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.broadcast(flag, src=0)
        return int(flag.item())

    def same_start(self, params: list[torch.Tensor]) -> None:
        import torch.distributed as dist

        with torch.no_grad():
            for param in params:
                dist.broadcast(param.data, src=0)

    def split(self, items: list[Any]) -> list[Any]:
        # every rank gets every count-th example: shares differ by at most one
        return items[self.index::self.count]
