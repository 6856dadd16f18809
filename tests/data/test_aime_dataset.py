# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.data import SliceSampler, TensorDictReplayBuffer, TensorStorage

from aime_torchrl.data import AIMEDataset, episode_files, episode_to_td, load_episode
from test_npz_format import official_episode, write_folder


def test_windows_match_their_source_and_never_cross_episodes(tmp_path):
    folder = write_folder(tmp_path / "data", 6, steps=30)
    data = AIMEDataset(folder, horizon=8, batch_size=32, root=tmp_path / "cache", progress=False)
    sources = {k: official_episode(k, steps=30) for k in range(6)}
    starts = set()
    for _ in range(40):
        batch = data.sample()
        assert batch.batch_size == torch.Size([32, 8])
        counter = batch["counter"].squeeze(-1).long()
        episode, start = counter[:, 0] // 1000, counter[:, 0] % 1000
        assert (batch["episode"] == episode[:, None]).all()
        assert (counter == counter[:, :1] + torch.arange(8)).all(), "a window crossed an episode"
        for row in range(32):
            e, s = int(episode[row]), int(start[row])
            starts.add(s)
            src = sources[e]
            np.testing.assert_array_equal(batch["velocity"][row].numpy(), src["velocity"][s : s + 8])
            np.testing.assert_array_equal(batch["next", "velocity"][row].numpy(), src["velocity"][s + 1 : s + 9])
            np.testing.assert_array_equal(batch["action"][row].numpy(), src["pre_action"][s + 1 : s + 9])
            np.testing.assert_array_equal(batch["next", "reward"][row].numpy(), src["reward"][s + 1 : s + 9])
    assert min(starts) == 0 and max(starts) == 30 - 8, "windows must cover every start, 0 .. L - horizon"


def test_demo_subset_mix_and_cache(tmp_path):
    a = write_folder(tmp_path / "a", 5, steps=20)
    b = write_folder(tmp_path / "b", 3, steps=20)
    cache = tmp_path / "cache"
    demos = AIMEDataset(a, horizon=5, num_episodes=2, root=cache, progress=False)
    assert demos.num_episodes == 2 and len(demos) == 40
    assert set(demos.storage[:]["episode"].tolist()) == {0, 1}

    mix = AIMEDataset([a, b], horizon=5, root=cache, progress=False)
    assert mix.num_episodes == 8 and len(mix) == 160
    assert [f.split("/")[-2:] for f in mix.files] == [["a", f"{k}.npz"] for k in range(5)] + [["b", f"{k}.npz"] for k in range(3)]
    expected = [float(official_episode(k, steps=20)["reward"].sum()) for k in (*range(5), *range(3))]
    np.testing.assert_allclose(mix.episode_returns, expected, rtol=1e-5)
    # Mixed windows stay inside one episode too, and every episode is sampled.
    seen = set()
    for _ in range(20):
        episode = mix.sample()["episode"]
        assert (episode == episode[:, :1]).all()
        seen.update(episode[:, 0].tolist())
    assert seen == set(range(8))

    # Built once, reused; a changed file rebuilds.
    meta = mix.data_path / "meta.json"
    stamp = meta.stat().st_mtime_ns
    again = AIMEDataset([a, b], horizon=5, root=cache, progress=False)
    assert again.data_path == mix.data_path and meta.stat().st_mtime_ns == stamp
    np.savez_compressed(b / "0.npz", **official_episode(9, steps=20))
    changed = AIMEDataset([a, b], horizon=5, root=cache, progress=False)
    assert changed.data_path != mix.data_path
    assert changed.episode_returns[5] == float(official_episode(9, steps=20)["reward"].sum())


def test_pixels_stay_uint8(tmp_path):
    folder = write_folder(tmp_path / "img", 2, steps=12, image=True)
    data = AIMEDataset(folder, horizon=4, batch_size=3, root=tmp_path / "cache", progress=False)
    batch = data.sample()
    assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape == (3, 4, 3, 64, 64)


def test_windows_are_marked_for_recurrent_modules(tmp_path):
    folder = write_folder(tmp_path / "data", 3, steps=30)
    batch = AIMEDataset(folder, horizon=8, batch_size=16, root=tmp_path / "cache", progress=False).sample()
    # TorchRL's convention: each window starts with is_init and ends truncated (done).
    assert batch["is_init"][:, 0].all() and not batch["is_init"][:, 1:].any()
    assert batch["next", "truncated"][:, -1].all() and not batch["next", "truncated"][:, :-1].any()
    assert batch["next", "done"][:, -1].all()


def test_merged_folders_keep_the_entries_all_episodes_share(tmp_path):
    plain = write_folder(tmp_path / "plain", 2, steps=20)
    extra = tmp_path / "extra"
    extra.mkdir()
    for k in range(2):  # e.g. a task buffer of train_expert.py that also saved its concatenated observation
        episode = official_episode(k, steps=20)
        np.savez_compressed(extra / f"{k}.npz", **episode, observation=np.zeros((21, 3), np.float32))
    with pytest.warns(UserWarning, match=r"\['observation'\] are not in every episode"):
        mix = AIMEDataset([plain, extra], horizon=5, root=tmp_path / "cache", progress=False)
    assert mix.num_episodes == 4 and "observation" not in mix.sensors
    assert "observation" in AIMEDataset(extra, horizon=5, root=tmp_path / "cache", progress=False).sensors


def _old_layout_buffer(folder, horizon, batch_size):
    """The windows as they were sampled before the frame storage: every episode's TorchRL rows
    (episode_to_td, each sensor at the root and under next) in one storage, TorchRL's SliceSampler."""
    rows = torch.cat([episode_to_td(load_episode(f), k) for k, f in enumerate(episode_files(folder))])
    sampler = SliceSampler(slice_len=horizon, traj_key="episode", strict_length=True, cache_values=True)
    return TensorDictReplayBuffer(storage=TensorStorage(rows), sampler=sampler, batch_size=batch_size * horizon)


def test_frame_storage_samples_the_windows_of_the_old_layout_bit_for_bit(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for k, steps in enumerate([14, 9, 20]):  # different lengths; one terminal episode
        episode = official_episode(k, steps=steps, image=True)
        episode["is_terminal"][-1] = k == 1
        np.savez_compressed(folder / f"{k}.npz", **episode)
    data = AIMEDataset(folder, horizon=6, batch_size=5, root=tmp_path / "cache", progress=False)
    # Stored as frames: each sensor once, 15 + 10 + 21 frames for 14 + 9 + 20 transitions.
    stored = data.storage[:]
    assert stored.batch_size == (46,) and "next" not in stored.keys() and len(data) == 43
    assert stored["pixels"].dtype == torch.uint8 and data.sensors["pixels"] == (3, 64, 64)
    reference, two = _old_layout_buffer(folder, 6, 5), _old_layout_buffer(folder, 6, 2)
    for seed in range(3):
        torch.manual_seed(seed)
        windows = [data.sample(), data.sample(2)]
        torch.manual_seed(seed)
        expected = [reference.sample().reshape(5, 6), two.sample().reshape(2, 6)]
        for window, old in zip(windows, expected):
            assert set(window.keys(True, True)) == set(old.keys(True, True))
            for key, value in old.items(True, True):
                assert window[key].dtype == value.dtype and torch.equal(window[key], value), key
    data.set_rng(torch.Generator().manual_seed(7))
    reference.set_rng(torch.Generator().manual_seed(7))
    torch.testing.assert_close(data.sample(), reference.sample().reshape(5, 6), rtol=0, atol=0)


def test_a_visual_walker_dataset_takes_half_the_disk_of_the_transitions(tmp_path):
    folder = tmp_path / "walker"
    folder.mkdir()
    for k in range(2):  # walker-shaped: 14 + 1 + 9 sensors, 6-d actions, 64x64 images
        episode = official_episode(k, steps=100, image=True)
        frames = len(episode["pre_action"])
        episode.update(orientations=np.zeros((frames, 14), np.float32), height=np.zeros((frames, 1), np.float32))
        np.savez_compressed(folder / f"{k}.npz", **episode)
    data = AIMEDataset(folder, horizon=10, root=tmp_path / "cache", progress=False)
    on_disk = sum(p.stat().st_size for p in (data.data_path / "storage").rglob("*.memmap"))
    rows = torch.cat([episode_to_td(load_episode(f), k) for k, f in enumerate(episode_files(folder))])
    as_transitions = sum(v.numel() * v.element_size() for v in rows.values(True, True))
    assert 0.49 < on_disk / as_transitions < 0.52, (on_disk, as_transitions)


def test_the_episodes_are_checked_once_when_the_dataset_is_built(tmp_path, monkeypatch):
    import aime_torchrl.data.dataset as dataset

    folder = write_folder(tmp_path / "data", 3, steps=20)
    reads = []
    monkeypatch.setattr(dataset, "load_episode", lambda f: reads.append(f) or load_episode(f))
    data = AIMEDataset(folder, horizon=5, root=tmp_path / "cache", progress=False)
    data.sample()
    assert len(reads) == 3  # each file read and checked once
    AIMEDataset(folder, horizon=5, root=tmp_path / "cache", progress=False).sample()
    assert len(reads) == 3  # opening the stored frames again reads no file
