# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The generic MLP of the AIME reference, built on :class:`torchrl.modules.MLP`."""
from __future__ import annotations

import torch
from torch import nn
from torchrl.modules import MLP


def make_mlp(
    in_features: int,
    out_features: int,
    hidden: int = 128,
    layers: int = 2,
    activation: type[nn.Module] = nn.ELU,
    norm: bool = False,
    device: torch.device | str | None = None,
) -> MLP:
    """``layers x [Linear -> (LayerNorm) -> activation]`` followed by a Linear head.

    This is the reference's MLP (ELU by default, PyTorch default init), which TorchRL's
    :class:`~torchrl.modules.MLP` builds layer for layer.

    Examples:
        >>> net = make_mlp(24, 6)
        >>> [type(m).__name__ for m in net]
        ['Linear', 'ELU', 'Linear', 'ELU', 'Linear']
    """
    return MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=[hidden] * layers,
        activation_class=activation,
        norm_class=nn.LayerNorm if norm else None,
        norm_kwargs={"normalized_shape": hidden} if norm else None,
        device=device,
    )
