# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Imagination: a frozen world model's prior and a reward model (optionally penalised by model
uncertainty) as a TorchRL env (``DreamerEnv``)."""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs.model_based.dreamer import DreamerEnv
from torchrl.modules import WorldModelWrapper

from aime_torchrl.modules.core import WorldModelCore
from aime_torchrl.modules.latent_action import LatentActionWorldModel
from aime_torchrl.modules.mlp import make_mlp
from aime_torchrl.modules.world_model import RSSMWorldModel


class PriorStep(nn.Module):
    """One step of imagination on a world model's core: ``h' = transition(s, h, a)``, ``s' ~ prior(h')``
    (:meth:`~aime_torchrl.modules.core.WorldModelCore.imagine`, reparameterised, so that a policy's
    gradient flows through the imagined states). Returns ``(state', belief')``.

    Args:
        core (WorldModelCore): the world model's (``world_model.core``).
        world_model (nn.Module): the module owning the core's networks (so that the step's
            ``parameters()`` are the world model's, which TorchRL's losses hold out).
    """

    def __init__(self, core: WorldModelCore, world_model: nn.Module) -> None:
        super().__init__()
        self.core, self.world_model = core, world_model

    def forward(self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beliefs, states = self.core.imagine(state, belief, action.unsqueeze(-2), sample=True)
        return states.squeeze(-2), beliefs.squeeze(-2)


class UncertaintyPenalty(nn.Module):
    """``reward - scale x disagreement``: a reward made pessimistic where the model is unsure (MOPO)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, reward: torch.Tensor, disagreement: torch.Tensor) -> torch.Tensor:
        return reward - self.scale * disagreement


def make_reward_model(world_model: RSSMWorldModel, *, hidden: int = 128, layers: int = 2) -> TensorDictModule:
    """An MLP ``(belief, state) -> "reward"`` on the world model's latents (its key names): the
    reward of arriving in those latents, r_t for the latents after o_{t+1}.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> reward = make_reward_model(wm, hidden=16)
        >>> reward(TensorDict({"belief": torch.zeros(5, 16), "state": torch.zeros(5, 4)}, [5]))["reward"].shape
        torch.Size([5, 1])
    """
    keys = world_model.keys
    device = next(world_model.parameters()).device
    return TensorDictModule(make_mlp(world_model.feature_dim, 1, hidden, layers, device=device),
                            in_keys=[keys.belief, keys.state], out_keys=["reward"])


def make_imagination_env(world_model: RSSMWorldModel | LatentActionWorldModel, reward_model: TensorDictModuleBase, *,
                         uncertainty: TensorDictModuleBase | None = None, uncertainty_scale: float = 1.0) -> DreamerEnv:
    """TorchRL's :class:`~torchrl.envs.model_based.dreamer.DreamerEnv` on the world model's prior:
    ``reset(td)`` starts from the ``"state"`` and ``"belief"`` of ``td`` (e.g. posterior latents of a
    dataset, :func:`~aime_torchrl.data.posterior_latents`), each ``step`` reads the action under
    the world model's action key, samples the next latents from the prior and writes the reward
    model's ``("next", "reward")``. On a :class:`~aime_torchrl.modules.LatentActionWorldModel` the
    action is the real one (``"action"``, ``model.action_dim``): the step embeds it with the model's
    action encoder, u = g(a), and its world model imagines from u.

    With ``uncertainty`` (e.g. :func:`~aime_torchrl.modules.make_dynamics_ensemble`, reading the
    latents and the action before the step and writing ``"disagreement"``) the reward is
    ``reward - uncertainty_scale x disagreement``: a model-uncertainty penalty, the offline
    alternative to behaviour cloning (:class:`~aime_torchrl.objectives.OfflinePolicyLoss`).

    What TorchRL's imagination losses (:class:`~torchrl.objectives.DreamerV3ActorLoss`) roll a policy
    out in. It runs on the world model's core (any world model whose latents are named ``"state"`` and
    ``"belief"``, DreamerEnv's names); the world model is not
    trained through it (TorchRL's losses hold the env's modules out; they must be all frozen, as
    after :func:`~aime_torchrl.modules.frozen` (each a frozen view), or all trainable).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> env = make_imagination_env(wm, make_reward_model(wm, hidden=16))
        >>> start = TensorDict({"state": torch.zeros(5, 4), "belief": torch.zeros(5, 16)}, [5])
        >>> with torch.no_grad():
        ...     imagined = env.rollout(3, auto_reset=False, tensordict=env.reset(start))
        >>> imagined["next", "reward"].shape
        torch.Size([5, 3, 1])
    """
    owner, action_encoder = world_model, None
    if isinstance(world_model, LatentActionWorldModel):
        world_model, action_encoder = world_model.world_model, world_model.action_encoder
    keys = world_model.keys
    if keys.state != "state" or keys.belief != "belief":
        raise ValueError(f"make_imagination_env needs a world model whose latents are named 'state' and 'belief' "
                         f"(DreamerEnv's names); this one's are {keys.state!r} and {keys.belief!r}: build it with the "
                         "default LatentKeys.")
    step = TensorDictModule(PriorStep(world_model.core, world_model), in_keys=[keys.state, keys.belief,
                            keys.action], out_keys=[keys.state, keys.belief])
    if action_encoder is not None:
        step = TensorDictSequential(action_encoder, step)
    if uncertainty is not None:  # the disagreement of the transition (latents and action before it), then the step
        if uncertainty_scale < 0:
            raise ValueError(f"uncertainty_scale must be non-negative, got {uncertainty_scale}.")
        if len(uncertainty.out_keys) != 1:
            raise ValueError(f"uncertainty must write one key (its disagreement), it writes {uncertainty.out_keys}.")
        step = TensorDictSequential(uncertainty, step)
        penalty = TensorDictModule(UncertaintyPenalty(uncertainty_scale), in_keys=["reward", uncertainty.out_keys[0]],
                                   out_keys=["reward"])
        reward_model = TensorDictSequential(reward_model, penalty)
    modules = {"world_model": owner, "reward_model": reward_model, "uncertainty": uncertainty}
    trainable = {name: any(p.requires_grad for p in m.parameters()) for name, m in modules.items()
                 if m is not None and any(True for _ in m.parameters())}
    if len(set(trainable.values())) > 1:  # TorchRL's hold_out_net freezes the env by its first parameter's flag
        raise ValueError("The imagination env's modules must be all frozen or all trainable (TorchRL's losses hold the "
                         "env out of the policy's gradient only then): " + ", ".join(
                             f"{k} {'trainable' if v else 'frozen'}" for k, v in trainable.items())
                         + "; freeze them with aime_torchrl.modules.frozen(module).")
    device = next(world_model.parameters()).device
    env = DreamerEnv(WorldModelWrapper(step, reward_model), prior_shape=torch.Size([world_model.state_dim]),
                     belief_shape=torch.Size([world_model.belief_dim]), device=device)
    latents = Composite(state=Unbounded((world_model.state_dim,), device=device),
                        belief=Unbounded((world_model.belief_dim,), device=device))
    env.full_observation_spec = latents.clone()
    env.full_state_spec = latents.clone()
    action_key, action_dim = keys.action, world_model.action_dim
    if action_encoder is not None:  # the policy acts in the real action space
        action_key, action_dim = "action", owner.action_dim
    env.full_action_spec = Composite({action_key: Unbounded((action_dim,), device=device)})
    env.full_reward_spec = Composite(reward=Unbounded((1,), device=device))
    return env
