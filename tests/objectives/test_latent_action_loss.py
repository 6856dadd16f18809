# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The latent-action world model and its ELBO on labelled and action-free windows."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl.modules import LatentActionWorldModel
from aime_torchrl.objectives import LatentActionLoss
from aime_torchrl.trainers import total_loss
from conftest import make_window


def small_model(**kwargs) -> LatentActionWorldModel:
    torch.manual_seed(0)
    return LatentActionWorldModel.from_config({"observation": 4}, 2, latent_action_dim=3, belief_dim=16, state_dim=4,
                                              hidden=16, **kwargs)


def mixed_window(labelled_windows: int = 2):
    window = make_window(batch=5, time=6)
    window.set("labelled", (torch.arange(5) < labelled_windows)[:, None].expand(5, 6))
    return window


def grads(module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def test_every_part_trains_on_a_mixed_batch_and_out_keys_match():
    model = small_model()
    loss = LatentActionLoss(model)
    out = loss(mixed_window())
    assert set(out.keys()) == set(loss.out_keys)
    total_loss(out).backward()
    for part in (model.world_model, model.inference, model.action_encoder, model.action_decoder):
        assert all(grads(part)), type(part)
    assert out["labelled_fraction"].item() == pytest.approx(0.4)
    # the ELBO counts the latent actions' KL: the state ELBO minus it
    assert out["elbo"] < out["recon_observation"] - out["kl"]


def test_action_free_windows_never_read_their_actions():
    model = small_model()
    loss = LatentActionLoss(model)
    window = mixed_window()
    garbage = window.clone()
    garbage["action"][2:] = torch.rand(3, 6, 2) * 2 - 1  # what an unlabelled window might hold
    outs = []
    for w in (window, garbage):
        torch.manual_seed(1)
        outs.append(loss(w))
    for key in loss.out_keys:
        torch.testing.assert_close(outs[0][key], outs[1][key])
    free = window.exclude("action")  # a window without actions at all is action-free
    model.zero_grad()
    total_loss(loss(free)).backward()
    assert not any(grads(model.action_encoder)) and not any(grads(model.action_decoder))
    assert all(grads(model.inference))


def test_frames_and_helpers():
    model = small_model()
    frames = model(model.to_frames(make_window(batch=2, time=4)))
    assert frames["latent_action"].shape == (2, 5, 3)
    assert (frames["latent_action"][:, 0] == 0).all()  # the initial state's row keeps a zero latent action
    window = model.with_encoded_actions(make_window(batch=2, time=4))
    torch.testing.assert_close(window["latent_action"], model.encode_actions(window["action"])[0])
    assert model.decode(torch.randn(7, 3) * 100).abs().max() <= 1
    loss = LatentActionLoss(model)
    loss.set_keys(labelled="has_actions")
    window = mixed_window().rename_key_("labelled", "has_actions")
    assert loss(window)["labelled_fraction"].item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="decodes 2-dim actions"):
        loss(make_window(action_dim=3))
    with pytest.raises(ValueError, match="Gaussian RSSMs"):
        small_model(variant="dreamerv3")
    with pytest.raises(ValueError, match="latent_action_dim must be a positive size"):
        LatentActionWorldModel.from_config({"observation": 4}, 2, latent_action_dim=0)


def run_loss(window, model, **options):
    torch.manual_seed(1)  # the same latent samples for every call
    return LatentActionLoss(model, **options)(window)


def test_bottleneck_and_alignment_weights_scale_their_own_kl():
    model = small_model()
    window = mixed_window()
    state_kl = run_loss(window, model, bottleneck_scale=0.0, alignment_scale=0.0)["loss_kl"]
    aligned = run_loss(window, model, bottleneck_scale=0.0)["loss_kl"] - state_kl
    free = run_loss(window, model, alignment_scale=0.0)["loss_kl"] - state_kl
    assert aligned > 0 and free > 0
    weighted = run_loss(window, model, bottleneck_scale=0.1, alignment_scale=3.0)
    torch.testing.assert_close(weighted["loss_kl"], state_kl + 3 * aligned + 0.1 * free)
    torch.testing.assert_close(run_loss(window, model)["loss_kl"], state_kl + aligned + free)
    # the logged ELBO and KL are the model's, whatever the weights
    for key in ("elbo", "kl_latent_action", "alignment"):
        torch.testing.assert_close(weighted[key], run_loss(window, model)[key])
    with pytest.raises(ValueError, match="bottleneck_scale"):
        LatentActionLoss(model, bottleneck_scale=-1.0)


def inference_grads(window, model, **options) -> list[torch.Tensor]:
    model.zero_grad()
    total_loss(run_loss(window, model, **options)).backward()
    return [p.grad.clone() for p in model.inference.parameters()]


def test_alignment_by_regression_trains_g_on_q_and_leaves_q_alone():
    model = small_model()
    window = mixed_window()
    state_kl = run_loss(window, model, bottleneck_scale=0.0, alignment_scale=0.0)["loss_kl"]
    free_action_free = run_loss(window, model, alignment_scale=0.0)["loss_kl"] - state_kl
    regression = run_loss(window, model, alignment="regression")
    # every step's u has the bottleneck's prior N(0, I): the labelled steps' KL adds to the action-free ones'
    torch.testing.assert_close(run_loss(window, model, alignment="regression", bottleneck_scale=0.0)["loss_kl"], state_kl)
    assert regression["loss_kl"] - state_kl > free_action_free
    # g's mean regresses onto q's: the term only trains g (q's gradients are those without it) and scales linearly
    heavy = run_loss(window, model, alignment="regression", alignment_scale=3.0)
    unweighted = run_loss(window, model, alignment="regression", alignment_scale=0.0)["loss_action"]
    torch.testing.assert_close(heavy["loss_action"] - unweighted, 3 * (regression["loss_action"] - unweighted))
    assert heavy["loss_action"] > unweighted
    for with_term, without in zip(inference_grads(window, model, alignment="regression", alignment_scale=3.0),
                                  inference_grads(window, model, alignment="regression", alignment_scale=0.0)):
        torch.testing.assert_close(with_term, without)
    model.zero_grad()
    total_loss(heavy).backward()
    assert all(grads(model.action_encoder.module.mean)) and not any(grads(model.action_encoder.module.std))
    # with the KL, the alignment pulls q too
    kl_grads = zip(inference_grads(window, model, alignment_scale=3.0), inference_grads(window, model, alignment_scale=0.0))
    assert any(not torch.allclose(a, b) for a, b in kl_grads)
    loss = LatentActionLoss(model)
    loss.alignment = "regression"  # switched between steps, as the examples' warm-up does
    torch.manual_seed(1)
    torch.testing.assert_close(loss(window)["loss_kl"], regression["loss_kl"])
    with pytest.raises(ValueError, match="alignment must be 'kl' or 'regression'"):
        LatentActionLoss(model, alignment="mse")
    with pytest.raises(ValueError, match="alignment must be 'kl' or 'regression'"):
        loss.alignment = "mse"


def test_alignment_by_regression_reads_labelled_steps_only():
    model = small_model()
    window = mixed_window(labelled_windows=0)  # actions present, none labelled
    for scale in (0.0, 3.0):
        torch.testing.assert_close(run_loss(window, model, alignment="regression", alignment_scale=scale)["loss_action"],
                                   torch.tensor(0.0))
