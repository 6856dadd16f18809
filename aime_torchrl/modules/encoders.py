# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Observation encoders: one embedding per frame, built from every sensor."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchrl.modules import MLP


def to_float_image(pixels: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Maps uint8 pixels in [0, 255] to floats in [0, 1] (of ``dtype``); float pixels pass through.

    Storage keeps images as uint8 (4x smaller than float32); the conversion happens per batch,
    inside the modules that read pixels.
    """
    if pixels.dtype == torch.uint8:
        return pixels.to(dtype or torch.get_default_dtype()).div_(255.0)
    return pixels


class CNNEncoder(nn.Module):
    """The 4-layer convolutional encoder of World Models (Ha & Schmidhuber) used by AIME (``cnn_ha``).

    Conv(k4, s2) + ReLU layers with ``channels * (1, 2, 4, 8)`` filters, flattened. A 3x64x64 image
    gives a 1024-d embedding. Unlike :class:`torchrl.modules.ObsEncoder` the last convolution has no
    activation, as in the AIME reference.

    Args:
        in_channels (int, optional): image channels. Defaults to ``3``.
        channels (int, optional): filters of the first layer. Defaults to ``32``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Examples:
        >>> import torch
        >>> encoder = CNNEncoder()
        >>> pixels = torch.randint(0, 256, (2, 5, 3, 64, 64), dtype=torch.uint8)
        >>> encoder(pixels).shape
        torch.Size([2, 5, 1024])
    """

    def __init__(
        self, in_channels: int = 3, channels: int = 32, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        widths = [in_channels, channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, device=device))
            if i < 3:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        *batch, c, h, w = pixels.shape
        x = to_float_image(pixels, self.net[0].weight.dtype).reshape(-1, c, h, w)
        return self.net(x).reshape(*batch, -1)


class ObservationEncoder(nn.Module):
    """Encodes a multi-sensor observation into one embedding ``e_t``, in a fixed sensor order.

    Vector sensors are concatenated (in the given order) and passed through ``vector_net``
    (identity by default: the RSSM walker config; an MLP for RSSMO). Each pixel sensor goes through
    its own :class:`CNNEncoder`. The embedding is ``cat([vector_net(vectors), cnn(pixels)...])``.

    Args:
        vector_dims (Mapping[str, int]): name -> size of each vector sensor, in order.
        pixel_keys (Sequence[str], optional): names of the image sensors (3xHxW). Defaults to ``()``.

    Keyword Args:
        vector_net (nn.Module, optional): applied to the concatenated vectors. Defaults to identity.
        vector_out (int, optional): output size of ``vector_net``; required when it is given.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    The forward takes the sensors as positional tensors, vectors first then pixels, in order; wrap
    it in a :class:`~tensordict.nn.TensorDictModule` with matching ``in_keys``
    (:meth:`RSSMWorldModel.from_config` does this).

    Examples:
        >>> import torch
        >>> encoder = ObservationEncoder({"orientations": 14, "height": 1, "velocity": 9})
        >>> encoder.embedding_dim
        24
        >>> encoder(torch.zeros(2, 14), torch.zeros(2, 1), torch.zeros(2, 9)).shape
        torch.Size([2, 24])
    """

    def __init__(
        self,
        vector_dims: Mapping[str, int],
        pixel_keys: Sequence[str] = (),
        *,
        vector_net: nn.Module | None = None,
        vector_out: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not vector_dims and not pixel_keys:
            raise ValueError("ObservationEncoder needs at least one sensor.")
        self.vector_dims = dict(vector_dims)
        self.vector_keys = list(vector_dims)
        self.pixel_keys = list(pixel_keys)
        vector_total = sum(vector_dims.values())
        if vector_net is not None and vector_out is None:
            raise ValueError("Pass vector_out, the output size of vector_net.")
        self.vector_net = vector_net if vector_net is not None else nn.Identity()
        self.cnns = nn.ModuleList(CNNEncoder(device=device) for _ in self.pixel_keys)
        vector_dim = (vector_out if vector_net is not None else vector_total) if vector_dims else 0
        self.embedding_dim = vector_dim + 1024 * len(self.pixel_keys)

    def sensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one frame of every sensor: ``(size,)`` for vectors, ``(3, 64, 64)`` for images."""
        return {**{k: (d,) for k, d in self.vector_dims.items()}, **{k: (3, 64, 64) for k in self.pixel_keys}}

    @classmethod
    def mlp(
        cls,
        vector_dims: Mapping[str, int],
        pixel_keys: Sequence[str] = (),
        *,
        hidden: int = 512,
        layers: int = 2,
        device: torch.device | str | None = None,
    ) -> ObservationEncoder:
        """The RSSMO encoder: one MLP ``layers x (Linear -> LayerNorm -> SiLU)`` on all vector sensors."""
        net = MLP(
            in_features=sum(vector_dims.values()),
            out_features=hidden,
            num_cells=[hidden] * (layers - 1),
            activation_class=nn.SiLU,
            norm_class=nn.LayerNorm,
            norm_kwargs={"normalized_shape": hidden},
            activate_last_layer=True,
            device=device,
        )
        return cls(vector_dims, pixel_keys, vector_net=net, vector_out=hidden, device=device)

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        n_vec = len(self.vector_keys)
        parts = []
        if n_vec:
            vectors = observations[:n_vec]
            parts.append(self.vector_net(torch.cat(vectors, -1) if n_vec > 1 else vectors[0]))
        parts.extend(cnn(pix) for cnn, pix in zip(self.cnns, observations[n_vec:]))
        return torch.cat(parts, -1) if len(parts) > 1 else parts[0]
