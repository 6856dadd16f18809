# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A TorchRL collector's batches -> whole trajectories in a window buffer -> windows that never
cross a trajectory, longer than what one batch holds of an environment."""
from __future__ import annotations

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage

from aime_torchrl.data import LinearControlSystem, TrajectoryWriter, WindowMixture, WindowReplayBuffer
from aime_torchrl.envs import make_linear_env


def collect(envs: int = 3, frames: int = 12, total: int = 600, max_steps: int = 25, capacity: int | None = None):
    env = make_linear_env(LinearControlSystem(), max_steps=max_steps, batch_size=(envs,))
    buffer = WindowReplayBuffer(horizon=16, batch_size=64, traj_key=("collector", "traj_ids"),
                                storage=LazyTensorStorage(capacity or total))
    writer = TrajectoryWriter(buffer)
    torch.manual_seed(0)
    collector = Collector(env, None, frames_per_batch=frames, total_frames=total)
    written = sum(writer.extend(batch) for batch in collector)
    collector.shutdown()
    return buffer, writer, written


def test_collector_windows_never_cross_a_trajectory_and_outgrow_a_batch():
    buffer, writer, written = collect()  # 4 steps of each env per batch, windows of 16
    assert written == len(buffer) and written % 25 == 0  # whole episodes only
    assert written + sum(p.numel() for parts in writer.pending.values() for p in parts) == 600  # nothing lost
    for _ in range(20):
        window = buffer.sample()
        ids, steps = window["collector", "traj_ids"], window["next", "step_count"].squeeze(-1)
        assert window.batch_size == (64, 16)
        assert (ids == ids[:, :1]).all()
        assert (steps.diff(dim=1) == 1).all()  # consecutive steps of one episode
        assert (window["observation"][:, 1:] == window["next", "observation"][:, :-1]).all()


def test_end_key_marks_trajectories_without_ids():
    buffer, _, _ = collect(envs=1, frames=25, total=200)
    by_done = WindowReplayBuffer(horizon=16, batch_size=32, traj_key=None, end_key=("next", "done"),
                                 storage=LazyTensorStorage(200))
    by_done.extend(buffer[:].exclude("collector"))
    steps = by_done.sample()["next", "step_count"].squeeze(-1)
    assert (steps.diff(dim=1) == 1).all()


def test_the_mixture_keeps_its_share_and_waits_for_online_windows():
    offline, _, _ = collect(envs=1, frames=25, total=200)
    online = WindowReplayBuffer(horizon=16, batch_size=8, traj_key=("collector", "traj_ids"),
                                storage=LazyTensorStorage(200))
    mixture = WindowMixture([offline, online], [0.75, 0.25], batch_size=8)
    assert mixture.counts() == [8, 0]  # no online trajectory finished yet: all offline
    writer = TrajectoryWriter(online)
    env = make_linear_env(LinearControlSystem(seed=1), max_steps=25, batch_size=(2,))
    for batch in Collector(env, None, frames_per_batch=50, total_frames=100):
        writer.extend(batch)
    assert mixture.counts() == [6, 2]
    torch.manual_seed(0)
    batch = mixture.sample()
    assert batch.batch_size == (8, 16)
    first = batch["observation"][:, 0]  # where each window starts: the last 2 in the online storage
    stored = online[:]["observation"]
    assert [bool((stored == row).all(-1).any()) for row in first] == [False] * 6 + [True] * 2
    with pytest.raises(ValueError, match="sum to 1"):
        WindowMixture([offline, online], [0.5, 0.25], batch_size=8)


def test_ids_stay_unique_when_a_new_collector_writes_into_the_buffer():
    buffer, writer, written = collect(envs=2, frames=10, total=200, capacity=400)  # this collector's ids: 0, 1, ...
    env = make_linear_env(LinearControlSystem(seed=1), max_steps=25, batch_size=(2,))
    for batch in Collector(env, None, frames_per_batch=10, total_frames=200):  # its ids start at 0 again
        written += writer.extend(batch)
    ids = buffer[:]["collector", "traj_ids"]
    assert written == len(buffer) and ids.unique().numel() == written // 25 == writer.count
    assert (ids.diff() >= 0).all()  # one id per whole trajectory, in the order written
