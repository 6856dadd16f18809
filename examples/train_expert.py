# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Train a state-based SAC expert on an AIME env, with TorchRL, on a CPU.

    python examples/train_expert.py embodiment=walker task=stand total_frames=300000

Saves under ``out_dir``:
- ``actor.pt``: the actor's weights (load with ``aime_torchrl.experts``);
- ``buffer_dir`` (default ``$AIME_TORCHRL_DATA/<embodiment>-<task>-buffer``, where the dataset
  builder finds it; ``AIME_TORCHRL_DATA`` defaults to ``~/.cache/aime_torchrl``): every episode the
  agent collected, in the official AIME npz format with physics states (the paper's "task buffer"
  embodiment datasets), written as they come;
- ``eval.csv``: the evaluation curve (frames, mean and std of the deterministic return), and
  ``logs/``: TorchRL CSVLogger scalars (losses, alpha, entropy, train and eval returns);
- ``checkpoint.pt``: everything needed to resume (:class:`~aime_torchrl.trainers.RunCheckpoint`:
  atomic, never non-finite; written every ``checkpoint_every`` frames and on Ctrl-C or SIGTERM,
  at the end of the current episode; ``resume=true`` continues it).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import CatTensors
from torchrl.envs.utils import ExplorationType
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate
from torchrl.record.loggers import CSVLogger
from tqdm.auto import tqdm

from aime_torchrl.data import save_episode, td_to_episode
from aime_torchrl.envs import make_env, SENSORS
from aime_torchrl.experts import make_sac_actor
from aime_torchrl.evaluation import episode_returns
from aime_torchrl.trainers import check_config, deferred_interrupt, RunCheckpoint, RunLock


def make_expert_env(cfg: DictConfig, seed: int):
    """The MDP env with its sensors also concatenated into ``observation`` for the SAC networks."""
    env = make_env(cfg.embodiment, cfg.task, "mdp", seed=seed)
    sensors = list(SENSORS[cfg.embodiment]["mdp"])
    return env.append_transform(CatTensors(sensors, "observation", del_keys=False, sort=False))


@hydra.main(config_path="../configs", config_name="train_expert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_config(
        cfg,
        positive=[
            "total_frames",
            "batch_size",
            "hidden",
            "lr",
            "gamma",
            "tau",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "threads",
        ],
        non_negative=["*"],
    )  # before anything runs
    out = Path(hydra.utils.to_absolute_path(cfg.out_dir))
    buffer_dir = Path(hydra.utils.to_absolute_path(cfg.buffer_dir))
    with RunLock(out), RunLock(
        buffer_dir, key="buffer_dir"
    ):  # one process at a time in each (refused at once)
        train(cfg, out, buffer_dir)


def train(cfg: DictConfig, out: Path, buffer_dir: Path) -> None:
    """SAC into ``out`` and ``buffer_dir`` (resuming from ``out``'s checkpoint with
    ``resume=true``)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    buffer_dir.mkdir(parents=True, exist_ok=True)

    train_env = make_expert_env(cfg, cfg.seed)
    eval_env = make_expert_env(cfg, cfg.seed + 1000)
    obs_dim = train_env.observation_spec["observation"].shape[-1]
    actor = make_sac_actor(obs_dim, train_env.action_spec.shape[-1], cfg.hidden)
    qvalue = ValueOperator(
        MLP(
            in_features=obs_dim + train_env.action_spec.shape[-1],
            out_features=1,
            num_cells=[cfg.hidden] * 2,
            activation_class=torch.nn.ReLU,
        ),
        in_keys=["observation", "action"],
    )
    loss = SACLoss(
        actor, qvalue, num_qvalue_nets=2, loss_function="l2", action_spec=train_env.action_spec
    )
    loss.make_value_estimator(gamma=cfg.gamma)
    target_update = SoftUpdate(loss, tau=cfg.tau)
    optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.lr, fused=True)
    replay = TensorDictReplayBuffer(
        storage=LazyTensorStorage(cfg.total_frames), batch_size=cfg.batch_size
    )

    started, state_wall = time.time(), 0.0
    frames, episodes, curve = 0, 0, []
    run = RunCheckpoint(out)  # atomic; never stores a non-finite tensor
    if cfg.resume and run.exists():
        state = run.load()
        run.restore(state, modules={"loss": loss}, optimizers={"optimizer": optimizer})
        replay.extend(state["replay"])
        frames, episodes, curve, state_wall = (
            state["frames"],
            state["episodes"],
            state["curve"],
            state["wall_s"],
        )
        print(f"resumed from {run.path} at {frames} frames")
    # Episodes beyond the checkpoint were collected after it: they will be collected again.
    for stale in buffer_dir.glob("*.npz"):
        if int(stale.stem) >= episodes:
            stale.unlink()
    if frames >= cfg.total_frames:
        print("already done")
        return

    def checkpoint() -> None:
        run.save(
            OmegaConf.to_container(cfg),
            "sac",
            frames,
            modules={"loss": loss},
            optimizers={"optimizer": optimizer},
            replay=replay[:],
            frames=frames,
            episodes=episodes,
            curve=curve,
            wall_s=time.time() - started + state_wall,
        )
        torch.save(actor.state_dict(), out / "actor.pt")
        with open(out / "eval.csv", "w", newline="") as f:
            csv.writer(f).writerows([("frames", "mean_return", "std_return"), *curve])

    episode_len = 500  # DMC: 1000 physics steps at action repeat 2
    collector = Collector(
        train_env,
        actor,
        frames_per_batch=episode_len,
        total_frames=cfg.total_frames - frames,
        init_random_frames=max(0, cfg.init_random_frames - frames),
        exploration_type=ExplorationType.RANDOM,
    )
    logger = CSVLogger(
        exp_name="sac", log_dir=str(out / "logs")
    )  # scalars/<name>.csv, appended on resume
    bar = tqdm(
        total=cfg.total_frames,
        initial=frames,
        desc=f"SAC {cfg.embodiment}-{cfg.task}",
        unit="frame",
    )
    update_time, updates = 0.0, 0
    # Ctrl-C or SIGTERM: the episode ends, a checkpoint, then stop
    with deferred_interrupt() as interrupted:
        for batch in collector:
            batch = batch.exclude("collector")
            save_episode(
                buffer_dir / f"{episodes}.npz",
                td_to_episode(batch.exclude("observation", ("next", "observation"))),
            )
            replay.extend(batch)
            frames += batch.numel()
            episodes += 1
            if frames >= cfg.init_random_frames:
                start = time.perf_counter()
                for _ in range(int(batch.numel() * cfg.updates_per_frame)):
                    losses = loss(replay.sample())
                    total = losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    optimizer.step()
                    target_update.step()
                    updates += 1
                update_time += time.perf_counter() - start
                for key in ("loss_actor", "loss_qvalue", "alpha", "entropy"):
                    logger.log_scalar(key, losses[key].item(), step=frames)
            collector.update_policy_weights_()
            logger.log_scalar("train_return", batch["next", "reward"].sum().item(), step=frames)
            bar.update(batch.numel())
            bar.set_postfix(
                ret=f"{batch['next', 'reward'].sum().item():.0f}",
                ups=f"{updates / max(update_time, 1e-9):.0f}",
            )
            if frames % cfg.eval_every < episode_len or frames >= cfg.total_frames:
                returns = torch.tensor(episode_returns(actor, eval_env, cfg.eval_episodes))
                mean, std = returns.mean().item(), returns.std().item()
                curve.append((frames, mean, std))
                logger.log_scalar("eval_return", mean, step=frames)
                tqdm.write(f"frames {frames}: eval return {mean:.1f} +- {std:.1f}")
            stop = interrupted()
            if frames % cfg.checkpoint_every < episode_len or frames >= cfg.total_frames or stop:
                checkpoint()
            if stop:
                collector.shutdown()
                raise KeyboardInterrupt(
                    f"interrupted at {frames} frames; resume=true continues from {run.path}"
                )
    collector.shutdown()
    bar.close()
    rate = updates / max(update_time, 1e-9)
    summary = {
        "command": "python examples/train_expert.py " + " ".join(sys.argv[1:]),
        "seed": cfg.seed,
        "frames": frames,
        "init_random_frames": cfg.init_random_frames,
        "updates_per_s": rate,
        "wall_s": time.time() - started + state_wall,
        "final_eval": curve[-1],
    }
    (out / "run.json").write_text(json.dumps(summary, indent=1))
    print(f"updates/s {rate:.1f}; saved {out}")


if __name__ == "__main__":
    main()
