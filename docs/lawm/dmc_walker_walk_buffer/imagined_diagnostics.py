# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Where the offline-RL policies of examples/lawm_dmc.py go in imagination (docs/lawm/README.md,
"Conservative terms"): for each run and world model, the raw imagined reward per step and a dynamics
ensemble's disagreement (1 = the data's) along 15-step imagined rollouts of the trained policy
(sampled actions) from 2048 posterior starts of its data.

    python docs/lawm/dmc_walker_walk_buffer/imagined_diagnostics.py --world-models runs/lawm/walk-buffer-seed0 \
        --ensembles runs/lawm_dmc/walk-buffer-seed0-u1 --runs runs/lawm_dmc/walk-buffer-seed0-b1 ... \
        --cells latent@0.01 labelled_only@0.1

The ensembles (``ensemble@<cell>.pt``) come from a run with ``policy.uncertainty_scale > 0`` on the same
world models and seed; every run must have used the default sizes (hidden 128, 5 members).
"""
import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl import RSSMWorldModel
from aime_torchrl.data import load_episodes, posterior_latents, resolve_datasets, split_held_out, split_labelled
from aime_torchrl.envs import SENSORS
from aime_torchrl.modules import (LatentActionWorldModel, make_dynamics_ensemble, make_imagination_env, make_policy,
                                  make_reward_model)
from aime_torchrl.trainers import load_checkpoint, load_module

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--world-models", type=Path, required=True)
parser.add_argument("--ensembles", type=Path, required=True)
parser.add_argument("--runs", type=Path, nargs="+", required=True)
parser.add_argument("--cells", nargs="+", required=True)
parser.add_argument("--out", type=Path, default=None)
args = parser.parse_args()
torch.set_num_threads(1)

wm_cfg = OmegaConf.load(args.world_models / "config.yaml")
sensors = SENSORS[wm_cfg.embodiment][wm_cfg.setup]
folders = resolve_datasets(wm_cfg.data.embodiment, root=wm_cfg.data.root, num_episodes=wm_cfg.data.episodes,
                           seed=wm_cfg.data.build_seed, workers=1, progress=False)
_, train = split_held_out(load_episodes(folders, num_episodes=wm_cfg.data.episodes, sensors=sensors),
                          wm_cfg.data.held_out, seed=wm_cfg.seed)
results = {}
for cell in args.cells:
    model, fraction = cell.split("@")
    saved = load_checkpoint(args.world_models / f"{cell}.pt")
    world_model = (LatentActionWorldModel if model == "latent" else RSSMWorldModel).from_config(**saved["config"])
    world_model.load_state_dict(saved["state_dict"])
    world_model.requires_grad_(False)
    rssm, keys = (world_model.world_model if model == "latent" else world_model), world_model.keys
    data = train if model == "latent" else split_labelled(train, float(fraction), seed=wm_cfg.seed)[0]
    latents = posterior_latents(world_model, data, seed=0)
    ensemble = make_dynamics_ensemble(rssm)
    load_module(args.ensembles / f"ensemble@{cell}.pt", ensemble, dict(members=5, hidden=128), what="dynamics ensemble")
    ensemble.requires_grad_(False)
    starts = latents[torch.randint(len(latents), (2048,), generator=torch.Generator().manual_seed(0))]
    for run in args.runs:
        if not (run / f"policy@{cell}.pt").exists():
            continue
        reward = make_reward_model(rssm)
        load_module(run / f"reward@{cell}.pt", reward, dict(hidden=128), what="reward model")
        reward.requires_grad_(False)
        saved = load_checkpoint(run / f"policy@{cell}.pt")
        bounds = {k: torch.tensor(saved["config"][k]) for k in ("low", "high") if k in saved["config"]}
        policy = make_policy(rssm.state_dim, rssm.belief_dim, rssm.action_dim, keys=keys, **bounds)
        policy.load_state_dict(saved["state_dict"])
        env = make_imagination_env(rssm, reward)  # the raw reward: no penalty
        torch.manual_seed(0)
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            imagined = env.rollout(15, policy, auto_reset=False, tensordict=env.reset(starts.select("belief", "state").clone()))
            disagreement = ensemble(imagined.select("belief", "state", keys.action))["disagreement"]
        results[f"{run.name} | {cell}"] = dict(
            imagined_reward=imagined["next", "reward"].mean().item(), disagreement=disagreement.mean().item(),
            data_reward=latents["next", "reward"].mean().item())
        print(f"{run.name} | {cell}", {k: round(v, 3) for k, v in results[f'{run.name} | {cell}'].items()}, flush=True)
if args.out is not None:
    args.out.write_text(json.dumps(results, indent=1))
