# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Gradient steps per second of both AIME phases at the reference walker configuration.

    python benchmarks/bench_rssm.py [--batch 50] [--horizon 50] [--threads 2] [--steps 20]

RSSM 512/128, MLPs 128x2 ELU, state observations of 24 dims (walker MDP: 14 + 1 + 9), 6-dim
actions, beta-NLL (``dim_wise``) as the reference walker config. A step is forward, backward,
gradient clipping and an Adam update, on random data (speed does not depend on the values).
FLOPs per step are counted once with ``torch.utils.flop_counter`` (matmuls and convolutions).

A window of ``horizon`` TorchRL rows holds ``horizon + 1`` frames (o_0 ... o_T), all in the ELBO;
the reference's ``horizon`` counts frames: pass ``--horizon 49`` for exactly its amount of work.
"""
from __future__ import annotations

import argparse
import time

import torch
from tensordict import TensorDict
from torch.utils.flop_counter import FlopCounterMode

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.trainers import total_loss

SENSORS = {"orientations": 14, "height": 1, "velocity": 9}
ACTION_DIM = 6


def make_batch(batch: int, horizon: int, device: torch.device) -> TensorDict:
    obs = {k: torch.randn(batch, horizon + 1, d, device=device) for k, d in SENSORS.items()}
    return TensorDict(
        {
            **{k: v[:, :-1] for k, v in obs.items()},
            "action": torch.rand(batch, horizon, ACTION_DIM, device=device) * 2 - 1,
            "next": {k: v[:, 1:] for k, v in obs.items()},
        },
        [batch, horizon],
        device=device,
    )


def bench(loss_module, optimizer, batch: TensorDict, steps: int, warmup: int) -> tuple[float, float]:
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def step() -> None:
        loss = total_loss(loss_module(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        optimizer.step()

    for _ in range(warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - start), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", default="rssm", choices=["rssm", "rssmo"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    world_model = RSSMWorldModel.from_config(SENSORS, ACTION_DIM, variant=args.variant, device=device)
    batch = make_batch(args.batch, args.horizon, device)
    nll = "dim_wise" if args.variant == "rssm" else "none"
    phase1 = WorldModelLoss(world_model, nll_reweight=nll)
    policy = make_policy(world_model.state_dim, world_model.belief_dim, ACTION_DIM, device=device)
    phase2 = AIMELoss(world_model, policy, nll_reweight=nll)

    print(
        f"{args.variant} {world_model.belief_dim}/{world_model.state_dim}, batch {args.batch} x "
        f"{args.horizon} rows ({args.horizon + 1} frames), {args.threads} threads, {device}, torch {torch.__version__}"
    )
    print("| phase | steps/s | GFLOP/step | achieved GFLOP/s |")
    print("|---|---|---|---|")
    for name, loss, params in (
        ("1: world model", phase1, world_model.parameters()),
        ("2: AIME policy", phase2, policy.parameters()),
    ):
        rate, flops = bench(loss, torch.optim.Adam(params, lr=3e-4), batch, args.steps, args.warmup)
        print(f"| {name} | {rate:.2f} | {flops / 1e9:.2f} | {rate * flops / 1e9:.1f} |")


if __name__ == "__main__":
    main()
