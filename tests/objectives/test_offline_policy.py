# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Offline RL in imagination: the imagination env, OfflinePolicyLoss (the frozen world model, where
each loss sends its gradient, the behaviour term, return improvement) and RewardLoss."""
from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.objectives import SoftUpdate

from aime_torchrl.modules import (LATENT_ACTION_KEYS, LatentKeys, make_imagination_env, make_mlp, make_policy,
                                  make_reward_model, RSSMWorldModel)
from aime_torchrl.objectives import OfflinePolicyLoss, RewardLoss
from aime_torchrl.trainers import total_loss

SIZES = dict(belief_dim=16, state_dim=4, hidden=16)


def setup(behaviour_scale: float = 1.0, reward: TensorDictModule | None = None, **policy_kwargs):
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config({"observation": 3}, 2, **SIZES)  # trainable: the loss must leave it alone
    reward = make_reward_model(wm, hidden=16) if reward is None else reward
    actor = make_policy(4, 16, 2, hidden=16, **policy_kwargs)
    value = TensorDictModule(make_mlp(20, 1, 16), in_keys=["belief", "state"], out_keys=["state_value"])
    loss = OfflinePolicyLoss(actor, value, make_imagination_env(wm, reward), imagination_horizon=5,
                             behaviour_scale=behaviour_scale)
    starts = TensorDict({"belief": torch.randn(32, 16).tanh(), "state": torch.randn(32, 4),
                         "behaviour_action": torch.full((32, 2), 0.5)}, [32])
    return wm, reward, actor, value, loss, starts


def train(loss, starts, steps: int, lr: float = 3e-3) -> None:
    optimizer = torch.optim.Adam(loss.policy_parameters(), lr=lr)
    slow = SoftUpdate(loss.value_loss, tau=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        total_loss(loss(starts)).backward()
        optimizer.step()
        slow.step()


def test_each_loss_trains_its_own_network_and_the_model_stays_frozen():
    wm, reward, actor, value, loss, starts = setup()
    out = loss(starts)
    assert set(out.keys()) >= set(loss.out_keys) and all(torch.isfinite(v) for v in out.values())
    assert {id(p) for p in loss.policy_parameters()} == {id(p) for p in [*actor.parameters(), *value.parameters()]}
    out["loss_actor"].backward(retain_graph=True)  # the return flows back through the imagined states into the policy
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in value.parameters())  # the critic is held out of the actor's loss
    actor.zero_grad()
    out["loss_value"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in actor.parameters())
    assert all(p.grad is not None for p in value.parameters())
    actor.zero_grad()
    value.zero_grad()
    total_loss(loss(starts)).backward()
    assert all(p.grad is None for p in [*wm.parameters(), *reward.parameters()])  # the env's modules are held out
    assert all(p.requires_grad for p in [*wm.parameters(), *reward.parameters()])  # and given back as they were


def test_the_policy_stage_resumes_exactly_from_its_saved_state():
    """What examples/lawm_dmc.py checkpoints (policy, critic with its slow copy, return normaliser,
    optimiser, random state) is all the stage's state: 2 steps, a save, 1 step in a fresh setup = 3 steps."""
    def trainer(loss):
        optimizer = torch.optim.Adam(loss.policy_parameters(), lr=3e-3)
        return optimizer, SoftUpdate(loss.value_loss, tau=0.05)

    def step(loss, optimizer, slow, starts):
        optimizer.zero_grad()
        total_loss(loss(starts)).backward()
        optimizer.step()
        slow.step()

    def state(loss):
        return {"policy": loss.actor, "value_loss": loss.value_loss, "return_norm": loss.actor_loss.retnorm}

    _, _, _, _, loss, starts = setup()
    optimizer, slow = trainer(loss)
    for _ in range(2):
        step(loss, optimizer, slow, starts)
    saved = {k: copy.deepcopy(m.state_dict()) for k, m in state(loss).items()}
    saved_optimizer, saved_rng = copy.deepcopy(optimizer.state_dict()), torch.get_rng_state()
    step(loss, optimizer, slow, starts)

    _, _, _, _, resumed, _ = setup()
    resumed_optimizer, resumed_slow = trainer(resumed)
    for key, module in state(resumed).items():
        module.load_state_dict(saved[key])
    resumed_optimizer.load_state_dict(saved_optimizer)
    torch.set_rng_state(saved_rng)
    step(resumed, resumed_optimizer, resumed_slow, starts)
    for key, module in state(loss).items():
        torch.testing.assert_close(state(resumed)[key].state_dict(), module.state_dict())


class FirstBelief(torch.nn.Module):
    """A reward the policy can steer: the first unit of the GRU's belief."""

    def forward(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return belief[..., :1]


def test_the_policy_improves_the_imagined_return():
    reward = TensorDictModule(FirstBelief(), in_keys=["belief", "state"], out_keys=["reward"])
    _, _, _, _, loss, starts = setup(behaviour_scale=0.0, reward=reward)
    first = loss(starts)["imagined_reward"]
    train(loss, starts, 25, lr=1e-2)
    assert loss(starts)["imagined_reward"] > first + 0.1


def test_the_behaviour_term_pulls_the_policy_to_the_data_and_respects_the_box():
    _, _, actor, _, loss, starts = setup(behaviour_scale=10.0)
    out = loss(starts)
    torch.testing.assert_close(out["loss_behaviour"].detach(), 10 * out["behaviour_nll"])

    def distance_after_training(loss, actor) -> float:
        train(loss, starts, 20, lr=1e-2)
        with torch.no_grad():
            return (actor.get_dist(starts.select("belief", "state")).deterministic_sample - 0.5).abs().mean().item()

    free = setup(behaviour_scale=0.0)  # the same policy trained without the term drifts with the return alone
    assert distance_after_training(loss, actor) < 0.5 * distance_after_training(free[4], free[2])
    _, _, _, _, boxed, _ = setup(low=torch.tensor([-2.0, 0.0]), high=torch.tensor([2.0, 1.0]))
    inside = boxed._inside(torch.tensor([[3.0, -1.0], [0.5, 0.5]]))
    assert inside[0, 0] < 2 and inside[0, 1] > 0 and inside[1].tolist() == [0.5, 0.5]
    latent_keys = LatentKeys.of(LATENT_ACTION_KEYS)  # a latent policy: the loss must be told the key it writes
    latent = OfflinePolicyLoss(make_policy(4, 16, 2, hidden=16, keys=latent_keys, low=-2.0, high=2.0), boxed.value,
                               boxed.actor_loss.model_based_env)
    with pytest.raises(KeyError, match="loss.set_keys\\(action='latent_action'\\)"):
        latent._inside(torch.zeros(1, 2))
    latent.set_keys(action=latent_keys.action)
    assert latent._inside(torch.tensor([[5.0, 0.0]]))[0, 0] == pytest.approx(2 - 4e-3)
    with pytest.raises(ValueError, match="behaviour_scale must be non-negative"):
        setup(behaviour_scale=-1.0)


def test_the_reward_model_fits_rewards_of_the_next_latents():
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config({"observation": 3}, 2, **SIZES)
    loss = RewardLoss(make_reward_model(wm, hidden=32))
    batch = TensorDict({("next", "belief"): torch.randn(256, 16), ("next", "state"): torch.randn(256, 4)}, [256])
    batch.set(("next", "reward"), batch["next", "state"].sum(-1, keepdim=True))
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    first = loss(batch)["loss_reward"].item()
    for _ in range(300):
        optimizer.zero_grad()
        loss(batch)["loss_reward"].backward()
        optimizer.step()
    assert loss(batch)["loss_reward"].item() < 0.05 * first


def test_imagination_runs_on_any_core_and_needs_dreamer_env_names():
    """TorchRL's DreamerV3 world model imagines through its own core (categorical states, one-hot samples);
    latents renamed away from DreamerEnv's "state"/"belief" are refused naming them."""
    wm = RSSMWorldModel.from_config({"observation": 3}, 2, variant="dreamerv3", belief_dim=16, hidden=16, categoricals=2,
                                    classes=4, blocks=2, vector_encoder=16)
    env = make_imagination_env(wm, make_reward_model(wm, hidden=16))
    start = TensorDict({"state": torch.zeros(5, wm.state_dim), "belief": torch.zeros(5, 16)}, [5])
    with torch.no_grad():
        imagined = env.rollout(3, auto_reset=False, tensordict=env.reset(start))
    states = imagined["next", "state"].reshape(5, 3, 2, 4)
    assert imagined["next", "reward"].shape == (5, 3, 1) and bool((states.sum(-1) == 1).all())
    renamed = RSSMWorldModel.from_config({"observation": 3}, 2, keys=LatentKeys(state="z"), **SIZES)
    with pytest.raises(ValueError, match="latents are named 'state' and 'belief'.*'z'"):
        make_imagination_env(renamed, make_reward_model(renamed, hidden=16))
