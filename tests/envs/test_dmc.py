# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from aime_torchrl.data import AIMEDataset, collect_episodes, load_episode
from aime_torchrl.envs import ensure_mujoco_gl, make_env, normalised_score, SENSOR_DIMS, SENSORS, TASKS

COMBOS = [(e, t, s) for e in TASKS for t in TASKS[e] for s in ("mdp", "lpomdp", "visual")]


@pytest.mark.parametrize("embodiment,task,setup", COMBOS)
def test_env_builds_and_steps(embodiment, task, setup):
    env = make_env(embodiment, task, setup, seed=0)
    check_env_specs(env)
    rollout = env.rollout(500, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([500])
    assert rollout["next", "done"].squeeze(-1).tolist() == [False] * 499 + [True]  # 1000 physics steps
    sensors = SENSORS[embodiment][setup]
    expected = set(sensors) | {"physics"}
    assert expected <= set(rollout.keys())
    assert not (set(SENSOR_DIMS[embodiment]) - set(sensors)) & set(rollout.keys()), "sensors outside the setup"
    for key in sensors:
        if key == "pixels":
            assert rollout[key].dtype == torch.uint8 and rollout[key].shape == (500, 3, 64, 64)
            assert rollout[key].float().std() > 0, "blank images"
        else:
            assert rollout[key].dtype == torch.float32
            assert rollout[key].shape == (500, SENSOR_DIMS[embodiment][key])


@pytest.mark.parametrize(
    "task,reward",
    [
        ("runbackward", lambda qvel: np.clip(-qvel[0] / 10, 0, 1)),
        ("flip", lambda qvel: np.clip(qvel[2] / 5, 0, 1)),
        ("flipbackward", lambda qvel: np.clip(-qvel[2] / 5, 0, 1)),
    ],
)
def test_custom_cheetah_rewards(task, reward):
    env = make_env("cheetah", task, seed=1)
    torch.manual_seed(0)
    rollout = env.rollout(60)
    qvel = rollout["next", "physics"][:, 9:].numpy()  # cheetah: nq = nv = 9
    expected = np.array([reward(q) for q in qvel], dtype=np.float32)
    np.testing.assert_allclose(rollout["next", "reward"].squeeze(-1).numpy(), expected, rtol=1e-5, atol=1e-7)
    assert expected.max() <= 1.0  # once per env step, not summed over the action repeat


def test_collected_episodes_round_trip(tmp_path):
    torch.manual_seed(0)
    returns = collect_episodes(make_env("walker", "walk", "mdp", seed=3), tmp_path / "random", 2, progress=False)
    torch.manual_seed(0)
    env = make_env("walker", "walk", "mdp", seed=3)
    sources = [env.rollout(1000, break_when_any_done=True) for _ in range(2)]
    np.testing.assert_allclose(returns, [float(s["next", "reward"].sum()) for s in sources], rtol=1e-6)

    episode = load_episode(tmp_path / "random" / "1.npz")
    assert episode["pre_action"].shape == (501, 6) and (episode["pre_action"][0] == 0).all()
    np.testing.assert_array_equal(episode["pre_action"][1:], sources[1]["action"].numpy())  # a_{t-1} leads to o_t
    assert episode["physics"].shape == (501, 18)

    data = AIMEDataset(tmp_path / "random", horizon=50, batch_size=16, root=tmp_path / "cache", progress=False)
    for _ in range(10):
        batch = data.sample()
        for row in range(16):
            src = sources[int(batch["episode"][row, 0])]
            # The physics state identifies the window's first step in its episode.
            start = int((src["physics"] == batch["physics"][row, 0]).all(-1).nonzero()[0, 0])
            window = src[start : start + 50]
            for key in ("orientations", "height", "velocity", "action", ("next", "reward"), ("next", "velocity")):
                torch.testing.assert_close(batch[key][row], window[key], rtol=0, atol=0, msg=str(key))


def test_bad_names_and_gl_default(monkeypatch):
    with pytest.raises(ValueError, match="Unknown embodiment 'hopper'"):
        make_env("hopper", "hop")
    with pytest.raises(ValueError, match="Unknown walker task 'jump'"):
        make_env("walker", "jump")
    with pytest.raises(ValueError, match="Unknown setup 'pixels'"):
        make_env("walker", "walk", "pixels")
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert ensure_mujoco_gl() == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert ensure_mujoco_gl() == "osmesa"
    assert normalised_score(957.871, "walker-stand") == pytest.approx(100.0)
    with pytest.raises(KeyError, match="No reference expert return"):
        normalised_score(1.0, "walker-jump")


def test_collecting_into_a_folder_appends_and_never_overwrites(tmp_path):
    env = make_env("walker", "stand", "mdp", seed=0)
    collect_episodes(env, tmp_path, 2, max_steps=5, progress=False)
    first = (tmp_path / "0.npz").read_bytes()
    collect_episodes(env, tmp_path, 1, max_steps=5, progress=False)  # appended as 2.npz
    assert sorted(f.name for f in tmp_path.glob("*.npz")) == ["0.npz", "1.npz", "2.npz"]
    assert (tmp_path / "0.npz").read_bytes() == first
    message = r"already holds 1\.npz .*start_index=None to append after its last episode \(2\.npz\)"
    with pytest.raises(FileExistsError, match=message):
        collect_episodes(env, tmp_path, 2, start_index=1, max_steps=5, progress=False)
    collect_episodes(env, tmp_path, 1, start_index=5, max_steps=5, progress=False)  # an explicit free number
    assert (tmp_path / "5.npz").is_file()
