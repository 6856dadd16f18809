# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The fused filter node of TorchRL's DreamerV3 RSSM: the same rows and gradients as the generic loop
through TorchRL's modules, in both phases, with and without the action's norm."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from aime_torchrl.modules import make_actor, make_policy, RSSMWorldModel
from aime_torchrl.modules.core import WorldModelCore
from aime_torchrl.modules.fused_v3_filter import fusable_v3
from conftest import filter_rows_and_grads

F64 = dict(dtype=torch.float64)


class ExactRMSNorm(nn.Module):
    """TorchRL's DreamerV3 RMS norm in the input's dtype (TorchRL's computes in float32, which would
    hide a float64 comparison's errors below its rounding)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(norm.weight.detach().clone()), norm.eps

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(value, (self.weight.shape[0],), self.weight, self.eps)


def v3_model(action_norm: bool) -> RSSMWorldModel:
    """A tiny V3 world model in float64 with exact norms and every parameter moved off its init."""
    model = RSSMWorldModel.from_config({"observation": 3}, 2, variant="dreamerv3", belief_dim=8, hidden=6,
                                       categoricals=3, classes=4, vector_encoder=5, action_norm=action_norm).double()
    rnn, head = model.core.transition.rnn, model.core.posterior.obs_rnn_to_post_projector
    for sequential in (rnn.belief_projection, rnn.state_projection, rnn.action_projection, rnn.hidden_layers, head):
        if not isinstance(sequential[1], nn.Identity):
            sequential[1] = ExactRMSNorm(sequential[1])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    model.core.fused = True
    assert model.core.fused
    return model


def rows_and_grads(model, observe, observations, actions, *others, **kwargs):
    """The rows and parameter gradients for a loss on every row (the posterior's logits, the actions and
    the actor's outputs nonlinearly)."""
    def extra_loss(rows):
        outputs = sum(v.square().sum() for v in rows["outputs"].values())
        return rows["posterior"][0].pow(3).sum() + rows["action"].pow(3).sum() + outputs

    return filter_rows_and_grads(model, observe, observations, actions, *others, extra_loss=extra_loss, **kwargs)


def assert_same(fused, loop, fused_grads, loop_grads):
    for key in ("state", "belief", "action", "next_state", "next_belief"):
        torch.testing.assert_close(fused[key], loop[key])
    torch.testing.assert_close(fused["posterior"][0], loop["posterior"][0])
    assert fused["outputs"].keys() == loop["outputs"].keys()
    for key, value in loop["outputs"].items():
        torch.testing.assert_close(fused["outputs"][key], value)
    assert fused_grads.keys() == loop_grads.keys()
    for name, grad in loop_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)


@pytest.mark.parametrize("action_norm", [True, False])
def test_the_v3_filter_equals_the_generic_loop(action_norm):
    """Phase 1: a batch of 5, 6 rows, given initial latents, the data's actions (two beyond the
    block GRU's bound): the same rows, one-hot samples and logits, and the same gradients of every
    parameter (the straight-through sample's included)."""
    torch.manual_seed(0)
    model = v3_model(action_norm)
    observations, actions = torch.randn(5, 6, 3, **F64), torch.randn(5, 6, 2, **F64)
    start = dict(state=torch.randn(5, 12, **F64), belief=torch.randn(5, 8, **F64))
    noise = [torch.randn(5, 3, **F64) for _ in range(6)]
    loop, loop_grads = rows_and_grads(model, WorldModelCore.observe, observations, actions, noise=noise, **start)
    fused, fused_grads = rows_and_grads(model, type(model.core).observe, observations, actions, noise=noise, **start)
    assert_same(fused, loop, fused_grads, loop_grads)
    assert len(loop_grads) > 20  # the encoder, the block GRU, the posterior
    assert loop_grads["0.rollout.transition.module.rnn.action_projection.0.weight"].abs().sum() > 0
    assert (fused["next_state"].view(5, 6, 3, 4).sum(-1) - 1).abs().max() < 1e-12  # one-hot forward


@pytest.mark.parametrize("action_norm", [True, False])
def test_a_policy_acting_inside_the_v3_filter_equals_the_generic_loop(action_norm):
    """AIME's phase 2: make_policy's actor acts from row 1 with its noise; the same rows, actions, locs
    and scales, and the same gradients for the policy and the world model."""
    torch.manual_seed(0)
    model = v3_model(action_norm)
    policy = make_policy(12, 8, 2, hidden=5, keys=model.keys).double()
    observations, actions = torch.randn(5, 6, 3, **F64), torch.randn(5, 6, 2, **F64).clamp(-1, 1)
    noise = [torch.randn(5, 3, **F64) for _ in range(6)]
    policy_noise = [torch.randn(5, 2, **F64) for _ in range(6)]
    results = [
        rows_and_grads(model, observe, observations, actions, policy, noise=noise,
                       actor=make_actor(policy, model.keys, noise=policy_noise))
        for observe in (type(model.core).observe, WorldModelCore.observe)
    ]
    (fused, fused_grads), (loop, loop_grads) = results
    assert_same(fused, loop, fused_grads, loop_grads)
    assert fused["outputs"].keys() == {"loc", "scale"} and any(name.startswith("1.") for name in loop_grads)


def test_other_v3_modules_keep_the_generic_loop():
    """A posterior head or hidden stack of another shape, or a norm that is not an RMS norm, is not fused."""
    model = RSSMWorldModel.from_config({"observation": 3}, 2, variant="dreamerv3", belief_dim=8, hidden=6,
                                       categoricals=3, classes=4, vector_encoder=5)
    core = model.core
    assert fusable_v3(core.transition, core.posterior)
    core.posterior.obs_rnn_to_post_projector[1] = nn.LayerNorm(6)
    assert not fusable_v3(core.transition, core.posterior)
    core.fused = True
    assert not core.fused
