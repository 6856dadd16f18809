# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Replay buffers that sample windows of consecutive frames inside one episode."""
from __future__ import annotations

import warnings

from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer, TensorStorage


class WindowSampler(SliceSampler):
    """A :class:`~torchrl.data.SliceSampler` of windows inside one episode that reads only the flags.

    When it marks window starts and ends, TorchRL 0.14's sampler gathers every entry of the
    storage at the sampled indices, images included, and the replay buffer then gathers them
    again: three copies of a visual batch for one returned. This one reads only the flags it
    needs (``done``, ``terminated``, ``is_init``), and the batch is gathered once.
    """

    _FLAGS = (("next", "done"), ("next", "terminated"), "is_init")

    def _finalize_index(self, *, storage, **kwargs):
        return super()._finalize_index(storage=_FlagView(storage, self._FLAGS), **kwargs)


class _FlagView:
    """Indexes only a few entries of a storage."""

    def __init__(self, storage: TensorStorage, keys: tuple) -> None:
        self.flags = storage._storage.select(*keys, strict=False)

    def __getitem__(self, index):
        return self.flags[index]


class WindowReplayBuffer(TensorDictReplayBuffer):
    """A TorchRL replay buffer whose ``sample()`` returns ``[batch_size, horizon]`` windows."""

    def __init__(self, *, horizon: int, batch_size: int, **kwargs) -> None:
        super().__init__(
            sampler=WindowSampler(slice_len=horizon, traj_key="episode", strict_length=True, cache_values=True),
            batch_size=batch_size * horizon,
            **kwargs,
        )
        self.horizon = horizon
        self.num_windows = batch_size

    def sample(self, batch_size: int | None = None, **kwargs) -> TensorDictBase:
        """``batch_size`` windows (default: the constructor's), ``[batch_size, horizon]``."""
        windows = self.num_windows if batch_size is None else batch_size
        with warnings.catch_warnings():  # another batch size than the constructor's is meant here
            warnings.filterwarnings("ignore", message="Got conflicting batch_sizes")
            return super().sample(windows * self.horizon, **kwargs).reshape(windows, self.horizon)


def make_window_buffer(
    episodes: TensorDictBase, *, horizon: int, batch_size: int
) -> WindowReplayBuffer:
    """A TorchRL replay buffer of in-memory ``episodes`` that samples windows of ``horizon`` steps.

    Windows never cross an episode (``episodes["episode"]`` ids) and are drawn uniformly with
    replacement, as the reference does. ``buffer.sample()`` returns a ``[batch_size, horizon]``
    tensordict. For npz folders use :class:`~aime_torchrl.data.AIMEDataset`.

    Args:
        episodes (TensorDictBase): ``[N, L]`` episodes or ``[N * L]`` steps with an ``"episode"`` entry.

    Keyword Args:
        horizon (int): steps per window.
        batch_size (int): windows per batch.

    Examples:
        >>> from aime_torchrl.data.synthetic import LinearControlSystem
        >>> episodes = LinearControlSystem().rollout(4, 30)
        >>> make_window_buffer(episodes, horizon=10, batch_size=8).sample().batch_size
        torch.Size([8, 10])
    """
    flat = episodes.reshape(-1)
    buffer = WindowReplayBuffer(
        horizon=horizon, batch_size=batch_size, storage=LazyTensorStorage(flat.numel(), device=flat.device or "cpu")
    )
    buffer.extend(flat)
    return buffer
