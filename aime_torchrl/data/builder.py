# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Build the paper's datasets on a CPU: expert demonstrations and random play, in the official format.

    python -m aime_torchrl.data.builder walker-stand-expert --episodes 100 [--images] [--seed 0]

Names: ``<embodiment>-<task>-expert`` (a shipped expert acting with ``tanh(mean)``),
``<embodiment>-<task>-noisy`` (the expert with Gaussian action noise whose std falls from 1 to 0
over the episodes: a stand-in for a task buffer that takes a minute to build instead of an hour),
``<embodiment>-random`` (uniform actions); ``<embodiment>-<task>-buffer`` folders come from
``examples/train_expert.py``, and ``walker-mix`` is random + stand-buffer + walk-buffer (the paper's
p2e buffer has no counterpart here).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tensordict.nn import TensorDictSequential
from torchrl.envs.utils import ExplorationType
from tqdm.auto import tqdm

from aime_torchrl.data.collect import collect_episodes, GaussianActionNoise, UniformRandomPolicy
from aime_torchrl.data.npz import DatasetFormatError, episode_files, load_episode, save_episode
from aime_torchrl.data.dataset import AIMEDataset, default_root, file_lock
from aime_torchrl.envs.dmc import make_env, render_states, TASKS

#: The reward of random play is irrelevant; the reference collects it on these tasks.
RANDOM_TASK = {"walker": "walk", "cheetah": "run"}


def dataset_folders(name: str, *, root: str | Path | None = None, **build_kwargs) -> list[Path]:
    """The folder(s) of a named dataset, building the ones this project can make if missing.

    ``walker-mix`` resolves to ``[walker-random, walker-stand-buffer, walker-walk-buffer]``
    (merge them with :class:`~aime_torchrl.data.AIMEDataset`).
    """
    root = Path(root) if root is not None else default_root()
    if name == "walker-mix":
        return [
            *dataset_folders("walker-random", root=root, **build_kwargs),
            *dataset_folders("walker-stand-buffer", root=root),
            *dataset_folders("walker-walk-buffer", root=root),
        ]
    if name.endswith("-buffer"):
        folder = root / name
        if not folder.is_dir():
            embodiment, task, _ = name.split("-")
            raise FileNotFoundError(
                f"No task-buffer dataset {folder}: it is the replay buffer of an expert's training. Make it with "
                f"python examples/train_expert.py embodiment={embodiment} task={task} buffer_dir={folder}"
            )
        return [folder]
    return [build_dataset(name, root=root, **build_kwargs)]


def resolve_datasets(
    spec: str | Path | Sequence[str | Path],
    *,
    root: str | Path | None = None,
    num_episodes: int | None = None,
    **build_kwargs,
) -> list[Path]:
    """Folders of datasets given by name (see :func:`dataset_folders`; built here if this project
    can make them, with ``num_episodes`` episodes, 100 if ``None``) or as folder paths (anything
    with a ``/`` or that exists), one or a list.

    Examples:
        >>> resolve_datasets("/no/such/folder")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Dataset folder /no/such/folder does not exist.
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    folders = []
    for item in items:
        path = Path(item).expanduser()
        if "/" in str(item) or path.exists():
            if not path.is_dir():
                raise FileNotFoundError(f"Dataset folder {path} does not exist.")
            folders.append(path.resolve())
        else:
            folders += dataset_folders(str(item), root=root, num_episodes=num_episodes or 100, **build_kwargs)
    return folders


def open_dataset(
    spec: str | Path | Sequence[str | Path],
    *,
    horizon: int,
    batch_size: int,
    num_episodes: int | None = None,
    root: str | Path | None = None,
    progress: bool = True,
    require: Sequence[str] | Mapping[str, Sequence[int]] | None = None,
    action_dim: int | None = None,
    embodiment: str | None = None,
    purpose: str = "",
    **build_kwargs,
) -> AIMEDataset:
    """An :class:`AIMEDataset` of the first ``num_episodes`` episodes (``None``: all) of datasets
    given by name or folder (:func:`resolve_datasets`; a name this project can make is built with
    ``num_episodes`` episodes, or 100; ``build_kwargs`` go to :func:`build_dataset`), checked with
    :meth:`AIMEDataset.require` when ``require`` (sensors, or their shapes) is given.

    Examples:
        >>> import tempfile
        >>> data = open_dataset("walker-random", num_episodes=1, horizon=10, batch_size=2, root=tempfile.mkdtemp(),
        ...                     workers=1, progress=False)
        >>> data.sample().batch_size
        torch.Size([2, 10])
    """
    folders = resolve_datasets(spec, root=root, num_episodes=num_episodes, progress=progress, **build_kwargs)
    data = AIMEDataset(folders, horizon=horizon, batch_size=batch_size, num_episodes=num_episodes, root=root,
                       progress=progress)
    if require is not None:
        data.require(require, action_dim=action_dim, embodiment=embodiment, purpose=purpose)
    return data


def build_dataset(
    name: str,
    *,
    num_episodes: int = 100,
    images: bool = False,
    seed: int = 0,
    root: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Builds ``<embodiment>-<task>-expert|noisy`` or ``<embodiment>-random`` once, and returns its folder.

    Episodes hold every proprioceptive sensor, ``physics`` and, with ``images=True``, 64x64 images
    (so one dataset serves the mdp, lpomdp and, with images, visual setups). In a ``noisy``
    dataset, episode k of N adds Gaussian noise of std ``1 - k / (N - 1)`` to the expert's actions
    (clipped to the bounds): the first episodes are nearly random, the last are the expert's, like
    the replay buffer of an agent that learns the task. Episode k resets the env with
    :func:`episode_seed` ``(seed, k)`` and random actions and noise draw from a generator with that
    seed: the same arguments always give the same files, byte for byte, whatever ``workers``.
    ``info.json`` records the mean and std of the returns: the demonstrations' own return is what
    scores are normalised by.

    Args:
        name (str): ``"walker-stand-expert"``, ``"walker-random"``, ...

    Keyword Args:
        num_episodes (int, optional): episodes to collect. Defaults to ``100``.
        images (bool, optional): render 64x64 images. Defaults to ``False``.
        seed (int, optional): seed of the env and the random actions. Defaults to ``0``.
        root (path, optional): where datasets live. Defaults to :func:`~aime_torchrl.data.default_root`.
        workers (int, optional): processes collecting in parallel. Defaults to the number of CPUs.
        progress (bool, optional): show a progress bar. Defaults to ``True``.
    """
    parts = name.split("-")
    embodiment = parts[0]
    if embodiment not in TASKS or not (
        (len(parts) == 2 and parts[1] == "random")
        or (len(parts) == 3 and parts[2] in ("expert", "noisy") and parts[1] in TASKS[embodiment])
    ):
        raise ValueError(
            f"Unknown dataset {name!r}: expected <embodiment>-random, <embodiment>-<task>-expert, "
            f"<embodiment>-<task>-noisy or <embodiment>-<task>-buffer, with embodiment in {sorted(TASKS)}."
        )
    root = Path(root) if root is not None else default_root()
    folder = root / f"{name}{'-images' if images else ''}-n{num_episodes}-seed{seed}"
    if (folder / "info.json").exists():
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):  # another process may be building it
        if not (folder / "info.json").exists():
            _build(folder, name, parts, num_episodes, images, seed, workers, progress)
    return folder


def _build(folder: Path, name: str, parts: list[str], num_episodes: int, images: bool, seed: int,
           workers: int | None, progress: bool) -> None:
    embodiment = parts[0]
    task = RANDOM_TASK[embodiment] if parts[1] == "random" else parts[1]
    expert = f"{embodiment}-{task}" if parts[-1] in ("expert", "noisy") else None
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # One job per episode, each with its own seed: the files do not depend on the number of workers.
    sigmas = [1.0 - k / max(num_episodes - 1, 1) if parts[-1] == "noisy" else 0.0 for k in range(num_episodes)]
    jobs = [(embodiment, task, expert, images, episode_seed(seed, k), tmp, k, sigmas[k]) for k in range(num_episodes)]
    workers = max(1, min(workers or os.cpu_count() or 1, num_episodes))
    bar = dict(total=num_episodes, desc=f"building {folder.name}", disable=not progress)
    if workers == 1:
        returns = [_collect_one(job) for job in tqdm(jobs, **bar)]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            returns = list(tqdm(pool.imap(_collect_one, jobs), **bar))
            pool.close()  # the workers exit on their own: the with's terminate() would kill them mid-cleanup
            pool.join()
    info = {
        "name": name, "embodiment": embodiment, "task": task, "expert": expert, "images": images,
        "seed": seed, "episodes": num_episodes, "returns": returns,
        "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def render_images(
    folder: str | Path, out: str | Path, embodiment: str, *, fast_render: bool = True, progress: bool = True
) -> Path:
    """Copies a dataset adding ``image`` (64x64 uint8 from camera 0), re-rendered from ``physics``.

    This turns a state-based dataset (e.g. a task buffer of ``examples/train_expert.py``) into one
    for the visual setup, with the same images the env renders (same settings as
    :func:`~aime_torchrl.envs.make_env`).
    """
    folder, out = Path(folder), Path(out)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = episode_files(folder)
    for f in tqdm(files, desc=f"rendering {folder.name}", disable=not progress):
        episode = load_episode(f)
        if "physics" not in episode:
            raise DatasetFormatError(f"{f}: no 'physics' entry to render images from.")
        episode["image"] = render_states(embodiment, episode["physics"], fast_render=fast_render)
        save_episode(tmp / f.name, episode)
    for extra in folder.glob("*.json"):
        shutil.copyfile(extra, tmp / extra.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def episode_seed(seed: int, episode: int) -> int:
    """The env (and random-action) seed of episode ``episode`` of a dataset built with ``seed``."""
    return seed * 1_000_003 + episode


_WORKER_CACHE: dict = {}


def _collect_one(job: tuple) -> float:
    """Collects episode ``k`` into ``folder`` (in a worker process: env and expert are cached)."""
    embodiment, task, expert, images, env_seed, folder, k, sigma = job
    key = (embodiment, task, expert, images)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        env = make_env(embodiment, task, "mdp", pixels=images)
        if expert is not None:
            from aime_torchrl.experts import load_expert

            _WORKER_CACHE[key] = (env, load_expert(embodiment, task))
        else:
            _WORKER_CACHE[key] = (env, None)
    env, policy = _WORKER_CACHE[key]
    env.set_seed(env_seed)
    if policy is None:
        policy = UniformRandomPolicy(env.action_spec, seed=env_seed)
    elif sigma > 0:
        policy = TensorDictSequential(policy, GaussianActionNoise(env.action_spec, sigma=sigma, seed=env_seed))
    (episode_return,) = collect_episodes(
        env, folder, 1, policy, start_index=k, exploration_type=ExplorationType.DETERMINISTIC, progress=False
    )
    return episode_return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--images", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    folder = build_dataset(
        args.name, num_episodes=args.episodes, images=args.images, seed=args.seed, root=args.root, workers=args.workers
    )
    info = json.loads((folder / "info.json").read_text())
    print(f"{folder}: {info['episodes']} episodes, return {info['mean_return']:.1f} +- {info['std_return']:.1f}")


if __name__ == "__main__":
    main()
