# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Collect episodes with any TorchRL policy and write them in the official AIME format."""
from __future__ import annotations

from pathlib import Path

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm

from aime_torchrl.data.npz import save_episode, td_to_episode


class UniformRandomPolicy(TensorDictModuleBase):
    """Uniform actions in the bounds of ``action_spec``, from a generator of its own (reproducible
    whatever else uses the global RNG).

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> policy = UniformRandomPolicy(Bounded(-1.0, 1.0, (2,)), seed=0)
        >>> policy(TensorDict(batch_size=[3]))["action"].shape
        torch.Size([3, 2])
    """

    in_keys: list = []
    out_keys = ["action"]

    def __init__(self, action_spec, *, seed: int = 0) -> None:
        super().__init__()
        self.low, self.high = action_spec.space.low, action_spec.space.high
        self.shape = action_spec.shape
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, tensordict):
        u = torch.rand((*tensordict.batch_size, *self.shape), generator=self.generator, dtype=self.low.dtype)
        return tensordict.set("action", (self.low + (self.high - self.low) * u).to(tensordict.device or "cpu"))


class GaussianActionNoise(TensorDictModuleBase):
    """Adds ``N(0, sigma^2)`` to ``"action"`` and clips it to the action bounds, from a generator
    of its own. Unlike TorchRL's :class:`~torchrl.modules.AdditiveGaussianModule` it acts whatever
    the exploration type (an expert acting with ``tanh(mean)`` plus fixed noise).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import Bounded
        >>> noise = GaussianActionNoise(Bounded(-1.0, 1.0, (2,)), sigma=0.5, seed=0)
        >>> bool(noise(TensorDict({"action": torch.zeros(3, 2)}, [3]))["action"].abs().max() <= 1)
        True
    """

    in_keys = ["action"]
    out_keys = ["action"]

    def __init__(self, action_spec, *, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.low, self.high = action_spec.space.low, action_spec.space.high
        self.sigma = sigma
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, tensordict):
        action = tensordict.get("action")
        noise = torch.randn(action.shape, generator=self.generator, dtype=action.dtype).to(action.device)
        return tensordict.set("action", (action + self.sigma * noise).clamp(self.low, self.high))


def collect_episodes(
    env: EnvBase,
    folder: str | Path,
    num_episodes: int,
    policy: TensorDictModuleBase | None = None,
    *,
    start_index: int | None = None,
    max_steps: int = 100_000,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    progress: bool = True,
) -> list[float]:
    """Rolls out ``policy`` in ``env`` and writes ``<start_index + i>.npz`` episodes to ``folder``,
    after the episodes the folder already holds; an existing episode file is never overwritten.

    Every observation the env returns is stored (sensors, ``pixels`` as ``image``, ``physics``),
    with ``pre_action`` (the action clipped to the action bounds, as applied), ``reward`` and the
    flags of the official format. Non-finite actions stop the collection with an error. The env's own seed
    decides the initial states, so a seeded env gives the same files.

    Args:
        env (EnvBase): e.g. :func:`~aime_torchrl.envs.make_env`.
        folder (path): created if missing.
        num_episodes (int): episodes to collect.
        policy (TensorDictModuleBase, optional): any TorchRL policy; ``None`` samples uniform random
            actions from the action spec (global RNG; see :class:`UniformRandomPolicy`).

    Keyword Args:
        start_index (int, optional): number of the first file; ``None`` appends after the highest
            numbered ``<k>.npz`` in ``folder`` (``0`` in an empty one). A number whose files already
            exist raises an error. Defaults to ``None``.
        max_steps (int, optional): cap on an episode's length. Defaults to ``100_000``.
        exploration_type (ExplorationType, optional): how the policy acts. Defaults to
            ``DETERMINISTIC`` (the reference's experts act with the mean).
        progress (bool, optional): show a progress bar. Defaults to ``True``.

    Returns the return of each episode.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = [int(f.stem) for f in folder.glob("*.npz") if f.stem.isdigit()]
    if start_index is None:
        start_index = max(held, default=-1) + 1
    taken = sorted(set(held) & set(range(start_index, start_index + num_episodes)))
    if taken:
        raise FileExistsError(
            f"{folder} already holds {taken[0]}.npz (and {len(taken) - 1} more of the files to write): pass "
            f"start_index=None to append after its last episode ({max(held)}.npz), or use another folder."
        )
    returns = []
    bar = tqdm(range(num_episodes), desc=f"collecting {folder.name}", disable=not progress)
    with torch.no_grad(), set_exploration_type(exploration_type):
        for i in bar:
            rollout = env.rollout(max_steps, policy, break_when_any_done=True)
            action = rollout.get("action")
            if not torch.isfinite(action).all():
                raise ValueError(f"The policy produced non-finite actions in episode {start_index + i}.")
            # Stored as applied: the env (MuJoCo) clips actions to their bounds, as the reference does.
            rollout.set("action", action.clamp(env.action_spec.space.low, env.action_spec.space.high))
            save_episode(folder / f"{start_index + i}.npz", td_to_episode(rollout))
            returns.append(float(rollout.get(("next", "reward")).sum()))
            bar.set_postfix(ret=f"{returns[-1]:.1f}", refresh=False)
    return returns
