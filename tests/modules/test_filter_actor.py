# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The test-time filtering actor: same latents as the training filter, TorchRL rollouts and collectors."""
from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs import InitTracker
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl.envs import make_env, SENSOR_DIMS
from aime_torchrl.modules import FilteringActor, make_policy, RSSMWorldModel


def walker_actor(**kwargs) -> FilteringActor:
    wm = RSSMWorldModel.from_config(SENSOR_DIMS["walker"], 6, belief_dim=16, state_dim=4, hidden=16)
    return FilteringActor(wm, make_policy(4, 16, 6, hidden=16), **kwargs)


def test_actor_filters_like_the_training_rollout():
    actor = walker_actor()
    env = make_env("walker", "stand", seed=0).append_transform(actor.make_tensordict_primer())
    torch.manual_seed(1)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(20, actor)
    assert (rollout["belief"][0] == 0).all() and (rollout["prev_action"][0] == 0).all()
    torch.testing.assert_close(rollout["prev_action"][1:], rollout["action"][:-1])
    # The world model filtering the executed episode from the zero state, with the same noise draws.
    torch.manual_seed(1)
    with torch.no_grad():
        frames = actor.world_model(actor.world_model.to_frames(rollout[None]))
    torch.testing.assert_close(frames["next", "belief"][0, :-1], rollout["next", "belief"])
    torch.testing.assert_close(frames["next", "state"][0, :-1], rollout["next", "state"])
    # The action is the policy's mean action at the filtered state.
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        acted = actor.policy(TensorDict({"belief": rollout["next", "belief"], "state": rollout["next", "state"]}, [20]))
    torch.testing.assert_close(acted["action"], rollout["action"])


def test_is_init_resets_the_state_and_a_collector_runs_it():
    actor = walker_actor(sample_posterior=False)
    env = make_env("walker", "stand", seed=0).append_transform(actor.make_tensordict_primer())
    env = env.append_transform(InitTracker())
    td = env.reset()
    td.update({"belief": torch.ones(16), "state": torch.ones(4), "prev_action": torch.ones(6)})
    fresh = env.reset()
    with torch.no_grad():
        torch.testing.assert_close(actor(td.clone())["next", "belief"], actor(fresh)["next", "belief"])
    collector = Collector(env, actor, frames_per_batch=30, total_frames=60)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2 and batches[0]["next", "belief"].shape == (30, 16)
    assert not (batches[1]["belief"][0] == 0).all()  # the state is carried across batches
