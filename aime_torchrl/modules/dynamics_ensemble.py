# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""An ensemble of one-step latent dynamics whose disagreement says where a world model is unsure."""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from aime_torchrl.modules.latent_action import LatentActionWorldModel
from aime_torchrl.modules.mlp import make_mlp
from aime_torchrl.modules.world_model import RSSMWorldModel


class DynamicsEnsemble(nn.Module):
    """``members`` MLPs ``(belief, state, action) -> the next posterior state``, each from its own
    initialisation; :meth:`forward` returns their disagreement (the standard deviation across members,
    averaged over the state's units) divided by its mean on the data (:meth:`calibrate`), ``[..., 1]``.

    Fitted on a dataset's transitions (:class:`~aime_torchrl.objectives.DynamicsEnsembleLoss`), the
    members agree where the data are and part where a policy takes the model away from them: the
    model-uncertainty penalty of offline model-based RL (MOPO, Yu et al., 2020), here on the frozen
    world model's latents and (latent) actions. After :meth:`calibrate` a disagreement of 1 is the
    data's average.

    Examples:
        >>> ensemble = DynamicsEnsemble(feature_dim=20, action_dim=2, state_dim=4, members=3, hidden=16)
        >>> ensemble(torch.zeros(5, 16), torch.zeros(5, 4), torch.zeros(5, 2)).shape
        torch.Size([5, 1])
    """

    def __init__(self, feature_dim: int, action_dim: int, state_dim: int, *, members: int = 5, hidden: int = 128,
                 layers: int = 2, device: torch.device | str | None = None) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"A DynamicsEnsemble needs at least 2 members to disagree, got members={members}.")
        self.members = nn.ModuleList(make_mlp(feature_dim + action_dim, state_dim, hidden, layers, device=device)
                                     for _ in range(members))
        self.register_buffer("data_disagreement", torch.ones((), device=device))

    def predict(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Every member's prediction of the next state, ``[members, ..., state_dim]``."""
        inputs = torch.cat([belief, state, action], -1)
        return torch.stack([member(inputs) for member in self.members])

    def forward(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        spread = self.predict(belief, state, action).std(0).mean(-1, keepdim=True)
        return spread / self.data_disagreement

    @torch.no_grad()
    def calibrate(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor, chunk: int = 65536) -> float:
        """Sets the unit of :meth:`forward` to the mean disagreement on these (the data's) transitions; returns it."""
        if len(belief) == 0:
            raise ValueError("DynamicsEnsemble.calibrate needs at least one transition.")
        total = sum(self.predict(belief[i:i + chunk], state[i:i + chunk], action[i:i + chunk]).std(0).mean(-1).sum()
                    for i in range(0, len(belief), chunk))
        self.data_disagreement.fill_(max(total.item() / len(belief), 1e-8))  # members that agree exactly: no 0 unit
        return self.data_disagreement.item()


def make_dynamics_ensemble(world_model: RSSMWorldModel | LatentActionWorldModel, *, members: int = 5, hidden: int = 128,
                           layers: int = 2) -> TensorDictModule:
    """A :class:`DynamicsEnsemble` on a world model's latents and action (its key names; a latent-action
    model's real ``"action"``), writing ``"disagreement"``: what
    :func:`~aime_torchrl.modules.make_imagination_env` penalises.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> ensemble = make_dynamics_ensemble(wm, members=3, hidden=16)
        >>> td = TensorDict({"belief": torch.zeros(5, 16), "state": torch.zeros(5, 4), "action": torch.zeros(5, 2)}, [5])
        >>> ensemble(td)["disagreement"].shape
        torch.Size([5, 1])
    """
    if isinstance(world_model, LatentActionWorldModel):  # on the real action, as its imagination env
        action_key, action_dim, world_model = "action", world_model.action_dim, world_model.world_model
    elif isinstance(world_model, RSSMWorldModel):
        action_key, action_dim = world_model.keys.action, world_model.action_dim
    else:
        raise TypeError(f"make_dynamics_ensemble needs an RSSMWorldModel or a LatentActionWorldModel, got "
                        f"{type(world_model).__name__}.")
    keys = world_model.keys
    device = next(world_model.parameters()).device
    net = DynamicsEnsemble(world_model.feature_dim, action_dim, world_model.state_dim, members=members,
                           hidden=hidden, layers=layers, device=device)
    return TensorDictModule(net, in_keys=[keys.belief, keys.state, action_key], out_keys=["disagreement"])
