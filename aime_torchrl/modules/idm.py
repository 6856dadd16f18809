# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The latent inverse dynamics model (IDM) of the reference: q(a_{t-1} | s_{t-1}, h_{t-1}, e_t)."""
from __future__ import annotations

import torch

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.policy import TanhGaussianActor, TanhGaussianPolicyNet


def make_idm(
    state_dim: int,
    belief_dim: int,
    embedding_dim: int,
    action_dim: int,
    *,
    hidden: int = 128,
    layers: int = 2,
    keys: LatentKeys | None = None,
    device: torch.device | str | None = None,
) -> TanhGaussianActor:
    """The reference's IDM: a TanhGaussian head (the policy's class) on ``[h_{t-1}, s_{t-1}, e_t]``,
    the previous latent state and the embedding of the observation it led to.

    In TorchRL's frame layout it reads ``"belief"``, ``"state"`` (the previous latent state) and
    ``("next", "encoded_latents")`` and writes ``"idm_loc"``, ``"idm_scale"`` and a sampled
    ``"action"`` (the names of ``keys``, a :class:`~aime_torchrl.modules.keys.LatentKeys`).
    :class:`~aime_torchrl.WorldModelLoss` trains it in phase 1 on the embodiment
    data's actions, with its inputs detached (the reference's ``idm_mode=detach``); AIME with IDM
    (paper appendix C) acts with it in phase 2.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> idm = make_idm(4, 16, 24, 6)
        >>> td = TensorDict({"belief": torch.zeros(3, 16), "state": torch.zeros(3, 4),
        ...     ("next", "encoded_latents"): torch.zeros(3, 24)}, [3])
        >>> idm(td)["action"].shape
        torch.Size([3, 6])
    """
    keys = LatentKeys.of(keys)
    net = TanhGaussianPolicyNet(state_dim + belief_dim + embedding_dim, action_dim, hidden=hidden, layers=layers,
                                device=device)
    return TanhGaussianActor(net, in_keys=[keys.belief, keys.state, keys.encoded_latents], loc_key=keys.idm_loc,
                             scale_key=keys.idm_scale, action_key=keys.action, device=device)
