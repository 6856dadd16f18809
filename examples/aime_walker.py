# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""AIME end to end on DeepMind Control: zero-shot imitation from observations with a world model.

    python examples/aime_walker.py                                   # quick profile, CPU, ~13 min on 2 cores
    python examples/aime_walker.py profile=paper data.embodiment=<folder> data.demos=<folder>
    python examples/aime_walker.py setup=lpomdp task=walk data.embodiment=walker-mix logger=wandb
    python examples/aime_walker.py resume=true out_dir=<a run folder>  # continue an interrupted run

1. Data: the embodiment dataset (observations and actions) and the demonstrations (observations
   only are used), built here from the shipped experts when missing, or official npz folders.
2. Phase 1: an RSSM world model maximises the ELBO of the embodiment dataset (WorldModelLoss).
3. Phase 2: the world model is frozen; a policy inside the posterior rollout maximises the ELBO of
   the demonstrations (AIMELoss).
4. Evaluation in the real env with the filtering actor (posterior filter + policy mean), next to a
   random policy and the demonstrations themselves; scores are % of the demonstrations' return.

The run folder (``out_dir``) holds the config, ``checkpoint.pt`` (atomic, every
``checkpoint_every`` steps and on Ctrl-C; ``resume=true`` continues it), ``world_model.pt``,
``policy.pt``, the logs, ``results.json``, ``scores.png`` and ``videos/``.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import get_logger
from tqdm.auto import tqdm

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import AIMEDataset, load_episode, resolve_datasets, UniformRandomPolicy
from aime_torchrl.envs import make_env, render_states, SENSOR_DIMS, SENSORS, SETUPS, TASK_ALIASES, TASKS
from aime_torchrl.evaluation import (
    action_inference_diagnostics, episode_returns, open_loop_prediction, plot_scores, record_episode, save_gif,
    score_report, seeded_episode_returns, side_by_side, world_model_diagnostics,
)
from aime_torchrl.modules import FilteringActor, WORLD_MODEL_PRESETS
from aime_torchrl.trainers import check_config, load_module, RunCheckpoint, save_module, train_offline

NON_NEGATIVE = ["phase1.steps", "phase2.steps", "eval.episodes", "eval.every", "eval.workers", "diagnostics.batches",
                "data.embodiment_episodes", "data.num_demos", "threads", "phase1.free_nats", "phase2.free_nats",
                "phase2.policy_layers"]
POSITIVE = ["phase1.batch_size", "phase1.horizon", "phase2.batch_size", "phase2.horizon", "phase1.lr", "phase2.lr",
            "checkpoint_every", "log_every", "eval.every_episodes", "world_model.belief_dim", "world_model.state_dim",
            "world_model.hidden", "phase2.policy_hidden"]
# Keys that may change between a run and its resumption (they do not change what is trained).
RESUMABLE = ("resume", "progress", "device", "threads", "compile", "out_dir", "checkpoint_every", "log_every", "eval.", "logger.",
             "diagnostics.")


def evaluate(actor, cfg: DictConfig, episodes: int, seed: int, desc: str) -> list[float]:
    """Returns of the filtering actor, episode i in an env seeded with ``seed + i`` that also draws
    the actor's posterior noise (the same returns with any ``eval.workers``); the training RNG
    stream is left untouched."""

    def env(episode_seed: int):
        env = make_env(cfg.embodiment, cfg.task, cfg.setup, seed=episode_seed)
        return env.append_transform(actor.make_tensordict_primer()).append_transform(actor.make_noise_source(episode_seed))

    return seeded_episode_returns(actor, env, [seed + i for i in range(episodes)], workers=cfg.eval.workers,
                                  progress=cfg.progress, desc=desc)


def save_videos(actor, world_model, demos, embodiment_data, cfg: DictConfig, seed: int, folder: Path, device) -> None:
    """The AIME policy next to a demonstration and, with images, open-loop predictions of the model."""
    env = make_env(cfg.embodiment, cfg.task, cfg.setup, seed=seed, pixels=True)
    with torch.random.fork_rng():
        _, frames = record_episode(actor, env.append_transform(actor.make_tensordict_primer()))
    demo = load_episode(demos.files[0])
    if "physics" in demo:
        demo_frames = torch.from_numpy(render_states(cfg.embodiment, demo["physics"])).permute(0, 3, 1, 2)
    elif "image" in demo:
        demo_frames = torch.from_numpy(demo["image"]).permute(0, 3, 1, 2)
    else:
        demo_frames = torch.zeros_like(frames)
    save_gif(side_by_side(frames, demo_frames), folder / "aime_vs_demonstration.gif")
    if "pixels" in world_model.observation_keys:
        window = embodiment_data.sample()[:4].to(device)
        predicted = open_loop_prediction(world_model, window, context=5)["pixels"].clamp(0, 1).mul(255).to(torch.uint8)
        truth = world_model.to_frames(window).get(("next", "pixels"))
        rows = [side_by_side(t, p) for t, p in zip(truth.cpu(), predicted.cpu())]
        save_gif(torch.cat(rows, -2), folder / "open_loop_prediction.gif", fps=10)
    tqdm.write(f"videos in {folder}")


@hydra.main(config_path="../configs", config_name="aime_walker", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # --- run folder, resumption, seeds, logger ------------------------------------------------------
    out = Path(hydra.utils.to_absolute_path(cfg.out_dir))
    run = RunCheckpoint(out)
    resumed = None
    if cfg.resume:  # the run's own config, but for the keys that do not change what is trained
        resumed = run.load()
        defaults = OmegaConf.to_container(hydra.compose(config_name="aime_walker"))
        explicit = ([o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]
                    if HydraConfig.initialized() else None)  # the command line's keys (None: from the compose API)
        cfg = OmegaConf.create(run.resume_config(resumed["config"], OmegaConf.to_container(cfg), defaults, RESUMABLE,
                                                 explicit))
        if (out / "results.json").exists():
            print(f"{out} is finished (results.json): nothing to resume.")
            return json.loads((out / "results.json").read_text())
    elif run.exists():
        raise FileExistsError(f"{out} already holds a run: pass resume=true to continue it, or another out_dir.")
    check_config(cfg, choices={"embodiment": list(TASKS), "setup": SETUPS, "world_model.variant": list(WORLD_MODEL_PRESETS)},
                 non_negative=NON_NEGATIVE, positive=POSITIVE)
    tasks = TASKS[cfg.embodiment]
    check_config(cfg, choices={"task": [*tasks, *(alias for alias, task in TASK_ALIASES.items() if task in tasks)]})
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    torch.manual_seed(cfg.seed)
    logger = None
    if cfg.logger.backend:
        resume_logger = run.logger_state(resumed, out / "logs") if resumed and cfg.logger.backend != "wandb" else None
        logger = get_logger(
            cfg.logger.backend, logger_name=str(out / "logs"), experiment_name=out.name, state_dict=resume_logger,
            wandb_kwargs=dict(offline=cfg.logger.get("mode") == "offline", project=cfg.logger.get("project")),
        )
        logger.log_hparams(OmegaConf.to_container(cfg, resolve=True))
    print(f"run folder: {out}")

    # --- data -------------------------------------------------------------------------------------
    sensors = list(SENSORS[cfg.embodiment][cfg.setup])
    vector_dims = {k: SENSOR_DIMS[cfg.embodiment][k] for k in sensors if k != "pixels"}
    pixel_keys = [k for k in sensors if k == "pixels"]
    action_dim = make_env(cfg.embodiment, cfg.task, cfg.setup).action_spec.shape[-1]

    def folders(spec, episodes: int | None) -> list[Path]:  # dataset names or folders (relative to the launch dir)
        return resolve_datasets(list(spec) if OmegaConf.is_list(spec) else spec, root=cfg.data.root,
                                num_episodes=episodes, images=cfg.setup == "visual", seed=cfg.data.build_seed,
                                workers=cfg.data.workers, progress=cfg.progress)

    embodiment_data = AIMEDataset(
        folders(cfg.data.embodiment, cfg.data.embodiment_episodes), horizon=cfg.phase1.horizon,
        batch_size=cfg.phase1.batch_size, num_episodes=cfg.data.embodiment_episodes, root=cfg.data.root,
        progress=cfg.progress,
    )
    embodiment_data.require(sensors, action_dim=action_dim, embodiment=cfg.embodiment,
                            purpose=f"the embodiment dataset of the {cfg.setup} setup")
    demos = AIMEDataset(
        folders(cfg.data.demos, cfg.data.num_demos), horizon=cfg.phase2.horizon,
        batch_size=cfg.phase2.batch_size, num_episodes=cfg.data.num_demos, root=cfg.data.root, progress=cfg.progress,
    )
    demos.require(sensors, embodiment=cfg.embodiment, purpose=f"the demonstrations of the {cfg.setup} setup")

    def sample_embodiment():
        return embodiment_data.sample().to(device)

    def sample_demos():  # observations only: AIME never sees the demonstrations' actions
        return demos.sample().exclude("action").to(device)

    # --- phase 1: world model -----------------------------------------------------------------------
    # the variant's preset (WORLD_MODEL_PRESETS), with the sizes the config sets
    wm_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.world_model).items() if k != "variant" and v is not None}
    preset = WORLD_MODEL_PRESETS[cfg.world_model.variant]
    wm_config = dict({k: preset[k] for k in ("belief_dim", "state_dim", "hidden", "layers")}, **wm_kwargs,
                     variant=cfg.world_model.variant, vector_dims=vector_dims, pixel_keys=pixel_keys,
                     action_dim=action_dim, idm=cfg.phase1.idm)
    world_model = RSSMWorldModel.from_config(
        vector_dims, action_dim, pixel_keys=pixel_keys, variant=cfg.world_model.variant, idm=cfg.phase1.idm,
        device=device, **wm_kwargs
    )
    stage = resumed["stage"] if resumed else "phase1"

    def checkpoint(stage: str, step: int, optimizer: torch.optim.Optimizer, policy=None) -> None:
        run.save(OmegaConf.to_container(cfg), stage, step, modules={"world_model": world_model, "policy": policy},
                 optimizers={"optimizer": optimizer}, logger=logger)

    if cfg.phase1.world_model:
        load_module(hydra.utils.to_absolute_path(cfg.phase1.world_model), world_model, wm_config, what="world model")
    elif stage == "phase1":
        wm_loss = WorldModelLoss(world_model, kl_scale=cfg.loss.kl_scale, nll_reweight=cfg.loss.nll_reweight,
                                 free_nats=cfg.phase1.free_nats, kl_balance=cfg.phase1.kl_balance, compile=cfg.compile)
        optimizer = torch.optim.Adam(world_model.parameters(), lr=cfg.phase1.lr, fused=True)
        start = 0
        if resumed:
            run.restore(resumed, modules={"world_model": world_model}, optimizers={"optimizer": optimizer})
            start = resumed["step"]
        train_offline(
            wm_loss, sample_embodiment, optimizer, steps=cfg.phase1.steps, start=start, grad_clip=cfg.phase1.grad_clip,
            progress=cfg.progress, desc="phase 1: world model", logger=logger, log_every=cfg.log_every,
            autocast=torch.bfloat16 if cfg.bf16 else None,
            log_prefix="phase1",
            on_step=lambda done, last: (last or done % cfg.checkpoint_every == 0) and checkpoint("phase1", done, optimizer),
        )
        save_module(out / "world_model.pt", world_model, wm_config)
    else:
        world_model.load_state_dict(resumed["modules"]["world_model"])
    world_model.requires_grad_(False)
    if cfg.phase2.idm_trainable and world_model.idm is not None:
        world_model.idm.requires_grad_(True)

    # --- diagnostics: how well the world model explains the demonstrations ---------------------------
    # Fixed windows of the demonstrations *with* their true actions, for measuring only (phase 2
    # trains on sample_demos, which drops them); drawn and evaluated on a forked RNG stream, so
    # diagnostics never change what is trained.
    def diagnose(measure, *args):
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            return measure(*args)

    diagnostics = {}
    if cfg.diagnostics.batches:
        demo_windows, embodiment_windows = diagnose(lambda: (
            [demos.sample().to(device) for _ in range(cfg.diagnostics.batches)],
            [sample_embodiment() for _ in range(cfg.diagnostics.batches)],
        ))
        phase1_loss = WorldModelLoss(world_model, kl_scale=cfg.loss.kl_scale, nll_reweight=cfg.loss.nll_reweight)
        for name, windows in (("demos", demo_windows), ("embodiment", embodiment_windows)):
            measured = diagnose(world_model_diagnostics, phase1_loss, windows)
            diagnostics.update({f"{name}_{key}": value for key, value in measured.items()})
        tqdm.write("world model on the demonstrations (true actions) vs on its own data: " + ", ".join(
            f"{key} {diagnostics[f'demos_{key}']:.2f} vs {diagnostics[f'embodiment_{key}']:.2f}"
            for key in ("elbo", "kl", "open_loop_mse")))
        if logger is not None:
            logger.log_metrics({f"diagnostics/{k}": v for k, v in diagnostics.items()}, step=cfg.phase1.steps)

    # --- phase 2: AIME policy from the demonstrations' observations ---------------------------------
    policy = make_policy(world_model.state_dim, world_model.belief_dim, action_dim, hidden=cfg.phase2.policy_hidden,
                         layers=cfg.phase2.policy_layers, device=device)
    policy_config = dict(world_model=wm_config, hidden=cfg.phase2.policy_hidden, layers=cfg.phase2.policy_layers)
    actor = FilteringActor(world_model, policy, sample_posterior=cfg.eval.sample_posterior)
    # the policy acting in the posterior rollout of the demonstrations, for the action diagnostics
    policy_loss = AIMELoss(world_model, policy, kl_scale=cfg.loss.kl_scale, nll_reweight=cfg.loss.nll_reweight)
    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else cfg.seed + 100
    if cfg.phase2.policy:
        load_module(hydra.utils.to_absolute_path(cfg.phase2.policy), policy, policy_config, what="policy")
    else:
        aime_loss = AIMELoss(world_model, policy, kl_scale=cfg.loss.kl_scale, nll_reweight=cfg.loss.nll_reweight,
                             free_nats=cfg.phase2.free_nats, kl_balance=cfg.phase2.kl_balance,
                             kl_only=cfg.phase2.kl_only, use_idm=cfg.phase2.use_idm,
                             idm_trainable=cfg.phase2.idm_trainable, compile=cfg.compile)
        optimizer = torch.optim.Adam(aime_loss.parameters(), lr=cfg.phase2.lr, fused=True)  # the policy (and a trainable IDM)
        start = 0
        if resumed and resumed["stage"] == "phase2":  # (the world model too: a trainable IDM changed in phase 2)
            run.restore(resumed, modules={"world_model": world_model, "policy": policy}, optimizers={"optimizer": optimizer})
            start = resumed["step"]

        def on_step(done: int, last: bool) -> None:
            if cfg.diagnostics.batches and logger is not None and (last or done % cfg.log_every == 0):
                measured = diagnose(action_inference_diagnostics, policy_loss, demo_windows)
                logger.log_metrics({"diagnostics/demos_action_mse": measured["action_mse"]},
                                   step=cfg.phase1.steps + done)
            if cfg.eval.every and done % cfg.eval.every == 0 and logger is not None:
                returns = evaluate(actor, cfg, cfg.eval.every_episodes, eval_seed + done, desc=f"eval @{done}")
                logger.log_metrics({"eval/return": statistics.mean(returns)}, step=cfg.phase1.steps + done)
            if last or done % cfg.checkpoint_every == 0:
                checkpoint("phase2", done, optimizer, policy)

        train_offline(
            aime_loss, sample_demos, optimizer, steps=cfg.phase2.steps, start=start, grad_clip=cfg.phase2.grad_clip,
            progress=cfg.progress, desc="phase 2: AIME policy", logger=logger, log_every=cfg.log_every,
            autocast=torch.bfloat16 if cfg.bf16 else None,
            log_prefix="phase2", log_offset=cfg.phase1.steps, on_step=on_step,
        )
        save_module(out / "policy.pt", policy, policy_config)
        if cfg.phase2.idm_trainable:
            save_module(out / "world_model_phase2.pt", world_model, wm_config)

    if cfg.diagnostics.batches:
        measured = diagnose(action_inference_diagnostics, policy_loss, demo_windows)
        diagnostics.update(demos_action_mse=measured["action_mse"], demos_phase2_elbo=measured["elbo"])
        tqdm.write(f"inferred actions vs the demonstrations' true ones: MSE {measured['action_mse']:.3f}")

    # --- evaluation in the real environment ---------------------------------------------------------
    if not cfg.eval.episodes:
        print(f"run folder: {out} (no evaluation: eval.episodes=0)")
        return {}
    aime_returns = evaluate(actor, cfg, cfg.eval.episodes, eval_seed, desc="eval AIME")
    random_env = make_env(cfg.embodiment, cfg.task, cfg.setup, seed=eval_seed)
    random_returns = episode_returns(UniformRandomPolicy(random_env.action_spec, seed=eval_seed), random_env,
                                     cfg.eval.episodes, progress=cfg.progress, desc="eval random")
    rows = {"random policy": random_returns, "AIME": aime_returns, "demonstrations": demos.episode_returns}
    results, table = score_report(
        rows, statistics.mean(demos.episode_returns),
        title=f"\n{cfg.embodiment}-{cfg.task}, {cfg.setup} setup; embodiment data: "
              f"{', '.join(f.name for f in embodiment_data.folders)}; {demos.num_episodes} demonstrations",
    )
    results.update(diagnostics=diagnostics, embodiment_dataset=[str(f) for f in embodiment_data.folders],
                   demos=[str(f) for f in demos.folders], setup=cfg.setup, task=cfg.task, seed=cfg.seed)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(table + "\n")
    print(table)
    if logger is not None:
        logger.log_metrics({f"final/{name.split()[0]}_score": results[name]["score_mean"] for name in rows},
                           step=cfg.phase1.steps + cfg.phase2.steps)
    plot_scores({name: [100 * r / results["expert_return"] for r in rows[name]] for name in rows}, out / "scores.png",
                title=f"{cfg.embodiment}-{cfg.task} ({cfg.setup})\nembodiment data: {embodiment_data.folders[0].name}")

    if cfg.eval.video:
        try:
            save_videos(actor, world_model, demos, embodiment_data, cfg, eval_seed, out / "videos", device)
        except RuntimeError as err:  # e.g. no OpenGL: the results above are kept
            tqdm.write(f"no videos: {err}")
    print(f"run folder: {out}")
    return results


if __name__ == "__main__":
    main()
