# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Batches of windows drawn from several replay buffers with set shares."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer


class WindowMixture:
    """Batches of ``batch_size`` windows, ``shares[i]`` of them from ``buffers[i]`` (rounded; the
    first buffer takes what rounding leaves), e.g. AIME-NoB's data-driven regulariser: half of every
    world-model batch from the offline embodiment data, half from the online buffer. Only the keys
    present in every part are kept; a buffer with no windows yet (an online buffer before its first
    finished trajectory) gives its share to the first one.

    Args:
        buffers (sequence of ReplayBuffer): ``sample(n)`` gives ``n`` windows
            (:class:`~aime_torchrl.data.WindowReplayBuffer`, :class:`~aime_torchrl.data.AIMEDataset`).
        shares (sequence of float): each buffer's share, summing to 1.

    Keyword Args:
        batch_size (int): windows per batch.

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem, make_window_buffer
        >>> system = LinearControlSystem()
        >>> offline = make_window_buffer(system.rollout(8, 20), horizon=5, batch_size=1)
        >>> online = make_window_buffer(system.rollout(8, 20, seed=1), horizon=5, batch_size=1)
        >>> WindowMixture([offline, online], [0.5, 0.5], batch_size=6).counts()
        [3, 3]
    """

    def __init__(self, buffers: Sequence[ReplayBuffer], shares: Sequence[float], *, batch_size: int) -> None:
        if len(buffers) != len(shares) or not buffers:
            raise ValueError(f"WindowMixture needs one share per buffer: got {len(buffers)} buffers and {len(shares)} shares.")
        if any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"WindowMixture's shares must be >= 0 and sum to 1, got {list(shares)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.buffers, self.shares, self.batch_size = list(buffers), list(shares), batch_size

    def counts(self) -> list[int]:
        """The windows each buffer gives to the next batch."""
        counts = [round(s * self.batch_size) if len(b) else 0 for s, b in zip(self.shares, self.buffers)]
        counts[0] = 0
        counts[0] = self.batch_size - sum(counts)
        return counts

    def sample(self) -> TensorDictBase:
        parts = [buffer.sample(n) for buffer, n in zip(self.buffers, self.counts()) if n > 0]
        keys = set.intersection(*(set(p.keys(True, True)) for p in parts))
        return torch.cat([p.select(*keys) for p in parts], 0)
