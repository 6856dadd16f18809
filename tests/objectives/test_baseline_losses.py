# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""BC, BCO(0) and IIDM losses on a linear system whose actions are identifiable from transitions."""
from __future__ import annotations

import torch

from aime_torchrl.data import LinearControlSystem, make_window_buffer
from aime_torchrl.modules import make_stack_module, stack_window
from aime_torchrl.objectives import BCLoss, ForwardModelLoss, IIDMLoss
from aime_torchrl.trainers import train_offline

DIMS = {"observation": 4}


def batches(data, frames=1, batch_size=64):
    buffer = make_window_buffer(data, horizon=frames, batch_size=batch_size)
    return lambda: stack_window(buffer.sample(), ["observation"])


def test_stack_window_layout():
    system = LinearControlSystem()
    data = system.rollout(2, 10, policy="random", seed=0)
    sample = stack_window(data[:, 2:5], ["observation"])  # windows of 3 steps ending at t = 4
    torch.testing.assert_close(sample["stack", "observation"], data["observation"][:, 2:5])
    torch.testing.assert_close(sample["transition", "observation"][:, :3], data["observation"][:, 2:5])
    torch.testing.assert_close(sample["transition", "observation"][:, 3], data["next", "observation"][:, 4])
    torch.testing.assert_close(sample["next", "observation"], data["next", "observation"][:, 4])
    torch.testing.assert_close(sample["action"], data["action"][:, 4])


def test_idm_recovers_actions_and_bco_labels_the_demonstrations():
    system = LinearControlSystem(seed=1)
    play = system.rollout(64, 40, policy="random", seed=1)
    demos = system.rollout(16, 40, policy="expert", seed=2)
    idm = make_stack_module(DIMS, [], 2, frames=2, in_group="transition", hidden=64)
    loss = BCLoss(idm)
    sample = batches(play)
    before = loss(sample())["loss_action"].item()
    train_offline(loss, sample, torch.optim.Adam(loss.parameters(), 3e-3), steps=400, progress=False)
    test = stack_window(demos.reshape(-1, 1), ["observation"])
    with torch.no_grad():
        labels = idm(test.exclude("action"))["action"]
    mse = (labels - test["action"]).pow(2).mean().item()
    assert mse < 0.05 * before, (mse, before)  # the IDM transfers to the expert's action distribution

    policy = make_stack_module(DIMS, [], 2, frames=1, hidden=64)
    bco = BCLoss(policy)
    with torch.no_grad():
        labelled = test.set("action", labels)
    train_offline(bco, lambda: labelled[torch.randint(len(labelled), (64,))], torch.optim.Adam(bco.parameters(), 3e-3),
                  steps=300, progress=False)
    with torch.no_grad():
        acted = policy(test.exclude("action"))["action"]
    expert = system.expert(test["stack", "observation"][:, -1])
    assert (acted - expert).pow(2).mean() < 0.1 * expert.pow(2).mean()


def test_iidm_trains_the_policy_only_and_inverts_the_model():
    system = LinearControlSystem(seed=1)
    play = system.rollout(64, 40, policy="random", seed=1)
    demos = system.rollout(16, 40, policy="expert", seed=2)
    model = make_stack_module(DIMS, [], 4, frames=1, extra_keys=["action"], extra_dim=2, out_key="prediction",
                              squash=False, hidden=64)
    fm = ForwardModelLoss(model, ["observation"])
    train_offline(fm, batches(play), torch.optim.Adam(fm.parameters(), 3e-3), steps=400, progress=False)
    model.requires_grad_(False)
    frozen = [p.clone() for p in model.parameters()]

    policy = make_stack_module(DIMS, [], 2, frames=1, hidden=64)
    loss = IIDMLoss(model, policy, ["observation"])
    assert {id(p) for p in loss.parameters()} == {id(p) for p in policy.parameters()}
    demo_batches = batches(demos)
    test = stack_window(demos.reshape(-1, 1), ["observation"])
    expert = test["action"]
    with torch.no_grad():
        before = (policy(test.exclude("action"))["action"] - expert).pow(2).mean()
    train_offline(loss, lambda: demo_batches().exclude("action"), torch.optim.Adam(loss.parameters(), 3e-3),
                  steps=300, progress=False)
    with torch.no_grad():
        after = (policy(test.exclude("action"))["action"] - expert).pow(2).mean()
    assert after < 0.2 * before, (after, before)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.parameters()))
