# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The env's frame stack gives the policy what stack_window gives it in training."""
from __future__ import annotations

import torch

from aime_torchrl.envs import make_env
from aime_torchrl.modules import frame_stack_transform, stack_window


def test_env_stack_matches_the_training_windows():
    env = make_env("walker", "walk", seed=0).append_transform(frame_stack_transform({"height": (1,), "velocity": (9,)}, 3))
    rollout = env.rollout(10)
    for t in range(2, 10):  # full windows: exactly the dataset's windows ending at t
        sample = stack_window(rollout[t - 2: t + 1], ["height", "velocity"])
        for key in ("height", "velocity"):
            torch.testing.assert_close(rollout["stack", key][t], sample["stack", key])
    # After reset the stack is padded with copies of the first observation, as the reference's actor.
    torch.testing.assert_close(rollout["stack", "velocity"][0], rollout["velocity"][0].expand(3, 9))
    torch.testing.assert_close(rollout["stack", "velocity"][1, 2], rollout["velocity"][1])
