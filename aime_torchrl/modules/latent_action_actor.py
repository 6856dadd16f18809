# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The test-time actor of a policy on a latent-action world model: filter, act, embed the action."""
from __future__ import annotations

from tensordict.nn import TensorDictModuleBase, TensorDictSequential

from aime_torchrl.modules.filter_actor import FilteringActor
from aime_torchrl.modules.latent_action import LatentActionWorldModel


class LatentActionFilteringActor(FilteringActor):
    """A :class:`FilteringActor` on a latent-action world model whose policy chooses real actions.

    Each step filters the observation through ``model.world_model`` with the previous latent action,
    the policy ``pi(a | h, s)`` writes the env's ``"action"``, and the action encoder writes its latent
    action u = g(a) (``model.keys.action``), which the next filter step reads (``"prev_action"``): the
    model is driven by what was executed, as in its training on labelled steps.

    Args:
        model (LatentActionWorldModel): the trained model.
        policy (TensorDictModuleBase): reads ``"belief"`` and ``"state"``, writes ``"action"`` (the real
            action, ``model.action_dim``), e.g. ``make_policy(state_dim, belief_dim, model.action_dim)``.

    Keyword Args:
        sample_posterior (bool, optional): as :class:`FilteringActor`. Defaults to ``True``.

    Examples:
        >>> import torch
        >>> from aime_torchrl.envs import make_env
        >>> from aime_torchrl.modules import make_policy
        >>> model = LatentActionWorldModel.from_config({"orientations": 14, "height": 1, "velocity": 9}, 6,
        ...     latent_action_dim=3, belief_dim=32, state_dim=8, hidden=32)
        >>> actor = LatentActionFilteringActor(model, make_policy(8, 32, 6, hidden=32))
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
    ) -> None:
        super().__init__(model.world_model, TensorDictSequential(policy, model.action_encoder),
                         sample_posterior=sample_posterior)
        self.model = model
