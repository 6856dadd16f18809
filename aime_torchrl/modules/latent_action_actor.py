# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The test-time actor of a latent-action policy: filter, choose a latent action, decode it."""
from __future__ import annotations

from tensordict import TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase

from aime_torchrl.modules.filter_actor import FilteringActor
from aime_torchrl.modules.latent_action import LatentActionWorldModel


class LatentActionFilteringActor(FilteringActor):
    """A :class:`FilteringActor` on a latent-action world model whose policy chooses latent actions.

    Each step filters the observation through ``model.world_model`` with the previous latent action,
    the policy ``pi(u | h, s)`` writes ``u`` under the model's latent-action key, and the action
    decoder's mean ``a = decode(u)`` (in [-1, 1]) is written under ``action_key``, the env's action.
    The latent action carried to the next filter step (``"prev_action"``) is the policy's ``u``:
    the decoder is trained to map the model's latent actions to the actions that caused them, so
    ``u`` stands for what was executed.

    Args:
        model (LatentActionWorldModel): the trained model.
        policy (TensorDictModuleBase): reads ``"belief"`` and ``"state"``, writes the latent action
            (``model.keys.action``), e.g. ``make_policy(..., keys=model.keys)``.

    Keyword Args:
        sample_posterior (bool, optional): as :class:`FilteringActor`. Defaults to ``True``.
        action_key (str, optional): the env's action. Defaults to ``"action"``.

    Examples:
        >>> import torch
        >>> from aime_torchrl.envs import make_env
        >>> from aime_torchrl.modules import make_policy
        >>> model = LatentActionWorldModel.from_config({"orientations": 14, "height": 1, "velocity": 9}, 6,
        ...     latent_action_dim=3, belief_dim=32, state_dim=8, hidden=32)
        >>> actor = LatentActionFilteringActor(model, make_policy(8, 32, 3, hidden=32, keys=model.keys))
        >>> env = make_env("walker", "walk", "mdp", seed=0).append_transform(actor.make_env_transform(0))
        >>> with torch.no_grad():
        ...     rollout = env.rollout(5, actor)
        >>> rollout["latent_action"].shape, rollout["action"].shape
        (torch.Size([5, 3]), torch.Size([5, 6]))
    """

    def __init__(
        self,
        model: LatentActionWorldModel,
        policy: TensorDictModuleBase,
        *,
        sample_posterior: bool = True,
        action_key: str = "action",
    ) -> None:
        super().__init__(model.world_model, policy, sample_posterior=sample_posterior)
        self.model = model
        self.action_key = action_key
        self.out_keys = [*self.out_keys, action_key]

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict = super().forward(tensordict)
        tensordict.set(self.action_key, self.model.decode(tensordict.get(self.world_model.keys.action)))
        return tensordict
