# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.envs.dmc import (
    ensure_mujoco_gl,
    infer_embodiment,
    make_env,
    PhysicsState,
    RenderPixels,
    render_states,
    SENSOR_DIMS,
    SENSORS,
    SETUPS,
    TASK_ALIASES,
    TaskReward,
    TASKS,
)
from aime_torchrl.envs.linear import LinearControlEnv, make_linear_env
from aime_torchrl.envs.noise import NoiseSource
from aime_torchrl.envs.scores import normalised_score, REFERENCE_EXPERT_RETURNS

__all__ = [
    "LinearControlEnv",
    "make_linear_env",
    "NoiseSource",
    "PhysicsState",
    "REFERENCE_EXPERT_RETURNS",
    "RenderPixels",
    "SENSORS",
    "SENSOR_DIMS",
    "SETUPS",
    "TASKS",
    "TASK_ALIASES",
    "TaskReward",
    "ensure_mujoco_gl",
    "infer_embodiment",
    "make_env",
    "normalised_score",
    "render_states",
]
