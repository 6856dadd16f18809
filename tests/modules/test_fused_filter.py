# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The fused filter node: its backward is autograd's (gradcheck), and the RSSM's filter through it
gives the generic loop's rows and parameter gradients."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl.modules import RSSMWorldModel
from aime_torchrl.modules.core import WorldModelCore
from aime_torchrl.modules.fused_filter import FusedRSSMFilter


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_backward_passes_gradcheck(layers):
    torch.manual_seed(0)
    steps, batch, belief, state, width = 3, 2, 5, 3, 4
    f64 = dict(dtype=torch.float64, requires_grad=True)
    sizes = [width] * layers + [state]
    stacked = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        stacked += [torch.randn(2, fan_out, fan_in, **f64), torch.randn(2, fan_out, **f64)]
    inputs = (torch.randn(steps, batch, 3 * belief, **f64), torch.randn(steps, batch, 2 * width, **f64),
              torch.randn(steps, batch, state, dtype=torch.float64), torch.randn(batch, state, **f64),
              torch.randn(batch, belief, **f64), torch.randn(3 * belief, state, **f64),
              torch.randn(3 * belief, belief, **f64), torch.randn(3 * belief, **f64),
              torch.randn(2 * width, belief, **f64), 0.1, *stacked)
    assert torch.autograd.gradcheck(FusedRSSMFilter.apply, inputs)


def rows_and_grads(model, observe, observations, actions, **kwargs):
    model.zero_grad()
    core = model.core
    embeddings = core.encode({"observation": observations}, actions.shape[:-1])
    rows = observe(core, embeddings, actions, **kwargs)
    weights = {key: torch.linspace(-1, 1, rows[key].numel(), dtype=torch.float64).view_as(rows[key])
               for key in ("state", "belief", "next_state", "next_belief")}
    loss = sum((rows[key] * w).sum() for key, w in weights.items())
    (loss + rows["posterior"][0].square().sum() + rows["posterior"][1].log().sum()).backward()
    return rows, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


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


def test_other_transitions_and_posteriors_keep_the_generic_loop():
    assert not RSSMWorldModel.from_config({"observation": 3}, 2, variant="rssmo", belief_dim=8, state_dim=4,
                                          hidden=6).core.fused  # its input layer and sigmoid std
    assert not RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=8, state_dim=4, hidden=6,
                                          norm=True).core.fused  # LayerNorm in the MLPs
