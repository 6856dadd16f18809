# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The TanhGaussian policy pi(a | s, h) of AIME, as a TorchRL probabilistic actor."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.mlp import make_mlp


class TanhGaussianPolicyNet(nn.Module):
    """Mean and std of the policy's base Gaussian, from two separate MLPs on the state feature.

    ``std = softplus(x) + min_std``, with no upper bound, as in the reference.

    Args:
        feature_dim (int): size of ``[belief, state]``.
        action_dim (int): size of the action.

    Keyword Args:
        hidden (int, optional): width of the hidden layers. Defaults to ``128``.
        layers (int, optional): number of hidden layers. Defaults to ``2``.
        min_std (float, optional): lower bound of the std. Defaults to ``1e-6``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Examples:
        >>> import torch
        >>> net = TanhGaussianPolicyNet(640, 6)
        >>> loc, scale = net(torch.zeros(3, 512), torch.zeros(3, 128))
        >>> loc.shape
        torch.Size([3, 6])
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        *,
        hidden: int = 128,
        layers: int = 2,
        min_std: float = 1e-6,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.min_std = min_std
        self.mean = make_mlp(feature_dim, action_dim, hidden, layers, device=device)
        self.std = make_mlp(feature_dim, action_dim, hidden, layers, device=device)

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat(features, -1) if len(features) > 1 else features[0]
        return self.mean(x), F.softplus(self.std(x)) + self.min_std


def make_policy(
    state_dim: int,
    belief_dim: int,
    action_dim: int,
    *,
    hidden: int = 128,
    layers: int = 2,
    in_keys: Sequence[NestedKey] | None = None,
    keys: LatentKeys | None = None,
    low: float | torch.Tensor = -1.0,
    high: float | torch.Tensor = 1.0,
    device: torch.device | str | None = None,
) -> ProbabilisticActor:
    """Builds the AIME policy: ``a = tanh(loc + scale * eps)`` on ``[belief, state]``, scaled into ``[low, high]``.

    A :class:`~torchrl.modules.ProbabilisticActor` writing ``"loc"``, ``"scale"`` and ``"action"``
    (the names of ``keys``)
    with a :class:`~torchrl.modules.TanhNormal` in [-1, 1]. Under
    ``set_exploration_type(ExplorationType.RANDOM)`` it samples with the reparameterisation trick;
    under ``DETERMINISTIC`` it returns ``tanh(loc)``, the reference's evaluation action.

    Args:
        state_dim (int): size of the stochastic state.
        belief_dim (int): size of the deterministic state.
        action_dim (int): size of the action.

    Keyword Args:
        hidden (int, optional): width of the hidden layers. Defaults to ``128``.
        layers (int, optional): number of hidden layers. Defaults to ``2``.
        in_keys (Sequence[NestedKey], optional): feature keys. Defaults to ``(keys.belief, keys.state)``
            (the reference's feature ``[h, s]``).
        keys (LatentKeys, optional): the world model's key names (``world_model.keys``). Defaults to ``None``
            (TorchRL's Dreamer names).
        low, high (float or torch.Tensor, optional): the bounds of the action (per dimension for
            tensors; e.g. the box of a latent-action model's inferred latent actions). Default to ``-1``, ``1``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> policy = make_policy(128, 512, 6)
        >>> td = policy(TensorDict({"state": torch.zeros(3, 128), "belief": torch.zeros(3, 512)}, [3]))
        >>> td["action"].shape, bool(td["action"].abs().max() <= 1)
        (torch.Size([3, 6]), True)
    """
    keys = LatentKeys.of(keys)
    net = TanhGaussianPolicyNet(
        state_dim + belief_dim, action_dim, hidden=hidden, layers=layers, device=device
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=list(in_keys or (keys.belief, keys.state)), out_keys=[keys.loc, keys.scale]),
        in_keys={"loc": keys.loc, "scale": keys.scale},
        out_keys=[keys.action],
        spec=Bounded(low, high, (action_dim,), device=device),
        distribution_class=TanhNormal,
        distribution_kwargs={"low": low, "high": high},
        default_interaction_type=InteractionType.RANDOM,
        return_log_prob=False,
    )
