# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Latent-action world models on DeepMind Control: how many action labels does a world model need?

    python examples/lawm_walker.py                    # built data; CPU is enough
    python examples/lawm_walker.py data.embodiment=<task-buffer folder> data.episodes=null
    python examples/lawm_walker.py resume=true out_dir=runs/lawm_walker/<run>  # after Ctrl-C

Data (mixed-quality episodes; a few held out) -> for each labelled fraction, a share of the training
episodes keeps its actions and the rest are observation-only -> three world models of the same size
and steps:

- ``latent``: the latent-action world model on every episode (``LatentActionLoss``);
- ``labelled_only``: an action-conditioned RSSM on the labelled episodes alone;
- ``idm_labels``: an inverse dynamics model trained on the labelled transitions labels the rest
  (SS-ORL's pseudo-labels), then an action-conditioned RSSM on every episode.

-> on the held-out episodes: the open-loop error of each model driven by their true actions (the
latent model through its action encoder), and how well the latent model's inverse model infers the
true actions from observations alone (R^2) -> ``results.json``, ``table.md``, ``figure.png``; every
world model is saved as ``<model>@<fraction>.pt`` (and each IDM as ``idm@<fraction>.pt``).
"""

import json

import hydra
import torch
from omegaconf import DictConfig

from aime_torchrl import RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import (
    LabelledMixture,
    load_episodes,
    make_window_buffer,
    pseudo_label,
    resolve_datasets,
    split_held_out,
    split_labelled,
)
from aime_torchrl.envs import SENSOR_DIMS, SENSORS
from aime_torchrl.evaluation import (
    label_efficiency_report,
    latent_action_diagnostics,
    open_loop_errors,
)
from aime_torchrl.modules import LatentActionWorldModel, make_stack_module, stack_window
from aime_torchrl.objectives import BCLoss, LatentActionLoss
from aime_torchrl.trainers import check_config, load_module, save_module, start_run

RESUMABLE = (
    "resume",
    "progress",
    "device",
    "threads",
    "out_dir",
    "checkpoint_every",
    "log_every",
    "logger.",
)
MODELS = ("latent", "labelled_only", "idm_labels")


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    check_config(
        cfg,
        choices={"setup": ["mdp", "lpomdp"]},
        non_negative=["*"],
        positive=[
            "train.*",
            "idm.*",
            "world_model.*",
            "eval.batches",
            "data.episodes",
            "checkpoint_every",
            "log_every",
            "threads",
        ],
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
    if cfg.train.labelled_fraction > 1:
        raise ValueError(
            f"train.labelled_fraction={cfg.train.labelled_fraction}: the labelled share of a batch "
            "is at most 1."
        )
    if cfg.eval.context >= cfg.train.horizon:
        raise ValueError(
            f"eval.context={cfg.eval.context} must be below train.horizon={cfg.train.horizon} (the "
            "held-out windows' length): the rest of each window is predicted open loop."
        )


@hydra.main(config_path="../configs", config_name="lawm_walker", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run = start_run(
        cfg, "lawm_walker", resumable=RESUMABLE, check=check
    )  # run folder, resumption, seed, logger
    if run.results is not None:
        return run.results
    cfg, device, logger = run.cfg, run.device, run.logger
    ranks = run.distributed  # one process, or a torchrun launch: rank 0 writes, the batch is split
    batch_size = ranks.local_batch_size(cfg.train.batch_size, key="train.batch_size")

    # --- data: held-out episodes, and the training episodes ---------------------------------------
    sensors = SENSORS[cfg.embodiment][cfg.setup]
    dims = {k: SENSOR_DIMS[cfg.embodiment][k] for k in sensors}
    folders = resolve_datasets(
        cfg.data.embodiment,
        root=cfg.data.root,
        num_episodes=cfg.data.episodes,
        seed=cfg.data.build_seed,
        workers=cfg.data.workers,
        progress=cfg.progress,
    )
    episodes = load_episodes(
        folders, num_episodes=cfg.data.episodes, sensors=sensors
    )  # names a file lacking a sensor
    action_dim = episodes["action"].shape[-1]
    if not 0 < cfg.data.held_out < len(episodes):
        raise ValueError(
            f"data.held_out={cfg.data.held_out}: hold out 1 to {len(episodes) - 1} of the "
            f"{len(episodes)} episodes."
        )
    held_out, train = split_held_out(episodes, cfg.data.held_out, seed=cfg.seed)
    with torch.random.fork_rng():  # the same held-out windows for every model, and on resumption
        torch.manual_seed(cfg.seed)
        held_out_buffer = make_window_buffer(
            held_out, horizon=cfg.train.horizon, batch_size=cfg.train.batch_size
        )
        windows = [held_out_buffer.sample().to(device) for _ in range(cfg.eval.batches)]
    sizes = dict(
        belief_dim=cfg.world_model.belief_dim,
        state_dim=cfg.world_model.state_dim,
        hidden=cfg.world_model.hidden,
    )

    def fit(
        stage: str, modules: dict, loss, sample, steps: int
    ) -> None:  # one model's training, resumable
        optimizer = torch.optim.Adam(loss.parameters(), lr=cfg.train.lr)
        optimized = ranks.wrap(loss)  # DDP across ranks (itself in one process)
        loop = run.loop(
            stage,
            modules,
            optimizer,
            steps=steps,
            grad_clip=cfg.train.grad_clip,
            desc=stage,
            progress=cfg.progress,
            logger=logger,
            log_every=cfg.log_every,
            log_prefix=stage,
            checkpoint_every=cfg.checkpoint_every,
        )
        for _ in loop:
            losses = optimized(sample().to(device))
            loop.backward(losses)  # of the sum of the loss_* terms; clipped gradients
            optimizer.step()

    def action_conditioned(stage: str, data) -> dict:  # an RSSM on (pseudo-)labelled episodes
        world_model = RSSMWorldModel.from_config(dims, action_dim, device=device, **sizes)
        buffer = make_window_buffer(data, horizon=cfg.train.horizon, batch_size=batch_size)
        loss = WorldModelLoss(
            world_model, nll_reweight=cfg.loss.nll_reweight, kl_scale=cfg.loss.kl_scale
        )
        fit(stage, {"world_model": world_model}, loss, buffer.sample, cfg.train.steps)
        if ranks.is_main:
            save_module(run.folder / f"{stage}.pt", world_model, world_model.config)
        with torch.no_grad():
            errors = [
                open_loop_errors(world_model, w, context=cfg.eval.context)["open_loop_mse"].item()
                for w in windows
            ]
        return dict(open_loop_mse=sum(errors) / len(errors))

    # --- the world models of every labelled fraction (a finished one is kept when the run resumes)
    done_file = run.folder / "models.json"
    done = (
        json.loads(done_file.read_text()) if done_file.exists() else {}
    )  # the models finished before a resumption
    for fraction in map(float, cfg.fractions):  # 1 and 1.0 name the same models
        labelled, action_free = split_labelled(train, fraction, seed=cfg.seed)
        for model in cfg.models:
            stage = f"{model}@{fraction}"
            if stage in done or (
                model == "idm_labels" and action_free is None
            ):  # = labelled_only with every label
                continue
            torch.manual_seed(
                ranks.seed(cfg.seed)
            )  # each rank its windows (DDP starts from rank 0's weights)
            if model == "latent":
                world_model = LatentActionWorldModel.from_config(
                    dims,
                    action_dim,
                    device=device,
                    **sizes,
                    latent_action_dim=cfg.world_model.latent_action_dim,
                )
                loss = LatentActionLoss(
                    world_model,
                    nll_reweight=cfg.loss.nll_reweight,
                    kl_scale=cfg.loss.kl_scale,
                    action_scale=cfg.loss.action_scale,
                    action_kl_scale=cfg.loss.action_kl_scale,
                    inferred_action=cfg.loss.inferred_action,
                    elbo_trains_inference=cfg.loss.elbo_trains_inference,
                )
                buffers = [
                    (
                        make_window_buffer(d, horizon=cfg.train.horizon, batch_size=batch_size)
                        if d is not None
                        else None
                    )
                    for d in (labelled, action_free)
                ]  # the action-free episodes never show their actions
                mixture = LabelledMixture(
                    *buffers,
                    batch_size=batch_size,
                    labelled_fraction=cfg.train.labelled_fraction,
                )
                fit(stage, {"world_model": world_model}, loss, mixture.sample, cfg.train.steps)
                if ranks.is_main:
                    save_module(run.folder / f"{stage}.pt", world_model, world_model.config)
                metrics = latent_action_diagnostics(world_model, windows, context=cfg.eval.context)
            elif model == "labelled_only":
                metrics = action_conditioned(stage, labelled)
            else:
                idm = make_stack_module(
                    dims,
                    [],
                    action_dim,
                    frames=2,
                    in_group="transition",
                    hidden=cfg.idm.hidden,
                    device=device,
                )
                one_step = make_window_buffer(
                    labelled,
                    horizon=1,
                    batch_size=ranks.local_batch_size(cfg.idm.batch_size, key="idm.batch_size"),
                )
                idm_file = (
                    run.folder / f"idm@{fraction}.pt"
                )  # kept, so that a resumed RSSM gets the same labels
                if idm_file.exists():
                    load_module(idm_file, idm, dict(hidden=cfg.idm.hidden), what="IDM")
                else:
                    fit(
                        f"idm@{fraction}",
                        {"idm": idm},
                        BCLoss(idm),
                        lambda: stack_window(one_step.sample(), list(dims)),
                        cfg.idm.steps,
                    )
                    if ranks.is_main:
                        save_module(idm_file, idm, dict(hidden=cfg.idm.hidden))
                # the RSSM starts alike whether the IDM was trained or loaded
                torch.manual_seed(ranks.seed(cfg.seed))
                pseudo = torch.cat([labelled, pseudo_label(idm.cpu(), action_free, list(dims))])
                metrics = action_conditioned(stage, pseudo)
            done[stage] = dict(
                metrics, model=model, fraction=fraction, labelled_episodes=len(labelled)
            )
            if ranks.is_main:  # written whole, then renamed: an interruption never corrupts it
                partial = done_file.with_suffix(".tmp")
                partial.write_text(json.dumps(done, indent=1))
                partial.replace(done_file)
                print(stage, json.dumps(done[stage]), flush=True)

    # --- report -----------------------------------------------------------------------------------
    results = dict(
        models=done,
        episodes=len(episodes),
        held_out=cfg.data.held_out,
        seed=cfg.seed,
        data=[str(f) for f in folders],
        setup=cfg.setup,
    )
    if not ranks.is_main:
        return results
    data = ", ".join(f.name for f in folders)
    title = (
        f"{cfg.embodiment}, {cfg.setup}: {len(train)} training episodes of {data}; seed {cfg.seed}"
    )
    print(label_efficiency_report([done], run.folder, title=title))
    (run.folder / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
