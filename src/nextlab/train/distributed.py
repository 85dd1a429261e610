"""Data-parallel pretraining under `torchrun`: the same global batch, split over processes.

Every process draws the same global batch (the data generator is seeded alike everywhere) and
trains on its own rows of it, `rank::world_size`; DistributedDataParallel averages the gradients,
so each optimizer step sees the gradient of the whole batch, as a single process would (up to the
order of the floating-point sums). Rank 0 writes checkpoints, results and the tracking run; the
others only compute. gloo on the CPU, NCCL on GPUs.

    torchrun --nproc_per_node 2 -m nextlab train --job ... --model small --tokens ... --out ...

Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op:

    >>> ranks = Ranks.from_env({})
    >>> ranks.world_size, ranks.is_main, ranks.shard(torch.arange(6).view(6, 1)).flatten().tolist()
    (1, True, [0, 1, 2, 3, 4, 5])
    >>> Ranks(rank=1, world_size=2, local_rank=1).shard(torch.arange(6).view(6, 1)).flatten().tolist()
    [1, 3, 5]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nextlab.errors import NextlabError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Ranks":
        """The process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK), or a lone process."""
        env = os.environ if env is None else env
        try:
            return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        except ValueError as err:
            raise NextlabError(f"torchrun environment: RANK / WORLD_SIZE / LOCAL_RANK are not integers ({err})") from None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch (every world_size-th, from its rank)."""
        return batch[self.rank :: self.world_size] if self.distributed else batch

    def check_batch(self, batch_size: int) -> None:
        if self.distributed and batch_size % self.world_size:
            raise NextlabError(f"train.batch_size={batch_size} does not split over {self.world_size} processes; "
                               "use a multiple of the process count")


def init(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (once) and return the device this rank computes on."""
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        device = torch.device("cuda", ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The model behind DistributedDataParallel (gradients averaged over ranks), or itself."""
    if not ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of a tensor over ranks (itself alone)."""
    if not ranks.distributed:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ranks.world_size


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def finish(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
