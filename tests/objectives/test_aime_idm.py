# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The phase-1 IDM head and AIME with IDM (paper appendix C)."""
from __future__ import annotations

import pytest
import torch
from conftest import make_window, small_world_model
from tensordict import TensorDict

from aime_torchrl import AIMELoss, make_policy, WorldModelLoss
from aime_torchrl.trainers import train_offline


def test_phase1_idm_loss_is_the_detached_action_nll():
    wm = small_world_model(idm=True)
    window = make_window(batch=3, time=5)
    torch.manual_seed(0)
    out = WorldModelLoss(wm)(window)
    torch.manual_seed(0)
    frames = wm(wm.to_frames(window))
    inputs = TensorDict({k: frames[..., 1:].get(k) for k in ("belief", "state", ("next", "encoded_latents"))}, [3, 5])
    log_prob = wm.idm.get_dist(inputs).log_prob(window["action"].clamp(-0.999, 0.999))
    torch.testing.assert_close(out["loss_idm"], -log_prob.mean(-1).sum())  # mean over time, sum over batch
    out["loss_idm"].backward()
    assert all(p.grad is not None for p in wm.idm.parameters())
    assert all(p.grad is None for n, p in wm.named_parameters() if not n.startswith("idm."))  # inputs detached


def test_aime_with_frozen_idm_trains_the_policy_towards_the_idm():
    wm = small_world_model(idm=True)
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    loss = AIMELoss(wm, policy, use_idm=True)
    assert {id(p) for p in loss.parameters()} == {id(p) for p in policy.parameters()}
    demos = make_window(batch=8, time=6).exclude("action")
    out = loss(demos)
    assert "loss_recon" not in out.keys() and "loss_kl" not in out.keys()  # no gradient to anything: not returned
    torch.testing.assert_close(out["loss_action_kl"], out["action_kl"])
    idm_before = [p.clone() for p in wm.idm.parameters()]
    means = train_offline(loss, lambda: demos, torch.optim.Adam(loss.parameters(), 1e-2), steps=60, progress=False,
                          log_every=5)
    assert means["action_kl"][-2:].mean() < 0.5 * means["action_kl"][0]
    assert all(torch.equal(a, b) for a, b in zip(idm_before, wm.idm.parameters()))
    assert all(p.requires_grad for p in wm.parameters())  # flags given back


def test_trainable_idm_joins_the_loss_and_errors_without_idm():
    wm = small_world_model(idm=True)
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    loss = AIMELoss(wm, policy, use_idm=True, idm_trainable=True)
    params = {id(p) for p in loss.parameters()}
    assert params == {id(p) for p in [*policy.parameters(), *wm.idm.parameters()]}
    out = loss(make_window(batch=4, time=5).exclude("action"))
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in wm.idm.parameters())
    assert all(p.grad is None for n, p in wm.named_parameters() if not n.startswith("idm."))
    with pytest.raises(ValueError, match="needs a world model with an IDM"):
        AIMELoss(small_world_model(), policy, use_idm=True)
