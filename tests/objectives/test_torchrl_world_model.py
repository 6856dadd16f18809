# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Both losses on a world model assembled from TorchRL's own Dreamer modules, through the same keys."""
from __future__ import annotations

import torch
from tensordict import TensorDict
from tensordict.nn import ProbabilisticTensorDictModule, ProbabilisticTensorDictSequential, TensorDictModule
from torchrl.data import Bounded
from torchrl.modules import IndependentNormal, ObsDecoder, ObsEncoder, RSSMPosterior, RSSMPrior

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.trainers import total_loss

STATE, BELIEF, ACTION = 8, 16, 2


def dreamer_world_model() -> RSSMWorldModel:
    """The key scheme of TorchRL's ``_dreamer_make_world_model``, for 64x64 pixels."""
    encoder = TensorDictModule(
        ObsEncoder(in_channels=3), in_keys=[("next", "pixels")], out_keys=[("next", "encoded_latents")]
    )
    # RSSMPrior runs the GRU and the prior head together: the world model needs no separate prior.
    prior = TensorDictModule(
        RSSMPrior(Bounded(-1, 1, (ACTION,)), hidden_dim=BELIEF, rnn_hidden_dim=BELIEF, state_dim=STATE, action_dim=ACTION),
        in_keys=["state", "belief", "action"],
        out_keys=[("next", "prior_mean"), ("next", "prior_std"), "_", ("next", "belief")],
    )
    posterior = TensorDictModule(
        RSSMPosterior(hidden_dim=BELIEF, state_dim=STATE, rnn_hidden_dim=BELIEF, obs_embed_dim=1024),
        in_keys=[("next", "belief"), ("next", "encoded_latents")],
        out_keys=[("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")],
    )
    decoder = ProbabilisticTensorDictSequential(
        TensorDictModule(
            ObsDecoder(latent_dim=STATE + BELIEF),
            in_keys=[("next", "state"), ("next", "belief")],
            out_keys=[("next", "reco_pixels")],
        ),
        ProbabilisticTensorDictModule(
            in_keys={"loc": ("next", "reco_pixels")},
            out_keys=[("next", "pixels_sample")],
            distribution_class=IndependentNormal,
            distribution_kwargs={"scale": 1.0, "event_dim": 3},
        ),
    )
    return RSSMWorldModel(
        encoder, prior, posterior, {"pixels": decoder}, prior=None,
        observation_keys=["pixels"], state_dim=STATE, belief_dim=BELIEF, action_dim=ACTION,
    )


def pixel_window(batch: int = 2, time: int = 3) -> TensorDict:
    pixels = torch.rand(batch, time + 1, 3, 64, 64)
    return TensorDict(
        {"pixels": pixels[:, :-1], "action": torch.rand(batch, time, ACTION) * 2 - 1, "next": {"pixels": pixels[:, 1:]}},
        [batch, time],
    )


def test_world_model_loss_on_torchrl_dreamer_modules():
    wm = dreamer_world_model()
    out = WorldModelLoss(wm, nll_reweight="none")(pixel_window())
    assert torch.isfinite(out["elbo"]) and out["kl"] > 0
    total_loss(out).backward()
    assert all(p.grad is not None for p in wm.parameters())


def test_aime_loss_on_torchrl_dreamer_modules():
    wm = dreamer_world_model()
    policy = make_policy(STATE, BELIEF, ACTION, hidden=16)
    out = AIMELoss(wm, policy, nll_reweight="none")(pixel_window())
    total_loss(out).backward()
    assert all(p.grad is not None for p in policy.parameters())
    assert all(p.grad is None for p in wm.parameters())
    assert torch.isfinite(out["action_mse"])
