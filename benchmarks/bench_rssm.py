# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Gradient steps per second of both AIME phases, eager or compiled.

    python benchmarks/bench_rssm.py                                  # walker config, eager, 2 threads
    python benchmarks/bench_rssm.py --belief 128 --state 32 --batch 32 --horizon 32   # the quick profile
    python benchmarks/bench_rssm.py --mode compile --json            # last line: {"phase1": ..., "phase2": ..., "compile_s": ...}
    python benchmarks/bench_rssm.py --device cuda --mode cudagraph --bf16
    python benchmarks/bench_rssm.py --variant dreamerv3 --belief 128 --state 32 --batch 32 --horizon 32   # TorchRL's V3 RSSM
    python benchmarks/bench_rssm.py --variant latent_action --belief 128 --state 32 --batch 32 --horizon 32  # its training step

``--variant latent_action`` times the latent-action world model's step (``LatentActionLoss``, a quarter
of the windows labelled; latent actions as large as the actions), phase 1 only (it has no phase 2).

Defaults: RSSM 512/128, MLPs 128x2 ELU, batch 50, walker MDP state observations (24 dims: 14 + 1 +
9), 6-dim actions, beta-NLL (``dim_wise``) as the reference walker config; ``--pixels`` gives the
visual setup (64x64 images only). A step is forward, backward, gradient clipping and a (fused)
Adam update, on random data (speed does not depend on the values). ``compile_s`` is the time of
the first two steps of both phases (compilation and warm-up), apart from the steady-state speed.
FLOPs per step are counted once with ``torch.utils.flop_counter`` (a compiled step: on its eager
twin, the same math); ``--gemm`` also times one matmul of the step's largest batched shape and one
of its in-loop shape, the machine's ceiling for those sizes, in the same process.

A window of ``horizon`` TorchRL rows holds ``horizon + 1`` frames (o_0 ... o_T), all in the ELBO;
the reference's ``horizon`` counts frames: pass ``--horizon 49`` for exactly its 50 frames.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
from tensordict import TensorDict
from torch.utils.flop_counter import FlopCounterMode

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.modules import LatentActionWorldModel
from aime_torchrl.objectives import LatentActionLoss, window_elbo
from aime_torchrl.trainers import total_loss

SENSORS = {"orientations": 14, "height": 1, "velocity": 9}
ACTION_DIM = 6
MODES = {"eager": False, "compile": True, "cudagraph": "reduce-overhead"}


def make_batch(batch: int, horizon: int, device: torch.device, pixels: bool = False) -> TensorDict:
    if pixels:
        obs = {"pixels": torch.randint(0, 256, (batch, horizon + 1, 3, 64, 64), dtype=torch.uint8, device=device)}
    else:
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


def bench(loss_module, params, batch: TensorDict, steps: int, warmup: int, bf16: bool) -> tuple[float, float, float]:
    """Returns (steps/s, FLOPs per step, seconds of the first two steps)."""
    optimizer = torch.optim.Adam(params, lr=3e-4, fused=True)
    device = batch.device.type
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        with autocast:
            loss = total_loss(loss_module(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        optimizer.step()

    start = time.perf_counter()
    for _ in range(2):
        step()
    sync()
    first = time.perf_counter() - start
    for _ in range(warmup):
        step()
    # the counter sees no FLOPs inside compiled code: count them on the same step run eagerly
    compiled = getattr(loss_module, "_window_elbo", None)
    if loss_module.compile:
        loss_module._window_elbo = window_elbo
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        if loss_module.compile:
            loss_module._window_elbo = compiled
    flops = counter.get_total_flops()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - start), flops, first


def gemm_ceiling(m: int, k: int, n: int, device: torch.device, repeats: int = 50) -> float:
    """GFLOP/s of ``[m, k] @ [k, n]`` (forward only) on this machine, now."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="eager", choices=list(MODES))
    parser.add_argument("--belief", type=int, default=512)
    parser.add_argument("--state", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--variant", default="rssm", choices=["rssm", "rssmo", "dreamerv3", "latent_action"])
    parser.add_argument("--classes", type=int, default=16,
                        help="dreamerv3: classes per categorical; --state / classes categoricals (the same state size)")
    parser.add_argument("--q-from", default="labels", choices=["labels", "elbo"],
                        help="latent_action: what trains its inverse model (labels: the walker config's default)")
    parser.add_argument("--filter", default="fused", choices=["fused", "loop"],
                        help="our RSSM's filter in eager mode (both phases): the fused node (the default) or autograd's loop")
    parser.add_argument("--pixels", action="store_true", help="the visual setup: 64x64 images only")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast around the loss")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gemm", action="store_true", help="also time GEMMs of the step's shapes")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.mode == "cudagraph" and device.type != "cuda":
        parser.error("--mode cudagraph needs --device cuda")
    if args.variant == "latent_action" and args.mode != "eager":
        parser.error("--variant latent_action runs eagerly only")

    sizes = dict(belief_dim=args.belief, state_dim=args.state, hidden=args.hidden)
    if args.variant == "dreamerv3":  # categoricals x classes = the state size; the vector encoder as wide as hidden
        if args.state % args.classes:
            parser.error(f"--state {args.state} must be a multiple of --classes {args.classes}")
        sizes = dict(belief_dim=args.belief, hidden=args.hidden, vector_encoder=args.hidden,
                     categoricals=args.state // args.classes, classes=args.classes)
    vector = {} if args.pixels else SENSORS
    pixel_keys = ["pixels"] if args.pixels else ()
    batch = make_batch(args.batch, args.horizon, device, pixels=args.pixels)
    compile_ = MODES[args.mode]
    phases = []
    if args.variant == "latent_action":
        model = LatentActionWorldModel.from_config(vector, ACTION_DIM, pixel_keys=pixel_keys, device=device, **sizes)
        batch.set("labelled", (torch.arange(args.batch, device=device) < args.batch // 4)[:, None].expand(batch.batch_size))
        loss = LatentActionLoss(model, elbo_trains_inference=args.q_from == "elbo")
        phases.append(("phase1", loss, list(model.parameters())))
    else:
        world_model = RSSMWorldModel.from_config(vector, ACTION_DIM, pixel_keys=pixel_keys, variant=args.variant,
                                                 device=device, **sizes)
        if hasattr(world_model.core, "fused"):  # our RSSM's core
            world_model.core.fused &= args.filter == "fused"
        nll = "dim_wise" if args.variant in ("rssm", "dreamerv3") else "none"  # the presets' learned-std decoders
        policy = make_policy(world_model.state_dim, world_model.belief_dim, ACTION_DIM, hidden=args.hidden, device=device)
        phases.append(("phase1", WorldModelLoss(world_model, nll_reweight=nll, compile=compile_),
                       list(world_model.parameters())))
        phases.append(("phase2", AIMELoss(world_model, policy, nll_reweight=nll, compile=compile_),
                       list(policy.parameters())))

    print(
        f"{args.variant} {args.belief}/{args.state} hidden {args.hidden}, {'pixels' if args.pixels else 'state'}, "
        f"batch {args.batch} x {args.horizon} rows ({args.horizon + 1} frames), {args.mode}"
        f"{' bf16' if args.bf16 else ''}, {args.threads} threads, {device}, torch {torch.__version__}"
    )
    print("| phase | steps/s | first 2 steps (s) | GFLOP/step | achieved GFLOP/s |")
    print("|---|---|---|---|---|")
    result, compile_s = {}, 0.0
    for name, loss, params in phases:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rate, flops, first = bench(loss, params, batch, args.steps, args.warmup, args.bf16)
        result[name] = rate
        compile_s += first
        achieved = f"{rate * flops / 1e9:.1f}" if flops else "-"
        memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
        print(f"| {name} | {rate:.2f} | {first:.1f} | {flops / 1e9:.2f} | {achieved} |{memory}")
    if args.gemm:
        rows = args.batch * (args.horizon + 1)
        feature = args.belief + args.state
        print(f"GEMM ceiling: batched [{rows}, {feature}] x [{feature}, {args.hidden}]: "
              f"{gemm_ceiling(rows, feature, args.hidden, device):.1f} GFLOP/s; in-loop GRU "
              f"[{args.batch}, {args.belief}] x [{args.belief}, {3 * args.belief}]: "
              f"{gemm_ceiling(args.batch, args.belief, 3 * args.belief, device):.1f} GFLOP/s")
    if args.json:
        print(json.dumps({**result, "compile_s": round(compile_s, 2)}))


if __name__ == "__main__":
    main()
