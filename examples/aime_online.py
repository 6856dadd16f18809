# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Online AIME (AIME-NoB's phase 3) on TorchRL collectors.

    python examples/aime_online.py                    # linear system: offline phases, then online
    python examples/aime_online.py --aime-scale 0     # pure surrogate-reward RL online
    python examples/aime_online.py --online-share 1   # no offline regulariser
    python examples/aime_online.py --reward none      # the AIME term only, online
    python examples/aime_online.py --from-run runs/aime_walker/<run> --horizon 32 --envs 2

1. Offline, as examples/aime_synthetic.py on the small linear system (CPU minutes): phase 1 (world
   model on random play), phase 2 (a policy from the experts' observations only, AIMELoss); or
   the world model, policy and datasets of a finished examples/aime_walker.py run (--from-run).
2. Online: a TorchRL Collector runs the policy inside the world model's filter (FilteringActor,
   sampling: its exploration) on copies of the system; finished episodes go whole into an online
   window buffer (TrajectoryWriter). Each collected batch is followed by updates of
   - the world model, on windows half offline, half online (AIME-NoB's data-driven regulariser);
   - a discriminator of the demonstrations' latents against the agent's (the surrogate reward);
   - the policy: the AIME loss of the demonstrations, plus DreamerV3's actor loss on the
     surrogate reward in imagination (15 steps, lambda-returns, a slow critic, an entropy bonus).
3. Score against env steps (CSV in --out): on the linear system the policy's mean reward
   (-||a - expert(x)||^2) as a percentage of the way from random actions to the expert; from a
   walker run, its return as a percentage of the demonstrations'.
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage
from torchrl.envs import InitTracker, SerialEnv, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

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
from aime_torchrl.evaluation import seeded_episode_returns
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
    deferred_interrupt,
    GuardedBackward,
    load_checkpoint,
    resolve_device,
    RunCheckpoint,
    train_offline,
)

parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
parser.add_argument("--phase1-steps", type=int, default=600)
parser.add_argument("--phase2-steps", type=int, default=300)
parser.add_argument("--env-steps", type=int, default=6000, help="online env steps in all")
parser.add_argument("--envs", type=int, default=4, help="system copies the collector steps")
parser.add_argument("--frames-per-batch", type=int, default=240)
parser.add_argument("--updates-per-batch", type=int, default=20)
parser.add_argument("--online-share", type=float, default=0.5, help="online windows' share")
parser.add_argument("--aime-scale", type=float, default=1.0, help="weight of the AIME loss")
parser.add_argument("--reward", choices=["ail", "none"], default="ail", help="the surrogate reward")
parser.add_argument("--horizon", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--eval-episodes", type=int, default=8)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
parser.add_argument("--device", default="auto", help="auto (CUDA if there is one), cpu, cuda, ...")
parser.add_argument(
    "--from-run",
    type=Path,
    default=None,
    help="a finished examples/aime_walker.py run folder: its world model, policy and data, online "
    "in its env (default: both offline phases here, on the linear system)",
)
parser.add_argument("--resume", action="store_true", help="continue the run in --out")
parser.add_argument("--out", type=Path, default=Path("runs/aime_online"))
args = parser.parse_args()
try:
    device = resolve_device(args.device, key="--device")
except ValueError as error:
    parser.error(str(error))
if not 0 <= args.online_share <= 1:
    parser.error(f"--online-share={args.online_share}: must be in [0, 1].")
for name in ("env_steps", "envs", "frames_per_batch", "updates_per_batch", "horizon", "batch_size",
             "eval_episodes"):
    if getattr(args, name) < 1:
        parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be a number >= 1.")
if args.frames_per_batch % args.envs:
    parser.error(f"--frames-per-batch={args.frames_per_batch}: must be a multiple of --envs.")
if args.from_run is not None and not (args.from_run / "policy.pt").is_file():
    parser.error(f"--from-run={args.from_run}: not a finished aime_walker.py run (no policy.pt).")
if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
checkpoint = RunCheckpoint(args.out)  # the online phase's state, after every collected batch
if checkpoint.exists() != args.resume:
    parser.error(f"{args.out} already holds a run: pass --resume to continue it, or another --out."
                 if checkpoint.exists() else f"--resume: {args.out} holds no run to continue.")
resumed = checkpoint.load() if args.resume else None


def offline_linear():
    """Data and both offline phases on the linear system: the world model, the policy, the offline
    and demonstration buffers, the online env and the score."""
    length = 60  # steps per episode
    system = LinearControlSystem(obs_dim=4, action_dim=2, seed=args.seed)
    embodiment = system.rollout(64, length, policy="random", seed=args.seed + 1).to(device)
    demos = system.rollout(16, length, policy="expert", seed=args.seed + 2).exclude("action")
    offline_rb = make_window_buffer(embodiment, horizon=args.horizon, batch_size=args.batch_size)
    demo_rb = make_window_buffer(demos.to(device), horizon=args.horizon, batch_size=args.batch_size)

    # phase 1: the world model; phase 2: the policy from the demonstrations' observations
    world_model = RSSMWorldModel.from_config(
        {"observation": system.obs_dim}, system.action_dim, belief_dim=64, state_dim=16,
        hidden=64, device=device,
    )
    policy = make_policy(16, 64, system.action_dim, hidden=64, device=device)
    if resumed is None:  # (a resumed run loads both from its checkpoint)
        wm_optimizer = torch.optim.Adam(world_model.parameters(), lr=args.lr)
        train_offline(
            WorldModelLoss(world_model), offline_rb.sample, wm_optimizer, steps=args.phase1_steps,
            desc="phase 1",
        )
        optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)
        train_offline(
            AIMELoss(world_model, policy), demo_rb.sample, optimizer, steps=args.phase2_steps,
            desc="phase 2",
        )

    def online_env(envs: int, seed: int):
        return make_linear_env(system, max_steps=length, seed=seed, batch_size=(envs,))

    def score() -> float:
        """The mean reward per step: % of the way from random actions (0) to the expert (100)."""
        env = online_env(args.eval_episodes, 10_000)
        actor = FilteringActor(world_model, policy)
        env.append_transform(InitTracker())
        env.append_transform(actor.make_tensordict_primer())
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            reward = env.rollout(length, actor)["next", "reward"].mean().item()
            random = env.rollout(length)["next", "reward"].mean().item()
        return 100 * (1 - reward / random)

    return world_model, policy, offline_rb, demo_rb, online_env, score


def offline_from_run(folder: Path):
    """The same from a finished examples/aime_walker.py run: its world model, policy and datasets;
    the score is the % of the demonstrations' return, as that example's."""
    cfg = OmegaConf.load(folder / "config.yaml")
    saved = load_checkpoint(folder / "world_model.pt")
    world_model = RSSMWorldModel.from_config(**saved["config"], device=device)
    world_model.load_state_dict(saved["state_dict"])
    saved = load_checkpoint(folder / "policy.pt")
    policy = make_policy(
        world_model.state_dim, world_model.belief_dim, world_model.action_dim,
        hidden=saved["config"]["hidden"], layers=saved["config"]["layers"], device=device,
    )
    policy.load_state_dict(saved["state_dict"])
    data = dict(root=cfg.data.root, horizon=args.horizon, batch_size=args.batch_size,
                images=cfg.setup == "visual", seed=cfg.data.build_seed, progress=False,
                require=world_model.sensor_shapes(), embodiment=cfg.embodiment)
    offline_rb = open_dataset(cfg.data.embodiment, num_episodes=cfg.data.embodiment_episodes,
                              action_dim=world_model.action_dim, **data)
    demo_rb = open_dataset(cfg.data.demos, num_episodes=cfg.data.num_demos, **data)
    env_args = (cfg.embodiment, cfg.task, cfg.setup)

    def online_env(envs: int, seed: int):
        makers = [functools.partial(make_env, *env_args, seed=seed + i) for i in range(envs)]
        return TransformedEnv(SerialEnv(envs, makers))

    def score() -> float:
        actor = FilteringActor(world_model, policy)
        returns = seeded_episode_returns(
            actor,
            lambda s: make_env(*env_args, seed=s).append_transform(actor.make_env_transform(s)),
            [10_000 + i for i in range(args.eval_episodes)],
        )
        return 100 * statistics.mean(returns) / statistics.mean(demo_rb.episode_returns)

    return world_model, policy, offline_rb, demo_rb, online_env, score


world_model, policy, offline_rb, demo_rb, online_env, score = (
    offline_linear() if args.from_run is None else offline_from_run(args.from_run)
)
wm_loss = WorldModelLoss(world_model)
wm_optimizer = torch.optim.Adam(world_model.parameters(), lr=args.lr)
aime_loss = AIMELoss(world_model, policy)
policy_optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)

# --- phase 3, online ---------------------------------------------------------------------------
env = online_env(args.envs, args.seed + 3)
explorer = FilteringActor(world_model, policy)  # samples its actions: the collector's exploration
env.append_transform(InitTracker())  # the filter restarts where an episode does
env.append_transform(explorer.make_tensordict_primer())
online_rb = WindowReplayBuffer(horizon=args.horizon, batch_size=args.batch_size,
                               traj_key=("collector", "traj_ids"),
                               storage=LazyTensorStorage(args.env_steps, device=device))
writer = TrajectoryWriter(online_rb)
mixture = WindowMixture([offline_rb, online_rb], [1 - args.online_share, args.online_share],
                        batch_size=args.batch_size)

discriminator = make_discriminator(world_model, hidden=64)
disc_loss = AdversarialRewardLoss(discriminator, gradient_penalty=1.0)
disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=args.lr)
value = TensorDictModule(make_mlp(world_model.feature_dim, 1, 64), in_keys=["belief", "state"],
                         out_keys=["state_value"]).to(device)
surrogate_reward = make_adversarial_reward(discriminator)
imagination = make_imagination_env(frozen(world_model), frozen(surrogate_reward))
rl_loss = OfflinePolicyLoss(policy, value, imagination, imagination_horizon=15, behaviour_scale=0.0)
value_optimizer = torch.optim.Adam(value.parameters(), lr=args.lr)
slow_critic = SoftUpdate(rl_loss.value_loss, tau=0.02)
guards = {
    "world model": GuardedBackward(list(world_model.parameters()), desc="phase 3 world model"),
    "discriminator": GuardedBackward(list(discriminator.parameters()), desc="phase 3 reward"),
    "policy": GuardedBackward(list(rl_loss.policy_parameters()), desc="phase 3 policy and critic"),
}


def latents(window, actor=None):
    """The posterior latents (belief, state) after each frame of ``window``, flat and detached."""
    with torch.no_grad():
        frames = world_model.to_frames(window, with_actions=actor is None)
        frames = world_model(frames, policy=actor)
    keys = world_model.keys
    return frames.select(keys.next("belief"), keys.next("state"))["next"].reshape(-1)


modules = dict(world_model=world_model, policy=policy, value=value, discriminator=discriminator,
               slow_critic=rl_loss.value_loss)
optimizers = dict(world_model=wm_optimizer, policy=policy_optimizer, value=value_optimizer,
                  discriminator=disc_optimizer)
if resumed is None:
    curve, frames_seen, step = [(0, score())], 0, 0
    print(f"env steps 0 (offline AIME): score {curve[0][1]:.1f} %")
else:  # the weights, optimisers, random state and online windows (the envs start new episodes)
    checkpoint.restore(resumed, modules=modules, optimizers=optimizers)
    if resumed["online"] is not None:
        online_rb.extend(resumed["online"])
    writer.count = resumed["trajectories"]
    curve, frames_seen, step = resumed["curve"], resumed["frames"], resumed["step"]
    print(f"resumed after {frames_seen} env steps")


def save() -> None:
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    online = online_rb[:] if len(online_rb) else None
    checkpoint.save(config, "phase3", step, modules=modules, optimizers=optimizers, online=online,
                    trajectories=writer.count, curve=curve, frames=frames_seen)


collector = Collector(env, explorer, frames_per_batch=args.frames_per_batch,
                      total_frames=max(args.env_steps - frames_seen, 1), device=device)
with deferred_interrupt() as interrupted:  # SIGTERM/Ctrl-C: save after the batch, then stop
    for batch in collector if frames_seen < args.env_steps else []:
        writer.extend(batch)
        frames_seen += batch.numel()
        if len(online_rb) == 0:
            continue
        for _ in range(args.updates_per_batch):
            # the world model, on the mixture of offline and online windows
            guards["world model"].backward(wm_loss(mixture.sample().to(device)), step)
            wm_optimizer.step()
            demo_window = demo_rb.sample().exclude("action").to(device)  # observations only
            if args.reward == "ail":
                # the discriminator: the demonstrations' latents (their actions inferred by the
                # policy) against the agent's own online latents
                expert = latents(demo_window, policy)
                agent = latents(online_rb.sample().to(device))
                expert.set("expert", torch.ones(expert.shape, dtype=torch.bool, device=device))
                agent.set("expert", torch.zeros(agent.shape, dtype=torch.bool, device=device))
                guards["discriminator"].backward(disc_loss(torch.cat([expert, agent])), step)
                disc_optimizer.step()
            # the policy: the AIME loss of the demonstrations and, on the surrogate reward, the
            # actor loss in imagination from the demonstrations' and the agent's latents; the critic
            policy_losses = aime_loss(demo_window).apply(lambda x: args.aime_scale * x)
            if args.reward == "ail":
                starts = torch.cat([expert, agent]).exclude("expert")
                rl = rl_loss(starts)
                policy_losses.update(rl.select("loss_actor", "loss_value"))
            guards["policy"].backward(policy_losses, step)
            policy_optimizer.step()
            if args.reward == "ail":
                value_optimizer.step()
                slow_critic.step()
            step += 1
        for guard in guards.values():
            guard.read()  # stops on a non-finite step, naming it
        curve.append((frames_seen, score()))
        print(f"env steps {frames_seen}: score {curve[-1][1]:.1f} %")
        save()
        if interrupted():
            collector.shutdown()
            raise KeyboardInterrupt(f"stopped after {frames_seen} env steps (--resume continues)")
collector.shutdown()

args.out.mkdir(parents=True, exist_ok=True)
with open(args.out / "curve.csv", "w", newline="") as f:
    csv.writer(f).writerows([("env_steps", "score_percent"), *curve])
print(f"score against env steps: {args.out / 'curve.csv'}")
