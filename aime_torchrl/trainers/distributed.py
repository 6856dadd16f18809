# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Data-parallel training with PyTorch's own engine: a process group from torchrun's environment,
per-rank sampling seeds, the global batch split across ranks, the losses wrapped in DDP."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run (one process, rank 0 of 1, without torchrun).

    Attributes:
        rank (int): this process's rank. local_rank (int): its rank on this machine.
        world_size (int): the number of processes.
        device (torch.device): the device this rank trains on (``cuda:<local_rank>`` on GPUs).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, checkpoints, records videos and writes results."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's sampling seed: ``seed`` on rank 0, distinct on the others (each rank draws
        other windows; the weights start equal anyway: DDP broadcasts rank 0's)."""
        return seed + 104_729 * self.rank

    def local_batch_size(self, batch_size: int, *, key: str = "batch_size") -> int:
        """This rank's share of the global ``batch_size`` (the config's ``key``, named in the error)."""
        if batch_size % self.world_size:
            raise ValueError(f"{key}={batch_size} is the global batch, split across {self.world_size} ranks: pass a "
                             f"multiple of {self.world_size}.")
        return batch_size // self.world_size

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank calls it: e.g. a signal one rank received,
        so that all stop after the same step); ``flag`` itself in one process."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def share(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (every rank calls it), e.g. its run folder."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather(self, value: object) -> list[object]:
        """Every rank's ``value``, in rank order, on every rank (every rank calls it), e.g. their random states;
        ``[value]`` in one process."""
        if not self.enabled:
            return [value]
        values: list[object] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def spread(self, function: Callable[[list], list], items: Sequence) -> list:
        """``function(items)`` computed in shares (every rank calls it): rank r takes every world_size-th
        item from the r-th, and every rank gets all the results back in the order of ``items``, as one
        process computing ``function(items)`` would (e.g. evaluation episodes by their env seeds).

        Examples:
            >>> DistributedContext().spread(lambda seeds: [10 * s for s in seeds], [1, 2, 3])
            [10, 20, 30]
        """
        mine = list(items)[self.rank :: self.world_size]
        shares = self.gather(function(mine) if mine else [])
        return [shares[i % self.world_size][i // self.world_size] for i in range(len(items))]

    def child_env(self) -> dict[str, str]:
        """The environment for a child process that every rank starts (another example, say): on a
        data-parallel run the children form a run of their own, on a free port of rank 0's machine with
        their own store (every rank calls it); this process's environment otherwise."""
        env = dict(os.environ)
        if self.enabled:
            port = None
            if self.is_main:
                with socket.socket() as probe:
                    probe.bind(("", 0))
                    port = probe.getsockname()[1]
            env.update(MASTER_PORT=str(self.share(port)), TORCHELASTIC_USE_AGENT_STORE="False")
        return env

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` (e.g. a loss module: its trained parameters) in DDP on a data-parallel run,
        gradients averaged across ranks in the backward; itself otherwise."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)


def init_distributed(device: torch.device | str = "cpu", *, timeout_s: float = 300.0) -> DistributedContext:
    """The process group of a ``torchrun`` launch (its ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``): nccl on
    CUDA, gloo on a CPU; a no-op (rank 0 of 1) without torchrun. A rank that waits longer than
    ``timeout_s`` for the others (one died) fails with an error instead of hanging.

    Examples:
        >>> init_distributed("cpu")   # not under torchrun
        DistributedContext(rank=0, local_rank=0, world_size=1, device=device(type='cpu'))
    """
    device = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)
