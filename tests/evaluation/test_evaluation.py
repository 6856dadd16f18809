# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Evaluation helpers: seeded returns (in worker processes), open-loop prediction, recorded episodes, GIFs and plots."""
from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from conftest import make_window, small_world_model
from PIL import Image
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl.envs import make_env, NoiseSource, SENSOR_DIMS
from aime_torchrl.evaluation import (
    episode_returns, open_loop_prediction, plot_scores, record_episode, save_gif, seeded_episode_returns, side_by_side,
)
from aime_torchrl.modules import FilteringActor, make_policy


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


def test_a_long_plot_title_fits_its_figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from aime_torchrl.evaluation.plots import _wrapped

    title = ("walker-stand, mdp; embodiment data walker-random-n100-seed0 and walker-stand-noisy-n100-seed0; "
             "10 demos; quick profile, seed 0")
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * 3, 3.2))  # plot_scores' figure for 3 bars
    text = ax.set_title(_wrapped(title, fig, 9), fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    box = text.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and "\n" in text.get_text()
    plt.close(fig)


def _walker_actor() -> FilteringActor:
    return FilteringActor(small_world_model(SENSOR_DIMS["walker"], 6, state_dim=4), make_policy(4, 16, 6, hidden=16))


def _actor_env(actor: FilteringActor, seed: int):
    env = make_env("walker", "stand", seed=seed).append_transform(actor.make_tensordict_primer())
    return env.append_transform(actor.make_noise_source(seed))


def test_seeded_returns_are_the_same_in_worker_processes_and_ignore_the_global_generator():
    actor = _walker_actor()
    seeds = [5, 6, 7]
    torch.manual_seed(1)
    here = seeded_episode_returns(actor, partial(_actor_env, actor), seeds, max_steps=15)
    torch.manual_seed(2)  # the posterior noise comes from each env's NoiseSource, not from torch's generator
    assert seeded_episode_returns(actor, partial(_actor_env, actor), seeds, max_steps=15) == here
    # closures are sent to the workers with cloudpickle; every episode runs alone in its env
    workers = seeded_episode_returns(actor, lambda seed: _actor_env(actor, seed), seeds, workers=2, max_steps=15)
    assert workers == here
    assert len(set(here)) == 3  # the seeds give different episodes
    # the same first episode as a plain rollout of the env seeded with its seed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as seeded_episode_returns runs an episode
    try:
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = _actor_env(actor, 5).rollout(15, actor, break_when_any_done=True)
    finally:
        torch.set_num_threads(threads)
    assert here[0] == rollout.get(("next", "reward")).sum().item()


def test_noise_source_draws_its_own_stream():
    env = make_env("walker", "stand", seed=0).append_transform(NoiseSource("posterior_noise", (3,), seed=4))
    torch.manual_seed(0)
    rollout = env.rollout(4)
    expected = torch.randn(5, 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(rollout["posterior_noise"], expected[:4])
    torch.testing.assert_close(rollout["next", "posterior_noise"], expected[1:])


def test_results_keep_the_returns_when_scoring_fails(tmp_path):
    from aime_torchrl.evaluation import save_results

    with pytest.raises(ValueError, match="mean return is 0.0.*the returns are saved in .*results.json"):
        save_results(tmp_path, {"AIME": [1.0, 2.0], "demonstrations": [0.0, 0.0]}, 0.0, seed=3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["AIME"]["returns"] == [1.0, 2.0] and saved["seed"] == 3 and not (tmp_path / "results.md").exists()
