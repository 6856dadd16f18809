# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import torch
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

from aime_torchrl.data import LinearControlSystem, make_window_buffer


def test_windows_stay_inside_one_episode():
    episodes = LinearControlSystem().rollout(5, 12, seed=3)
    buffer = make_window_buffer(episodes, horizon=6, batch_size=16)
    for _ in range(20):
        batch = buffer.sample()
        assert batch.batch_size == torch.Size([16, 6])
        episode = batch["episode"]
        assert (episode == episode[:, :1]).all()
        # Consecutive steps: each row's next observation is the following row's observation.
        torch.testing.assert_close(batch["next", "observation"][:, :-1], batch["observation"][:, 1:])


def test_windows_are_torchrl_slice_sampler_s_for_the_same_seed():
    # WindowSampler reads only the episode ids and flags: the same draws and marks as TorchRL's SliceSampler,
    # which reads every entry at the sampled indices.
    episodes = LinearControlSystem().rollout(5, 12, seed=3).reshape(-1)
    buffer = make_window_buffer(episodes, horizon=6, batch_size=4)
    reference = TensorDictReplayBuffer(
        storage=LazyTensorStorage(60), batch_size=24,
        sampler=SliceSampler(slice_len=6, traj_key="episode", strict_length=True, cache_values=True))
    reference.extend(episodes)
    for seed in range(3):
        torch.manual_seed(seed)
        window = buffer.sample()
        torch.manual_seed(seed)
        torch.testing.assert_close(window, reference.sample().reshape(4, 6), rtol=0, atol=0)
