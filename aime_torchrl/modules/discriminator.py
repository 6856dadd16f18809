# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""An adversarial imitation reward on a world model's latents (AIME-NoB's AIL surrogate reward)."""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from aime_torchrl.modules.mlp import make_mlp
from aime_torchrl.modules.world_model import RSSMWorldModel

#: Where the discriminator writes its logit of "these latents are the demonstrations'".
EXPERT_LOGIT = "expert_logit"


class AdversarialReward(nn.Module):
    """The reward ``-log(1 - D) = softplus(logit)`` of a discriminator's probability D that latents
    are the demonstrations' (GAIL's positive form: the more expert-like, the more reward, never negative)."""

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(logit)


def make_discriminator(world_model: RSSMWorldModel, *, hidden: int = 128, layers: int = 2) -> TensorDictModule:
    """An MLP ``(belief, state) -> "expert_logit"`` on the world model's latents (its key names),
    trained by :class:`~aime_torchrl.objectives.AdversarialRewardLoss`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> disc = make_discriminator(wm, hidden=16)
        >>> reward = make_adversarial_reward(disc)
        >>> out = reward(TensorDict({"belief": torch.zeros(5, 16), "state": torch.zeros(5, 4)}, [5]))
        >>> out["reward"].shape, bool((out["reward"] > 0).all())
        (torch.Size([5, 1]), True)
    """
    keys = world_model.keys
    device = next(world_model.parameters()).device
    return TensorDictModule(make_mlp(world_model.feature_dim, 1, hidden, layers, device=device),
                            in_keys=[keys.belief, keys.state], out_keys=[EXPERT_LOGIT])


def make_adversarial_reward(discriminator: TensorDictModule) -> TensorDictSequential:
    """The reward model of an imagination env (:func:`~aime_torchrl.modules.make_imagination_env`):
    the discriminator, then :class:`AdversarialReward` of its logit as ``"reward"``."""
    reward = TensorDictModule(AdversarialReward(), in_keys=[discriminator.out_keys[0]], out_keys=["reward"])
    return TensorDictSequential(discriminator, reward)
