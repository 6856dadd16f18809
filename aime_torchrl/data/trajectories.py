# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A collector's batches written into a replay buffer one whole trajectory at a time."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import ReplayBuffer


class TrajectoryWriter:
    """Writes the batches of a TorchRL collector into ``buffer`` one finished trajectory at a time,
    each in consecutive entries.

    A collector stepping several environments yields ``[envs, T]`` batches: written as they come,
    a trajectory longer than ``T`` steps would lie in pieces between other environments' steps, and a
    :class:`~torchrl.data.SliceSampler` (:class:`~aime_torchrl.data.WindowSampler`) samples windows
    inside contiguous runs only, so no window could be longer than a piece. The writer keeps each
    unfinished trajectory's steps (by ``traj_key``) and writes it whole when its last step is marked
    done (``end_key``: TorchRL's ``("next", "done")`` is set at a termination or a truncation), so
    windows of any length up to an episode's are drawn and never cross a trajectory. Each written
    trajectory gets a new id under ``traj_key`` (0, 1, ... in the order written: :attr:`count`), so
    that ids stay unique when several collectors, or a resumed run's new collector (whose ids start
    at 0 again), write into one buffer.

    Args:
        buffer (ReplayBuffer): where the trajectories go (e.g. a
            :class:`~aime_torchrl.data.WindowReplayBuffer` with ``traj_key=("collector", "traj_ids")``).

    Keyword Args:
        traj_key (NestedKey, optional): the trajectory ids. Defaults to ``("collector", "traj_ids")``.
        end_key (NestedKey, optional): the last step's flag. Defaults to ``("next", "done")``.

    Attributes:
        pending (dict): the unfinished trajectories' steps, by the collector's id (their steps so far).
        count (int): the trajectories written so far (the next one's id); restore it when resuming.

    Examples:
        >>> from torchrl.collectors import Collector
        >>> from torchrl.data import LazyTensorStorage
        >>> from aime_torchrl.data import LinearControlSystem, WindowReplayBuffer
        >>> from aime_torchrl.envs import make_linear_env
        >>> env = make_linear_env(LinearControlSystem(), max_steps=20, batch_size=(2,))
        >>> buffer = WindowReplayBuffer(horizon=16, batch_size=4, traj_key=("collector", "traj_ids"),
        ...                             storage=LazyTensorStorage(1000))
        >>> writer = TrajectoryWriter(buffer)
        >>> for batch in Collector(env, None, frames_per_batch=10, total_frames=100):  # 5 steps per env
        ...     _ = writer.extend(batch)
        >>> len(buffer), buffer.sample()["collector", "traj_ids"].unique(dim=1).shape[1]
        (80, 1)
    """

    def __init__(
        self,
        buffer: ReplayBuffer,
        *,
        traj_key: NestedKey = ("collector", "traj_ids"),
        end_key: NestedKey = ("next", "done"),
    ) -> None:
        self.buffer, self.traj_key, self.end_key = buffer, traj_key, end_key
        self.pending: dict[int, list[TensorDictBase]] = {}
        self.count = 0

    def extend(self, batch: TensorDictBase) -> int:
        """Takes a collector's batch (``[T]`` or ``[envs, T]``, time last) and writes the trajectories
        it finishes; returns the number of steps written."""
        rows = batch.reshape(-1, batch.shape[-1]) if batch.ndim > 1 else batch.unsqueeze(0)
        written = 0
        for row in rows.unbind(0):
            ids = row.get(self.traj_key)
            ends = row.get(self.end_key).reshape(ids.shape)
            change = torch.ones_like(ends)
            change[1:] = ids[1:] != ids[:-1]
            starts = change.nonzero().squeeze(-1).tolist() + [ids.numel()]
            for start, stop in zip(starts[:-1], starts[1:]):
                traj, piece = int(ids[start]), row[start:stop]
                self.pending.setdefault(traj, []).append(piece)
                if bool(ends[stop - 1]):
                    trajectory = torch.cat(self.pending.pop(traj))
                    trajectory.set(self.traj_key, torch.full_like(trajectory.get(self.traj_key), self.count))
                    self.count += 1
                    self.buffer.extend(trajectory)
                    written += trajectory.numel()
        return written
