# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Diagnostics of imitation: the world model on unseen windows, and the error of the inferred actions."""
from __future__ import annotations

import pytest
import torch
from conftest import make_window, small_world_model

from aime_torchrl import AIMELoss, make_policy, WorldModelLoss
from aime_torchrl.evaluation import open_loop_prediction
from aime_torchrl.evaluation.diagnostics import action_inference_diagnostics, world_model_diagnostics


def _seeded_elbo(loss, window) -> float:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return loss(window)["elbo"].item()


def test_world_model_diagnostics_average_the_loss_and_the_open_loop_error_over_windows():
    wm = small_world_model()
    loss = WorldModelLoss(wm)
    windows = [make_window(batch=2, time=6), make_window(batch=2, time=6)]
    torch.manual_seed(1)
    got = world_model_diagnostics(loss, windows, context=3)
    torch.manual_seed(1)  # the same draws, computed by hand
    elbo, errors, shuffled, halved = [], [], [], []
    with torch.no_grad():
        for window in windows:
            elbo.append(_seeded_elbo(loss, window))
            shuffled.append(elbo[-1] - _seeded_elbo(loss, window.clone().set("action", window["action"].flip(0))))
            halved.append(elbo[-1] - _seeded_elbo(loss, window.clone().set("action", window["action"] / 2)))
            predicted = open_loop_prediction(wm, window, context=3)["observation"][:, 3:]
            errors.append((predicted - wm.to_frames(window)["next", "observation"][:, 3:]).pow(2).mean().item())
    assert got["elbo"] == pytest.approx(sum(elbo) / 2)
    assert got["elbo_drop_shuffled"] == pytest.approx(sum(shuffled) / 2)  # roll by 1 of a batch of 2: a flip
    assert got["elbo_drop_halved"] == pytest.approx(sum(halved) / 2)
    assert got["open_loop_mse"] == pytest.approx(sum(errors) / 2) == pytest.approx(got["open_loop_mse_observation"])


def test_the_elbo_drops_compare_with_the_same_noise():
    loss = WorldModelLoss(small_world_model())
    window = make_window(batch=3, time=6)
    window["action"] = torch.zeros_like(window["action"])  # shuffling or halving changes nothing
    got = world_model_diagnostics(loss, [window], context=3)
    assert got["elbo_drop_shuffled"] == got["elbo_drop_halved"] == 0.0
    window["action"] = torch.rand_like(window["action"])
    got = world_model_diagnostics(loss, [window], context=3)
    assert got["elbo_drop_shuffled"] != 0.0 and got["elbo_drop_halved"] != 0.0


def test_action_inference_error_uses_the_true_actions_only_for_the_metric():
    wm = small_world_model()
    loss = AIMELoss(wm, make_policy(6, 16, 2, hidden=16))
    window = make_window(batch=4, time=6)
    torch.manual_seed(1)
    got = action_inference_diagnostics(loss, [window])
    torch.manual_seed(1)  # without the actions the same rollout gives the same ELBO
    assert loss(window.exclude("action"))["elbo"].item() == pytest.approx(got["elbo"])
    assert got["action_mse"] > 0
    with pytest.raises(KeyError, match="true actions under 'action'"):
        action_inference_diagnostics(loss, [window.exclude("action")])
