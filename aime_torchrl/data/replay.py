# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Replay buffers that sample windows of consecutive steps inside one episode."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import LazyTensorStorage, SliceSampler, Storage, TensorDictReplayBuffer, TensorStorage

from aime_torchrl.data.npz import frames_to_transitions

#: What :class:`WindowSampler` reads of a storage of TorchRL transitions to mark the windows.
TRANSITION_FLAGS = ("episode", ("next", "done"), ("next", "terminated"), "is_init")


class WindowSampler(SliceSampler):
    """A :class:`~torchrl.data.SliceSampler` of windows of ``slice_len`` consecutive entries inside
    one trajectory (``traj_key`` ids, or runs ending at ``end_key``) that reads only a few entries of
    the storage.

    When it marks window starts and ends, TorchRL's sampler gathers every entry of the storage
    at the sampled indices, images included, and the replay buffer then gathers them again. This
    one samples from a copy of only ``keys`` (the episode ids, and the flags the window marks
    are made of), taken from the storage when it first samples and again after each write: a
    batch is read from the storage once, by the replay buffer.

    Keyword Args:
        slice_len (int): entries per window.
        traj_key (NestedKey, optional): the trajectory ids: ``"episode"`` (our datasets) or
            ``("collector", "traj_ids")`` (what a TorchRL collector writes; its trajectories must be
            stored whole, see :class:`~aime_torchrl.data.TrajectoryWriter`). Defaults to ``"episode"``.
        end_key (NestedKey, optional): where trajectories end, for storages without ids (e.g.
            ``("next", "done")``); used when ``traj_key`` is ``None`` or absent. Defaults to ``None``.
        keys (sequence of NestedKey, optional): the entries copied besides ``traj_key`` and
            ``end_key``; those missing from the storage are skipped. Defaults to :data:`TRANSITION_FLAGS`.
        **kwargs: the other keyword arguments of :class:`~torchrl.data.SliceSampler`, e.g.
            ``truncated_key=None, init_key=None`` for no marks.

    Examples:
        >>> from tensordict import TensorDict
        >>> steps = TensorDict({"episode": torch.arange(3).repeat_interleave(5), "x": torch.arange(15)}, [15])
        >>> storage = TensorStorage(steps)
        >>> index, info = WindowSampler(slice_len=4).sample(storage, 8)
        >>> window = steps[index].reshape(2, 4)
        >>> bool((window["episode"] == window["episode"][:, :1]).all()), bool((window["x"].diff() == 1).all())
        (True, True)
    """

    def __init__(
        self,
        *,
        slice_len: int,
        traj_key: NestedKey | None = "episode",
        end_key: NestedKey | None = None,
        keys: Sequence[NestedKey] = TRANSITION_FLAGS,
        **kwargs,
    ) -> None:
        super().__init__(slice_len=slice_len, traj_key=traj_key, end_key=end_key, strict_length=True,
                         cache_values=True, **kwargs)
        self.keys = tuple(dict.fromkeys(k for k in (traj_key, end_key, *keys) if k is not None))
        self._flags: TensorStorage | None = None

    def extend(self, index: torch.Tensor) -> None:
        super().extend(index)
        self._flags = None

    def add(self, index: torch.Tensor) -> None:
        super().add(index)
        self._flags = None

    def sample(self, storage: Storage, batch_size: int) -> tuple[tuple[torch.Tensor, ...], dict]:
        if self._flags is None:
            self._flags = TensorStorage(storage[:].select(*self.keys, strict=False).clone())
        return super().sample(self._flags, batch_size)


class WindowReplayBuffer(TensorDictReplayBuffer):
    """A TorchRL replay buffer whose ``sample()`` returns ``[batch_size, horizon]`` windows of
    TorchRL transitions.

    The storage holds TorchRL transitions, or with ``frames=True`` frames
    (:func:`~aime_torchrl.data.npz.episode_to_frames`: each sensor once per frame, an episode of L
    steps in L + 1 consecutive entries, episodes numbered 0, 1, ... in storage order). Frames are
    sampled as ``[batch_size, horizon + 1]`` slices and laid out as transitions
    (:func:`~aime_torchrl.data.npz.frames_to_transitions`): the same windows, with the same random
    draws, as the transitions of the same episodes would give. Either way the windows carry
    TorchRL's :class:`~torchrl.data.SliceSampler` marks (``is_init`` at the first step,
    ``("next", "truncated")`` and ``("next", "done")`` at the last) and ``index``, each step's
    position among the storage's transitions.

    Keyword Args:
        horizon (int): steps per window.
        batch_size (int): windows per batch.
        frames (bool, optional): the storage holds frames. Defaults to ``False``.
        traj_key, end_key (NestedKey, optional): how the storage marks trajectories
            (:class:`WindowSampler`). Default to ``"episode"`` and ``None``.
        **kwargs: the other arguments of :class:`~torchrl.data.TensorDictReplayBuffer` (e.g.
            ``storage``, ``transform``: applied to what is read from the storage, flat).

    Examples:
        >>> from aime_torchrl.data.synthetic import LinearControlSystem
        >>> episodes = LinearControlSystem().rollout(4, 30)
        >>> buffer = WindowReplayBuffer(horizon=10, batch_size=8, storage=LazyTensorStorage(120))
        >>> _ = buffer.extend(episodes.reshape(-1))
        >>> buffer.sample().batch_size
        torch.Size([8, 10])
    """

    def __init__(
        self,
        *,
        horizon: int,
        batch_size: int,
        frames: bool = False,
        traj_key: NestedKey | None = "episode",
        end_key: NestedKey | None = None,
        **kwargs,
    ) -> None:
        length = horizon + 1 if frames else horizon
        marks = dict(keys=(), truncated_key=None, init_key=None) if frames else {}
        sampler = WindowSampler(slice_len=length, traj_key=traj_key, end_key=end_key, **marks)
        super().__init__(sampler=sampler, batch_size=batch_size * length, **kwargs)
        self.horizon = horizon
        self.num_windows = batch_size
        self.frames = frames

    def sample(self, batch_size: int | None = None) -> TensorDictBase:
        """``batch_size`` windows (default: the constructor's), ``[batch_size, horizon]``."""
        windows = self.num_windows if batch_size is None else batch_size
        length = self.horizon + 1 if self.frames else self.horizon
        with warnings.catch_warnings():  # another batch size than the constructor's is meant here
            warnings.filterwarnings("ignore", message="Got conflicting batch_sizes")
            batch = super().sample(windows * length).reshape(windows, length)
        return _frame_windows(batch) if self.frames else batch


def _frame_windows(frames: TensorDictBase) -> TensorDictBase:
    """Frame windows ``[B, T + 1]`` read from a storage (with the buffer's ``index``) as windows of
    transitions ``[B, T]`` marked as TorchRL's SliceSampler marks them."""
    index = frames.get("index")
    window = frames_to_transitions(frames.exclude("index"))
    first = torch.zeros_like(window.get("is_init"))
    first[:, 0] = True
    last = torch.zeros_like(first)
    last[:, -1] = True
    window.set("is_init", window.get("is_init") | first)
    window.set(("next", "done"), window.get(("next", "done")) | last)
    window.set(("next", "truncated"), last)
    # Each episode before a frame has one frame more than transitions.
    window.set("index", index[:, :-1] - window.get("episode").unsqueeze(-1))
    return window


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
