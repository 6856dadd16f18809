# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A TorchRL collector's batches -> whole trajectories in a window buffer -> windows that never
cross a trajectory, longer than what one batch holds of an environment."""
from __future__ import annotations

import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage

from aime_torchrl.data import LinearControlSystem, TrajectoryWriter, WindowReplayBuffer
from aime_torchrl.envs import make_linear_env


def collect(envs: int = 3, frames: int = 12, total: int = 600, max_steps: int = 25):
    env = make_linear_env(LinearControlSystem(), max_steps=max_steps, batch_size=(envs,))
    buffer = WindowReplayBuffer(horizon=16, batch_size=64, traj_key=("collector", "traj_ids"),
                                storage=LazyTensorStorage(total))
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
