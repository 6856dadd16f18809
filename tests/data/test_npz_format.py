# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The official AIME episode format, written here by hand (not by our writer), and its TorchRL layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aime_torchrl.data import (
    AIMEDataset,
    DatasetFormatError,
    episode_files,
    episode_to_td,
    load_episode,
    load_episodes,
    td_to_episode,
)


def official_episode(index: int, steps: int = 40, image: bool = False, action_dim: int = 6) -> dict[str, np.ndarray]:
    """An episode as the reference writes it: L + 1 frames, 2-D arrays, pre_action[0] = 0."""
    frames = steps + 1
    t = np.arange(frames, dtype=np.float32)[:, None]
    rng = np.random.default_rng(index)
    pre_action = rng.uniform(-1, 1, (frames, action_dim)).astype(np.float32)
    pre_action[0] = 0
    reward = rng.uniform(0, 1, (frames, 1)).astype(np.float32)
    reward[0] = 0
    episode = {
        "counter": 1000 * index + t,  # identifies (episode, frame) in sampled windows
        "velocity": rng.normal(size=(frames, 9)).astype(np.float32),
        "pre_action": pre_action,
        "reward": reward,
        "is_first": np.arange(frames)[:, None] == 0,
        "is_last": np.arange(frames)[:, None] == steps,
        "is_terminal": np.zeros((frames, 1), bool),
    }
    if image:
        episode["image"] = rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    return episode


def write_folder(folder, episodes: int, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(episodes):
        np.savez_compressed(folder / f"{k}.npz", **official_episode(k, **kwargs))
    return folder


def test_official_files_load_in_torchrl_layout(tmp_path):
    folder = write_folder(tmp_path / "official", 12, image=True)
    files = episode_files(folder)
    assert [f.stem for f in files] == [str(k) for k in range(12)]  # numeric, not lexicographic order
    source = official_episode(3, image=True)
    td = episode_to_td(load_episode(files[3]), index=3)
    assert td.batch_size == torch.Size([40])
    for t in (0, 17, 39):
        torch.testing.assert_close(td["action"][t], torch.from_numpy(source["pre_action"][t + 1]))
        torch.testing.assert_close(td["velocity"][t], torch.from_numpy(source["velocity"][t]))
        torch.testing.assert_close(td["next", "velocity"][t], torch.from_numpy(source["velocity"][t + 1]))
        torch.testing.assert_close(td["next", "reward"][t], torch.from_numpy(source["reward"][t + 1]))
        assert torch.equal(td["pixels"][t], torch.from_numpy(source["image"][t]).permute(2, 0, 1))
    assert td["pixels"].dtype == torch.uint8 and td["pixels"].shape[1:] == (3, 64, 64)
    assert td["is_init"].squeeze(-1).tolist() == [True] + [False] * 39
    assert td["next", "done"].squeeze(-1).tolist() == [False] * 39 + [True]
    assert td["next", "truncated"][-1].item() and not td["next", "terminated"].any()
    assert (td["episode"] == 3).all()


def test_round_trip_is_exact(tmp_path):
    source = official_episode(5, image=True)
    back = td_to_episode(episode_to_td(source, 5))
    assert sorted(back) == sorted(source)
    for key, value in source.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        episode_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="holds no <k>.npz"):
        episode_files(tmp_path / "empty")

    folder = write_folder(tmp_path / "bad", 3)
    (folder / "1.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetFormatError, match=r"1\.npz: not a readable \.npz"):
        load_episode(folder / "1.npz")

    episode = official_episode(0)
    del episode["pre_action"]
    np.savez_compressed(folder / "2.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"2\.npz: missing \['pre_action'\]"):
        load_episode(folder / "2.npz")

    episode = official_episode(0)
    episode["velocity"][7, 2] = np.nan
    np.savez_compressed(folder / "0.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"0\.npz: velocity has NaN or inf values \(frames \[7\]\)"):
        load_episode(folder / "0.npz")

    episode = official_episode(0)
    episode["reward"] = episode["reward"][:-1]
    np.savez_compressed(folder / "0.npz", **episode)
    with pytest.raises(DatasetFormatError, match="different numbers of frames"):
        load_episode(folder / "0.npz")


def test_dataset_level_errors(tmp_path):
    folder = write_folder(tmp_path / "dims", 3)
    np.savez_compressed(folder / "2.npz", **official_episode(2, action_dim=4))
    with pytest.raises(DatasetFormatError, match=r"2\.npz: sensors, shapes or dtypes differ from .*0\.npz"):
        AIMEDataset(folder, root=tmp_path / "cache", horizon=10, progress=False)

    short = write_folder(tmp_path / "short", 2, steps=8)
    with pytest.raises(DatasetFormatError, match="fewer steps than the horizon 10"):
        AIMEDataset(short, root=tmp_path / "cache", horizon=10, progress=False)
    with pytest.raises(ValueError, match="num_episodes=5, but 2 episodes"):
        AIMEDataset(short, root=tmp_path / "cache", horizon=4, num_episodes=5, progress=False)


def test_more_format_checks(tmp_path):
    episode = official_episode(0)
    episode["is_first"][10] = True  # a reset inside the file: windows would cross it
    np.savez_compressed(tmp_path / "0.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"is_first must be true at frame 0 only.*\[0, 10\]"):
        load_episode(tmp_path / "0.npz")

    episode = official_episode(0, image=True)
    episode["image"] = episode["image"].transpose(0, 3, 1, 2)  # channels first
    np.savez_compressed(tmp_path / "1.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"image must be uint8 \[frames, H, W, 3\]"):
        load_episode(tmp_path / "1.npz")

    episode = official_episode(0)
    episode["is_terminal"][-1] = True  # a terminal end: done and terminated, not truncated
    td = episode_to_td(episode)
    assert td["next", "done"][-1].item() and td["next", "terminated"][-1].item()
    assert not td["next", "truncated"][-1].item()
    np.testing.assert_array_equal(td_to_episode(td)["is_terminal"], episode["is_terminal"])


def test_checks_before_any_training_name_the_file_and_the_fix(tmp_path):
    """Issue 11: values beyond float32, 0/1-frame episodes, 1-D sensors, a file lacking 'reward',
    rewards summing to inf, and sensor shapes against a model's, each refused while the data is opened."""
    cases = {
        "float64 beyond float32": (lambda e: e.update(velocity=e["velocity"].astype(np.float64) * np.where(
            np.arange(41)[:, None] == 5, 1e300, 1.0)), r"velocity has values beyond float32's range .*frames \[5\]"),
        "0 frames": (lambda e: e.update({k: v[:0] for k, v in e.items()}), r"0 frame\(s\); an episode is the reset frame"),
        "1 frame": (lambda e: e.update({k: v[:1] for k, v in e.items()}), r"1 frame\(s\)"),
        "1-D sensor": (lambda e: e.update(velocity=e["velocity"][:, 0]), r"velocity is a 1-D array \[41\].*\[frames, 1\]"),
        "reward per frame": (lambda e: e.update(reward=np.zeros((41, 2), np.float32)), r"reward must hold one value per frame"),
    }
    for i, (name, (damage, message)) in enumerate(cases.items()):
        folder = write_folder(tmp_path / f"case{i}", 2)
        episode = official_episode(1)
        damage(episode)
        np.savez_compressed(folder / "1.npz", **episode)
        with pytest.raises(DatasetFormatError, match=rf"case{i}/1\.npz: {message}"):
            AIMEDataset(folder, root=tmp_path / "cache", horizon=10, progress=False)

    folder = write_folder(tmp_path / "no_reward", 3)  # one file lacks 'reward': named, not a KeyError after a warning
    episode = official_episode(1)
    del episode["reward"]
    np.savez_compressed(folder / "1.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"no_reward/1\.npz: missing \['reward'\]"):
        AIMEDataset(folder, root=tmp_path / "cache", horizon=10, progress=False)

    folder = write_folder(tmp_path / "huge_reward", 2)  # finite in float32, but the return is not
    episode = official_episode(1)
    episode["reward"][1:] = 3e38
    np.savez_compressed(folder / "1.npz", **episode)
    with pytest.raises(DatasetFormatError, match=r"huge_reward/1\.npz: its rewards sum to inf"):
        AIMEDataset(folder, root=tmp_path / "cache", horizon=10, progress=False)

    data = AIMEDataset(write_folder(tmp_path / "images", 2, image=True), root=tmp_path / "cache", horizon=10, progress=False)
    data.require({"velocity": (9,), "pixels": (3, 64, 64)}, purpose="the world model")  # what it holds: fine
    with pytest.raises(ValueError, match=r"'velocity' has shape \(9,\) per frame, but the world model reads \(8,\)"):
        data.require({"velocity": (8,)}, purpose="the world model")
    small = write_folder(tmp_path / "small_images", 2)
    for k in range(2):
        np.savez_compressed(small / f"{k}.npz", **official_episode(k), image=np.zeros((41, 32, 32, 3), np.uint8))
    data = AIMEDataset(small, root=tmp_path / "cache", horizon=10, progress=False)
    with pytest.raises(ValueError, match=r"small_images: the sensor 'pixels' has shape \(3, 32, 32\).*reads \(3, 64, 64\): "
                                         "render the images at that size"):
        data.require({"velocity": (9,), "pixels": (3, 64, 64)}, purpose="the world model")


def test_load_episodes_stacks_folders_in_memory(tmp_path):
    first, second = write_folder(tmp_path / "a", 3, steps=10), write_folder(tmp_path / "b", 2, steps=10)
    episodes = load_episodes([first, second], sensors=["velocity"])
    assert episodes.batch_size == (5, 10) and "counter" not in episodes.keys()
    assert episodes["episode"][:, 0].tolist() == [0, 1, 2, 3, 4]
    expected = episode_to_td(official_episode(0, steps=10), 3).exclude("counter", ("next", "counter"))
    torch.testing.assert_close(episodes[3], expected)
    assert load_episodes(first, num_episodes=2).batch_size == (2, 10)
    with pytest.raises(DatasetFormatError, match="lacks the sensors \\['height'\\]"):
        load_episodes(first, sensors=["velocity", "height"])
    with pytest.raises(ValueError, match="num_episodes=4, but 3 episodes"):
        load_episodes(first, num_episodes=4)
    write_folder(tmp_path / "c", 1, steps=12)
    with pytest.raises(DatasetFormatError, match="needs episodes of one length"):
        load_episodes([first, tmp_path / "c"])
