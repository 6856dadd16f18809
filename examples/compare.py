# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The paper's comparison (Figure 2): AIME against BCO(0) and BC over a grid of datasets.

    python examples/compare.py             # walker, mdp, 4 x 2 x 3, seed 0 (CPU, ~1 h)
    python examples/compare.py seeds=[0,1,2] publish=docs/compare
    python examples/compare.py methods=[aime,aime_kl_only,aime_recon_only] embodiments=[walker-mix]

Every cell is one run of examples/aime_walker.py or examples/baselines.py in its own folder under
``out_dir``; a cell whose ``results.json`` exists is skipped, and an interrupted AIME cell resumes
from its checkpoint, so a long grid can be finished over several sessions. One world model is
trained per embodiment dataset, setup and seed, and shared by the demonstration tasks; BC does not
use the embodiment data and runs once per task. ``parallel`` cells run at a time, each world model
followed by its cells (so that a grid stopped midway leaves finished cells, not only world models).

``store`` (e.g. ``docs/compare_cpu``) keeps a copy of every finished cell's ``results.json``
(a few KB) and its wall time (``wall.json``) under the cell's path in the grid, and every world
model's wall time under its path: a cell found there counts as done, and a world model whose cells
are all done is not trained. Commit the store to finish a grid of many hours on another machine, or
after its run folder is lost; grids of other seeds may run at the same time into the same store
(each with its own ``out_dir``).

Writes ``scores.csv`` (one row per evaluation episode), ``table.md`` (next to the paper's numbers)
and ``figure.png`` (a panel per dataset -> task pair, averages in the last row and column);
``report_only=true`` writes them for the cells done so far, running nothing (the table says how
many).
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from aime_torchrl.data import resolve_datasets
from aime_torchrl.evaluation import plot_grid
from aime_torchrl.trainers import check_config, RunLock
from aime_torchrl.trainers.grid import GridStore, run_job

EXAMPLES = Path(__file__).parent
#: method -> (script, overrides, label in results.json)
METHODS = {
    "aime": ("aime_walker.py", [], "AIME"),
    "aime_kl_only": ("aime_walker.py", ["phase2.kl_only=true"], "AIME"),
    "aime_recon_only": ("aime_walker.py", ["loss.kl_scale=0"], "AIME"),
    "aime_idm": ("aime_walker.py", ["phase2.use_idm=true"], "AIME"),
    "bco": ("baselines.py", ["method=bco"], "BCO(0)"),
    "bc": ("baselines.py", ["method=bc"], "BC"),
    "iidm": ("baselines.py", ["method=iidm"], "IIDM"),
}
#: The grid's options that change a cell's result: a store holds the cells of one setting of them.
STORE_SETTINGS = (
    "embodiment",
    "embodiment_episodes",
    "num_demos",
    "eval_episodes",
    "aime_overrides",
    "baseline_overrides",
)
LABELS = {
    "aime": "AIME",
    "aime_kl_only": "AIME (KL only)",
    "aime_recon_only": "AIME (recon only)",
    "aime_idm": "AIME + IDM",
    "bco": "BCO(0)",
    "bc": "BC",
    "iidm": "IIDM",
}
#: The paper's walker MDP scores (% of the expert; the paper's Table 1): (dataset, task) -> (AIME,
#: BCO(0)).
PAPER_MDP = {
    ("random", "stand"): (40.1, 57.1),
    ("random", "walk"): (17.6, 13.5),
    ("stand", "stand"): (91.6, 94.1),
    ("stand", "walk"): (86.9, 89.6),
    ("walk", "stand"): (92.3, 80.7),
    ("walk", "walk"): (81.8, 88.0),
    ("mix", "stand"): (87.8, 87.8),
    ("mix", "walk"): (78.5, 89.2),
}


def short(dataset: str) -> str:
    """walker-stand-buffer -> stand, walker-random -> random, walker-mix -> mix."""
    parts = dataset.split("-")
    return parts[1] if len(parts) > 1 else dataset


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    check_config(
        cfg,
        positive=["parallel", "threads", "embodiment_episodes", "num_demos", "eval_episodes"],
        non_empty=["embodiments", "tasks", "methods", "setups", "seeds"],
    )
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; choose from {sorted(METHODS)}.")


@hydra.main(config_path="../configs", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check(cfg)
    out = Path(hydra.utils.to_absolute_path(cfg.out_dir))
    with (
        nullcontext() if cfg.report_only else RunLock(out)
    ):  # one grid at a time in out (report_only runs nothing)
        grid(cfg, out)


def grid(cfg: DictConfig, out: Path) -> None:
    """Runs the jobs of the grid not done yet, then writes its report (see the module's
    docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    # Build every dataset once here, so that no two cells build the same one.
    for images in sorted({setup == "visual" for setup in cfg.setups}):
        for dataset in cfg.embodiments:
            resolve_datasets(
                dataset, root=cfg.data_root, num_episodes=cfg.embodiment_episodes, images=images
            )
        for task in cfg.tasks:
            resolve_datasets(
                f"{cfg.embodiment}-{task}-expert",
                root=cfg.data_root,
                num_episodes=cfg.num_demos,
                images=images,
            )

    episodes = "null" if cfg.embodiment_episodes is None else cfg.embodiment_episodes
    common = [
        f"embodiment={cfg.embodiment}",
        f"data.num_demos={cfg.num_demos}",
        f"threads={cfg.threads}",
        "progress=false",
        f"data.embodiment_episodes={episodes}",
    ]
    if cfg.data_root:
        common.append(f"data.root={cfg.data_root}")
    aime_common = (
        ["phase1.idm=true"] if "aime_idm" in cfg.methods else []
    )  # one world model, with its IDM
    python = [sys.executable]
    jobs: dict[str, tuple[list[str], Path, str, str | None]] = {}
    cells = []  # (dataset, task, method, setup, seed, folder)
    for setup in cfg.setups:
        for seed in cfg.seeds:
            for dataset in cfg.embodiments:
                wm = out / "world_models" / f"{short(dataset)}-{setup}-seed{seed}"
                if any(m.startswith("aime") for m in cfg.methods):
                    args = [
                        str(EXAMPLES / "aime_walker.py"),
                        *common,
                        f"data.embodiment={dataset}",
                        f"task={cfg.tasks[0]}",
                        f"setup={setup}",
                        f"seed={seed}",
                        "phase2.steps=0",
                        "eval.episodes=0",
                        f"out_dir={wm}",
                        *aime_common,
                        *cfg.aime_overrides,
                    ]
                    jobs[str(wm)] = (python + args, wm, "world_model.pt", None)
                for task in cfg.tasks:
                    for method in cfg.methods:
                        script, extra, _ = METHODS[method]
                        if method == "bc":  # the oracle does not use the embodiment data
                            folder = out / "cells" / "bc" / f"{task}-{setup}-seed{seed}"
                        else:
                            folder = (
                                out
                                / "cells"
                                / short(dataset)
                                / task
                                / f"{method}-{setup}-seed{seed}"
                            )
                        cells.append((dataset, task, method, setup, seed, folder))
                        args = [
                            str(EXAMPLES / script),
                            *common,
                            *extra,
                            f"data.embodiment={dataset}",
                            f"task={task}",
                            f"setup={setup}",
                            f"seed={seed}",
                            f"eval.episodes={cfg.eval_episodes}",
                            f"out_dir={folder}",
                        ]
                        if script == "aime_walker.py":
                            args += [
                                f"phase1.world_model={wm / 'world_model.pt'}",
                                "eval.video=false",
                                *aime_common,
                                *cfg.aime_overrides,
                            ]
                        else:
                            args += [*cfg.baseline_overrides]
                        needs = str(wm) if script == "aime_walker.py" else None
                        jobs.setdefault(str(folder), (python + args, folder, "results.json", needs))

    walls_file = (
        out / "walls.json"
    )  # cells skipped now keep the wall time of the run that made them
    known = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    store = None
    if cfg.store:
        settings = {
            k: OmegaConf.to_container(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in STORE_SETTINGS
        }
        store = GridStore(Path(hydra.utils.to_absolute_path(cfg.store)), out, settings)
    finished = set()
    stored_walls = store.walls() if store is not None else {}
    for name, (_, folder, done_file, _) in jobs.items():
        if (folder / done_file).exists():
            finished.add(name)
            if store is None:
                continue
            path = folder.relative_to(out).as_posix()  # done before the store was given: copied in
            if done_file == "results.json" and not store.restore(folder):
                store.keep(folder, known.get(path))
            elif done_file != "results.json" and path not in stored_walls:
                store.keep(folder, known.get(path), results=False)
        elif store is not None and done_file == "results.json" and store.restore(folder):
            finished.add(name)
    needed = {needs for name, (_, _, _, needs) in jobs.items() if needs and name not in finished}
    # In the grid's order: each world model before its cells (jobs are listed so).
    todo = [
        name
        for name in jobs
        if name not in finished and (name in needed or jobs[name][2] == "results.json")
    ]
    print(
        f"{len(jobs)} jobs, {len(jobs) - len(todo)} done or not needed; "
        + (
            "reporting the cells done (report_only=true)"
            if cfg.report_only
            else f"running {len(todo)} ({cfg.parallel} at a time) in {out}"
        )
    )
    walls, errors = {}, []
    pending = [] if cfg.report_only else todo
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(cfg.parallel) as pool:
        # The first jobs of ``pending`` that are ready: a cell starts once its world model is
        # trained, so
        # that world models of later datasets and cells without one fill the other lanes meanwhile.
        while pending or running:
            blocked = set(pending) | set(running.values())
            for name in [n for n in pending if jobs[n][3] not in blocked][
                : cfg.parallel - len(running)
            ]:
                pending.remove(name)
                command, folder, done_file, _ = jobs[name]
                running[pool.submit(run_job, command, folder, done_file, store)] = name
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                name = running.pop(future)
                try:
                    walls[name] = future.result()
                    took = "resumed" if walls[name] is None else f"in {walls[name] / 60:.1f} min"
                    print(f"done {took}: {Path(name).relative_to(out)}", flush=True)
                except RuntimeError as error:  # the other jobs go on; its cells are dropped
                    errors.append(str(error))
                    pending = [n for n in pending if jobs[n][3] != name]
    if errors:
        raise RuntimeError("\n".join(errors))

    # --- collect ----------------------------------------------------------------------------------
    rows, per_seed, per_episode = [], {}, {}
    missing = {
        folder for *_, folder in cells if not (folder / "results.json").exists()
    }  # report_only: cells to do
    pairs = {}  # the table's rows, in the grid's order, done or not
    for dataset, task, method, setup, seed, folder in cells:
        row = short(dataset) if len(cfg.setups) == 1 else f"{short(dataset)} ({setup})"
        pairs[row, task] = None
        if folder in missing:
            continue
        results = json.loads((folder / "results.json").read_text())
        scores = [
            100 * r / results["expert_return"] for r in results[METHODS[method][2]]["returns"]
        ]
        key = (row, task, LABELS[method])
        per_seed.setdefault(key, []).append(statistics.mean(scores))
        per_episode.setdefault(key, []).extend(scores)
        rows += [
            dict(
                embodiment=dataset,
                task=task,
                method=LABELS[method],
                setup=setup,
                seed=seed,
                episode=i,
                score=s,
            )
            for i, s in enumerate(scores)
        ]
    if not rows:
        print("No cell is done yet: nothing to report.")
        return
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if store is not None:
        grid = {Path(name).relative_to(out).as_posix() for name in jobs}  # cells and world models
        known.update({k: v for k, v in store.walls().items() if k in grid})
    known.update({Path(k).relative_to(out).as_posix(): v for k, v in walls.items() if v})
    walls_file.write_text(json.dumps(known, indent=1))
    methods = [LABELS[m] for m in cfg.methods]
    paper = (
        "aime" in cfg.methods
        and "bco" in cfg.methods
        and cfg.embodiment == "walker"
        and list(cfg.setups) == ["mdp"]
    )
    header = (
        "| embodiment -> demos | "
        + " | ".join(methods)
        + (" | paper AIME-MDP | paper BCO-MDP |" if paper else " |")
    )
    lines = [header, "|---" * (len(methods) + 1 + 2 * paper) + "|"]
    for dataset, task in pairs:
        cells_text = []
        for m in methods:
            values = per_seed.get((dataset, task, m), [])
            if not values:
                cells_text.append("-")
            elif len(values) == 1:
                cells_text.append(f"{values[0]:.1f}")
            else:
                cells_text.append(
                    f"{statistics.mean(values):.1f} +- {statistics.pstdev(values):.1f}"
                )
        extra = []
        if paper:
            extra = (
                [f"{v:.1f}" for v in PAPER_MDP[(dataset, task)]]
                if (dataset, task) in PAPER_MDP
                else ["-", "-"]
            )
        lines.append(f"| {dataset} -> {task} | " + " | ".join(cells_text + extra) + " |")
    means = [[statistics.mean(v) for k, v in per_seed.items() if k[2] == m] for m in methods]
    lines.append(
        "| **mean** | "
        + " | ".join(f"**{statistics.mean(v):.1f}**" if v else "-" for v in means)
        + (" | | |" if paper else " |")
    )
    seeds = f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"
    note = (
        f"Mean score (% of the demonstrations' return) over {cfg.eval_episodes} evaluation episodes"
        f"{', then mean +- std over ' + seeds if len(cfg.seeds) > 1 else ' (1 seed)'}."
    )
    if missing:
        note += (
            f" **Partial grid: {len(cells) - len(missing)} of {len(cells)} cells done** "
            "(- : none done; a cell's"
            " +- is over the seeds done; the means are over the cells done)."
        )
    (out / "table.md").write_text("\n".join([note, "", *lines]) + "\n")
    # Error bars: over seeds, or over the evaluation episodes of the one seed.
    plot_grid(
        per_seed if len(cfg.seeds) > 1 else per_episode,
        out / "figure.png",
        title=f"{cfg.embodiment}, {', '.join(cfg.setups)}; {seeds}",
    )
    print("\n".join(lines))
    if cfg.publish:
        target = Path(hydra.utils.to_absolute_path(cfg.publish))
        target.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "scores.csv", "figure.png", "walls.json"):
            shutil.copyfile(out / name, target / name)
        (target / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        print(f"published to {target}")


if __name__ == "__main__":
    main()
