# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The latent-action world model and its loss on labelled and action-free windows: the real actions drive
the transition through g where they are known, the inverse model's actions elsewhere."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl import WorldModelLoss
from aime_torchrl.modules import LatentActionWorldModel
from aime_torchrl.modules.latent_action import frame_labels
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
    for part in (model.world_model, model.inference, model.action_encoder, model.action_prior):
        assert all(grads(part)), type(part)
    assert out["labelled_fraction"].item() == pytest.approx(0.4)
    assert out["loss_action"] > 0 and out["action_mse"] > 0


def test_labelled_steps_drive_the_transition_through_g_of_the_real_action():
    model = small_model()
    window = mixed_window()
    actions, labelled = frame_labels(window["action"], window["labelled"])
    with torch.no_grad():
        frames = model(model.to_frames(window), actions, labelled)
    u = frames["latent_action"]
    assert (u[:, 0] == 0).all()  # the initial state's row keeps a zero latent action
    torch.testing.assert_close(u[:2, 1:], model.encode_actions(window["action"][:2]))  # labelled: g(a)
    torch.testing.assert_close(u[2:, 1:], model.encode_actions(frames["inferred_action"][2:, 1:]))  # else g(q's a)
    assert not torch.allclose(u[2:, 1:], model.encode_actions(window["action"][2:]))
    assert frames["inferred_action"].abs().max() < 1  # on the real actions' box: g's image of real actions


def test_q_s_mode_or_detached_actions_can_drive_the_transition():
    model = small_model()
    act = model.actor(sample=False)
    inputs = (torch.randn(5, 4), torch.randn(5, 16), torch.randn(5, model.world_model.encoder.module.embedding_dim))
    out = act(0, *inputs)
    torch.testing.assert_close(out["inferred_action"], out["inferred_action_loc"].tanh())
    torch.testing.assert_close(out["action"], model.encode_actions(out["inferred_action"]))  # u, for the core
    loss = LatentActionLoss(model, inferred_action="mean")
    total_loss(loss(mixed_window())).backward()
    assert all(grads(model.inference))  # the ELBO's gradient (and the labels') still train q
    # as pseudo-labeller, q runs without autograd in the filter; its parameters again, batched, are the same
    window = mixed_window()
    frames = model.to_frames(window)
    with torch.no_grad():
        core = model.world_model.core
        embeddings = core.encode({"observation": frames["next", "observation"]}, frames.batch_size)
        rows = core.observe(embeddings, torch.zeros(5, 7, 3), actor=model.actor(detach=True))
    loc, scale = model.inference_params(rows["belief"], rows["state"], embeddings)
    torch.testing.assert_close(loc, rows["outputs"]["inferred_action_loc"])
    torch.testing.assert_close(scale, rows["outputs"]["inferred_action_scale"])
    model.zero_grad()
    pseudo_labels = LatentActionLoss(model, elbo_trains_inference=False)
    total_loss(pseudo_labels(mixed_window(labelled_windows=0))).backward()  # action-free: only the ELBO and the KL
    assert not any(grads(model.inference)) and all(grads(model.action_prior))  # q's actions are pseudo-labels
    total_loss(pseudo_labels(mixed_window())).backward()
    assert all(grads(model.inference))  # from the labelled actions' likelihood
    with pytest.raises(ValueError, match="inferred_action='median'"):
        LatentActionLoss(model, inferred_action="median")


def test_with_every_label_it_is_the_rssm_driven_by_g():
    """At 100 % labels the ELBO is WorldModelLoss's on the world model driven by g(a), sample for sample, and
    the inverse model learns from the actions' likelihood alone."""
    model = small_model()
    window = make_window(batch=4, time=6)
    torch.manual_seed(3)
    latent = LatentActionLoss(model, action_scale=0.0)(window)
    embedded = model.with_encoded_actions(window).exclude("action")  # the RSSM reads g(a) as its "latent_action"
    torch.manual_seed(3)
    rssm = WorldModelLoss(model.world_model)(embedded)
    for key in ("elbo", "kl", "loss_recon", "loss_kl", "recon_observation"):
        torch.testing.assert_close(latent[key], rssm[key], msg=key)
    total_loss(latent).backward()
    assert not any(grads(model.inference))  # no action-free step: q has nothing but its likelihood
    assert all(grads(model.action_encoder))


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
    out = loss(free)
    assert out["loss_action"] == 0 and out["labelled_fraction"] == 0
    total_loss(out).backward()
    assert all(grads(model.inference)) and all(grads(model.action_encoder))  # through the ELBO of the inferred a


def run_loss(window, model, **options):
    torch.manual_seed(1)  # the same samples for every call
    return LatentActionLoss(model, **options)(window)


def test_the_weights_scale_their_own_terms():
    """action_scale weighs q's likelihood of the labelled actions (the prior's beside it), action_kl_scale the
    action-free steps' KL(q || p) inside loss_kl; neither changes the ELBO."""
    model = small_model()
    window = mixed_window()
    zero, one, three = (run_loss(window, model, action_scale=w) for w in (0.0, 1.0, 3.0))
    torch.testing.assert_close(three["loss_action"] - zero["loss_action"], 3 * (one["loss_action"] - zero["loss_action"]))
    assert one["loss_action"] > zero["loss_action"] > 0  # the prior's likelihood of the labelled actions
    free = run_loss(window, model, action_kl_scale=0.0)
    doubled = run_loss(window, model, action_kl_scale=2.0)
    assert one["action_kl"] > 0
    torch.testing.assert_close(doubled["loss_kl"] - free["loss_kl"], 2 * (one["loss_kl"] - free["loss_kl"]))
    for out in (zero, three, free, doubled):
        torch.testing.assert_close(out["elbo"], one["elbo"])
    labelled = window.clone()
    labelled["labelled"][:] = True  # no action-free step: no action KL
    assert run_loss(labelled, model)["action_kl"] == 0
    with pytest.raises(ValueError, match="weights must be >= 0"):
        LatentActionLoss(model, action_scale=-1.0)


def test_frames_keys_and_refusals():
    model = small_model()
    window = model.with_encoded_actions(make_window(batch=2, time=4))
    torch.testing.assert_close(window["latent_action"], model.encode_actions(window["action"]))
    loss = LatentActionLoss(model)
    loss.set_keys(labelled="has_actions")
    window = mixed_window().rename_key_("labelled", "has_actions")
    assert loss(window)["labelled_fraction"].item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="reads 2-dim actions"):
        loss(make_window(action_dim=3))
    with pytest.raises(ValueError, match="Gaussian RSSMs"):
        small_model(variant="dreamerv3")
    with pytest.raises(ValueError, match="latent_action_dim must be a positive size"):
        LatentActionWorldModel.from_config({"observation": 4}, 2, latent_action_dim=0)
