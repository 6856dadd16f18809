# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Offline RL in a frozen world model's imagination: DreamerV3's actor and critic, kept near the data."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Composite
from torchrl.envs.model_based.dreamer import DreamerEnv
from torchrl.objectives import DreamerV3ActorLoss, DreamerV3ValueLoss, LossModule, ValueEstimators


class OfflinePolicyLoss(LossModule):
    """A policy and its critic trained in imagination from a dataset's posterior latents, with a behaviour term.

    From each start (the ``belief`` and ``state`` of a batch, e.g. of
    :func:`~aime_torchrl.data.posterior_latents`) the policy rolls out ``imagination_horizon`` steps in
    the world model (:func:`~aime_torchrl.modules.make_imagination_env`); TorchRL's
    :class:`~torchrl.objectives.DreamerV3ActorLoss` (reparameterised lambda-returns, divided by
    DreamerV3's return scale, plus an entropy bonus) and :class:`~torchrl.objectives.DreamerV3ValueLoss`
    (symlog regression of the lambda-returns, tied to a slow critic) give ``loss_actor`` and
    ``loss_value``. Offline, nothing corrects the model where the policy leaves the data, so
    ``loss_behaviour`` = ``behaviour_scale`` x the policy's negative log-likelihood of the behaviour's
    action at the start (``behaviour_action``: the dataset's action, or a latent-action model's
    inferred latent action) keeps it near what the data did (behaviour cloning added to the actor's
    objective, as in TD3+BC, here as a log-likelihood; the return scaling keeps its weight comparable
    across tasks; the NLL goes below zero as the policy's std shrinks). The other conservative term,
    a model-uncertainty penalty on the imagined reward, lives in the env
    (``make_imagination_env(..., uncertainty=make_dynamics_ensemble(...))``); ``behaviour_scale=0``
    leaves it alone. The world model and the reward model are not trained.

    Train :meth:`policy_parameters` (the actor's and the critic's, not the env's) and update the slow
    critic with ``SoftUpdate(loss.value_loss, tau=...)`` after each step.

    Args:
        actor (ProbabilisticTensorDictSequential): reads ``belief`` and ``state``, writes the action
            the env reads (e.g. :func:`~aime_torchrl.modules.make_policy`), reparameterised.
        value (TensorDictModuleBase): reads ``belief`` and ``state``, writes ``"state_value"``.
        env (DreamerEnv): the imagination env.

    Keyword Args:
        imagination_horizon (int, optional): steps imagined from each start. Defaults to ``15``.
        behaviour_scale (float, optional): weight of ``loss_behaviour`` (0: pure model-based RL, and the
            batch needs no ``behaviour_action``). Defaults to ``1.0``.
        entropy_bonus (float, optional): DreamerV3's entropy weight. Defaults to ``3e-4``.
        gamma, lmbda (float, optional): the lambda-returns' discount and lambda. Default to ``0.99``, ``0.95``.
        slow_critic_regularization (float, optional): weight of the critic's pull to its slow copy.
            Defaults to ``1.0``.

    Keys (``set_keys``): ``state``, ``belief`` (the starts), ``action`` (the actor's output),
    ``behaviour_action``, ``reward`` (the imagined reward, under ``"next"``), ``value``.

    Returns ``loss_actor``, ``loss_value``, ``loss_behaviour`` and, logged: ``behaviour_nll``,
    ``imagined_reward`` (mean imagined reward), ``lambda_return``, ``actor_entropy``, ``return_scale``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from aime_torchrl.modules import make_imagination_env, make_policy, make_reward_model, make_mlp
        >>> from aime_torchrl.modules import RSSMWorldModel
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> env = make_imagination_env(wm, make_reward_model(wm, hidden=16))
        >>> actor = make_policy(4, 16, 2, hidden=16)
        >>> value = TensorDictModule(make_mlp(20, 1, 16), in_keys=["belief", "state"], out_keys=["state_value"])
        >>> loss = OfflinePolicyLoss(actor, value, env, imagination_horizon=3)
        >>> starts = TensorDict({"belief": torch.randn(8, 16), "state": torch.randn(8, 4),
        ...     "behaviour_action": torch.rand(8, 2) * 2 - 1}, [8])
        >>> sorted(k for k in loss(starts).keys() if k.startswith("loss_"))
        ['loss_actor', 'loss_behaviour', 'loss_value']
    """

    @dataclass
    class _AcceptedKeys:
        state: NestedKey = "state"
        belief: NestedKey = "belief"
        action: NestedKey = "action"
        behaviour_action: NestedKey = "behaviour_action"
        reward: NestedKey = "reward"
        value: NestedKey = "state_value"

    default_keys = _AcceptedKeys
    out_keys = ["loss_actor", "loss_value", "loss_behaviour"]

    def __init__(
        self,
        actor: ProbabilisticTensorDictSequential,
        value: TensorDictModuleBase,
        env: DreamerEnv,
        *,
        imagination_horizon: int = 15,
        behaviour_scale: float = 1.0,
        entropy_bonus: float = 3e-4,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        slow_critic_regularization: float = 1.0,
    ) -> None:
        super().__init__()
        if imagination_horizon < 1:
            raise ValueError(f"imagination_horizon must be at least 1, got {imagination_horizon}.")
        if behaviour_scale < 0:
            raise ValueError(f"behaviour_scale must be non-negative, got {behaviour_scale}.")
        self.actor, self.value = actor, value
        self.behaviour_scale = behaviour_scale
        self.actor_loss = DreamerV3ActorLoss(actor, value, env, imagination_horizon=imagination_horizon,
                                             entropy_bonus=entropy_bonus)
        self.actor_loss.make_value_estimator(ValueEstimators.TDLambda, gamma=gamma, lmbda=lmbda)
        self.value_loss = DreamerV3ValueLoss(value, actor_loss=self.actor_loss,
                                             slow_critic_regularization=slow_critic_regularization)
        self._forward_value_estimator_keys()

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        return [keys.state, keys.belief, *([keys.behaviour_action] if self.behaviour_scale > 0 else [])]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        keys = self.tensor_keys
        self.actor_loss.set_keys(state=keys.state, belief=keys.belief, action=keys.action, reward=keys.reward,
                                 value=keys.value)
        self.value_loss.set_keys(value=keys.value)

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters this loss trains: the actor's and the critic's (``parameters()`` also holds
        the imagination env's world model and reward model, which stay frozen)."""
        yield from self.actor.parameters()
        yield from self.value.parameters()

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        starts = tensordict.select(keys.state, keys.belief)
        actor_losses, imagined = self.actor_loss(starts)
        value_losses, _ = self.value_loss(imagined)
        behaviour_action = tensordict.get(keys.behaviour_action, None)
        if behaviour_action is None and self.behaviour_scale > 0:
            raise KeyError(f"OfflinePolicyLoss(behaviour_scale={self.behaviour_scale}) reads the behaviour's action "
                           f"{keys.behaviour_action!r}, which the batch lacks (behaviour_scale=0 needs none).")
        if behaviour_action is None:
            nll = starts.get(keys.state).new_zeros(())
        else:
            nll = -self.actor.get_dist(starts.copy()).log_prob(self._inside(behaviour_action)).mean()
        return TensorDict({
            "loss_actor": actor_losses.get("loss_actor"),
            "loss_value": value_losses.get("loss_value"),
            "loss_behaviour": self.behaviour_scale * nll,
            "behaviour_nll": nll.detach(),
            "imagined_reward": imagined.get(("next", keys.reward)).mean().detach(),
            "lambda_return": imagined.get("lambda_target").mean().detach(),
            "actor_entropy": actor_losses.get("actor_entropy"),
            "return_scale": actor_losses.get("return_scale"),
        })

    def _inside(self, action: torch.Tensor) -> torch.Tensor:
        """The behaviour's action moved just inside a bounded actor's box (a TanhNormal's log-density
        is cut off at its bounds); unchanged for an actor without a bounded spec."""
        spec = getattr(self.actor, "spec", None)
        if isinstance(spec, Composite):
            key = self.tensor_keys.action
            if key not in spec.keys(True, True):
                raise KeyError(f"The actor's spec has no {key!r}: give OfflinePolicyLoss the key it writes, e.g. "
                               f"loss.set_keys(action={self.actor.out_keys[-1]!r}).")
            spec = spec.get(key)
        low, high = getattr(spec, "low", None), getattr(spec, "high", None)
        if spec is None or low is None or high is None:
            return action
        margin = 1e-3 * (high - low)
        return torch.maximum(torch.minimum(action, high - margin), low + margin)
