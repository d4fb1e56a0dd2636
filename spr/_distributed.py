"""What the pipeline needs to run under ``torchrun`` (DistributedDataParallel); no-ops alone.

Every rank holds the whole (in-memory) dataset and draws the same batch order; rank ``r`` of
``w`` trains on batches ``r, r + w, r + 2w, ...`` (so one optimiser step sees ``w`` batches).
Rank 0 alone writes files; decisions that must agree across ranks (the threshold) are taken on
rank 0 and broadcast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel when running distributed, else itself."""
    if rank_and_world()[1] == 1:
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class RankBatches:
    """This rank's share of a loader: every ``world``-th batch, the same count on every rank."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.rank, self.world = rank_and_world()
        if len(loader) < self.world:
            raise ValueError(
                f"{len(loader)} batches cannot be shared by {self.world} processes: use more "
                "samples or a smaller batch size"
            )

    def __len__(self) -> int:
        return len(self.loader) // self.world

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.world == 1:
            yield from self.loader
            return
        taken = 0
        for index, batch in enumerate(self.loader):
            if index % self.world == self.rank:
                yield batch
                taken += 1
                if taken == len(self):
                    return
