# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Per-env noise for stochastic actors, so an episode's randomness belongs to its env's seed."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite, Unbounded
from torchrl.envs import Transform


class NoiseSource(Transform):
    """Writes a standard normal sample under ``key`` at every reset and step, from its own generator.

    An actor that reads its noise from the tensordict (the
    :class:`~aime_torchrl.modules.FilteringActor` reads ``"posterior_noise"``) then draws the same
    numbers for an episode whatever else runs in the process: one env at a time or many in a
    :class:`~torchrl.envs.SerialEnv` / :class:`~torchrl.envs.ParallelEnv`, each with its own
    ``NoiseSource`` seeded like its env.

    Args:
        key (NestedKey): where the noise is written.
        shape (tuple of int): shape of one sample (the env's batch shape is prepended).
        seed (int): seed of the generator.

    Examples:
        >>> from aime_torchrl.envs import make_env
        >>> env = make_env("walker", "stand", seed=0).append_transform(NoiseSource("posterior_noise", (8,), seed=0))
        >>> env.reset()["posterior_noise"].shape
        torch.Size([8])
    """

    def __init__(self, key: NestedKey, shape: tuple[int, ...], seed: int) -> None:
        super().__init__(in_keys=[], out_keys=[key])
        self.key, self.shape = key, tuple(shape)
        self.generator = torch.Generator().manual_seed(seed)

    def _write(self, td: TensorDictBase) -> TensorDictBase:
        noise = torch.randn(*td.batch_size, *self.shape, generator=self.generator)
        return td.set(self.key, noise.to(td.device or "cpu"))

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._write(next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._write(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[self.key] = Unbounded(
            (*observation_spec.shape, *self.shape), dtype=torch.float32, device=observation_spec.device
        )
        return observation_spec
