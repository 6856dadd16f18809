# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""LatentActionFilteringActor in a real env: the policy's latent action is decoded into the env's
action and carried to the next filter step."""
from __future__ import annotations

import torch

from aime_torchrl.envs import make_env, SENSOR_DIMS, SENSORS
from aime_torchrl.modules import LatentActionFilteringActor, LatentActionWorldModel, make_policy


def test_latent_actions_are_decoded_and_carried():
    dims = {k: SENSOR_DIMS["walker"][k] for k in SENSORS["walker"]["mdp"]}
    model = LatentActionWorldModel.from_config(dims, 6, latent_action_dim=3, belief_dim=16, state_dim=4, hidden=16)
    policy = make_policy(4, 16, 3, hidden=16, keys=model.keys, low=torch.full((3,), -2.0), high=torch.full((3,), 2.0))
    actor = LatentActionFilteringActor(model, policy)
    env = make_env("walker", "walk", "mdp", seed=0).append_transform(actor.make_env_transform(0))
    with torch.no_grad():
        rollout = env.rollout(6, actor)
    latent, action = rollout["latent_action"], rollout["action"]
    assert latent.shape == (6, 3) and action.shape == (6, 6)
    assert latent.abs().max() <= 2 and latent.abs().max() > 1  # the policy's box, not [-1, 1]
    torch.testing.assert_close(action, model.decode(latent))
    assert action.abs().max() <= 1
    torch.testing.assert_close(rollout["next", "prev_action"], latent)  # the next filter step reads u
    torch.testing.assert_close(rollout["prev_action"][1:], latent[:-1])
    assert (rollout["prev_action"][0] == 0).all()
