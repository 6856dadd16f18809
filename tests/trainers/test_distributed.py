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


def resume_worker(rank: int, port: int, folder: str, steps: int, resume: bool) -> None:
    """A run of 2 gloo ranks through start_run's Run: each rank draws its own data from its own random state."""
    from omegaconf import OmegaConf
    from tensordict import TensorDict

    from aime_torchrl.trainers import RunCheckpoint
    from aime_torchrl.trainers.hydra_run import Run

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = init_distributed("cpu", timeout_s=60)
    torch.manual_seed(context.seed(0))
    model = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    checkpoint = RunCheckpoint(folder)
    run = Run(OmegaConf.create({"seed": 0}), checkpoint.path.parent, checkpoint, torch.device("cpu"),
              resumed=checkpoint.load() if resume else None, distributed=context)
    wrapped = context.wrap(model)
    loop = run.loop("train", {"model": model}, optimizer, checkpoint_every=3, steps=steps, progress=False)
    for _ in loop:
        x = torch.randn(4, 3)  # this rank's data, from its random state
        loop.backward(TensorDict(loss_fit=(wrapped(x) - x.sum(-1, keepdim=True)).pow(2).mean()))
        optimizer.step()
    if rank == 0:
        torch.save(model.state_dict(), f"{folder}/weights.pt")
    dist.destroy_process_group()


def test_two_ranks_resume_to_the_weights_of_an_uninterrupted_run(tmp_path):
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()
    mp.spawn(resume_worker, args=(free_port(), str(tmp_path / "whole"), 6, False), nprocs=2, join=True)
    mp.spawn(resume_worker, args=(free_port(), str(tmp_path / "parts"), 3, False), nprocs=2, join=True)
    saved = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 3 and len(saved["rank_rng"]) == 2  # every rank's random state
    mp.spawn(resume_worker, args=(free_port(), str(tmp_path / "parts"), 6, True), nprocs=2, join=True)
    whole, parts = (torch.load(tmp_path / name / "weights.pt") for name in ("whole", "parts"))
    assert not torch.equal(whole["weight"], torch.zeros_like(whole["weight"]))
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=0, atol=0)
