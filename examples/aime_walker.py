# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""AIME end to end on DeepMind Control: zero-shot imitation from observations with a world model.

    python examples/aime_walker.py              # quick profile, CPU, ~13 min on 2 cores
    python examples/aime_walker.py profile=paper data.embodiment=<folder> data.demos=<folder>
    python examples/aime_walker.py resume=true out_dir=<a run folder>  # continue (Ctrl-C, SIGTERM)
    torchrun --nproc-per-node 2 examples/aime_walker.py    # data parallel: the global batch split

Data -> phase 1: the world model maximises the ELBO of the embodiment data -> phase 2: frozen model,
a policy in the posterior rollout maximises the ELBO of the demonstrations' observations ->
evaluation in the real env, as % of the demonstrations' return. See README.md for the run folder.
"""

import statistics

import hydra
import torch
from omegaconf import DictConfig

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import open_dataset
from aime_torchrl.envs import make_env, SENSOR_DIMS, SENSORS, SETUPS, TASK_ALIASES, TASKS
from aime_torchrl.evaluation import (
    imitation_videos,
    ImitationDiagnostics,
    save_results,
    seeded_episode_returns,
)
from aime_torchrl.modules import FilteringActor, WORLD_MODEL_PRESETS
from aime_torchrl.trainers import check_config, load_module, save_module, start_run

RESUMABLE = (
    "resume",
    "progress",
    "device",
    "threads",
    "compile",
    "out_dir",
    "checkpoint_every",
    "log_every",
    "eval.",
    "logger.",
    "diagnostics.",
)  # keys a resumed run may change: they do not change what is trained


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    tasks = TASKS.get(cfg.embodiment, [])
    check_config(
        cfg,
        choices={
            "embodiment": list(TASKS),
            "setup": SETUPS,
            "world_model.variant": list(WORLD_MODEL_PRESETS),
            "task": [*tasks, *(alias for alias, task in TASK_ALIASES.items() if task in tasks)],
        },
        positive=[
            "*.batch_size",
            "*.horizon",
            "*.lr",
            "*_every",
            "*.every_episodes",
            "*.policy_hidden",
            "*_dim",
            "data.embodiment_episodes",
            "data.num_demos",
            "threads",
            *(f"world_model.{k}" for k in ("hidden", "categoricals", "classes", "blocks")),
        ],
        non_negative=["*"],
        non_empty=["data.embodiment", "data.demos"],
    )


@hydra.main(config_path="../configs", config_name="aime_walker", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run = start_run(
        cfg, "aime_walker", resumable=RESUMABLE, check=check
    )  # run folder, resumption, seed, logger
    if run.results is not None:  # a finished run
        return run.results
    cfg, device, logger, env_args = (
        run.cfg,
        run.device,
        run.logger,
        (run.cfg.embodiment, run.cfg.task, run.cfg.setup),
    )
    ranks = run.distributed  # one process, or a torchrun launch: rank 0 logs, saves and evaluates
    common = dict(
        progress=cfg.progress,
        logger=logger,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        autocast=torch.bfloat16 if cfg.bf16 else None,
    )

    # --- world model and data ---------------------------------------------------------------------
    sensors = SENSORS[cfg.embodiment][cfg.setup]
    action_dim = make_env(*env_args).action_spec.shape[-1]
    world_model = (
        RSSMWorldModel.from_config(  # the variant's preset (WORLD_MODEL_PRESETS) with the sizes set
            {k: SENSOR_DIMS[cfg.embodiment][k] for k in sensors if k != "pixels"},
            action_dim,
            device=device,
            idm=cfg.phase1.idm,
            pixel_keys=[k for k in sensors if k == "pixels"],
            **{k: v for k, v in cfg.world_model.items() if v is not None},
        )
    )
    data = dict(
        root=cfg.data.root,
        images=cfg.setup == "visual",
        seed=cfg.data.build_seed,
        workers=cfg.data.workers,
        progress=cfg.progress,
        require=world_model.sensor_shapes(),
        embodiment=cfg.embodiment,
        purpose=f"the world model of the {cfg.setup} setup",
    )  # the data is checked before any training
    embodiment_data = open_dataset(
        cfg.data.embodiment,
        num_episodes=cfg.data.embodiment_episodes,
        action_dim=action_dim,
        horizon=cfg.phase1.horizon,
        batch_size=ranks.local_batch_size(cfg.phase1.batch_size, key="phase1.batch_size"),
        **data,
    )
    demos = open_dataset(
        cfg.data.demos,
        num_episodes=cfg.data.num_demos,
        horizon=cfg.phase2.horizon,
        batch_size=ranks.local_batch_size(cfg.phase2.batch_size, key="phase2.batch_size"),
        **data,
    )
    loss_args = dict(kl_scale=cfg.loss.kl_scale, nll_reweight=cfg.loss.nll_reweight)

    # --- phase 1: the world model maximises the ELBO of the embodiment data -----------------------
    if cfg.phase1.world_model:
        load_module(
            hydra.utils.to_absolute_path(cfg.phase1.world_model),
            world_model,
            world_model.config,
            what="world model",
        )
    elif run.resumed_stage != "phase2":
        wm_loss = WorldModelLoss(
            world_model,
            free_nats=cfg.phase1.free_nats,
            kl_balance=cfg.phase1.kl_balance,
            compile=cfg.compile,
            **loss_args,
        )
        optimized_loss = ranks.wrap(wm_loss)  # DDP across ranks (itself in one process)
        optimizer = torch.optim.Adam(world_model.parameters(), lr=cfg.phase1.lr, fused=True)
        loop = run.loop(
            "phase1",
            {"world_model": world_model},
            optimizer,
            steps=cfg.phase1.steps,
            grad_clip=cfg.phase1.grad_clip,
            desc="phase 1: world model",
            log_prefix="phase1",
            **common,
        )
        for (
            step
        ) in loop:  # progress, logs, the non-finite guard, checkpoints, Ctrl-C/SIGTERM: in the loop
            with loop.autocast():
                losses = optimized_loss(
                    embodiment_data.sample().to(device)
                )  # the negative ELBO of windows of the data
            loop.backward(losses)  # of the sum of the loss_* terms; clipped gradients
            optimizer.step()
        if ranks.is_main:
            save_module(run.folder / "world_model.pt", world_model, world_model.config)
    else:
        run.restore("phase2", {"world_model": world_model})

    # --- diagnostics (on fixed windows, never trained on): does the model explain the demos?
    diagnostics, measure = {}, ImitationDiagnostics(
        demos,
        embodiment_data,
        batches=cfg.diagnostics.batches if ranks.is_main else 0,
        seed=cfg.seed,
        device=device,
        logger=logger,
    )
    if cfg.diagnostics.batches and ranks.is_main:
        diagnostics.update(
            measure.world_model(WorldModelLoss(world_model, **loss_args), step=cfg.phase1.steps)
        )

    # --- phase 2: the AIME policy maximises the ELBO of the demonstrations' observations ----------
    policy = make_policy(
        world_model.state_dim,
        world_model.belief_dim,
        action_dim,
        hidden=cfg.phase2.policy_hidden,
        layers=cfg.phase2.policy_layers,
        device=device,
    )
    policy_config = dict(
        world_model=world_model.config,
        hidden=cfg.phase2.policy_hidden,
        layers=cfg.phase2.policy_layers,
    )
    actor = FilteringActor(world_model, policy, sample_posterior=cfg.eval.sample_posterior)
    policy_loss = AIMELoss(
        world_model, policy, **loss_args
    )  # for the diagnostics of the inferred actions
    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else cfg.seed + 100

    def evaluate(policy, episodes: int, seed: int, desc: str) -> list[float]:
        """Episode i in an env seeded seed + i (under torchrun spread over the ranks, every rank
        getting all the returns, in order: the same as one process)."""
        return ranks.spread(
            lambda seeds: seeded_episode_returns(
                policy,
                lambda s: make_env(*env_args, seed=s).append_transform(actor.make_env_transform(s)),
                seeds,
                workers=cfg.eval.workers,
                progress=cfg.progress and ranks.is_main,
                desc=desc,
            ),
            [seed + i for i in range(episodes)],
        )

    if cfg.phase2.policy:
        load_module(
            hydra.utils.to_absolute_path(cfg.phase2.policy), policy, policy_config, what="policy"
        )
    else:
        aime_loss = AIMELoss(
            world_model,
            policy,
            free_nats=cfg.phase2.free_nats,
            kl_balance=cfg.phase2.kl_balance,
            kl_only=cfg.phase2.kl_only,
            use_idm=cfg.phase2.use_idm,
            idm_trainable=cfg.phase2.idm_trainable,
            compile=cfg.compile,
            **loss_args,
        )
        optimizer = torch.optim.Adam(
            aime_loss.parameters(), lr=cfg.phase2.lr, fused=True
        )  # the policy (and an IDM)
        optimized_loss = ranks.wrap(aime_loss)

        def on_step(
            done: int, last: bool
        ) -> None:  # curves of the inferred actions' error and the return
            if (
                logger is not None
                and cfg.diagnostics.batches
                and (last or done % cfg.log_every == 0)
            ):
                measure.actions(policy_loss, step=cfg.phase1.steps + done)
            if cfg.eval.every and done % cfg.eval.every == 0:  # on every rank: each its share
                returns = evaluate(
                    actor, cfg.eval.every_episodes, eval_seed + done, desc=f"eval @{done}"
                )
                if logger is not None:
                    logger.log_metrics(
                        {"eval/return": statistics.mean(returns)}, step=cfg.phase1.steps + done
                    )

        loop = run.loop(
            "phase2",
            {"world_model": world_model, "policy": policy},
            optimizer,
            steps=cfg.phase2.steps,
            grad_clip=cfg.phase2.grad_clip,
            desc="phase 2: AIME policy",
            on_step=on_step,
            log_prefix="phase2",
            log_offset=cfg.phase1.steps,
            **common,
        )
        for step in loop:
            # the demonstrations' observations only: AIME never sees their actions
            with loop.autocast():
                losses = optimized_loss(demos.sample().exclude("action").to(device))
            loop.backward(losses)  # through the frozen model into the policy
            optimizer.step()
        if ranks.is_main:
            save_module(run.folder / "policy.pt", policy, policy_config)
        if cfg.phase2.idm_trainable and ranks.is_main:
            save_module(run.folder / "world_model_phase2.pt", world_model, world_model.config)
    if cfg.diagnostics.batches and ranks.is_main:
        diagnostics.update(measure.actions(policy_loss))
        print(
            "diagnostics:",
            ", ".join(f"{k} {v:.3f}" for k, v in sorted(diagnostics.items()) if "_mse" in k),
        )

    # --- evaluation in the real environment -------------------------------------------------------
    if not cfg.eval.episodes:  # a run that only trains
        return {}
    returns = {
        "random policy": evaluate(
            None, cfg.eval.episodes, eval_seed, desc="eval random"
        ),  # uniform actions
        "AIME": evaluate(actor, cfg.eval.episodes, eval_seed, desc="eval AIME"),
        "demonstrations": demos.episode_returns,
    }
    if not ranks.is_main:  # rank 0 writes the results
        return {}
    results, table = save_results(
        run.folder,
        returns,
        statistics.mean(demos.episode_returns),
        diagnostics=diagnostics,
        title=f"{cfg.embodiment}-{cfg.task}, {cfg.setup}; embodiment data "
        f"{embodiment_data.folders[0].name}; {demos.num_episodes} demos",
        plot=True,
        logger=logger,
        step=cfg.phase1.steps + cfg.phase2.steps,
        seed=cfg.seed,
        embodiment_dataset=[str(f) for f in embodiment_data.folders],
        demos=[str(f) for f in demos.folders],
        setup=cfg.setup,
        task=cfg.task,
    )
    print(table)
    if cfg.eval.video:
        imitation_videos(
            actor,
            lambda: make_env(*env_args, seed=eval_seed, pixels=True),
            demos.files[0],
            cfg.embodiment,
            run.folder / "videos",
            embodiment_data.sample()[:4].to(device) if "pixels" in sensors else None,
            logger=logger,  # also to the TorchRL logger (log_video)
            step=cfg.phase1.steps + cfg.phase2.steps,
        )
    return results


if __name__ == "__main__":
    main()
