# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The adversarial surrogate reward: the discriminator learns to tell the demonstrations' latents
apart, and the reward it gives is higher on them."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from aime_torchrl.modules import make_adversarial_reward, make_discriminator, RSSMWorldModel
from aime_torchrl.objectives import AdversarialRewardLoss


def test_the_discriminator_separates_and_rewards_the_demonstrations():
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=8, state_dim=4, hidden=16)
    discriminator = make_discriminator(wm, hidden=32)
    loss = AdversarialRewardLoss(discriminator, gradient_penalty=0.1)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    expert = TensorDict({"belief": torch.randn(64, 8) + 1.0, "state": torch.randn(64, 4)}, [64])
    agent = TensorDict({"belief": torch.randn(192, 8) - 1.0, "state": torch.randn(192, 4)}, [192])  # unbalanced
    batch = torch.cat([expert.set("expert", torch.ones(64, dtype=torch.bool)),
                       agent.set("expert", torch.zeros(192, dtype=torch.bool))])
    for _ in range(200):
        out = loss(batch)
        optimizer.zero_grad()
        (out["loss_discriminator"] + out["loss_gradient_penalty"]).backward()
        optimizer.step()
    assert out["expert_accuracy"] > 0.9 and out["agent_accuracy"] > 0.9
    reward = make_adversarial_reward(discriminator)
    with torch.no_grad():
        r_expert = reward(expert.exclude("expert"))["reward"]
        r_agent = reward(agent.exclude("expert"))["reward"]
    assert r_expert.mean() > 3 * r_agent.mean() and (r_agent >= 0).all()
    with pytest.raises(ValueError, match="gradient_penalty must be >= 0"):
        AdversarialRewardLoss(discriminator, gradient_penalty=-1)
