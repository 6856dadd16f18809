# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The paper's baselines on DeepMind Control: BC (oracle), BCO(0) and IIDM.

    python examples/baselines.py method=bco                    # quick CPU settings, ~2 min
    python examples/baselines.py method=bc task=walk
    python examples/baselines.py method=iidm data.embodiment=walker-mix

All three act from a stack of the last k observations (k = 1 in the mdp setup, 5 otherwise) with
deterministic 128x2 ELU MLP heads (tanh actions), trained by MSE with Adam (lr 1e-3, batch 50):

- BC: the policy regresses the demonstrations' *true* actions (an oracle: AIME never sees them).
- BCO(0): an inverse dynamics model (IDM) ``o_{t-k+1..t+1} -> a_t`` is trained on the embodiment
  data, frozen, and labels the demonstrations; the policy (encoder initialised from the IDM's)
  regresses those labels.
- IIDM: a forward model ``[o_{t-k+1..t}, a_t] -> o_{t+1}`` is trained on the embodiment data,
  frozen, and the policy is trained so that the model predicts the demonstrations' next
  observation from the policy's action.

Each model is selected by its validation loss on episodes held out of training (a split by
episodes: the reference splits overlapping windows, so its validation windows overlap training
ones). The run folder gets ``results.json`` and ``results.md`` in the format of
examples/aime_walker.py, next to a random policy and the demonstrations.
"""

from __future__ import annotations

import statistics

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from aime_torchrl.data import AIMEDataset, resolve_datasets
from aime_torchrl.envs import make_env, SENSOR_DIMS, SENSORS, SETUPS
from aime_torchrl.evaluation import save_results, seeded_episode_returns
from aime_torchrl.modules import frame_stack_transform, frozen, make_stack_module, stack_window
from aime_torchrl.objectives import BCLoss, ForwardModelLoss, IIDMLoss
from aime_torchrl.trainers import check_config, start_run, train_with_validation

METHODS = {"bc": "BC", "bco": "BCO(0)", "iidm": "IIDM"}


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    check_config(
        cfg,
        choices={"method": list(METHODS), "setup": SETUPS},
        positive=[
            "hidden",
            "layers",
            "batch_size",
            "lr",
            "model_steps",
            "policy_steps",
            "validate_every",
            "validation_batches",
            "frames",
            "threads",
            "data.embodiment_episodes",
            "data.num_demos",
            "data.validation",
            "eval.episodes",
        ],
        non_negative=["*"],
        non_empty=["data.embodiment", "data.demos"],
    )
    if cfg.method == "iidm" and cfg.setup == "visual":
        raise ValueError(
            "method=iidm predicts vector observations only (the reference's default setup is mdp); "
            "use setup=mdp or lpomdp."
        )


@hydra.main(config_path="../configs", config_name="baselines", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run = start_run(
        cfg, "baselines", check=check
    )  # run folder, device, seed, logger; the folder locked
    out, device, logger = run.folder, run.device, run.logger
    ranks = run.distributed  # one process, or a torchrun launch: rank 0 writes, the batch is split

    # --- data, split by episodes ------------------------------------------------------------------
    sensors = list(SENSORS[cfg.embodiment][cfg.setup])
    vector_dims = {k: SENSOR_DIMS[cfg.embodiment][k] for k in sensors if k != "pixels"}
    pixel_keys = [k for k in sensors if k == "pixels"]
    action_dim = make_env(cfg.embodiment, cfg.task, cfg.setup).action_spec.shape[-1]
    frames = cfg.frames or (1 if cfg.setup == "mdp" else 5)

    def split(spec, episodes: int | None, purpose: str) -> tuple[AIMEDataset, list, AIMEDataset]:
        """Training windows and fixed validation batches from disjoint episodes, and the whole
        dataset."""
        spec = (
            list(spec) if OmegaConf.is_list(spec) else spec
        )  # names, or folders relative to the launch dir
        folders = resolve_datasets(
            spec,
            root=cfg.data.root,
            num_episodes=episodes,
            images=cfg.setup == "visual",
            seed=cfg.data.build_seed,
            workers=cfg.data.workers,
            progress=cfg.progress,
        )
        kwargs = dict(
            horizon=frames,
            batch_size=cfg.batch_size,
            num_episodes=episodes,
            root=cfg.data.root,
            progress=cfg.progress,
        )
        whole = AIMEDataset(folders, **kwargs)
        whole.require(sensors, embodiment=cfg.embodiment, purpose=purpose)
        total = whole.num_episodes
        if total < 2:
            raise ValueError(
                f"{purpose}: {total} episode(s); a split into training and validation needs 2 "
                "or more."
            )
        order = torch.randperm(total, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        held_out = min(total - 1, max(1, round(cfg.data.validation * total)))
        local = ranks.local_batch_size(cfg.batch_size)  # each rank its share of every batch
        train = AIMEDataset(
            folders, episodes=sorted(order[held_out:]), **{**kwargs, "batch_size": local}
        )
        valid = AIMEDataset(folders, episodes=sorted(order[:held_out]), **kwargs)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            batches = [
                stack_window(valid.sample(), sensors).to(device)
                for _ in range(cfg.validation_batches)
            ]
        return train, batches, whole

    demos, demo_valid, all_demos = split(
        cfg.data.demos, cfg.data.num_demos, f"the demonstrations of the {cfg.setup} setup"
    )
    shapes = {
        k: all_demos.sensors[k] for k in sensors
    }  # one frame of each sensor (the image size from the data)
    if cfg.method in ("bco", "iidm"):
        embodiment_data, embodiment_valid, _ = split(
            cfg.data.embodiment,
            cfg.data.embodiment_episodes,
            f"the embodiment dataset of the {cfg.setup} setup",
        )

    def demo_batch():
        return stack_window(demos.sample(), sensors).to(device)

    def embodiment_batch():
        return stack_window(embodiment_data.sample(), sensors).to(device)

    # --- training ---------------------------------------------------------------------------------
    net = dict(hidden=cfg.hidden, layers=cfg.layers, device=device)
    policy = make_stack_module(vector_dims, pixel_keys, action_dim, frames=frames, **net)
    fit = dict(
        validate_every=cfg.validate_every, progress=cfg.progress, logger=logger, distributed=ranks
    )
    summary = {}
    if cfg.method == "bc":  # the oracle: regress the demonstrations' own actions
        loss = BCLoss(policy)
        summary["policy"] = train_with_validation(
            loss,
            demo_batch,
            demo_valid,
            torch.optim.Adam(loss.parameters(), cfg.lr),
            steps=cfg.policy_steps,
            desc="BC policy",
            log_prefix="policy",
            **fit,
        )
    elif cfg.method == "bco":
        idm = make_stack_module(
            vector_dims, pixel_keys, action_dim, frames=frames + 1, in_group="transition", **net
        )
        loss = BCLoss(idm)
        summary["idm"] = train_with_validation(
            loss,
            embodiment_batch,
            embodiment_valid,
            torch.optim.Adam(loss.parameters(), cfg.lr),
            steps=cfg.model_steps,
            desc="BCO(0) inverse dynamics",
            log_prefix="idm",
            **fit,
        )
        idm = frozen(idm)
        policy.module.encoder.load_state_dict(idm.module.encoder.state_dict())

        def label(batch):  # the demonstrations' actions are replaced by the IDM's
            with torch.no_grad():
                return batch.set("action", idm(batch.exclude("action"))["action"])

        loss = BCLoss(policy)
        summary["policy"] = train_with_validation(
            loss,
            lambda: label(demo_batch()),
            [label(b) for b in demo_valid],
            torch.optim.Adam(loss.parameters(), cfg.lr),
            steps=cfg.policy_steps,
            desc="BCO(0) policy",
            log_prefix="policy",
            **fit,
        )
    else:
        keys = list(vector_dims)
        model = make_stack_module(
            vector_dims,
            [],
            sum(vector_dims.values()),
            frames=frames,
            extra_keys=["action"],
            extra_dim=action_dim,
            out_key="prediction",
            squash=False,
            **net,
        )
        loss = ForwardModelLoss(model, keys)
        summary["model"] = train_with_validation(
            loss,
            embodiment_batch,
            embodiment_valid,
            torch.optim.Adam(loss.parameters(), cfg.lr),
            steps=cfg.model_steps,
            desc="IIDM forward model",
            log_prefix="model",
            **fit,
        )
        loss = IIDMLoss(model, policy, keys)  # holds the model frozen
        summary["policy"] = train_with_validation(
            loss,
            demo_batch,
            demo_valid,
            torch.optim.Adam(loss.parameters(), cfg.lr),
            steps=cfg.policy_steps,
            desc="IIDM policy",
            log_prefix="policy",
            **fit,
        )
    if not ranks.is_main:  # rank 0 evaluates and writes
        return {}
    torch.save(policy.state_dict(), out / "policy.pt")

    # --- evaluation -------------------------------------------------------------------------------
    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else cfg.seed + 100

    def env(
        episode_seed: int,
    ):  # episode i in an env seeded with eval_seed + i, as aime_walker.py evaluates
        return make_env(cfg.embodiment, cfg.task, cfg.setup, seed=episode_seed).append_transform(
            frame_stack_transform(shapes, frames)
        )

    seeds = [eval_seed + i for i in range(cfg.eval.episodes)]
    rows = {
        "random policy": seeded_episode_returns(
            None, env, seeds, workers=cfg.eval.workers, desc="eval random"
        ),
        METHODS[cfg.method]: seeded_episode_returns(
            policy,
            env,
            seeds,
            workers=cfg.eval.workers,
            progress=cfg.progress,
            desc=f"eval {METHODS[cfg.method]}",
        ),
        "demonstrations": all_demos.episode_returns,
    }
    results, table = save_results(
        out,
        rows,
        statistics.mean(all_demos.episode_returns),
        method=METHODS[cfg.method],
        title=f"\n{cfg.embodiment}-{cfg.task}, {cfg.setup} setup, frames {frames}",
        training=summary,
        setup=cfg.setup,
        task=cfg.task,
        seed=cfg.seed,
        demos=[str(f) for f in demos.folders],
    )
    print(table)
    print(f"run folder: {out}")
    return results


if __name__ == "__main__":
    main()
