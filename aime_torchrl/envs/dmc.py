# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""DeepMind Control walker and cheetah in the three AIME setups, on TorchRL's DMControlWrapper."""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import DMControlWrapper, DoubleToFloat, ExcludeTransform, Transform, TransformedEnv

#: Model inputs of each setup (as the reference's); the order is the encoder's concatenation order.
SENSORS: dict[str, dict[str, tuple[str, ...]]] = {
    "walker": {
        "mdp": ("orientations", "height", "velocity"),
        "lpomdp": ("orientations", "height"),
        "visual": ("pixels",),
    },
    "cheetah": {
        "mdp": ("position", "velocity"),
        "lpomdp": ("position",),
        "visual": ("pixels",),
    },
}

#: Sizes of the proprioceptive sensors.
SENSOR_DIMS: dict[str, dict[str, int]] = {
    "walker": {"orientations": 14, "height": 1, "velocity": 9},
    "cheetah": {"position": 8, "velocity": 9},
}


def _cheetah_run_backward(physics) -> float:
    return float(np.clip(-physics.data.qvel[0] / 10, 0, 1))


def _cheetah_flip(physics) -> float:
    return float(np.clip(physics.data.qvel[2] / 5, 0, 1))


def _cheetah_flip_backward(physics) -> float:
    return float(np.clip(-physics.data.qvel[2] / 5, 0, 1))


#: Tasks of each embodiment: ``(dm_control task to load, reward override or None)``. The custom
#: cheetah rewards are those of the reference (argmax-ai/aime): computed once per env step from the final
#: sub-step's root velocity (qvel = [rootx, rootz, rooty, ...]) and replacing the summed reward,
#: so their maximum is 500 per episode.
TASKS: dict[str, dict[str, tuple[str, Callable | None]]] = {
    "walker": {"stand": ("stand", None), "walk": ("walk", None), "run": ("run", None)},
    "cheetah": {
        "run": ("run", None),
        "runbackward": ("run", _cheetah_run_backward),
        "flip": ("run", _cheetah_flip),
        "flipbackward": ("run", _cheetah_flip_backward),
    },
}
#: Short names of the custom cheetah tasks (``make_env("cheetah", "runb")``).
TASK_ALIASES = {"runb": "runbackward", "flipb": "flipbackward"}
#: The sensor setups of :data:`SENSORS`: all proprioception, position-like sensors only, 64x64 pixels.
SETUPS = ("mdp", "lpomdp", "visual")


def physics_of(env: DMControlWrapper):
    """The MuJoCo physics of the dm_control environment that TorchRL's ``env`` wraps.

    (The one read of a private TorchRL attribute in this library: ``DMControlWrapper`` keeps the
    wrapped dm_control env as ``_env`` and has no public accessor; the physics is needed to render
    once per step, to store and re-render states, and for the tasks' rewards.)
    """
    return env._env.physics


def _physics(transform: Transform):
    return physics_of(transform.parent.base_env)


class PhysicsState(Transform):
    """Writes ``physics`` = ``[qpos, qvel]`` (float32), so that images can be re-rendered later."""

    def __init__(self, dim: int) -> None:
        super().__init__(in_keys=[], out_keys=["physics"])
        self.dim = dim

    def _write(self, td: TensorDictBase) -> TensorDictBase:
        physics = _physics(self)
        state = np.concatenate([physics.data.qpos, physics.data.qvel]).astype(np.float32)
        return td.set("physics", torch.from_numpy(state).to(td.device or "cpu"))

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._write(next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._write(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec["physics"] = Unbounded((self.dim,), dtype=torch.float32, device=observation_spec.device)
        return observation_spec


class RenderPixels(Transform):
    """Renders ``pixels`` (uint8, 3xHxW) from a camera once per env step, after the last sub-step.

    dm_control's pixel wrapper renders after every sub-step of the action repeat; this renders
    once. With ``fast=True`` shadows and multisampling are off and the offscreen buffer is the image
    size, which makes a 64x64 frame about 5x cheaper on a CPU (setup notes); the images then differ
    slightly from dm_control's default rendering, which the official datasets used (``fast=False``).
    """

    def __init__(self, size: int = 64, camera_id: int = 0, fast: bool = True) -> None:
        super().__init__(in_keys=[], out_keys=["pixels"])
        self.size = size
        self.camera_id = camera_id
        self._configured = not fast

    def render(self, td: TensorDictBase) -> TensorDictBase:
        """Writes the current frame's ``pixels`` into ``td``."""
        physics = _physics(self)
        if not self._configured:
            physics.model.vis.quality.shadowsize = 0
            physics.model.vis.quality.offsamples = 0
            physics.model.vis.global_.offwidth = self.size
            physics.model.vis.global_.offheight = self.size
            self._configured = True
        try:
            image = physics.render(self.size, self.size, camera_id=self.camera_id)
        except Exception as err:  # the raw mujoco/GL error says little about the fix
            raise RuntimeError(
                f"Rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}. On a machine "
                "without a display use MUJOCO_GL=egl (needs libegl1 and libgl1-mesa-dri) or "
                "MUJOCO_GL=osmesa (needs libosmesa6), set before dm_control is imported."
            ) from err
        pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return td.set("pixels", pixels.to(td.device or "cpu"))

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self.render(next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self.render(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec["pixels"] = Bounded(
            0, 255, (3, self.size, self.size), dtype=torch.uint8, device=observation_spec.device
        )
        return observation_spec


class TaskReward(Transform):
    """Replaces the reward by ``reward_fn(physics)`` of the final sub-step (custom AIME tasks)."""

    def __init__(self, reward_fn: Callable) -> None:
        super().__init__(in_keys=[], out_keys=[])
        self.reward_fn = reward_fn

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict.get("reward")
        next_tensordict.set("reward", torch.full_like(reward, self.reward_fn(_physics(self))))
        return next_tensordict


def infer_embodiment(sensors) -> str | None:
    """The embodiment whose proprioceptive sensors are all among ``sensors`` (``None`` if none is).

    Examples:
        >>> infer_embodiment(["orientations", "height", "velocity", "pixels"])
        'walker'
    """
    found = [name for name, dims in SENSOR_DIMS.items() if set(dims) <= set(sensors)]
    return found[0] if len(found) == 1 else None


def render_states(embodiment: str, states: np.ndarray, *, size: int = 64, fast_render: bool = True) -> np.ndarray:
    """Images (uint8, ``[T, size, size, 3]``, camera 0) of stored physics states (``qpos`` then ``qvel``,
    the ``physics`` entry of collected episodes), rendered as :func:`make_env` renders them.

    Examples:
        >>> env = make_env("walker", "stand", seed=0)
        >>> rollout = env.rollout(3)
        >>> render_states("walker", rollout["physics"].numpy()).shape
        (3, 64, 64, 3)
    """
    env = make_env(embodiment, next(iter(TASKS[embodiment])), "mdp", pixels=True, image_size=size, fast_render=fast_render)
    env.reset()
    physics = physics_of(env.base_env)
    renderer = next(t for t in env.transform if isinstance(t, RenderPixels))
    nq = physics.model.nq
    images = []
    for state in np.asarray(states):
        with physics.reset_context():
            physics.data.qpos[:] = state[:nq]
            physics.data.qvel[:] = state[nq:]
        images.append(renderer.render(TensorDict())["pixels"].permute(1, 2, 0).numpy())
    env.close()
    return np.stack(images)


def ensure_mujoco_gl() -> str:
    """Picks a headless OpenGL backend (EGL) unless ``MUJOCO_GL`` is set; returns the backend."""
    return os.environ.setdefault("MUJOCO_GL", "egl")


def make_env(
    embodiment: str,
    task: str,
    setup: str = "mdp",
    *,
    action_repeat: int = 2,
    seed: int | None = None,
    pixels: bool | None = None,
    image_size: int = 64,
    fast_render: bool = True,
    device: torch.device | str | None = None,
) -> TransformedEnv:
    """A DeepMind Control env for AIME: ``embodiment`` x ``task`` x ``setup``.

    Observations are the setup's sensors (:data:`SENSORS`; float32, and ``pixels`` uint8 3x64x64
    rendered from camera 0 once per env step) plus ``physics`` (qpos and qvel, float32) for
    re-rendering. Actions in [-1, 1] are repeated ``action_repeat`` times with the rewards summed
    (the custom cheetah tasks replace the reward, see :data:`TASKS`). Episodes last
    ``1000 / action_repeat`` steps.

    Args:
        embodiment (str): ``"walker"`` or ``"cheetah"``.
        task (str): walker ``stand | walk | run``; cheetah ``run | runbackward | flip |
            flipbackward`` (aliases ``runb``, ``flipb``).
        setup (str, optional): ``mdp`` (all proprioception), ``lpomdp`` (position-like sensors
            only) or ``visual`` (pixels). Defaults to ``"mdp"``.

    Keyword Args:
        action_repeat (int, optional): physics steps per action. Defaults to ``2``.
        seed (int, optional): seed of the task's initial states.
        pixels (bool, optional): also render pixels outside the visual setup (to collect
            datasets with every sensor). Defaults to ``setup == "visual"``.
        image_size (int, optional): side of the rendered image. Defaults to ``64``.
        fast_render (bool, optional): no shadows nor multisampling (about 5x faster on a CPU). Use
            ``False`` to match the images of the official datasets exactly. Defaults to ``True``.
        device (torch.device, optional): device of the env's tensors.

    Examples:
        >>> env = make_env("walker", "walk", "lpomdp", seed=0)
        >>> sorted(env.reset().keys())
        ['done', 'height', 'orientations', 'physics', 'terminated', 'truncated']
    """
    if embodiment not in TASKS:
        raise ValueError(f"Unknown embodiment {embodiment!r}; choose from {sorted(TASKS)}.")
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS[embodiment]:
        raise ValueError(f"Unknown {embodiment} task {task!r}; choose from {sorted(TASKS[embodiment])}.")
    if setup not in SETUPS:
        raise ValueError(f"Unknown setup {setup!r}; choose from {SETUPS}.")
    ensure_mujoco_gl()
    from dm_control import suite

    base_task, reward_fn = TASKS[embodiment][task]
    dm_env = suite.load(embodiment, base_task, task_kwargs={"random": seed})
    env = TransformedEnv(DMControlWrapper(dm_env, frame_skip=action_repeat, device=device))
    keep = [k for k in SENSORS[embodiment][setup] if k != "pixels"]
    drop = [k for k in SENSOR_DIMS[embodiment] if k not in keep]
    if drop:
        env.append_transform(ExcludeTransform(*drop))
    env.append_transform(DoubleToFloat())
    if reward_fn is not None:
        env.append_transform(TaskReward(reward_fn))
    physics = dm_env.physics
    env.append_transform(PhysicsState(physics.model.nq + physics.model.nv))
    if pixels or (pixels is None and setup == "visual"):
        env.append_transform(RenderPixels(image_size, fast=fast_render))
    return env
