# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""AIME end to end on a small controlled linear system (CPU, about a minute).

    python examples/aime_synthetic.py [--phase1-steps 600] [--phase2-steps 600] [--seed 0]
    python examples/aime_synthetic.py --trainer torchrl   # both phases under TorchRL's Trainer

1. An *embodiment dataset*: random play, with observations and actions.
2. Phase 1: train an RSSM world model on it by maximising the ELBO (WorldModelLoss).
3. *Demonstrations*: a fixed expert policy; only the observations are given to AIME.
4. Phase 2: freeze the world model and train a policy inside the posterior rollout by maximising
   the same ELBO of the demonstrations (AIMELoss).
5. Score: the hidden expert actions against the inferred ones, and the ELBO of held-out
   demonstration windows, before and after phase 2.

The DeepMind Control walker pipeline (examples/aime_walker.py) follows the same steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import LinearControlSystem, make_window_buffer
from aime_torchrl.trainers import resolve_device, train_offline, train_with_trainer

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument("--phase1-steps", type=int, default=600)
parser.add_argument("--phase2-steps", type=int, default=600)
parser.add_argument("--horizon", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--device", default="auto", help="auto (CUDA if there is one), cpu, cuda, cuda:1, ..."
)
parser.add_argument(
    "--trainer",
    choices=["loop", "torchrl"],
    default="loop",
    help="loop: our offline loop; torchrl: TorchRL's Trainer (the same steps and weights)",
)
parser.add_argument("--out", type=Path, default=Path("runs/aime_synthetic"))
args = parser.parse_args()
try:
    device = resolve_device(
        args.device, key="--device"
    )  # refused before anything runs when this machine lacks it
except ValueError as error:
    parser.error(str(error))
torch.manual_seed(args.seed)
train = train_with_trainer if args.trainer == "torchrl" else train_offline

# --- data: random play (embodiment) and expert demonstrations --------------------------------
system = LinearControlSystem(obs_dim=4, action_dim=2, seed=args.seed)
embodiment = system.rollout(64, 60, policy="random", seed=args.seed + 1).to(device)
demos = system.rollout(16, 60, policy="expert", seed=args.seed + 2).to(device)
embodiment_rb = make_window_buffer(embodiment, horizon=args.horizon, batch_size=args.batch_size)
demo_rb = make_window_buffer(demos, horizon=args.horizon, batch_size=args.batch_size)

# --- phase 1: world model ---------------------------------------------------------------------
world_model = RSSMWorldModel.from_config(
    {"observation": system.obs_dim},
    system.action_dim,
    belief_dim=64,
    state_dim=16,
    hidden=64,
    device=device,
)
train(
    WorldModelLoss(world_model),
    embodiment_rb.sample,
    torch.optim.Adam(world_model.parameters(), lr=args.lr),
    steps=args.phase1_steps,
    desc="phase 1: world model",
)

# --- phase 2: AIME, from observations only ------------------------------------------------------
policy = make_policy(
    world_model.state_dim, world_model.belief_dim, system.action_dim, hidden=64, device=device
)
aime_loss = AIMELoss(world_model, policy)
held_out = [demo_rb.sample() for _ in range(8)]  # actions kept only to score the inference


def score() -> tuple[float, float]:
    with torch.no_grad():
        outs = [aime_loss(batch) for batch in held_out]
    return tuple(sum(o[k].item() for o in outs) / len(outs) for k in ("action_mse", "elbo"))


mse_before, elbo_before = score()
train(
    aime_loss,
    lambda: demo_rb.sample().exclude("action"),
    torch.optim.Adam(aime_loss.parameters(), lr=args.lr),
    steps=args.phase2_steps,
    desc="phase 2: AIME policy",
)
mse_after, elbo_after = score()


print("\n| metric | fresh policy | AIME policy |")
print("|---|---|---|")
print(
    "| held-out demo windows: action MSE vs the hidden expert actions | "
    f"{mse_before:.4f} | {mse_after:.4f} |"
)
print(f"| held-out demo windows: ELBO (nats per window) | {elbo_before:.1f} | {elbo_after:.1f} |")
args.out.mkdir(parents=True, exist_ok=True)
torch.save(
    {"world_model": world_model.state_dict(), "policy": policy.state_dict()},
    args.out / "checkpoint.pt",
)
print(f"saved {args.out / 'checkpoint.pt'}")
