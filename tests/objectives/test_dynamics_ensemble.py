# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The dynamics ensemble and its loss: it fits the transitions, agrees on the data and disagrees off it;
the imagination env's model-uncertainty penalty, and that it keeps a policy near the data."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.objectives import SoftUpdate

from aime_torchrl.modules import (DynamicsEnsemble, make_dynamics_ensemble, make_imagination_env, make_mlp, make_policy,
                                  make_reward_model, RSSMWorldModel)
from aime_torchrl.objectives import DynamicsEnsembleLoss, OfflinePolicyLoss
from aime_torchrl.trainers import total_loss


def world_model() -> RSSMWorldModel:
    torch.manual_seed(0)
    return RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)


def transitions(n: int = 256) -> TensorDict:
    """The data act near 0.5; the next state is a smooth function of the latents and the action."""
    batch = TensorDict({"belief": torch.randn(n, 16).tanh(), "state": torch.randn(n, 4),
                        "behaviour_action": 0.5 + 0.05 * torch.randn(n, 2)}, [n])
    batch.set(("next", "state"), 0.5 * batch["state"] + batch["behaviour_action"].sum(-1, keepdim=True))
    return batch


def fitted_ensemble(wm: RSSMWorldModel, data: TensorDict, steps: int = 300) -> TensorDictModule:
    ensemble = make_dynamics_ensemble(wm, members=4, hidden=32)
    loss = DynamicsEnsembleLoss(ensemble)
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(data)["loss_dynamics"].backward()
        optimizer.step()
    ensemble.module.calibrate(data["belief"], data["state"], data["behaviour_action"])
    ensemble.zero_grad(set_to_none=True)
    return ensemble.requires_grad_(False)


def test_the_ensemble_fits_the_transitions_and_disagrees_away_from_the_data():
    wm, data = world_model(), transitions()
    ensemble = make_dynamics_ensemble(wm, members=4, hidden=32)
    first = DynamicsEnsembleLoss(ensemble)(data)["loss_dynamics"].item()
    ensemble = fitted_ensemble(wm, data)
    out = DynamicsEnsembleLoss(ensemble)(data)
    assert out["loss_dynamics"].item() < 0.05 * first
    net = ensemble.module
    on_data = net(data["belief"], data["state"], data["behaviour_action"])
    assert on_data.shape == (256, 1) and on_data.mean().item() == pytest.approx(1.0, rel=1e-4)  # the calibrated unit
    torch.testing.assert_close(out["disagreement"], on_data.mean())
    off_data = net(data["belief"], data["state"], torch.full((256, 2), -2.0))  # actions the data never took
    assert off_data.mean() > 3 * on_data.mean()


def test_the_penalty_is_the_scaled_disagreement_of_each_imagined_transition():
    wm = world_model()
    reward = make_reward_model(wm, hidden=16)
    ensemble = make_dynamics_ensemble(wm, members=3, hidden=16)
    start = TensorDict({"state": torch.randn(5, 4), "belief": torch.randn(5, 16).tanh()}, [5])
    rollouts = {}
    for scale in (0.0, 2.5):
        env = make_imagination_env(wm, reward, uncertainty=ensemble, uncertainty_scale=scale)
        torch.manual_seed(1)  # the same random actions and prior noise
        with torch.no_grad():
            rollouts[scale] = env.rollout(4, auto_reset=False, tensordict=env.reset(start.clone()))
    plain, penalised = rollouts[0.0], rollouts[2.5]
    torch.testing.assert_close(penalised["next", "state"], plain["next", "state"])
    with torch.no_grad():
        disagreement = ensemble(penalised.select("belief", "state", "action"))["disagreement"]
    torch.testing.assert_close(penalised["next", "reward"], plain["next", "reward"] - 2.5 * disagreement)
    with pytest.raises(ValueError, match="uncertainty_scale must be non-negative"):
        make_imagination_env(wm, reward, uncertainty=ensemble, uncertainty_scale=-1.0)
    with pytest.raises(ValueError, match="at least 2 members"):
        DynamicsEnsemble(20, 2, 4, members=1)
    with pytest.raises(TypeError, match="make_dynamics_ensemble"):
        DynamicsEnsembleLoss(reward)
    # TorchRL holds the env out of the policy's gradient by its first parameter's flag: mixed flags are refused
    with pytest.raises(ValueError, match="world_model trainable, reward_model trainable, uncertainty frozen"):
        make_imagination_env(wm, reward, uncertainty=make_dynamics_ensemble(wm, members=2).requires_grad_(False))


class FirstBelief(torch.nn.Module):
    """A reward the policy can steer: the first unit of the GRU's belief."""

    def forward(self, belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return belief[..., :1]


def test_the_penalty_keeps_the_policy_near_the_data():
    """With no behaviour term, the return alone moves the policy's actions away from the data's (0.5);
    the penalised reward holds them much closer, and the frozen world model and ensemble get no gradient."""
    wm, data = world_model().requires_grad_(False), transitions()
    ensemble = fitted_ensemble(wm, data)
    reward = TensorDictModule(FirstBelief(), in_keys=["belief", "state"], out_keys=["reward"])

    def drift(scale: float) -> float:
        torch.manual_seed(0)
        actor = make_policy(4, 16, 2, hidden=16)
        value = TensorDictModule(make_mlp(20, 1, 16), in_keys=["belief", "state"], out_keys=["state_value"])
        env = make_imagination_env(wm, reward, uncertainty=ensemble, uncertainty_scale=scale)
        loss = OfflinePolicyLoss(actor, value, env, imagination_horizon=5, behaviour_scale=0.0)
        optimizer = torch.optim.Adam(loss.policy_parameters(), lr=1e-2)
        slow = SoftUpdate(loss.value_loss, tau=0.05)
        for _ in range(30):
            optimizer.zero_grad()
            total_loss(loss(data)).backward()
            optimizer.step()
            slow.step()
        assert all(p.grad is None and not p.requires_grad for p in [*ensemble.parameters(), *wm.parameters()])
        with torch.no_grad():
            return (actor.get_dist(data.select("belief", "state")).deterministic_sample - 0.5).abs().mean().item()

    assert drift(3.0) < 0.5 * drift(0.0)
