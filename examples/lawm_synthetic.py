# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Latent-action world models on a small controlled linear system, against action-conditioned ones.

    python examples/lawm_synthetic.py [--labelled 0.05] [--steps 2000] [--seeds 0 1 2]

1. Data: episodes of random play on a linear system; a few keep their actions (``split_labelled``),
   the others are action-free (observations only).
2. Four world models of the same size, trained for the same number of steps (``--no-baselines``:
   the first only):
   - ``latent``: a latent-action world model on labelled and action-free windows
     (``LatentActionLoss``);
   - ``all_labels``: an action-conditioned RSSM with every episode's actions (the upper bound);
   - ``labelled_only``: an action-conditioned RSSM on the labelled episodes alone;
   - ``idm_labels``: an inverse dynamics model trained on the labelled transitions labels the
     action-free ones (SS-ORL's pseudo-labels), then an action-conditioned RSSM on all episodes.
3. Held-out episodes: the open-loop error of each model driven by their true actions (the latent
   model through its action encoder), and how well the latent model's inverse model infers the true
   actions from observations alone (R^2).

Writes ``results.json`` and ``table.md`` to ``--out``. Under ``torchrun --nproc-per-node N`` every
model trains in DDP, each rank on its share of ``--batch-size`` (the global batch), rank 0 writing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from aime_torchrl import RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import (
    LabelledMixture,
    LinearControlSystem,
    make_window_buffer,
    pseudo_label,
    split_labelled,
)
from aime_torchrl.evaluation import latent_action_diagnostics, open_loop_errors
from aime_torchrl.modules import LatentActionWorldModel, make_stack_module, stack_window
from aime_torchrl.objectives import BCLoss, LatentActionLoss
from aime_torchrl.trainers import init_distributed, train_offline

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument(
    "--labelled", type=float, default=0.05, help="fraction of the episodes that keep their actions"
)
parser.add_argument("--episodes", type=int, default=100)
parser.add_argument("--length", type=int, default=60)
parser.add_argument("--obs-dim", type=int, default=4)
parser.add_argument("--action-dim", type=int, default=2)
parser.add_argument("--steps", type=int, default=2000, help="gradient steps of every world model")
parser.add_argument("--horizon", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument(
    "--latent-action-dim", type=int, default=None, help="size of u (default: the action's)"
)
parser.add_argument(
    "--labelled-fraction",
    type=float,
    default=0.25,
    help="labelled windows per batch (latent model)",
)
parser.add_argument(
    "--action-scale",
    type=float,
    default=1.0,
    help="LatentActionLoss's action_scale: weight of q's NLL of the labelled actions",
)
parser.add_argument(
    "--action-kl-scale",
    type=float,
    default=1.0,
    help="LatentActionLoss's action_kl_scale: weight of the action-free steps' KL(q || p)",
)
parser.add_argument(
    "--q-from",
    choices=["elbo", "labels"],
    default="elbo",
    help="what trains the inverse model q: the labels and the ELBO, or the labels alone (q then "
    "pseudo-labels the action-free steps: LatentActionLoss(elbo_trains_inference=False))",
)
parser.add_argument(
    "--baselines",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="train the three action-conditioned baselines too",
)
parser.add_argument("--nll-reweight", default="none", choices=["none", "dim_wise"])
parser.add_argument("--seeds", type=int, nargs="+", default=[0])
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--out", type=Path, default=Path("runs/lawm_synthetic"))
args = parser.parse_args()
torch.set_num_threads(args.threads)
ranks = init_distributed("cpu")  # one process, or a torchrun launch: the batch split across ranks
BATCH = ranks.local_batch_size(args.batch_size, key="--batch-size")
SIZES = dict(belief_dim=64, state_dim=16, hidden=64)
DIMS = {"observation": args.obs_dim}


def fit(loss, sample, params) -> float:
    start, optimizer = time.perf_counter(), torch.optim.Adam(params, lr=1e-3)
    train_offline(
        ranks.wrap(loss), sample, optimizer, steps=args.steps, progress=False, distributed=ranks
    )
    return time.perf_counter() - start


def action_conditioned(episodes) -> tuple[RSSMWorldModel, float]:
    world_model = RSSMWorldModel.from_config(DIMS, args.action_dim, **SIZES)
    buffer = make_window_buffer(episodes, horizon=args.horizon, batch_size=BATCH)
    return world_model, fit(
        WorldModelLoss(world_model, nll_reweight=args.nll_reweight),
        buffer.sample,
        world_model.parameters(),
    )


def held_out_error(world_model: RSSMWorldModel, windows) -> float:
    with torch.no_grad():
        return statistics.mean(
            open_loop_errors(world_model, w)["open_loop_mse"].item() for w in windows
        )


results = []
for seed in args.seeds:
    torch.manual_seed(
        ranks.seed(seed)
    )  # each rank its own windows (DDP starts from rank 0's weights)
    system = LinearControlSystem(obs_dim=args.obs_dim, action_dim=args.action_dim, seed=seed)
    episodes = system.rollout(args.episodes, args.length, policy="random", seed=1000 + seed)
    held_out = system.rollout(16, args.length, policy="random", seed=2000 + seed)
    windows = [
        make_window_buffer(held_out, horizon=args.horizon, batch_size=64).sample() for _ in range(4)
    ]
    labelled, action_free = split_labelled(episodes, args.labelled, seed=seed)
    row = {"seed": seed, "labelled_episodes": labelled.batch_size[0], "episodes": args.episodes}

    # The latent-action world model: one ELBO on labelled and action-free windows.
    model = LatentActionWorldModel.from_config(
        DIMS, args.action_dim, latent_action_dim=args.latent_action_dim, **SIZES
    )
    mixture = LabelledMixture(
        make_window_buffer(labelled, horizon=args.horizon, batch_size=BATCH),
        (
            make_window_buffer(action_free, horizon=args.horizon, batch_size=BATCH)
            if action_free is not None
            else None
        ),
        batch_size=BATCH,
        labelled_fraction=args.labelled_fraction,
    )
    loss = LatentActionLoss(
        model,
        nll_reweight=args.nll_reweight,
        action_scale=args.action_scale,
        action_kl_scale=args.action_kl_scale,
        elbo_trains_inference=args.q_from == "elbo",
    )
    wall = fit(loss, mixture.sample, model.parameters())
    row["latent"] = dict(latent_action_diagnostics(model, windows), wall_s=wall)

    # Action-conditioned baselines.
    if args.baselines:
        for name, data in [("all_labels", episodes), ("labelled_only", labelled)]:
            world_model, wall = action_conditioned(data)
            row[name] = dict(open_loop_mse=held_out_error(world_model, windows), wall_s=wall)
        idm = make_stack_module(
            DIMS, [], args.action_dim, frames=2, in_group="transition", hidden=64
        )
        one_step = make_window_buffer(labelled, horizon=1, batch_size=256 // ranks.world_size)
        idm_wall = fit(
            BCLoss(idm), lambda: stack_window(one_step.sample(), list(DIMS)), idm.parameters()
        )
        pseudo = (
            torch.cat([labelled, pseudo_label(idm, action_free, list(DIMS))])
            if action_free is not None
            else labelled
        )
        world_model, wall = action_conditioned(pseudo)
        row["idm_labels"] = dict(
            open_loop_mse=held_out_error(world_model, windows), wall_s=wall + idm_wall
        )
    results.append(row)
    if ranks.is_main:
        print(json.dumps(row), flush=True)

if not ranks.is_main:  # rank 0 writes the results
    raise SystemExit
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "results.json").write_text(
    json.dumps(dict(config=vars(args) | {"out": str(args.out)}, runs=results), indent=1)
)


def cell(model: str, key: str = "open_loop_mse", digits: int = 4) -> str:
    values = [r[model][key] for r in results]
    spread = f" +- {statistics.pstdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.{digits}f}{spread}"


def ratio(baseline: str) -> str:
    ratios = [r["latent"]["open_loop_mse"] / r[baseline]["open_loop_mse"] for r in results]
    return f"{statistics.mean(ratios):.2f} (seeds: {', '.join(f'{x:.2f}' for x in ratios)})"


models = ["latent", *(["all_labels", "labelled_only", "idm_labels"] if args.baselines else [])]
labelled_episodes = results[0]["labelled_episodes"]
lines = [
    f"{labelled_episodes} of {args.episodes} episodes labelled, {args.steps} steps, "
    f"seeds {args.seeds}",
    "",
    "| model | held-out open-loop MSE | wall (s) |",
    "|---|---|---|",
    *(f"| {m} | {cell(m)} | {cell(m, 'wall_s', 0)} |" for m in models),
    "",
    *(
        [
            f"latent / all_labels: {ratio('all_labels')}",
            f"latent / labelled_only: {ratio('labelled_only')}",
        ]
        if args.baselines
        else []
    ),
    f"inferred actions R^2 {cell('latent', 'inferred_action_r2', 3)}; latent model driven by its "
    f"inferred actions: {cell('latent', 'open_loop_mse_inferred')}",
]
(args.out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
