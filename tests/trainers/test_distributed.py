# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Data parallel on CPU (gloo, 2 processes): one step of each phase with 2 ranks x B/2 windows gives the
weights of one process with B windows, and the ranks sample different windows."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import LinearControlSystem, make_window_buffer
from aime_torchrl.trainers import GuardedBackward, init_distributed
from aime_torchrl.trainers.distributed import DistributedContext

BATCH = 8


def setup(phase: str):
    """The same model and optimiser in every process, and the global batch."""
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
    if phase == "phase1":
        loss, params = WorldModelLoss(wm), list(wm.parameters())
    else:
        policy = make_policy(4, 16, 2, hidden=16)
        loss, params = AIMELoss(wm, policy), list(policy.parameters())
    batch = make_window_buffer(LinearControlSystem().rollout(6, 20), horizon=5, batch_size=BATCH).sample()
    if phase == "phase2":
        batch = batch.exclude("action")
    return loss, params, batch


def step(loss, params, batch) -> list[torch.Tensor]:
    optimizer = torch.optim.Adam(params, lr=1e-2)
    GuardedBackward(params).backward(loss(batch), 0)
    optimizer.step()
    return [p.detach().clone() for p in params]


def worker(rank: int, port: int, phase: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = init_distributed("cpu", timeout_s=60)
    torch.randn_like = torch.zeros_like  # the posterior's and the policy's noise: their mean, in every process
    loss, params, batch = setup(phase)
    local = context.local_batch_size(BATCH)
    weights = step(context.wrap(loss), params, batch[rank * local:(rank + 1) * local])
    torch.manual_seed(context.seed(0))
    windows = make_window_buffer(LinearControlSystem().rollout(6, 20), horizon=5, batch_size=4).sample()
    torch.save({"weights": weights, "windows": windows["observation"]}, f"{out}.{rank}")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("phase", ["phase1", "phase2"])
def test_two_ranks_with_half_batches_equal_one_process(phase, tmp_path, monkeypatch):
    out = str(tmp_path / "rank")
    mp.spawn(worker, args=(free_port(), phase, out), nprocs=2, join=True)
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    expected = step(*setup(phase))
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    for rank in ranks:
        for p, q in zip(rank["weights"], expected):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ranks[0]["windows"], ranks[1]["windows"])  # each rank samples its own windows


def test_without_torchrun_it_is_one_process_and_checks_the_batch():
    context = init_distributed("cpu")
    assert not context.enabled and context.is_main and context.seed(3) == 3
    net = torch.nn.Linear(2, 2)
    assert context.wrap(net) is net
    with pytest.raises(ValueError, match="batch_size=5 is the global batch, split across 2 ranks"):
        DistributedContext(world_size=2).local_batch_size(5)
