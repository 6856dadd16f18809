# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Roll a policy out in a TorchRL env: episode returns and recorded episodes."""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm


def episode_returns(
    policy: TensorDictModuleBase | None,
    env: EnvBase,
    episodes: int,
    *,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    max_steps: int = 100_000,
    progress: bool = False,
    desc: str = "evaluating",
) -> list[float]:
    """Returns of ``episodes`` episodes of ``policy`` in ``env`` (``tanh(mean)`` actions by default).

    ``policy=None`` acts uniformly at random (TorchRL's ``env.rollout`` default). Episodes follow one
    another in the same env, so a seeded env gives the same list.

    Examples:
        >>> from aime_torchrl.envs import make_env
        >>> returns = episode_returns(None, make_env("walker", "stand", seed=0), 2, max_steps=10)
        >>> len(returns)
        2
    """
    returns = []
    with torch.no_grad(), set_exploration_type(exploration_type):
        for _ in tqdm(range(episodes), desc=desc, disable=not progress):
            rollout = env.rollout(max_steps, policy, break_when_any_done=True)
            returns.append(rollout.get(("next", "reward")).sum().item())
    return returns


def record_episode(
    policy: TensorDictModuleBase | None,
    env: EnvBase,
    *,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    max_steps: int = 100_000,
) -> tuple[float, torch.Tensor]:
    """One episode of ``policy`` in ``env`` (which must render ``pixels``, e.g. ``make_env(...,
    pixels=True)``): its return and its frames, uint8 ``[T + 1, 3, H, W]`` from the first
    observation to the last."""
    with torch.no_grad(), set_exploration_type(exploration_type):
        rollout = env.rollout(max_steps, policy, break_when_any_done=True)
    if "pixels" not in rollout.keys():
        raise KeyError("record_episode needs an env that renders 'pixels' (make_env(..., pixels=True)).")
    frames = torch.cat([rollout.get("pixels")[:1], rollout.get(("next", "pixels"))])
    return rollout.get(("next", "reward")).sum().item(), frames
