# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The fused filter node: its backward is autograd's (gradcheck), and the RSSM's filter through it
gives the generic loop's rows and parameter gradients."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl.modules import make_actor, make_policy, RSSMWorldModel
from aime_torchrl.modules.core import WorldModelCore
from aime_torchrl.modules.fused_filter import fusable_policy, FusedRSSMFilter
from conftest import filter_rows_and_grads


def pair_layers(sizes: list[int]) -> list[torch.Tensor]:
    stacked = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        stacked += [torch.randn(2, fan_out, fan_in, dtype=torch.float64, requires_grad=True),
                    torch.randn(2, fan_out, dtype=torch.float64, requires_grad=True)]
    return stacked


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("acting", [False, True])
def test_backward_passes_gradcheck(layers, acting):
    """Every input's gradient, the policy's (phase 2) included, against finite differences."""
    torch.manual_seed(0)
    steps, batch, belief, state, action, width = 3, 2, 5, 3, 2, 4
    f64 = dict(dtype=torch.float64, requires_grad=True)
    inputs = [torch.randn(steps, batch, 3 * belief, **f64), torch.randn(steps, batch, 2 * width, **f64),
              torch.randn(steps, batch, state, dtype=torch.float64), torch.randn(batch, state, **f64),
              torch.randn(batch, belief, **f64), torch.randn(3 * belief, state, **f64),
              torch.randn(3 * belief, belief, **f64), torch.randn(3 * belief, **f64),
              torch.randn(2 * width, belief, **f64), *pair_layers([width] * layers + [state])]
    policy = None
    if acting:
        policy = (0.05, layers, 1.0 - 1e-12, True)
        inputs += [torch.randn(3 * belief, action, **f64), torch.randn(steps, batch, action, dtype=torch.float64),
                   torch.randn(2 * width, belief + state, **f64), torch.randn(2 * width, **f64),
                   *pair_layers([width] * layers + [action])]
    assert torch.autograd.gradcheck(lambda *x: FusedRSSMFilter.apply((0.1, layers, policy), *x), inputs)


def rows_and_grads(model, observe, observations, actions, *others, **kwargs):
    """The rows and parameter gradients for a loss on every row (the Gaussian posterior's both parameters)."""
    def extra_loss(rows):
        posterior = rows["posterior"][0].square().sum() + rows["posterior"][1].log().sum()
        return posterior + rows["action"].square().sum() + sum(v.sum() for v in rows["outputs"].values())

    return filter_rows_and_grads(model, observe, observations, actions, *others, extra_loss=extra_loss, **kwargs)


@pytest.mark.parametrize("sample", [True, False])
def test_the_rssm_filter_equals_the_generic_loop(sample):
    """A batch of 5, 6 rows, given initial latents: the same rows and parameter gradients."""
    torch.manual_seed(0)
    model = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=8, state_dim=4, hidden=6).double()
    assert model.core.fused
    observations, actions = torch.randn(5, 6, 3, dtype=torch.float64), torch.randn(5, 6, 2, dtype=torch.float64)
    start = dict(state=torch.randn(5, 4, dtype=torch.float64), belief=torch.randn(5, 8, dtype=torch.float64))
    noise = [torch.randn(5, 4, dtype=torch.float64) for _ in range(6)]
    loop, loop_grads = rows_and_grads(model, WorldModelCore.observe, observations, actions, noise=noise,
                                      sample=sample, **start)
    fused, fused_grads = rows_and_grads(model, type(model.core).observe, observations, actions, noise=noise,
                                        sample=sample, **start)
    for key in ("state", "belief", "action", "next_state", "next_belief"):
        torch.testing.assert_close(fused[key], loop[key])
    for a, b in zip(fused["posterior"], loop["posterior"]):
        torch.testing.assert_close(a, b)
    assert fused_grads.keys() == loop_grads.keys() and len(fused_grads) > 10  # encoder, GRU, both posterior MLPs
    for name, grad in loop_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)


def test_a_policy_acting_inside_the_filter_equals_the_generic_loop():
    """AIME's phase 2: make_policy's actor acts from row 1 with its noise; the same rows, actions,
    locs and scales, and the same gradients for the policy and the world model."""
    torch.manual_seed(0)
    model = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=8, state_dim=4, hidden=6).double()
    policy = make_policy(4, 8, 2, hidden=5, keys=model.keys).double()
    assert fusable_policy(policy, model.keys.belief, model.keys.state)
    assert not fusable_policy(make_policy(4, 8, 2, low=-2.0, high=2.0), model.keys.belief, model.keys.state)
    observations, actions = torch.randn(5, 6, 3, dtype=torch.float64), torch.zeros(5, 6, 2, dtype=torch.float64)
    noise = [torch.randn(5, 4, dtype=torch.float64) for _ in range(6)]
    actor = make_actor(policy, model.keys, noise=[torch.randn(5, 2, dtype=torch.float64) for _ in range(6)])
    loop, loop_grads = rows_and_grads(model, WorldModelCore.observe, observations, actions, policy, noise=noise,
                                      actor=actor)
    fused, fused_grads = rows_and_grads(model, type(model.core).observe, observations, actions, policy, noise=noise,
                                        actor=actor)
    for key in ("state", "belief", "action", "next_state", "next_belief"):
        torch.testing.assert_close(fused[key], loop[key])
    assert fused["outputs"].keys() == loop["outputs"].keys() == {"loc", "scale"}
    for key, value in loop["outputs"].items():
        torch.testing.assert_close(fused["outputs"][key], value)
    assert fused_grads.keys() == loop_grads.keys() and any(name.startswith("1.") for name in loop_grads)
    for name, grad in loop_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)


def test_other_transitions_and_posteriors_keep_the_generic_loop():
    assert not RSSMWorldModel.from_config({"observation": 3}, 2, variant="rssmo", belief_dim=8, state_dim=4,
                                          hidden=6).core.fused  # its input layer and sigmoid std
    assert not RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=8, state_dim=4, hidden=6,
                                          norm=True).core.fused  # LayerNorm in the MLPs
