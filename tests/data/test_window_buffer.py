# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import torch

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
