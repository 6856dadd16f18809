# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import pytest
import torch

from aime_torchrl import WorldModelLoss
from aime_torchrl.trainers import total_loss
from conftest import DEVICES, make_window, small_world_model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["rssm", "rssmo"])
def test_forward_backward_reaches_every_parameter(device, variant):
    dims = {"orientations": 3, "velocity": 2}
    wm = small_world_model(dims, device=device, variant=variant)
    loss = WorldModelLoss(wm, free_nats=1.0 if variant == "rssmo" else 0.0, kl_balance=0.8 if variant == "rssmo" else None)
    out = loss(make_window(dims=dims, device=device))
    assert set(out.keys()) == {"loss_recon", "loss_kl", "elbo", "kl", "recon_orientations", "recon_velocity"}
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    total_loss(out).backward()
    for name, p in wm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_set_keys_and_clear_errors():
    wm = small_world_model()
    window = make_window().rename_key_("action", "act")
    loss = WorldModelLoss(wm)
    with pytest.raises(KeyError, match="lacks action;"):
        loss(window)
    loss.set_keys(action="act")
    assert torch.isfinite(loss(window)["elbo"])
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(reward="r")
    with pytest.raises(KeyError, match="lacks next.observation, observation"):
        loss(make_window(dims={"pixels_missing": 4}).rename_key_("action", "act"))
    with pytest.raises(ValueError, match="nll_reweight"):
        WorldModelLoss(wm, nll_reweight="modality")
    with pytest.raises(ValueError, match="kl_balance"):
        WorldModelLoss(wm, kl_balance=2.0)


def test_pixels_are_uint8_and_reconstructed():
    wm = small_world_model({}, pixel_keys=["pixels"])
    window = make_window(dims={})
    pixels = torch.randint(0, 256, (3, 6, 3, 64, 64), dtype=torch.uint8)
    window.set("pixels", pixels[:, :-1])
    window.set(("next", "pixels"), pixels[:, 1:])
    out = WorldModelLoss(wm)(window)
    # Fixed std 1 over 3x64x64 values: beta-NLL weighting is a no-op for images.
    assert out["loss_recon"].item() == pytest.approx(-out["recon_pixels"].item(), rel=1e-5)
    total_loss(out).backward()
