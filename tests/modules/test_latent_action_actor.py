# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""LatentActionFilteringActor in a real env: the policy's real action is executed, and its latent action
g(a) carried to the next filter step."""
from __future__ import annotations

import torch

from aime_torchrl.envs import make_env, SENSOR_DIMS, SENSORS
from aime_torchrl.modules import LatentActionFilteringActor, LatentActionWorldModel, make_policy


def test_real_actions_are_executed_and_their_latents_carried():
    dims = {k: SENSOR_DIMS["walker"][k] for k in SENSORS["walker"]["mdp"]}
    model = LatentActionWorldModel.from_config(dims, 6, latent_action_dim=3, belief_dim=16, state_dim=4, hidden=16)
    actor = LatentActionFilteringActor(model, make_policy(4, 16, 6, hidden=16))
    env = make_env("walker", "walk", "mdp", seed=0).append_transform(actor.make_env_transform(0))
    with torch.no_grad():
        rollout = env.rollout(6, actor)
    latent, action = rollout["latent_action"], rollout["action"]
    assert latent.shape == (6, 3) and action.shape == (6, 6) and action.abs().max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(latent, model.encode_actions(action))
    torch.testing.assert_close(rollout["next", "prev_action"], latent)  # the next filter step reads u = g(a)
    torch.testing.assert_close(rollout["prev_action"][1:], latent[:-1])
    assert (rollout["prev_action"][0] == 0).all()
