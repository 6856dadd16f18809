# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Wall time of an AIME evaluation in this process and in worker processes, and whether the returns agree.

    python benchmarks/bench_eval.py --run runs/aime_walker/<run> --episodes 100 --workers 0 2

Loads ``world_model.pt`` and ``policy.pt`` of an ``examples/aime_walker.py`` run (its
``config.yaml`` gives the task and setup; without ``--run``, an untrained quick-size model on
walker-stand) and evaluates the filtering actor as the example does (episode i in an env seeded with
``seed + i`` that draws the actor's posterior noise), once per ``--workers`` value, in that order.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from omegaconf import OmegaConf

from aime_torchrl.envs import make_env, SENSOR_DIMS
from aime_torchrl.evaluation import seeded_episode_returns
from aime_torchrl.modules import FilteringActor, make_policy, RSSMWorldModel


def load_actor(run: Path | None) -> tuple[FilteringActor, str, str, str]:
    if run is None:
        wm = RSSMWorldModel.from_config(SENSOR_DIMS["walker"], 6, belief_dim=128, state_dim=32, hidden=128)
        return FilteringActor(wm, make_policy(32, 128, 6)), "walker", "stand", "mdp"
    cfg = OmegaConf.load(run / "config.yaml")
    saved_wm = torch.load(run / "world_model.pt", weights_only=False)
    saved_policy = torch.load(run / "policy.pt", weights_only=False)
    c = dict(saved_wm["config"])
    wm = RSSMWorldModel.from_config(c.pop("vector_dims"), c.pop("action_dim"), **c)
    wm.load_state_dict(saved_wm["state_dict"])
    p = saved_policy["config"]
    policy = make_policy(wm.state_dim, wm.belief_dim, wm.action_dim, hidden=p["hidden"], layers=p["layers"])
    policy.load_state_dict(saved_policy["state_dict"])
    return FilteringActor(wm, policy), cfg.embodiment, cfg.task, cfg.setup


def actor_env(actor: FilteringActor, embodiment: str, task: str, setup: str, seed: int):
    return make_env(embodiment, task, setup, seed=seed).append_transform(actor.make_env_transform(seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="an aime_walker.py run folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=100, help="env seed of the first episode")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    actor, embodiment, task, setup = load_actor(args.run)
    seeds = [args.seed + i for i in range(args.episodes)]
    print(f"{embodiment}-{task} ({setup}), {args.episodes} episodes, torch {torch.__version__}")
    print("| workers | wall (s) | episodes/s | mean return | same returns as the first row |")
    print("|---|---|---|---|---|")
    first = None
    for workers in args.workers:
        start = time.perf_counter()
        returns = seeded_episode_returns(actor, partial(actor_env, actor, embodiment, task, setup), seeds, workers=workers)
        wall = time.perf_counter() - start
        first = returns if first is None else first
        print(f"| {workers} | {wall:.1f} | {len(seeds) / wall:.2f} | {statistics.mean(returns):.1f} | "
              f"{'yes' if returns == first else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
