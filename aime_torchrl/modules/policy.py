# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The TanhGaussian policy pi(a | s, h) of AIME, as a TorchRL probabilistic actor, and the actors that
also act on plain tensors inside a world model's filter (:class:`TensorActor`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.utils import NestedKey, unravel_key
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


class TensorActor:
    """What a TensorDict actor implements to act on plain tensors inside a world model's filter
    (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`, through
    :func:`~aime_torchrl.modules.core.make_actor`): no TensorDict per step, and its noise an argument
    (drawn for a whole window before the loop, so that the window's ELBO is a pure function).

    Attributes:
        feature_keys (list[NestedKey]): what it reads, in order.

    ``act(inputs, noise)`` returns what the actor writes, by key, for the features ``inputs`` (by key)
    and standard normal ``noise`` shaped like its sampled output (drawn at the call if ``None``); its
    TensorDict ``forward`` gives the same sample. Any other actor is called through its keys.
    """

    feature_keys: list[NestedKey]

    def act(self, inputs: Mapping[NestedKey, torch.Tensor], noise: torch.Tensor | None = None) -> dict:
        raise NotImplementedError


class TanhGaussianActor(TensorActor, ProbabilisticActor):
    """A TorchRL actor ``a = tanh(loc + scale * eps)`` (scaled into ``[low, high]``) around a
    :class:`TanhGaussianPolicyNet`, that also acts on plain tensors (:meth:`act`).

    A :class:`TanhGaussianActor` (a :class:`~torchrl.modules.ProbabilisticActor`) writing ``loc_key``, ``scale_key`` and
    ``action_key`` with a :class:`~torchrl.modules.TanhNormal`: what :func:`make_policy` and
    :func:`~aime_torchrl.modules.make_idm` build. Inside a world model's filter
    (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`) it acts through :meth:`act`, the same
    reparameterised sample without a TensorDict or a distribution object per step.

    Args:
        net (TanhGaussianPolicyNet): ``(*features) -> (loc, scale)``.

    Keyword Args:
        in_keys (Sequence[NestedKey]): the features ``net`` reads, in order.
        loc_key, scale_key, action_key (NestedKey): what it writes.
        low, high (float or torch.Tensor): the action's bounds.
        device (torch.device, optional): the spec's device.
    """

    def __init__(
        self,
        net: TanhGaussianPolicyNet,
        *,
        in_keys: Sequence[NestedKey],
        loc_key: NestedKey,
        scale_key: NestedKey,
        action_key: NestedKey,
        low: float | torch.Tensor = -1.0,
        high: float | torch.Tensor = 1.0,
        device: torch.device | str | None = None,
    ) -> None:
        action_dim = net.mean[-1].out_features
        super().__init__(
            TensorDictModule(net, in_keys=list(in_keys), out_keys=[loc_key, scale_key]),
            in_keys={"loc": loc_key, "scale": scale_key},
            out_keys=[action_key],
            spec=Bounded(low, high, (action_dim,), device=device),
            distribution_class=TanhNormal,
            distribution_kwargs={"low": low, "high": high},
            default_interaction_type=InteractionType.RANDOM,
            return_log_prob=False,
        )
        self.feature_keys = [unravel_key(k) for k in in_keys]
        self.written = [unravel_key(k) for k in (action_key, loc_key, scale_key)]
        unit = all(not torch.is_tensor(v) and float(v) == b for v, b in ((low, -1.0), (high, 1.0)))
        self.bounds = None if unit else (low, high)
        self.feature_dim, self.action_dim = net.mean[0].in_features, action_dim

    def params(self, inputs: Mapping[NestedKey, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The base Gaussian's ``(loc, scale)`` (before the tanh) for the features ``inputs`` (by key)."""
        return self.module[0].module(*(inputs[key] for key in self.feature_keys))

    def act(self, inputs: Mapping[NestedKey, torch.Tensor], noise: torch.Tensor | None = None) -> dict:
        """The action for the features ``inputs`` (by key) and standard normal ``noise`` (drawn now if
        ``None``): the sample the actor draws under ``ExplorationType.RANDOM``, clamped inside the
        bounds as TorchRL's safe tanh. Returns ``{action_key: ..., loc_key: ..., scale_key: ...}``.

        Examples:
            >>> import torch
            >>> policy = make_policy(4, 8, 3, hidden=16)
            >>> out = policy.act({"belief": torch.zeros(5, 8), "state": torch.zeros(5, 4)}, torch.randn(5, 3))
            >>> out["action"].shape, bool(out["action"].abs().max() < 1)
            (torch.Size([5, 3]), True)
        """
        loc, scale = self.params(inputs)
        pre = loc + scale * (torch.randn_like(loc) if noise is None else noise)
        lim = 1.0 - torch.finfo(pre.dtype).resolution
        action = pre.tanh().clamp(-lim, lim)
        if self.bounds is not None:
            low, high = (torch.as_tensor(b, dtype=action.dtype, device=action.device) for b in self.bounds)
            action = (high + low) / 2 + (high - low) / 2 * action
        return dict(zip(self.written, (action, loc, scale)))


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
) -> TanhGaussianActor:
    """Builds the AIME policy: ``a = tanh(loc + scale * eps)`` on ``[belief, state]``, scaled into ``[low, high]``.

    A :class:`TanhGaussianActor` (a :class:`~torchrl.modules.ProbabilisticActor`) writing ``"loc"``, ``"scale"`` and ``"action"``
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
    net = TanhGaussianPolicyNet(state_dim + belief_dim, action_dim, hidden=hidden, layers=layers, device=device)
    return TanhGaussianActor(net, in_keys=list(in_keys or (keys.belief, keys.state)), loc_key=keys.loc,
                             scale_key=keys.scale, action_key=keys.action, low=low, high=high, device=device)
