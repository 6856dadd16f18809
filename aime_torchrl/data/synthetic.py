# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A small controlled linear system, to check AIME end to end in seconds on a CPU."""
from __future__ import annotations

import math

import torch
from tensordict import TensorDict


class LinearControlSystem:
    """``x_{t+1} = A x_t + B a_t + noise``, fully observed, with a fixed linear "expert" ``a = tanh(K x)``.

    ``A`` is a damped rotation (spectral radius ``damping``), so random actions keep the state
    bounded; ``B`` has full column rank, so the action that produced a transition is identifiable
    from the two observations: exactly what AIME must infer from action-free demonstrations.

    Args:
        obs_dim (int, optional): size of the state (even). Defaults to ``4``.
        action_dim (int, optional): size of the action, at most ``obs_dim``. Defaults to ``2``.

    Keyword Args:
        damping (float, optional): spectral radius of ``A``. Defaults to ``0.9``.
        noise (float, optional): std of the transition noise. Defaults to ``0.02``.
        seed (int, optional): seed of the system matrices. Defaults to ``0``.

    Examples:
        >>> system = LinearControlSystem()
        >>> data = system.rollout(3, 20, policy="expert", seed=1)
        >>> data.batch_size, sorted(data.keys())
        (torch.Size([3, 20]), ['action', 'episode', 'is_init', 'next', 'observation'])
    """

    def __init__(
        self,
        obs_dim: int = 4,
        action_dim: int = 2,
        *,
        damping: float = 0.9,
        noise: float = 0.02,
        seed: int = 0,
    ) -> None:
        if obs_dim % 2 or action_dim > obs_dim:
            raise ValueError(f"Need an even obs_dim >= action_dim; got {obs_dim} and {action_dim}.")
        g = torch.Generator().manual_seed(seed)
        blocks = []
        for _ in range(obs_dim // 2):
            angle = float(torch.rand((), generator=g)) * math.pi / 4
            c, s = math.cos(angle), math.sin(angle)
            blocks.append(damping * torch.tensor([[c, -s], [s, c]]))
        self.A = torch.block_diag(*blocks)
        self.B = 0.5 * torch.randn(obs_dim, action_dim, generator=g)
        self.K = torch.randn(action_dim, obs_dim, generator=g)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.noise = noise

    def expert(self, x: torch.Tensor) -> torch.Tensor:
        """The demonstrator's action ``tanh(K x)``."""
        return torch.tanh(x @ self.K.T)

    def rollout(self, num_episodes: int, length: int, *, policy: str = "random", seed: int = 0) -> TensorDict:
        """Episodes ``[num_episodes, length]`` in TorchRL layout.

        Args:
            num_episodes (int): number of episodes.
            length (int): steps per episode.

        Keyword Args:
            policy (str, optional): ``"random"`` (uniform in [-1, 1]) or ``"expert"``.
                Defaults to ``"random"``.
            seed (int, optional): seed of the initial states, noise and random actions.

        Returns ``observation`` o_t, ``action`` a_t, ``("next", "observation")`` o_{t+1},
        ``("next", "done")``, ``is_init`` and ``episode``.
        """
        if policy not in ("random", "expert"):
            raise ValueError(f"policy must be 'random' or 'expert', got {policy!r}.")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(num_episodes, self.obs_dim, generator=g)
        obs, actions = [x], []
        for _ in range(length):
            if policy == "random":
                a = torch.rand(num_episodes, self.action_dim, generator=g) * 2 - 1
            else:
                a = self.expert(x)
            x = x @ self.A.T + a @ self.B.T + self.noise * torch.randn(x.shape, generator=g)
            obs.append(x)
            actions.append(a)
        obs = torch.stack(obs, 1)
        done = torch.zeros(num_episodes, length, 1, dtype=torch.bool)
        done[:, -1] = True
        is_init = torch.zeros(num_episodes, length, 1, dtype=torch.bool)
        is_init[:, 0] = True
        return TensorDict(
            {
                "observation": obs[:, :-1],
                "action": torch.stack(actions, 1),
                "is_init": is_init,
                "episode": torch.arange(num_episodes).unsqueeze(-1).expand(num_episodes, length),
                "next": {"observation": obs[:, 1:], "done": done},
            },
            batch_size=[num_episodes, length],
        )
