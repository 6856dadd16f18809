# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The synthetic linear control system as a TorchRL environment (online runs and tests on any CPU)."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase, StepCounter, TransformedEnv

from aime_torchrl.data.synthetic import LinearControlSystem


class LinearControlEnv(EnvBase):
    """:class:`~aime_torchrl.data.LinearControlSystem` as a TorchRL environment: ``observation`` x_t,
    actions in ``[-1, 1]``, x_{t+1} = A x_t + B a_t + noise, and as reward the agreement with the
    system's expert, ``-||a_t - tanh(K x_t)||^2`` (what an imitation score measures). It never ends
    by itself: :func:`make_linear_env` caps its episodes with TorchRL's :class:`~torchrl.envs.StepCounter`.

    Args:
        system (LinearControlSystem): the dynamics (its ``A``, ``B``, ``K`` and noise).

    Keyword Args:
        batch_size (torch.Size, optional): independent copies stepped together. Defaults to ``()``.
        device (torch.device, optional): where it runs. Defaults to the CPU.

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem
        >>> env = make_linear_env(LinearControlSystem(), max_steps=10)
        >>> rollout = env.rollout(100)
        >>> rollout.batch_size, bool(rollout["next", "truncated"][-1])
        (torch.Size([10]), True)
    """

    def __init__(self, system: LinearControlSystem, *, batch_size: torch.Size | tuple = (),
                 device: torch.device | str | None = None) -> None:
        super().__init__(batch_size=torch.Size(batch_size), device=device or "cpu")
        self.system = system
        shape = self.batch_size
        self.observation_spec = Composite(observation=Unbounded((*shape, system.obs_dim)), shape=shape)
        self.action_spec = Bounded(-1.0, 1.0, (*shape, system.action_dim))
        self.reward_spec = Unbounded((*shape, 1))
        self.generator = torch.Generator()
        self.x = torch.zeros(*shape, system.obs_dim)

    def _set_seed(self, seed: int | None) -> None:
        self.generator.manual_seed(0 if seed is None else seed)

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        fresh = torch.randn(self.x.shape, generator=self.generator)
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(*self.batch_size, 1)
            self.x = torch.where(mask, fresh, self.x)
        else:
            self.x = fresh
        return TensorDict({"observation": self.x.clone()}, self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        system, action = self.system, tensordict.get("action").clamp(-1, 1).cpu()
        reward = -(action - system.expert(self.x)).pow(2).sum(-1, keepdim=True)
        noise = torch.randn(self.x.shape, generator=self.generator)
        self.x = self.x @ system.A.T + action @ system.B.T + system.noise * noise
        done = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        return TensorDict({"observation": self.x.clone(), "reward": reward, "done": done, "terminated": done.clone()},
                          self.batch_size, device=self.device)


def make_linear_env(system: LinearControlSystem, *, max_steps: int = 60, seed: int = 0, **kwargs) -> TransformedEnv:
    """A :class:`LinearControlEnv` (``kwargs``: its keyword arguments) whose episodes are truncated
    after ``max_steps`` steps, seeded with ``seed``."""
    env = TransformedEnv(LinearControlEnv(system, **kwargs), StepCounter(max_steps))
    env.set_seed(seed)
    return env
