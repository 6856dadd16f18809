# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Online AIME (AIME-NoB's phase 3) on TorchRL collectors.

    python examples/aime_online.py                          # linear system: offline, then online
    python examples/aime_online.py online.aime_scale=0      # pure surrogate-reward RL online
    python examples/aime_online.py online.share=1           # no offline regulariser
    python examples/aime_online.py online.reward=none       # the AIME term only, online
    python examples/aime_online.py from_run=runs/aime_walker/<run> horizon=32 online.envs=2

1. Offline, as examples/aime_synthetic.py on the small linear system (CPU minutes): phase 1 (world
   model on random play), phase 2 (a policy from the experts' observations only, AIMELoss); or
   the world model, policy and datasets of a finished examples/aime_walker.py run (from_run).
2. Online: a TorchRL Collector runs the policy inside the world model's filter (FilteringActor,
   sampling: its exploration) on copies of the env; finished episodes go whole into an online
   window buffer (TrajectoryWriter). Each collected batch is followed by updates of
   - the world model, on windows half offline, half online (AIME-NoB's data-driven regulariser);
   - a discriminator of the demonstrations' latents against the agent's (the surrogate reward);
   - the policy: the AIME loss of the demonstrations, plus DreamerV3's actor loss on the
     surrogate reward in imagination (15 steps, lambda-returns, a slow critic, an entropy bonus).
3. Score against env steps (curve.csv, curve.png, the logger's online/score): on the linear
   system the policy's mean reward (-||a - expert(x)||^2) as a percentage of the way from random
   actions to the expert; from a walker run, its return as a percentage of the demonstrations'.

The run folder, resumption (resume=true out_dir=<run>; SIGTERM and Ctrl-C save after the current
batch), logger and config checks are the library's (start_run), as in examples/aime_walker.py.
Under torchrun every rank collects its share of each batch of env steps with its own envs and
online windows, batch_size is the global batch, the losses train in DDP and rank 0 writes.
"""

from __future__ import annotations

import csv
import functools
import json
import statistics
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage
from torchrl.envs import InitTracker, SerialEnv, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate
from torchrl.trainers import Trainer

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import (
    LinearControlSystem,
    make_window_buffer,
    open_dataset,
    TrajectoryWriter,
    WindowMixture,
    WindowReplayBuffer,
)
from aime_torchrl.envs import make_env, make_linear_env
from aime_torchrl.evaluation import imitation_videos, plot_curves, seeded_episode_returns
from aime_torchrl.modules import (
    FilteringActor,
    frozen,
    make_adversarial_reward,
    make_discriminator,
    make_imagination_env,
    make_mlp,
)
from aime_torchrl.objectives import AdversarialRewardLoss, OfflinePolicyLoss
from aime_torchrl.trainers import (
    CallableStepper,
    check_config,
    deferred_interrupt,
    GuardedBackward,
    load_checkpoint,
    start_run,
    DistributedContext,
    train_offline,
)

# keys a resumed run may change: they do not change what is trained (online.env_steps: train on)
RESUMABLE = (
    "resume",
    "progress",
    "device",
    "threads",
    "out_dir",
    "logger.",
    "eval.video",
    "online.env_steps",
    "online.trainer",
)


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    check_config(
        cfg,
        positive=[
            "online.env_steps",
            "online.envs",
            "online.frames_per_batch",
            "online.updates_per_batch",
            "horizon",
            "batch_size",
            "lr",
            "eval.episodes",
            "threads",
        ],
        non_negative=["offline.*", "online.aime_scale", "online.workers"],
        choices={"online.reward": ["ail", "none"], "online.trainer": ["loop", "torchrl"]},
    )
    if not 0 <= cfg.online.share <= 1:
        raise ValueError(
            f"online.share={cfg.online.share}: the online windows' share must be in [0, 1]."
        )
    if cfg.online.frames_per_batch % (cfg.online.envs * max(cfg.online.workers, 1)):
        raise ValueError(
            f"online.frames_per_batch={cfg.online.frames_per_batch}: must be a multiple of "
            f"online.envs={cfg.online.envs} (times online.workers={cfg.online.workers})."
        )
    if (
        cfg.from_run is not None
        and not (Path(hydra.utils.to_absolute_path(cfg.from_run)) / "policy.pt").is_file()
    ):
        raise FileNotFoundError(
            f"from_run={cfg.from_run}: not a finished examples/aime_walker.py run (no policy.pt)."
        )


def offline_linear(
    cfg: DictConfig, device: torch.device, train: bool, ranks: DistributedContext, batch_size: int
):
    """Data and both offline phases on the linear system (``train``: a resumed run loads the weights
    from its checkpoint; under torchrun in DDP): the world model, the policy, the offline and
    demonstration buffers (``batch_size``: this rank's windows), the online env maker, the score and
    the video maker (none here)."""
    length = 60  # steps per episode
    system = LinearControlSystem(obs_dim=4, action_dim=2, seed=cfg.seed)
    embodiment = system.rollout(64, length, policy="random", seed=cfg.seed + 1).to(device)
    demos = system.rollout(16, length, policy="expert", seed=cfg.seed + 2).exclude("action")
    offline_rb = make_window_buffer(embodiment, horizon=cfg.horizon, batch_size=batch_size)
    demo_rb = make_window_buffer(demos.to(device), horizon=cfg.horizon, batch_size=batch_size)

    # phase 1: the world model; phase 2: the policy from the demonstrations' observations
    world_model = RSSMWorldModel.from_config(
        {"observation": system.obs_dim},
        system.action_dim,
        belief_dim=64,
        state_dim=16,
        hidden=64,
        device=device,
    )
    policy = make_policy(16, 64, system.action_dim, hidden=64, device=device)
    if train:
        wm_optimizer = torch.optim.Adam(world_model.parameters(), lr=cfg.lr)
        train_offline(
            ranks.wrap(WorldModelLoss(world_model)),
            offline_rb.sample,
            wm_optimizer,
            steps=cfg.offline.phase1_steps,
            desc="phase 1",
            progress=cfg.progress and ranks.is_main,
            distributed=ranks,
        )
        optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        train_offline(
            ranks.wrap(AIMELoss(world_model, policy)),
            demo_rb.sample,
            optimizer,
            steps=cfg.offline.phase2_steps,
            desc="phase 2",
            progress=cfg.progress and ranks.is_main,
            distributed=ranks,
        )

    def online_env(envs: int, seed: int):
        return make_linear_env(system, max_steps=length, seed=seed, batch_size=(envs,))

    def score() -> float:
        """The mean reward per step: % of the way from random actions (0) to the expert (100);
        rank 0's under torchrun (one batched rollout)."""
        if not ranks.is_main:
            return ranks.share(None)
        env = online_env(cfg.eval.episodes, 10_000)
        actor = FilteringActor(world_model, policy)
        env.append_transform(InitTracker())
        env.append_transform(actor.make_tensordict_primer())
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            reward = env.rollout(length, actor)["next", "reward"].mean().item()
            random = env.rollout(length)["next", "reward"].mean().item()
        return ranks.share(100 * (1 - reward / random))

    return world_model, policy, offline_rb, demo_rb, online_env, score, None


def offline_from_run(
    cfg: DictConfig, device: torch.device, ranks: DistributedContext, batch_size: int
):
    """The same from a finished examples/aime_walker.py run: its world model, policy and datasets;
    the score is the % of the demonstrations' return, as that example's (the episodes spread over
    the ranks under torchrun); videos as its."""
    folder = Path(hydra.utils.to_absolute_path(cfg.from_run))
    walker = OmegaConf.load(folder / "config.yaml")
    saved = load_checkpoint(folder / "world_model.pt")
    world_model = RSSMWorldModel.from_config(**saved["config"], device=device)
    world_model.load_state_dict(saved["state_dict"])
    saved = load_checkpoint(folder / "policy.pt")
    policy = make_policy(
        world_model.state_dim,
        world_model.belief_dim,
        world_model.action_dim,
        hidden=saved["config"]["hidden"],
        layers=saved["config"]["layers"],
        device=device,
    )
    policy.load_state_dict(saved["state_dict"])
    data = dict(
        root=walker.data.root,
        horizon=cfg.horizon,
        batch_size=batch_size,
        images=walker.setup == "visual",
        seed=walker.data.build_seed,
        progress=False,
        require=world_model.sensor_shapes(),
        embodiment=walker.embodiment,
    )
    offline_rb = open_dataset(
        walker.data.embodiment,
        num_episodes=walker.data.embodiment_episodes,
        action_dim=world_model.action_dim,
        **data,
    )
    demo_rb = open_dataset(walker.data.demos, num_episodes=walker.data.num_demos, **data)
    env_args = (walker.embodiment, walker.task, walker.setup)

    def online_env(envs: int, seed: int):
        makers = [functools.partial(make_env, *env_args, seed=seed + i) for i in range(envs)]
        return TransformedEnv(SerialEnv(envs, makers))

    def score() -> float:
        actor = FilteringActor(world_model, policy)
        returns = ranks.spread(
            lambda seeds: seeded_episode_returns(
                actor,
                lambda s: make_env(*env_args, seed=s).append_transform(actor.make_env_transform(s)),
                seeds,
            ),
            [10_000 + i for i in range(cfg.eval.episodes)],
        )
        return 100 * statistics.mean(returns) / statistics.mean(demo_rb.episode_returns)

    def videos(folder: Path, logger, step: int) -> None:
        imitation_videos(
            FilteringActor(world_model, policy),
            lambda: make_env(*env_args, seed=10_000, pixels=True),
            demo_rb.files[0],
            walker.embodiment,
            folder,
            logger=logger,
            step=step,
        )

    return world_model, policy, offline_rb, demo_rb, online_env, score, videos


class PolicyLosses(nn.Module):
    """The policy's objectives in one module (one DDP over the policy and its critic): the AIME loss
    of the demonstrations times ``scale`` and, from ``starts`` (with a surrogate reward), the actor
    and critic losses in imagination."""

    def __init__(self, aime_loss: AIMELoss, rl_loss: OfflinePolicyLoss | None) -> None:
        super().__init__()
        self.aime_loss, self.rl_loss = aime_loss, rl_loss

    def forward(self, demos: TensorDict, starts: TensorDict | None, *, scale: float) -> TensorDict:
        losses = self.aime_loss(demos).apply(lambda x: scale * x)
        if starts is not None:
            losses.update(self.rl_loss(starts).select("loss_actor", "loss_value"))
        return losses


@hydra.main(config_path="../configs", config_name="aime_online", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run = start_run(  # folder, resumption (a finished run trains on to a raised online.env_steps)
        cfg,
        "aime_online",
        resumable=RESUMABLE,
        check=check,
        train_on=lambda cfg, results: cfg.online.env_steps > results["env_steps"],
    )
    if run.results is not None:  # a finished run
        return run.results
    cfg, device, logger = run.cfg, run.device, run.logger
    ranks = run.distributed  # one process, or a torchrun launch: rank 0 writes, the batch is split
    batch_size = ranks.local_batch_size(cfg.batch_size)
    world_model, policy, offline_rb, demo_rb, online_env, score, videos = (
        offline_linear(cfg, device, run.resumed is None, ranks, batch_size)
        if cfg.from_run is None
        else offline_from_run(cfg, device, ranks, batch_size)
    )
    # every rank collects its share of each batch of env steps
    frames_per_batch = ranks.local_batch_size(
        cfg.online.frames_per_batch, key="online.frames_per_batch"
    )
    if frames_per_batch % (cfg.online.envs * max(cfg.online.workers, 1)):
        raise ValueError(
            f"online.frames_per_batch={cfg.online.frames_per_batch}: each of the "
            f"{ranks.world_size} ranks' share must be a multiple of online.envs={cfg.online.envs} "
            f"(times online.workers={cfg.online.workers})."
        )
    wm_loss = WorldModelLoss(world_model)
    wm_optimizer = torch.optim.Adam(world_model.parameters(), lr=cfg.lr)
    aime_loss = AIMELoss(world_model, policy)
    policy_optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    # --- phase 3, online -----------------------------------------------------------------------
    explorer = FilteringActor(world_model, policy)  # samples its actions: the exploration

    def explorer_env(seed: int):
        env = online_env(cfg.online.envs, seed)
        env.append_transform(InitTracker())  # the filter restarts where an episode does
        env.append_transform(explorer.make_tensordict_primer())
        return env

    online_rb = WindowReplayBuffer(
        horizon=cfg.horizon,
        batch_size=batch_size,
        traj_key=("collector", "traj_ids"),
        storage=LazyTensorStorage(cfg.online.env_steps, device=device),
    )
    writer = TrajectoryWriter(online_rb)
    mixture = WindowMixture(
        [offline_rb, online_rb], [1 - cfg.online.share, cfg.online.share], batch_size=batch_size
    )

    discriminator = make_discriminator(world_model, hidden=64)
    disc_loss = AdversarialRewardLoss(discriminator, gradient_penalty=1.0)
    disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr)
    value = TensorDictModule(
        make_mlp(world_model.feature_dim, 1, 64),
        in_keys=["belief", "state"],
        out_keys=["state_value"],
    ).to(device)
    surrogate_reward = make_adversarial_reward(discriminator)
    imagination = make_imagination_env(frozen(world_model), frozen(surrogate_reward))
    rl_loss = OfflinePolicyLoss(
        policy, value, imagination, imagination_horizon=15, behaviour_scale=0.0
    )
    value_optimizer = torch.optim.Adam(value.parameters(), lr=cfg.lr)
    slow_critic = SoftUpdate(rl_loss.value_loss, tau=0.02)
    # the losses as DDP trains them (themselves in one process): the policy's in one module, since
    # the AIME loss and the actor loss share its parameters
    optimized = dict(
        world_model=ranks.wrap(wm_loss),
        discriminator=ranks.wrap(disc_loss),
        policy=ranks.wrap(PolicyLosses(aime_loss, rl_loss if cfg.online.reward == "ail" else None)),
    )
    guards = {
        "world model": GuardedBackward(list(world_model.parameters()), desc="phase 3 world model"),
        "discriminator": GuardedBackward(list(discriminator.parameters()), desc="phase 3 reward"),
        "policy": GuardedBackward(
            list(rl_loss.policy_parameters()), desc="phase 3 policy and critic"
        ),
    }

    def latents(window, actor=None):
        """The posterior latents (belief, state) after each frame of ``window``, flat, detached."""
        with torch.no_grad():
            frames = world_model.to_frames(window, with_actions=actor is None)
            frames = world_model(frames, policy=actor)
        keys = world_model.keys
        return frames.select(keys.next("belief"), keys.next("state"))["next"].reshape(-1)

    modules = dict(
        world_model=world_model,
        policy=policy,
        value=value,
        discriminator=discriminator,
        slow_critic=rl_loss.value_loss,
    )
    optimizers = dict(
        world_model=wm_optimizer,
        policy=policy_optimizer,
        value=value_optimizer,
        discriminator=disc_optimizer,
    )
    step = run.restore(
        "phase3", modules, optimizers
    )  # weights, optimisers and random state of a resumed run
    if run.resumed is None:
        curve, frames_seen = [(0, score())], 0
        if ranks.is_main:
            print(f"env steps 0 (offline AIME): score {curve[0][1]:.1f} %")
    else:  # and its online windows (the envs start new episodes)
        shares, counts = run.resumed["online"], run.resumed["trajectories"]
        if len(shares) == ranks.world_size:  # on as many ranks as saved: each its own windows
            if shares[ranks.rank] is not None:
                online_rb.extend(shares[ranks.rank])
            writer.count = counts[ranks.rank]
        else:  # on another number of ranks: every rank all of them (renumbered as written)
            for share in filter(lambda share: share is not None, shares):
                writer.extend(share)
        curve, frames_seen = run.resumed["curve"], run.resumed["frames"]
        if ranks.is_main:
            print(f"resumed after {frames_seen} env steps")

    last: dict[str, torch.Tensor] = {}  # the last update's ELBOs, logged after each batch

    def update() -> TensorDict:
        """One update of the world model, the discriminator and the policy (and its critic)."""
        nonlocal step
        # the world model, on the mixture of offline and online windows
        model_losses = optimized["world_model"](mixture.sample().to(device))
        guards["world model"].backward(model_losses, step)
        wm_optimizer.step()
        demo_window = demo_rb.sample().exclude("action").to(device)  # observations only
        if cfg.online.reward == "ail":
            # the discriminator: the demonstrations' latents (their actions inferred by the policy)
            # against the agent's own online latents
            expert = latents(demo_window, policy)
            agent = latents(online_rb.sample().to(device))
            expert.set("expert", torch.ones(expert.shape, dtype=torch.bool, device=device))
            agent.set("expert", torch.zeros(agent.shape, dtype=torch.bool, device=device))
            guards["discriminator"].backward(
                optimized["discriminator"](torch.cat([expert, agent])), step
            )
            disc_optimizer.step()
        # the policy: the AIME loss of the demonstrations and, on the surrogate reward, the actor
        # loss in imagination from the demonstrations' and the agent's latents; the critic
        starts = (
            torch.cat([expert, agent]).exclude("expert") if cfg.online.reward == "ail" else None
        )
        policy_losses = optimized["policy"](demo_window, starts, scale=cfg.online.aime_scale)
        guards["policy"].backward(policy_losses, step)
        policy_optimizer.step()
        if cfg.online.reward == "ail":
            value_optimizer.step()
            slow_critic.step()
        step += 1
        last.update(world_model_elbo=model_losses["elbo"], policy_elbo=policy_losses["elbo"])
        return TensorDict({k: v.detach() for k, v in last.items()})

    def collected(batch: TensorDict) -> None:  # whole trajectories into the online buffer
        nonlocal frames_seen
        writer.extend(batch.reshape(-1, batch.shape[-1]))  # [workers * envs, T]
        frames_seen += batch.numel() * ranks.world_size  # every rank collects as many

    def batch_done() -> None:  # after a batch's updates: the score, the logs, a checkpoint
        for guard in guards.values():
            guard.read()  # stops on a non-finite step, naming it
        if cfg.online.workers:
            collector.update_policy_weights_()  # the workers act with the new weights
        curve.append((frames_seen, score()))
        if ranks.is_main:
            print(f"env steps {frames_seen}: score {curve[-1][1]:.1f} %")
        if logger is not None:
            logger.log_scalar("online/score", curve[-1][1], step=frames_seen)
            for name, value in last.items():
                logger.log_scalar(f"online/{name}", value.item(), step=frames_seen)
        run.save(  # with every rank's online windows
            "phase3",
            step,
            modules,
            optimizers,
            online=ranks.gather(online_rb[:] if len(online_rb) else None),
            trajectories=ranks.gather(writer.count),
            curve=curve,
            frames=frames_seen,
        )

    frames = dict(  # this rank's share
        frames_per_batch=frames_per_batch,
        total_frames=-(-(cfg.online.env_steps - frames_seen) // ranks.world_size),
    )
    if frames_seen >= cfg.online.env_steps:  # a resumed run whose online phase is done
        collector = None
    elif cfg.online.workers:  # worker processes, each with its own envs and a copy of the explorer
        makers = [
            functools.partial(explorer_env, ranks.seed(cfg.seed) + 3 + 1000 * i)
            for i in range(cfg.online.workers)
        ]
        collector = Collector(  # TorchRL's multi-process collector (sync: MultiSyncCollector)
            makers, explorer, num_collectors=cfg.online.workers, sync=cfg.online.sync, **frames
        )
    else:
        collector = Collector(
            explorer_env(ranks.seed(cfg.seed) + 3), explorer, **frames, device=device
        )
    stopped = f"stopped after {{}} env steps (resume=true out_dir={run.folder} continues)"
    with deferred_interrupt() as interrupted:  # SIGTERM/Ctrl-C: save after the batch, then stop
        if collector is None:
            pass
        elif cfg.online.trainer == "torchrl":  # the same steps under TorchRL's Trainer
            trainer = Trainer(
                collector=collector,
                total_frames=frames["total_frames"],
                frame_skip=1,
                optim_steps_per_batch=cfg.online.updates_per_batch,
                loss_module=aime_loss,
                optimizer=None,
                optimization_stepper=CallableStepper(update),
                progress_bar=False,
                auto_log_optim_steps=False,
            )
            stop: list[str] = []

            def skip_while_empty(batch: TensorDict) -> None:  # no update before a whole trajectory
                if ranks.any_rank(len(online_rb) == 0):  # (on every rank)
                    raise StopIteration

            def after_updates() -> None:
                if not ranks.any_rank(len(online_rb) == 0):
                    batch_done()
                if ranks.any_rank(interrupted()):  # a signal to one rank stops them all
                    stop.append(stopped.format(frames_seen))
                    trainer.request_stop(stop[0])

            trainer.register_op("batch_process", collected)
            trainer.register_op("process_optim_batch", skip_while_empty)
            trainer.register_op("post_steps", after_updates)
            trainer.train()
            if stop:
                raise KeyboardInterrupt(stop[0])
        else:
            for batch in collector:
                collected(batch)
                if ranks.any_rank(len(online_rb) == 0):  # no update before a whole trajectory
                    continue
                for _ in range(cfg.online.updates_per_batch):
                    update()
                batch_done()
                if ranks.any_rank(interrupted()):  # a signal to one rank stops them all
                    collector.shutdown()
                    raise KeyboardInterrupt(stopped.format(frames_seen))
    if collector is not None:
        collector.shutdown()
    if not ranks.is_main:  # rank 0 writes the results
        return {}

    with open(run.folder / "curve.csv", "w", newline="") as f:
        csv.writer(f).writerows([("env_steps", "score_percent"), *curve])
    plot_curves(
        {"online AIME": curve},
        run.folder / "curve.png",
        xlabel="env steps",
        ylabel="score (%)",
        title=f"online AIME, seed {cfg.seed}",
    )
    if videos is not None and cfg.eval.video:
        videos(run.folder / "videos", logger, frames_seen)
    results = {"curve": curve, "final_score": curve[-1][1], "env_steps": frames_seen}
    (run.folder / "results.json").write_text(json.dumps(results, indent=1))
    print(f"score against env steps: {run.folder / 'curve.csv'}")
    return results


if __name__ == "__main__":
    main()
