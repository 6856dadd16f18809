# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Replay buffers that sample windows of consecutive frames inside one episode."""
from __future__ import annotations

from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, SliceSampler, ReplayBuffer


def make_window_buffer(
    episodes: TensorDictBase, *, horizon: int, batch_size: int, traj_key: str = "episode"
) -> ReplayBuffer:
    """A TorchRL replay buffer of ``episodes`` that samples ``batch_size`` windows of ``horizon`` steps.

    Windows never cross an episode (:class:`~torchrl.data.SliceSampler` with ``strict_length``),
    and are drawn uniformly with replacement, as the reference does. ``buffer.sample()`` returns
    a ``[batch_size, horizon]`` tensordict.

    Args:
        episodes (TensorDictBase): ``[N, L]`` episodes or ``[N * L]`` steps with a ``traj_key`` entry.

    Keyword Args:
        horizon (int): steps per window.
        batch_size (int): windows per batch.
        traj_key (str, optional): the episode id. Defaults to ``"episode"``.

    Examples:
        >>> from aime_torchrl.data.synthetic import LinearControlSystem
        >>> episodes = LinearControlSystem().rollout(4, 30)
        >>> make_window_buffer(episodes, horizon=10, batch_size=8).sample().batch_size
        torch.Size([8, 10])
    """
    flat = episodes.reshape(-1)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(flat.numel(), device=flat.device or "cpu"),
        sampler=SliceSampler(slice_len=horizon, traj_key=traj_key, strict_length=True, cache_values=True),
        batch_size=batch_size * horizon,
        transform=lambda td: td.reshape(batch_size, horizon),
    )
    buffer.extend(flat)
    return buffer
