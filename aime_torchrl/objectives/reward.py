# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The reward model's regression on a frozen world model's posterior latents."""
from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule


class RewardLoss(LossModule):
    """Mean squared error of a reward model on the latents after each transition.

    Reads the latents under ``"next"`` (``("next", "belief")``, ``("next", "state")``: the latents
    after o_{t+1}, as :func:`~aime_torchrl.data.posterior_latents` lays them out) and the reward
    ``("next", "reward")`` of that transition; the reward model (e.g.
    :func:`~aime_torchrl.modules.make_reward_model`) reads ``belief`` and ``state`` and writes ``reward``.

    Keys (``set_keys``): ``belief``, ``state`` (read under ``"next"``), ``reward`` (the model's output and,
    under ``"next"``, the target).

    Returns ``loss_reward``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_reward_model, RSSMWorldModel
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> loss = RewardLoss(make_reward_model(wm, hidden=16))
        >>> batch = TensorDict({("next", "belief"): torch.randn(8, 16), ("next", "state"): torch.randn(8, 4),
        ...     ("next", "reward"): torch.rand(8, 1)}, [8])
        >>> loss(batch)["loss_reward"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        belief: NestedKey = "belief"
        state: NestedKey = "state"
        reward: NestedKey = "reward"

    default_keys = _AcceptedKeys
    out_keys = ["loss_reward"]

    def __init__(self, reward_model: TensorDictModuleBase) -> None:
        super().__init__()
        self.reward_model = reward_model

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        return [("next", keys.belief), ("next", keys.state), ("next", keys.reward)]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        latents = TensorDict({keys.belief: tensordict.get(("next", keys.belief)).detach(),
                              keys.state: tensordict.get(("next", keys.state)).detach()}, tensordict.batch_size)
        predicted = self.reward_model(latents).get(keys.reward)
        return TensorDict({"loss_reward": (predicted - tensordict.get(("next", keys.reward))).pow(2).mean()})
