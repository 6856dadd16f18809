# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Roll a policy out in a TorchRL env: episode returns and recorded episodes."""
from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import cloudpickle
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


def seeded_episode_returns(
    policy: TensorDictModuleBase | None,
    make_env: Callable[[int], EnvBase],
    seeds: Sequence[int],
    *,
    workers: int = 0,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    max_steps: int = 100_000,
    progress: bool = False,
    desc: str = "evaluating",
) -> list[float]:
    """The return of one episode per seed: episode i in a fresh ``make_env(seeds[i])``.

    With ``workers=0`` the episodes run one after the other in this process; with ``workers=k``
    in ``min(k, len(seeds))`` worker processes (spawned; ``policy`` and ``make_env`` are sent with cloudpickle, so
    closures work). Every episode runs alone in its env with one torch thread and torch's global
    generator seeded with its seed (restored afterwards), and the env's seed decides the task's
    initial state; an actor with its own generators should take its noise from the env too
    (:meth:`FilteringActor.make_noise_source <aime_torchrl.modules.FilteringActor.make_noise_source>`).
    So the returns are the same, bit for bit, whatever ``workers``.

    Why not one batched env (:class:`~torchrl.envs.SerialEnv`) with the actor on the whole batch:
    float32 matrix products round differently with the batch size (3e-7 in the first action of a
    walker episode), and the walker's physics amplify that into other episodes (returns apart by
    hundreds): batching would make the score depend on how many episodes run together.

    Examples:
        >>> from aime_torchrl.envs import make_env
        >>> seeded_episode_returns(None, lambda seed: make_env("walker", "stand", seed=seed), [0, 1], max_steps=10)[0] > 0
        True
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 (this process) or a number of processes, got {workers}.")
    if not seeds:
        return []
    bar = tqdm(total=len(seeds), desc=desc, disable=not progress)
    if not workers:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            returns = []
            for seed in seeds:
                returns.append(_episode_return(policy, make_env, seed, exploration_type, max_steps))
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        payload = cloudpickle.dumps((policy, make_env, exploration_type, max_steps))
        context = multiprocessing.get_context("spawn")
        # a worker that dies breaks the pool with an error (BrokenProcessPool), never a hang
        with ProcessPoolExecutor(min(workers, len(seeds)), mp_context=context, initializer=_start_worker,
                                 initargs=(payload,)) as pool:
            returns = []
            for value in pool.map(_worker_episode_return, seeds):
                returns.append(value)
                bar.update()
    bar.close()
    return returns


def _episode_return(
    policy: TensorDictModuleBase | None,
    make_env: Callable[[int], EnvBase],
    seed: int,
    exploration_type: ExplorationType,
    max_steps: int,
) -> float:
    """One episode in ``make_env(seed)``; torch's global generator is seeded with ``seed`` for it
    (random actions, a policy sampling from it) and left as it was."""
    env = make_env(seed)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return episode_returns(policy, env, 1, exploration_type=exploration_type, max_steps=max_steps)[0]
    finally:
        env.close()


_WORKER: dict = {}


def _start_worker(payload: bytes) -> None:
    """Worker set-up: the main process decides about interrupts (a Ctrl-C or SIGTERM sent to the
    process group lets the workers finish their episodes, e.g. while train_offline finishes its
    step and saves a checkpoint); a worker whose parent is gone exits on its closed queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    _WORKER["payload"] = payload


def _worker_episode_return(seed: int) -> float:
    if "task" not in _WORKER:  # unpickled here, not in the initializer: an error reaches the caller
        _WORKER["task"] = cloudpickle.loads(_WORKER["payload"])
    policy, make_env, exploration_type, max_steps = _WORKER["task"]
    return _episode_return(policy, make_env, seed, exploration_type, max_steps)


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
