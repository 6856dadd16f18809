# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Evaluate a trained expert and write its model card.

    python -m aime_torchrl.experts.card runs/experts/walker-stand-seed0 --embodiment walker --task stand

Copies ``actor.pt`` to the package as ``<embodiment>-<task>.pt`` and writes ``<embodiment>-<task>.md``
with the evaluation (10 deterministic episodes on env seeds the training never used), the
training command, steps, wall time and the evaluation curve.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
from pathlib import Path

from aime_torchrl.envs import make_env
from aime_torchrl.evaluation import episode_returns
from aime_torchrl.experts.sac import EXPERTS_DIR, load_expert

EVAL_SEED = 10_000


def evaluate_expert(embodiment: str, task: str, episodes: int = 10, seed: int = EVAL_SEED) -> list[float]:
    """Returns of ``episodes`` deterministic episodes of the shipped expert."""
    return episode_returns(load_expert(embodiment, task), make_env(embodiment, task, "mdp", seed=seed), episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the out_dir of examples/train_expert.py")
    parser.add_argument("--embodiment", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    name = f"{args.embodiment}-{args.task}"
    shutil.copyfile(args.run / "actor.pt", EXPERTS_DIR / f"{name}.pt")
    returns = evaluate_expert(args.embodiment, args.task, args.episodes)
    run = json.loads((args.run / "run.json").read_text())
    with open(args.run / "eval.csv") as f:
        curve = list(csv.reader(f))[1:]
    card = [
        f"# {name} SAC expert",
        "",
        f"State-based SAC (TorchRL `SACLoss`, 2x256 ReLU MLPs, auto-entropy, batch 256, one update per agent step,"
        f" {run['init_random_frames']} random steps first) on `make_env('{args.embodiment}', '{args.task}', 'mdp')`"
        " (action repeat 2, 500 agent steps per episode).",
        "",
        f"- command: `{run['command']}`",
        f"- agent steps: {run['frames']}; updates/s: {run['updates_per_s']:.1f}; wall time: {run['wall_s'] / 60:.0f} min"
        " (2-core CPU, 1 torch thread, another expert training beside it)",
        f"- seed: {run['seed']}",
        f"- **return over {len(returns)} deterministic episodes (env seed {EVAL_SEED}):"
        f" {statistics.mean(returns):.1f} +- {statistics.pstdev(returns):.1f}** (min {min(returns):.1f})",
        "",
        "Evaluation during training (5 episodes each):",
        "",
        "| agent steps | mean return | std |",
        "|---|---|---|",
        *(f"| {int(float(s))} | {float(m):.1f} | {float(d):.1f} |" for s, m, d in curve),
        "",
    ]
    (EXPERTS_DIR / f"{name}.md").write_text("\n".join(card))
    print("\n".join(card))


if __name__ == "__main__":
    main()
