# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.data.datasets import load_dataset

from aime_torchrl.data import AIMEDataset, DatasetFormatError, convert_vd4rl, load_episode, open_vd4rl


def _vd4rl_file(path, lengths, seed=0, first_action=0.0):
    """Episodes of the given lengths one after another, in V-D4RL's (DreamerV2's) layout."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    starts = np.cumsum([0, *lengths[:-1]])
    is_first = np.isin(np.arange(n), starts)
    is_last = np.isin(np.arange(n), starts + np.array(lengths) - 1)
    action = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
    action[is_first] = first_action
    reward = rng.uniform(0, 1, n).astype(np.float32)
    reward[is_first] = 0
    np.savez(path, image=rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8), action=action, reward=reward,
             discount=np.ones(n, np.float32), is_first=is_first, is_last=is_last, is_terminal=np.zeros(n, bool))
    return {"image": np.load(path)["image"], "action": action, "reward": reward, "starts": starts}


def test_episodes_are_split_and_renamed(tmp_path):
    source = tmp_path / "walker_walk" / "medium" / "64px"
    source.mkdir(parents=True)
    a = _vd4rl_file(source / "a.npz", [9, 7], seed=0)
    _vd4rl_file(source / "b.npz", [8], seed=1)
    out = convert_vd4rl(source, tmp_path / "aime")
    episodes = [load_episode(out / f"{k}.npz") for k in range(3)]
    assert [len(e["image"]) for e in episodes] == [9, 7, 8]
    second = episodes[1]  # the file's second episode: rows 9..15
    np.testing.assert_array_equal(second["image"], a["image"][9:16])
    np.testing.assert_array_equal(second["pre_action"], a["action"][9:16])
    np.testing.assert_array_equal(second["reward"][:, 0], a["reward"][9:16])
    assert second["is_first"][0, 0] and second["is_last"][-1, 0] and not second["is_first"][1:].any()


def test_torchrl_load_dataset_opens_vd4rl_as_windows(tmp_path):
    source = tmp_path / "64px"
    source.mkdir()
    data = _vd4rl_file(source / "0.npz", [12, 12], seed=2)
    dataset = load_dataset(f"aime_vd4rl:{source}", horizon=5, batch_size=4, root=tmp_path / "cache", progress=False)
    assert isinstance(dataset, AIMEDataset)
    windows = dataset.sample()
    assert windows.batch_size == torch.Size([4, 5]) and windows["pixels"].shape[-3:] == (3, 64, 64)
    assert windows["pixels"].dtype == torch.uint8
    frames = open_vd4rl(source, horizon=11, batch_size=1, root=tmp_path / "cache", progress=False).storage[:12]
    np.testing.assert_array_equal(frames["pre_action"].numpy(), data["action"][:12])
    np.testing.assert_array_equal(frames["pixels"].permute(0, 2, 3, 1).numpy(), data["image"][:12])
    assert len(list((tmp_path / "cache" / "vd4rl").iterdir())) == 1  # converted once, reopened


def test_bad_files_are_refused_naming_the_file(tmp_path):
    _vd4rl_file(tmp_path / "shifted.npz", [6], first_action=0.5)
    with pytest.raises(DatasetFormatError, match="shifted.npz.*non-zero first action"):
        convert_vd4rl(tmp_path / "shifted.npz", tmp_path / "out")
    np.savez(tmp_path / "no_reward.npz", image=np.zeros((3, 64, 64, 3), np.uint8), action=np.zeros((3, 6)))
    with pytest.raises(DatasetFormatError, match=r"no_reward.npz lacks \['reward'"):
        convert_vd4rl(tmp_path / "no_reward.npz", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="No V-D4RL npz files"):
        convert_vd4rl(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()
