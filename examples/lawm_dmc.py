# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Policies by offline RL on latent-action world models: how many action labels does a policy need?

    python examples/lawm_dmc.py                     # world models too (lawm_walker.py); CPU
    python examples/lawm_dmc.py lawm_profile=quick  # the same, small and short
    python examples/lawm_dmc.py world_models=runs/lawm_walker/<run>       # on finished world models
    python examples/lawm_dmc.py resume=true out_dir=runs/lawm_dmc/<run>   # after Ctrl-C, SIGTERM

World models (examples/lawm_walker.py: per labelled fraction a latent-action model on every
episode, an action-conditioned RSSM on the labelled episodes, one on IDM pseudo-labels, and at
fraction 1 the one with every label) -> for each: the posterior latents of the episodes it can
filter (the latent model infers the actions from observations; the others need (pseudo-)actions)
-> a reward model on them -> a policy by offline RL in the model's imagination (DreamerV3's actor
and critic, plus behaviour cloning of the data's real or inferred actions: ``OfflinePolicyLoss``;
with policy.uncertainty_scale > 0 the imagined reward is also penalised by a dynamics ensemble's
disagreement) -> its return in the real env. Every policy acts in the real action space; the
latent-action model imagines through its action encoder -> ``results.json``, ``table.md``,
``figure.png`` (return against labelled episodes) and a GIF per latent-action policy. Rewards are
known for every episode; only actions are missing.
"""

import json
import subprocess
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModule
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.objectives import SoftUpdate

from aime_torchrl import RSSMWorldModel
from aime_torchrl.data import (
    load_episodes,
    posterior_latents,
    pseudo_label,
    resolve_datasets,
    split_held_out,
    split_labelled,
)
from aime_torchrl.envs import make_env, REFERENCE_EXPERT_RETURNS, SENSORS
from aime_torchrl.evaluation import (
    policy_efficiency_report,
    record_episode,
    save_gif,
    seeded_episode_returns,
)
from aime_torchrl.modules import (
    FilteringActor,
    frozen,
    LatentActionFilteringActor,
    LatentActionWorldModel,
    make_dynamics_ensemble,
    make_imagination_env,
    make_mlp,
    make_policy,
    make_reward_model,
    make_stack_module,
)
from aime_torchrl.objectives import DynamicsEnsembleLoss, OfflinePolicyLoss, RewardLoss
from aime_torchrl.trainers import check_config, load_checkpoint, load_module, save_module, start_run

RESUMABLE = (
    "resume",
    "progress",
    "device",
    "threads",
    "out_dir",
    "checkpoint_every",
    "log_every",
    "logger.",
    "eval.workers",
)
MODELS = ("latent", "labelled_only", "idm_labels")


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    free = ("behaviour_scale", "uncertainty_scale", "entropy_bonus")
    positive = [f"policy.{k}" for k in cfg.policy if k not in free]
    check_config(
        cfg,
        choices={"setup": ["mdp", "lpomdp"]},
        non_negative=["*"],
        positive=[
            "reward.*",
            "ensemble.*",
            *positive,
            "eval.episodes",
            "checkpoint_every",
            "log_every",
            "threads",
        ],
    )
    if cfg.ensemble.members < 2:
        raise ValueError(
            f"ensemble.members={cfg.ensemble.members}: the dynamics ensemble needs at least 2 "
            "members to disagree."
        )
    if f"{cfg.embodiment}-{cfg.task}" not in REFERENCE_EXPERT_RETURNS:
        raise ValueError(
            f"embodiment={cfg.embodiment} task={cfg.task}: no expert return to score against; "
            f"choose one of {sorted(REFERENCE_EXPERT_RETURNS)}."
        )
    unknown = set(cfg.models) - set(MODELS)
    if unknown or not cfg.models:
        raise ValueError(f"models={list(cfg.models)}: choose from {list(MODELS)}.")
    bad = [f for f in cfg.fractions if not 0 < f <= 1]
    if bad or not cfg.fractions:
        raise ValueError(
            f"fractions={list(cfg.fractions)}: every fraction of labelled episodes must be in "
            "(0, 1]."
        )
    if cfg.world_models is not None and not (Path(cfg.world_models) / "models.json").is_file():
        raise FileNotFoundError(
            f"world_models={cfg.world_models}: not a run of examples/lawm_walker.py (no "
            "models.json); give its out_dir, or null to train the world models here."
        )


@hydra.main(config_path="../configs", config_name="lawm_dmc", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run = start_run(
        cfg, "lawm_dmc", resumable=RESUMABLE, check=check
    )  # run folder, resumption, seed, logger
    if run.results is not None:
        return run.results
    cfg, device, logger = run.cfg, run.device, run.logger
    ranks = run.distributed  # one process, or a torchrun launch: rank 0 writes, the batch is split
    batch_size = {
        stage: ranks.local_batch_size(cfg[stage].batch_size, key=f"{stage}.batch_size")
        for stage in ("reward", "ensemble", "policy")
    }

    # --- world models: a finished lawm_walker run, or one trained here (resumable too) ------------
    wm_dir = Path(cfg.world_models) if cfg.world_models is not None else run.folder / "world_models"
    if cfg.world_models is None and not (wm_dir / "results.json").exists():
        # under torchrun every rank starts it, and the children train in DDP on their own
        command = [
            sys.executable,
            str(Path(__file__).with_name("lawm_walker.py")),
            f"out_dir={wm_dir}",
            f"device={cfg.device}",
            f"progress={cfg.progress}",
            f"threads={cfg.threads or 'null'}",
        ]
        if (
            wm_dir / "config.yaml"
        ).exists():  # interrupted: lawm_walker resumes with its own config
            command.append("resume=true")
        else:
            command += [
                f"embodiment={cfg.embodiment}",
                f"task={cfg.task}",
                f"setup={cfg.setup}",
                f"seed={cfg.seed}",
                f"fractions=[{','.join(map(str, cfg.fractions))}]",
                f"models=[{','.join(cfg.models)}]",
                *cfg.lawm_walker,
            ]
        subprocess.run(command, check=True, env=ranks.child_env())
    wm_cfg = OmegaConf.load(wm_dir / "config.yaml")
    differ = [k for k in ("embodiment", "task", "setup") if wm_cfg[k] != cfg[k]]
    if differ:  # the policies act in cfg's env on the rewards of the world models' data
        raise ValueError(
            f"world_models={wm_dir} was trained with "
            + ", ".join(f"{k}={wm_cfg[k]}" for k in differ)
            + "; this run has "
            + ", ".join(f"{k}={cfg[k]}" for k in differ)
            + ": set them alike."
        )
    trained = json.loads((wm_dir / "models.json").read_text())

    # --- the world-model run's data and split: held-out episodes are never used here --------------
    sensors = SENSORS[wm_cfg.embodiment][wm_cfg.setup]
    folders = resolve_datasets(
        wm_cfg.data.embodiment,
        root=wm_cfg.data.root,
        num_episodes=wm_cfg.data.episodes,
        seed=wm_cfg.data.build_seed,
        workers=wm_cfg.data.workers,
        progress=cfg.progress,
    )
    episodes = load_episodes(folders, num_episodes=wm_cfg.data.episodes, sensors=sensors)
    _, train = split_held_out(episodes, wm_cfg.data.held_out, seed=wm_cfg.seed)
    data_return = train.get(("next", "reward")).sum(-2).mean().item()
    expert_return = REFERENCE_EXPERT_RETURNS[f"{cfg.embodiment}-{cfg.task}"]

    def fit(
        stage: str,
        modules: dict,
        loss,
        optimizer,
        sample,
        steps: int,
        grad_clip: float,
        after_step=None,
    ) -> None:
        loop = run.loop(
            stage,
            modules,
            optimizer,
            steps=steps,
            grad_clip=grad_clip,
            desc=stage,
            progress=cfg.progress,
            logger=logger,
            log_every=cfg.log_every,
            log_prefix=stage,
            checkpoint_every=cfg.checkpoint_every,
        )
        optimized = ranks.wrap(loss)  # DDP across ranks (itself in one process)
        for step in loop:
            losses = optimized(sample().to(device))
            loop.backward(losses)  # of the sum of the loss_* terms; clipped gradients
            optimizer.step()
            if after_step is not None:
                after_step()

    def load_world_model(name: str) -> RSSMWorldModel | LatentActionWorldModel:
        saved = load_checkpoint(
            wm_dir / f"{name}.pt"
        )  # read once: the config that builds it and its weights
        cls = LatentActionWorldModel if name.startswith("latent@") else RSSMWorldModel
        world_model = cls.from_config(**saved["config"], device=device)
        world_model.load_state_dict(saved["state_dict"])
        return frozen(world_model)

    # --- a policy per world model (a finished one is kept when the run resumes) -------------------
    done_file = run.folder / "policies.json"
    done = json.loads(done_file.read_text()) if done_file.exists() else {}
    for fraction in map(float, cfg.fractions):
        labelled, action_free = split_labelled(train, fraction, seed=wm_cfg.seed)
        for model in cfg.models:
            name = f"{model}@{fraction}"
            if name in done or (
                model == "idm_labels" and action_free is None
            ):  # = labelled_only with every label
                continue
            if name not in trained:
                raise KeyError(
                    f"{wm_dir} has no world model {name} (it has {sorted(trained)}): train it with "
                    "examples/lawm_walker.py, or leave it out of fractions / models."
                )
            world_model = load_world_model(name)
            if (
                model == "latent"
            ):  # every episode: the latent actions are inferred from observations
                data = train
            elif model == "labelled_only" or action_free is None:
                data = labelled
            else:  # the world-model run's IDM labels the action-free episodes
                idm = make_stack_module(
                    {k: episodes[k].shape[-1] for k in sensors},
                    [],
                    episodes["action"].shape[-1],
                    frames=2,
                    in_group="transition",
                    hidden=wm_cfg.idm.hidden,
                )
                idm_file = wm_dir / f"idm@{fraction}.pt"
                if not idm_file.exists():
                    raise FileNotFoundError(
                        f"{wm_dir} lacks {idm_file.name}, the IDM whose labels trained {name} "
                        "(runs of lawm_walker.py older than 2026-11-25 did not keep it): leave "
                        "idm_labels out of models, or train the world models again."
                    )
                load_module(idm_file, idm, dict(hidden=wm_cfg.idm.hidden), what="IDM")
                data = torch.cat([labelled, pseudo_label(idm, action_free, list(sensors))])
            latents = posterior_latents(world_model, data, seed=cfg.seed)
            buffer = TensorDictReplayBuffer(
                storage=LazyTensorStorage(len(latents)), batch_size=batch_size["policy"]
            )
            buffer.extend(latents)
            rssm, keys = (
                world_model.world_model if model == "latent" else world_model
            ), world_model.keys

            # the reward model on the latents after each transition (each rank draws its own
            # batches; DDP starts every rank from rank 0's weights)
            torch.manual_seed(ranks.seed(cfg.seed))
            reward_model = make_reward_model(rssm, hidden=cfg.reward.hidden)
            reward_file = run.folder / f"reward@{name}.pt"
            if reward_file.exists():
                load_module(
                    reward_file, reward_model, dict(hidden=cfg.reward.hidden), what="reward model"
                )
            else:
                optimizer = torch.optim.Adam(reward_model.parameters(), lr=cfg.reward.lr)
                fit(
                    f"reward@{name}",
                    {"reward": reward_model},
                    RewardLoss(reward_model),
                    optimizer,
                    lambda: buffer.sample(batch_size["reward"]),
                    cfg.reward.steps,
                    grad_clip=100.0,
                )
                if ranks.is_main:
                    save_module(reward_file, reward_model, dict(hidden=cfg.reward.hidden))
            reward_model = frozen(reward_model)

            # with a model-uncertainty penalty: a dynamics ensemble on the same transitions, its
            # unit the data's disagreement
            uncertainty = None
            if cfg.policy.uncertainty_scale > 0:
                torch.manual_seed(ranks.seed(cfg.seed))
                shape = dict(members=cfg.ensemble.members, hidden=cfg.ensemble.hidden)
                uncertainty = make_dynamics_ensemble(world_model, **shape)
                ensemble_file = run.folder / f"ensemble@{name}.pt"
                if ensemble_file.exists():
                    load_module(ensemble_file, uncertainty, shape, what="dynamics ensemble")
                else:
                    optimizer = torch.optim.Adam(uncertainty.parameters(), lr=cfg.ensemble.lr)
                    fit(
                        f"ensemble@{name}",
                        {"ensemble": uncertainty},
                        DynamicsEnsembleLoss(uncertainty),
                        optimizer,
                        lambda: buffer.sample(batch_size["ensemble"]),
                        cfg.ensemble.steps,
                        grad_clip=100.0,
                    )
                    uncertainty.module.calibrate(
                        latents[keys.belief].to(device),
                        latents[keys.state].to(device),
                        latents["behaviour_action"].to(device),
                    )
                    if ranks.is_main:
                        save_module(ensemble_file, uncertainty, shape)
                uncertainty = frozen(uncertainty)

            # the policy by offline RL in imagination, in the real action space (a latent-action
            # model imagines through its action encoder)
            torch.manual_seed(ranks.seed(cfg.seed))
            policy = make_policy(
                rssm.state_dim,
                rssm.belief_dim,
                world_model.action_dim,
                hidden=cfg.policy.hidden,
                device=device,
            )
            value = TensorDictModule(
                make_mlp(rssm.feature_dim, 1, cfg.policy.hidden, device=device),
                in_keys=[keys.belief, keys.state],
                out_keys=["state_value"],
            )
            env = make_imagination_env(
                world_model,
                reward_model,
                uncertainty=uncertainty,
                uncertainty_scale=cfg.policy.uncertainty_scale,
            )
            loss = OfflinePolicyLoss(
                policy,
                value,
                env,
                imagination_horizon=cfg.policy.horizon,
                behaviour_scale=cfg.policy.behaviour_scale,
                entropy_bonus=cfg.policy.entropy_bonus,
                gamma=cfg.policy.gamma,
                lmbda=cfg.policy.lmbda,
            )
            optimizer = torch.optim.Adam(
                [
                    dict(params=policy.parameters(), lr=cfg.policy.actor_lr),
                    dict(params=value.parameters(), lr=cfg.policy.value_lr),
                ]
            )
            slow_critic = SoftUpdate(loss.value_loss, tau=cfg.policy.tau)
            fit(
                f"policy@{name}",
                {
                    "policy": policy,
                    "value_loss": loss.value_loss,
                    "return_norm": loss.actor_loss.retnorm,
                },
                loss,
                optimizer,
                buffer.sample,
                cfg.policy.steps,
                grad_clip=cfg.policy.grad_clip,
                after_step=slow_critic.step,
            )
            if ranks.is_main:
                save_module(
                    run.folder / f"policy@{name}.pt", policy, dict(hidden=cfg.policy.hidden)
                )

            # its return in the real env
            actor = (
                LatentActionFilteringActor(world_model, policy)
                if model == "latent"
                else FilteringActor(world_model, policy)
            ).cpu()

            def env_of(seed: int, actor=actor, **kwargs):
                return make_env(
                    cfg.embodiment, cfg.task, cfg.setup, seed=seed, **kwargs
                ).append_transform(actor.make_env_transform(seed))

            seeds = [1000 * cfg.seed + i for i in range(cfg.eval.episodes)]
            returns = ranks.spread(  # under torchrun each rank runs its share of the episodes
                lambda share, actor=actor, env_of=env_of, name=name: seeded_episode_returns(
                    actor,
                    env_of,
                    share,
                    workers=cfg.eval.workers,
                    progress=cfg.progress and ranks.is_main,
                    desc=f"evaluating {name}",
                ),
                seeds,
            )
            if not ranks.is_main:
                continue
            if cfg.eval.video and model == "latent":
                with torch.random.fork_rng():
                    torch.manual_seed(seeds[0])
                    _, frames = record_episode(actor, env_of(seeds[0], pixels=True))
                save_gif(frames, run.folder / f"policy@{name}.gif")
            done[name] = dict(
                model=model,
                fraction=fraction,
                labelled_episodes=len(labelled),
                returns=returns,
                return_mean=sum(returns) / len(returns),
                latents=len(latents),
            )
            partial = done_file.with_suffix(
                ".tmp"
            )  # written whole, then renamed: an interruption never corrupts it
            partial.write_text(json.dumps(done, indent=1))
            partial.replace(done_file)
            print(name, json.dumps(done[name]), flush=True)

    # --- report -----------------------------------------------------------------------------------
    if not ranks.is_main:  # rank 0 writes the results
        return {}
    results = dict(
        policies=done,
        expert_return=expert_return,
        data_return=data_return,
        seed=cfg.seed,
        world_models=str(wm_dir),
        training_episodes=len(train),
    )
    title = (
        f"{cfg.embodiment}-{cfg.task}, {cfg.setup}: offline RL on {len(train)} episodes of "
        f"{', '.join(f.name for f in folders)} (mean return {data_return:.0f}); seed {cfg.seed}"
    )
    print(
        policy_efficiency_report(
            [done], run.folder, expert_return=expert_return, data_return=data_return, title=title
        )
    )
    (run.folder / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
