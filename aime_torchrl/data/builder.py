# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Build the paper's datasets on a CPU: expert demonstrations and random play, in the official format.

    python -m aime_torchrl.data.builder walker-stand-expert --episodes 100 [--images] [--seed 0]

Names: ``<embodiment>-<task>-expert`` (a shipped expert acting with ``tanh(mean)``),
``<embodiment>-random`` (uniform actions); ``<embodiment>-<task>-buffer`` folders come from
``examples/train_expert.py``, and ``walker-mix`` is random + stand-buffer + walk-buffer (the paper's
p2e buffer has no counterpart here).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from torchrl.envs.utils import ExplorationType

from aime_torchrl.data.collect import collect_episodes, UniformRandomPolicy
from aime_torchrl.data.dataset import default_root
from aime_torchrl.envs.dmc import make_env, TASKS

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


def build_dataset(
    name: str,
    *,
    num_episodes: int = 100,
    images: bool = False,
    seed: int = 0,
    root: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Builds ``<embodiment>-<task>-expert`` or ``<embodiment>-random`` once, and returns its folder.

    Episodes hold every proprioceptive sensor, ``physics`` and, with ``images=True``, 64x64 images
    (so one dataset serves the mdp, lpomdp and, with images, visual setups). The env seed is
    ``seed`` and random actions use a generator seeded with ``seed``: the same arguments always
    give the same files, byte for byte. ``info.json`` records the mean and std of the returns: the
    demonstrations' own return is what scores are normalised by.

    Args:
        name (str): ``"walker-stand-expert"``, ``"walker-random"``, ...

    Keyword Args:
        num_episodes (int, optional): episodes to collect. Defaults to ``100``.
        images (bool, optional): render 64x64 images. Defaults to ``False``.
        seed (int, optional): seed of the env and the random actions. Defaults to ``0``.
        root (path, optional): where datasets live. Defaults to :func:`~aime_torchrl.data.default_root`.
        progress (bool, optional): show a progress bar. Defaults to ``True``.
    """
    parts = name.split("-")
    embodiment = parts[0]
    if embodiment not in TASKS or not (
        (len(parts) == 2 and parts[1] == "random") or (len(parts) == 3 and parts[2] == "expert")
    ):
        raise ValueError(
            f"Unknown dataset {name!r}: expected <embodiment>-random or <embodiment>-<task>-expert "
            f"with embodiment in {sorted(TASKS)}."
        )
    root = Path(root) if root is not None else default_root()
    folder = root / f"{name}{'-images' if images else ''}-n{num_episodes}-seed{seed}"
    if (folder / "info.json").exists():
        return folder
    task = RANDOM_TASK[embodiment] if parts[1] == "random" else parts[1]
    env = make_env(embodiment, task, "mdp", seed=seed, pixels=images)
    if parts[1] == "random":
        policy, expert = UniformRandomPolicy(env.action_spec, seed=seed), None
    else:
        from aime_torchrl.experts import load_expert

        policy, expert = load_expert(embodiment, task), f"{embodiment}-{task}"
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    returns = collect_episodes(
        env, tmp, num_episodes, policy, exploration_type=ExplorationType.DETERMINISTIC, progress=progress
    )
    info = {
        "name": name, "embodiment": embodiment, "task": task, "expert": expert, "images": images,
        "seed": seed, "episodes": num_episodes, "returns": returns,
        "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--images", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    folder = build_dataset(args.name, num_episodes=args.episodes, images=args.images, seed=args.seed, root=args.root)
    info = json.loads((folder / "info.json").read_text())
    print(f"{folder}: {info['episodes']} episodes, return {info['mean_return']:.1f} +- {info['std_return']:.1f}")


if __name__ == "__main__":
    main()
