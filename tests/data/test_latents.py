# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""posterior_latents: the layout of the transitions (root, next, reward, behaviour) for both kinds of
world model, reproducible, and refusing episodes without rewards."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl.data import LinearControlSystem, posterior_latents
from aime_torchrl.modules import LatentActionWorldModel, RSSMWorldModel

SIZES = dict(belief_dim=16, state_dim=4, hidden=16)


def episodes(n: int = 3, length: int = 7):
    data = LinearControlSystem().rollout(n, length)
    data.set(("next", "reward"), torch.randn(n, length, 1))
    return data


@pytest.mark.parametrize("latent", [False, True])
def test_transitions_chain_within_each_episode(latent):
    data = episodes()
    cls = LatentActionWorldModel if latent else RSSMWorldModel
    model = cls.from_config({"observation": 4}, 2, **SIZES)
    latents = posterior_latents(model, data)
    assert latents.batch_size == torch.Size([21])
    per_episode = latents.reshape(3, 7)
    # causality: o_4 changes the latents from the root of transition 4 (after o_4) and the next latents and
    # inferred action of transition 3 on; a_3 (read by the action-conditioned model only) the same latents
    changed = data.clone()
    if latent:
        changed["observation"][0, 4] += 1.0
        changed["next", "observation"][0, 3] += 1.0
    else:
        changed["action"][0, 3] = -changed["action"][0, 3]
    moved = posterior_latents(model, changed).reshape(3, 7)
    rows = torch.arange(7)
    expected = {"state": rows >= 4, ("next", "state"): rows >= 3,
                "behaviour_action": rows >= 3 if latent else rows == 3}  # u_3 and what follows; a_3 itself
    for key, rows_changed in expected.items():
        differs = (moved[key][0] - per_episode[key][0]).abs().amax(-1) > 0
        assert differs.tolist() == rows_changed.tolist(), key
    torch.testing.assert_close(moved[1:], per_episode[1:])  # the other episodes are untouched
    if latent:  # the inferred action's mean: tanh of q(a_t | h_t, s_t, e_{t+1})'s loc at frame t + 1, same samples
        torch.manual_seed(0)
        frames = model(model.to_frames(data))
        torch.testing.assert_close(per_episode["behaviour_action"], frames["inferred_action_loc"][:, 1:].tanh())
        torch.testing.assert_close(per_episode["state"], frames["next", "state"][:, :-1])
    else:
        torch.testing.assert_close(per_episode["behaviour_action"], data["action"])
    torch.testing.assert_close(posterior_latents(model, data), latents)  # seeded: the same samples
    chunked = posterior_latents(model, data, chunk=2).reshape(3, 7)  # two chunks: the episodes stay in order
    torch.testing.assert_close(chunked["next", "reward"], data["next", "reward"])
    assert not torch.equal(posterior_latents(model, data, seed=1)["state"], latents["state"])


def test_the_latent_model_never_reads_actions_and_rewards_are_required():
    data = episodes()
    model = LatentActionWorldModel.from_config({"observation": 4}, 2, **SIZES)
    torch.testing.assert_close(posterior_latents(model, data.exclude("action")), posterior_latents(model, data))
    with pytest.raises(KeyError, match="posterior_latents needs the episodes. rewards"):
        posterior_latents(model, data.exclude(("next", "reward")))
