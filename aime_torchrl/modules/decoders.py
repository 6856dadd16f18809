# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Gaussian observation decoders p(o_t | s_t, h_t), one per sensor."""
from __future__ import annotations

import torch
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F
from torchrl.modules import IndependentNormal

from aime_torchrl.modules.mlp import make_mlp


class GaussianMLPDecoder(nn.Module):
    """Decodes the state feature ``[belief, state]`` into a diagonal Gaussian over a vector sensor.

    With ``learn_std=True`` (the reference ``smlp``) the mean and the standard deviation come from
    two separate MLPs and ``std = softplus(x) + min_std``; otherwise (``dmlp``) only the mean is
    predicted and the standard deviation is fixed to 1.

    Args:
        in_features (int): size of the state feature.
        out_features (int): size of the sensor.

    Keyword Args:
        hidden (int, optional): width of the hidden layers. Defaults to ``128``.
        layers (int, optional): number of hidden layers. Defaults to ``2``.
        activation (type[nn.Module], optional): activation class. Defaults to :class:`~torch.nn.ELU`.
        norm (bool, optional): LayerNorm after each hidden layer (RSSMO). Defaults to ``False``.
        learn_std (bool, optional): learn the std (``smlp``) or fix it to 1 (``dmlp``). Defaults to ``True``.
        min_std (float, optional): lower bound of a learnt std. Defaults to ``1e-6``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Returns ``loc`` alone when the std is fixed, ``(loc, scale)`` otherwise.

    Examples:
        >>> import torch
        >>> decoder = GaussianMLPDecoder(640, 14)
        >>> loc, scale = decoder(torch.zeros(3, 512), torch.zeros(3, 128))
        >>> loc.shape, bool((scale > 0).all())
        (torch.Size([3, 14]), True)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int = 128,
        layers: int = 2,
        activation: type[nn.Module] = nn.ELU,
        norm: bool = False,
        learn_std: bool = True,
        min_std: float = 1e-6,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.learn_std = learn_std
        self.min_std = min_std
        self.mean = make_mlp(in_features, out_features, hidden, layers, activation, norm, device)
        self.std = (
            make_mlp(in_features, out_features, hidden, layers, activation, norm, device)
            if learn_std
            else None
        )

    def forward(self, *features: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat(features, -1) if len(features) > 1 else features[0]
        loc = self.mean(x)
        if self.std is None:
            return loc
        return loc, F.softplus(self.std(x)) + self.min_std


class CNNDecoder(nn.Module):
    """The transposed-convolution image decoder of AIME (``cnn_ha``); the std is fixed to 1.

    Linear(feature -> 1024) without activation, reshaped to 1024x1x1, then ConvT(k5, s2) -> ReLU ->
    ConvT(5, 2) -> ReLU -> ConvT(6, 2) -> ReLU -> ConvT(6, 2) -> Sigmoid: a 3x64x64 mean in [0, 1].
    (:class:`torchrl.modules.ObsDecoder` puts a ReLU after the Linear and no Sigmoid.)

    Args:
        in_features (int): size of the state feature.

    Keyword Args:
        out_channels (int, optional): image channels. Defaults to ``3``.
        channels (int, optional): filters of the last hidden layer. Defaults to ``32``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Examples:
        >>> import torch
        >>> decoder = CNNDecoder(640)
        >>> decoder(torch.zeros(2, 4, 512), torch.zeros(2, 4, 128)).shape
        torch.Size([2, 4, 3, 64, 64])
    """

    def __init__(
        self,
        in_features: int,
        *,
        out_channels: int = 3,
        channels: int = 32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 32 * channels, device=device)
        widths = [32 * channels, 4 * channels, 2 * channels, channels, out_channels]
        kernels = [5, 5, 6, 6]
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], k, stride=2, device=device))
            layers.append(nn.ReLU() if i < 3 else nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        x = torch.cat(features, -1) if len(features) > 1 else features[0]
        *batch, d = x.shape
        image = self.net(self.linear(x).reshape(-1, self.linear.out_features, 1, 1))
        return image.reshape(*batch, *image.shape[1:])


def make_decoder(
    net: nn.Module,
    key: NestedKey,
    *,
    event_dim: int,
    learn_std: bool,
    in_keys: list[NestedKey] | None = None,
) -> ProbabilisticTensorDictSequential:
    """Wraps a decoder network into a TorchRL probabilistic module producing ``p(o | s, h)``.

    The network reads ``("next", "belief")`` and ``("next", "state")`` (the reference's feature
    ``[h, s]``) and writes
    ``("next", f"reco_{key}")`` (the mean) and, when ``learn_std``, ``("next", f"reco_{key}_scale")``.
    The distribution is an :class:`~torchrl.modules.IndependentNormal` over the last ``event_dim``
    dimensions (scale 1 when the std is fixed), so ``decoder.get_dist(td)`` gives the likelihood.

    Args:
        net (nn.Module): decoder network, e.g. :class:`GaussianMLPDecoder` or :class:`CNNDecoder`.
        key (NestedKey): the sensor name, e.g. ``"velocity"`` or ``"pixels"``.

    Keyword Args:
        event_dim (int): number of trailing dimensions of one observation (1 vectors, 3 images).
        learn_std (bool): whether ``net`` returns ``(loc, scale)`` rather than ``loc`` alone.
        in_keys (list of NestedKey, optional): feature keys. Defaults to
            ``[("next", "belief"), ("next", "state")]``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> decoder = make_decoder(GaussianMLPDecoder(8, 3), "velocity", event_dim=1, learn_std=True)
        >>> td = TensorDict({"next": {"state": torch.zeros(2, 5, 4), "belief": torch.zeros(2, 5, 4)}}, [2, 5])
        >>> decoder.get_dist(td).log_prob(torch.zeros(2, 5, 3)).shape
        torch.Size([2, 5])
    """
    if in_keys is None:
        in_keys = [("next", "belief"), ("next", "state")]
    name = key if isinstance(key, str) else "_".join(key)
    loc_key = ("next", f"reco_{name}")
    if learn_std:
        scale_key = ("next", f"reco_{name}_scale")
        module = TensorDictModule(net, in_keys=in_keys, out_keys=[loc_key, scale_key])
        dist_keys = {"loc": loc_key, "scale": scale_key}
        dist_kwargs = {"event_dim": event_dim}
    else:
        module = TensorDictModule(net, in_keys=in_keys, out_keys=[loc_key])
        dist_keys = {"loc": loc_key}
        dist_kwargs = {"event_dim": event_dim, "scale": 1.0}
    return ProbabilisticTensorDictSequential(
        module,
        ProbabilisticTensorDictModule(
            in_keys=dist_keys,
            out_keys=[("next", f"sample_{name}")],
            distribution_class=IndependentNormal,
            distribution_kwargs=dist_kwargs,
        ),
    )
