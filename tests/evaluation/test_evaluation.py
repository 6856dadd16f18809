# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Evaluation helpers: open-loop prediction, recorded episodes, GIFs and plots."""
from __future__ import annotations

import torch
from conftest import make_window, small_world_model
from PIL import Image

from aime_torchrl.envs import make_env
from aime_torchrl.evaluation import episode_returns, open_loop_prediction, plot_scores, record_episode, save_gif, side_by_side


def test_open_loop_prediction_reconstructs_the_context_then_imagines():
    wm = small_world_model()
    window = make_window(batch=2, time=6)
    torch.manual_seed(0)
    full_context = open_loop_prediction(wm, window, context=7)
    torch.manual_seed(0)
    with torch.no_grad():
        frames = wm(wm.to_frames(window))
        reconstruction = wm.decoders["observation"].get_dist(frames).mean
    torch.testing.assert_close(full_context["observation"], reconstruction)
    torch.manual_seed(0)
    partial = open_loop_prediction(wm, window, context=3)
    torch.testing.assert_close(partial["observation"][:, :3], reconstruction[:, :3])
    assert not torch.allclose(partial["observation"][:, 3:], reconstruction[:, 3:])


def test_recorded_episode_and_gif(tmp_path):
    torch.manual_seed(3)
    ret, frames = record_episode(None, make_env("walker", "stand", seed=0, pixels=True), max_steps=10)
    assert frames.shape == (11, 3, 64, 64) and frames.dtype == torch.uint8
    assert frames.float().std() > 10  # not blank
    torch.manual_seed(3)  # the same random actions in the same env without rendering: the same return
    assert ret == episode_returns(None, make_env("walker", "stand", seed=0), 1, max_steps=10)[0]
    path = save_gif(side_by_side(frames, frames[:5]), tmp_path / "v.gif", scale=1)
    with Image.open(path) as gif:
        assert gif.n_frames == 11 and gif.size == (130, 64)


def test_plot_scores(tmp_path):
    path = plot_scores({"random": [13.0, 14.0], "AIME": [70.0, 60.0], "demonstrations": [100.0]}, tmp_path / "s.png")
    with Image.open(path) as image:
        assert image.size[0] > 300
