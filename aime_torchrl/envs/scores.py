# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Expert-normalised scores: ``100 * return / expert return``."""
from __future__ import annotations

from aime_torchrl.envs.dmc import TASK_ALIASES

#: Mean returns of the reference's expert demonstrations (the paper's Tables 1-2), used to
#: normalise scores on the official datasets. Datasets made by this project store their own.
REFERENCE_EXPERT_RETURNS: dict[str, float] = {
    "walker-stand": 957.871,
    "walker-walk": 943.788,
    "walker-run": 604.100,
    "cheetah-run": 888.648,
    "cheetah-runbackward": 218.503,
    "cheetah-flip": 485.794,
    "cheetah-flipbackward": 379.908,
}


def normalised_score(episode_return: float, env_name: str | None = None, *, expert_return: float | None = None) -> float:
    """``100 * episode_return / expert_return``, in percent of the expert.

    Args:
        episode_return (float): the return to normalise.
        env_name (str, optional): ``"<embodiment>-<task>"``, to use the reference's expert return.

    Keyword Args:
        expert_return (float, optional): the expert's mean return (e.g. of the demonstrations
            actually used); takes precedence over ``env_name``.

    Examples:
        >>> round(normalised_score(479.0, "walker-stand"), 1)
        50.0
        >>> normalised_score(300.0, expert_return=600.0)
        50.0
    """
    if expert_return is None:
        embodiment, _, task = (env_name or "").partition("-")
        env_name = f"{embodiment}-{TASK_ALIASES.get(task, task)}"
        if env_name not in REFERENCE_EXPERT_RETURNS:
            raise KeyError(
                f"No reference expert return for {env_name!r}; pass expert_return= or one of "
                f"{sorted(REFERENCE_EXPERT_RETURNS)}."
            )
        expert_return = REFERENCE_EXPERT_RETURNS[env_name]
    if expert_return <= 0:
        raise ValueError(f"The expert return must be positive, got {expert_return}.")
    return 100.0 * episode_return / expert_return
