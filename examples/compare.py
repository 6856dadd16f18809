# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The paper's comparison (Figure 2): AIME against BCO(0) and BC over a grid of datasets.

    python examples/compare.py                                  # walker, mdp, 4 x 2 x 3, seed 0 (CPU, ~1 h)
    python examples/compare.py seeds=[0,1,2] publish=docs/compare
    python examples/compare.py methods=[aime,aime_kl_only,aime_recon_only] embodiments=[walker-mix]

Every cell is one run of examples/aime_walker.py or examples/baselines.py in its own folder under
``out_dir``; a cell whose ``results.json`` exists is skipped, and an interrupted AIME cell resumes
from its checkpoint, so a long grid can be finished over several sessions. One world model is
trained per embodiment dataset, setup and seed, and shared by the demonstration tasks; BC does not
use the embodiment data and runs once per task. ``parallel`` cells run at a time, each world model
followed by its cells (so that a grid stopped midway leaves finished cells, not only world models).

``store`` (e.g. ``docs/compare_cpu``) keeps a copy of every finished cell's ``results.json``
(a few KB) and its wall time (``wall.json``) under the cell's path in the grid: a cell found there
counts as done, and a world model whose cells are all done is not trained. Commit the store to
finish a grid of many hours on another machine, or after its run folder is lost; grids of other
seeds may run at the same time into the same store (each with its own ``out_dir``).

Writes ``scores.csv`` (one row per evaluation episode), ``table.md`` (next to the paper's numbers)
and ``figure.png`` (a panel per dataset -> task pair, averages in the last row and column);
``report_only=true`` writes them for the cells done so far, running nothing (the table says how many).
"""
from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from aime_torchrl.data import resolve_datasets
from aime_torchrl.evaluation import plot_grid

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
LABELS = {"aime": "AIME", "aime_kl_only": "AIME (KL only)", "aime_recon_only": "AIME (recon only)", "aime_idm": "AIME + IDM",
          "bco": "BCO(0)", "bc": "BC", "iidm": "IIDM"}
#: The paper's walker MDP scores (% of the expert; spec 7.1): (dataset, task) -> (AIME, BCO(0)).
PAPER_MDP = {
    ("random", "stand"): (40.1, 57.1), ("random", "walk"): (17.6, 13.5),
    ("stand", "stand"): (91.6, 94.1), ("stand", "walk"): (86.9, 89.6),
    ("walk", "stand"): (92.3, 80.7), ("walk", "walk"): (81.8, 88.0),
    ("mix", "stand"): (87.8, 87.8), ("mix", "walk"): (78.5, 89.2),
}


def short(dataset: str) -> str:
    """walker-stand-buffer -> stand, walker-random -> random, walker-mix -> mix."""
    parts = dataset.split("-")
    return parts[1] if len(parts) > 1 else dataset


class Store:
    """Copies of finished cells outside the run folder ``out``: a cell ``out/<path>`` is kept as
    ``root/<path>/results.json`` and its wall time as ``root/<path>/wall.json``, each written whole
    and then renamed (several grids may share a store: a cell's files are its own)."""

    def __init__(self, root: Path, out: Path) -> None:
        self.root, self.out = root, out

    def restore(self, folder: Path) -> bool:
        """Whether the cell is in the store; if so, its results are copied back into ``folder``."""
        stored = self.root / folder.relative_to(self.out) / "results.json"
        if not stored.exists():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, folder / "results.json")
        return True

    def keep(self, folder: Path, wall: float) -> None:
        """Stores a finished cell's results and wall time."""
        target = self.root / folder.relative_to(self.out)
        target.mkdir(parents=True, exist_ok=True)
        for name, text in (("results.json", (folder / "results.json").read_text()), ("wall.json", json.dumps(wall))):
            partial = target / f"{name}.tmp"
            partial.write_text(text)
            partial.replace(target / name)

    def walls(self) -> dict[str, float]:
        """The stored cells' wall times (in seconds), by their path in the grid."""
        return {f.parent.relative_to(self.root).as_posix(): json.loads(f.read_text()) for f in self.root.rglob("wall.json")}


def done(folder: Path, done_file: str, store: Store | None) -> bool:
    """Whether a job is done: its ``done_file`` is in ``folder`` or, for a cell, in the store."""
    return (folder / done_file).exists() or (done_file == "results.json" and store is not None and store.restore(folder))


def run(command: list[str], folder: Path, done_file: str, wait: Future | None = None,
        store: Store | None = None) -> float:
    """Runs one job unless it is :func:`done`; returns its wall time (0 if skipped)."""
    if wait is not None:
        wait.result()
    if done(folder, done_file, store):
        return 0.0
    if (folder / "checkpoint.pt").exists():
        command = command + ["resume=true"]
    folder.mkdir(parents=True, exist_ok=True)
    tic = time.time()
    with open(folder / "stdout.log", "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode:
        raise RuntimeError(f"cell {folder} failed (exit {finished.returncode}); see {folder / 'stdout.log'}")
    wall = time.time() - tic
    if store is not None and done_file == "results.json":
        store.keep(folder, wall)
    return wall


@hydra.main(config_path="../configs", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = Path(hydra.utils.to_absolute_path(cfg.out_dir))
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; choose from {sorted(METHODS)}.")
    # Build every dataset once here, so that no two cells build the same one.
    for images in sorted({setup == "visual" for setup in cfg.setups}):
        for dataset in cfg.embodiments:
            resolve_datasets(dataset, root=cfg.data_root, num_episodes=cfg.embodiment_episodes, images=images)
        for task in cfg.tasks:
            resolve_datasets(f"{cfg.embodiment}-{task}-expert", root=cfg.data_root, num_episodes=cfg.num_demos,
                             images=images)

    episodes = "null" if cfg.embodiment_episodes is None else cfg.embodiment_episodes
    common = [f"embodiment={cfg.embodiment}", f"data.num_demos={cfg.num_demos}", f"threads={cfg.threads}",
              "progress=false", f"data.embodiment_episodes={episodes}"]
    if cfg.data_root:
        common.append(f"data.root={cfg.data_root}")
    aime_common = ["phase1.idm=true"] if "aime_idm" in cfg.methods else []  # one world model, with its IDM
    python = [sys.executable]
    jobs: dict[str, tuple[list[str], Path, str, str | None]] = {}
    group: dict[str, int] = {}  # job -> its embodiment dataset, setup and seed, in the grid's order
    cells = []  # (dataset, task, method, setup, seed, folder)
    for setup in cfg.setups:
        for seed in cfg.seeds:
            for dataset in cfg.embodiments:
                wm = out / "world_models" / f"{short(dataset)}-{setup}-seed{seed}"
                if any(m.startswith("aime") for m in cfg.methods):
                    args = [str(EXAMPLES / "aime_walker.py"), *common, f"data.embodiment={dataset}", f"task={cfg.tasks[0]}",
                            f"setup={setup}", f"seed={seed}", "phase2.steps=0", "eval.episodes=0", f"out_dir={wm}",
                            *aime_common, *cfg.aime_overrides]
                    jobs[str(wm)] = (python + args, wm, "world_model.pt", None)
                    group[str(wm)] = len(set(group.values()))
                for task in cfg.tasks:
                    for method in cfg.methods:
                        script, extra, _ = METHODS[method]
                        if method == "bc":  # the oracle does not use the embodiment data
                            folder = out / "cells" / "bc" / f"{task}-{setup}-seed{seed}"
                        else:
                            folder = out / "cells" / short(dataset) / task / f"{method}-{setup}-seed{seed}"
                        cells.append((dataset, task, method, setup, seed, folder))
                        args = [str(EXAMPLES / script), *common, *extra, f"data.embodiment={dataset}", f"task={task}",
                                f"setup={setup}", f"seed={seed}", f"eval.episodes={cfg.eval_episodes}", f"out_dir={folder}"]
                        if script == "aime_walker.py":
                            args += [f"phase1.world_model={wm / 'world_model.pt'}", "eval.video=false", *aime_common,
                                     *cfg.aime_overrides]
                        else:
                            args += [*cfg.baseline_overrides]
                        needs = str(wm) if script == "aime_walker.py" else None
                        jobs.setdefault(str(folder), (python + args, folder, "results.json", needs))
                        group.setdefault(str(folder), group[str(wm)] if str(wm) in group else len(group))

    store = Store(Path(hydra.utils.to_absolute_path(cfg.store)), out) if cfg.store else None
    finished = {name for name, (_, folder, done_file, _) in jobs.items() if done(folder, done_file, store)}
    needed = {needs for name, (_, _, _, needs) in jobs.items() if needs and name not in finished}
    todo = [name for name in jobs if name not in finished and (name in needed or jobs[name][2] == "results.json")]
    if cfg.report_only:  # the table of what is done so far
        print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already done; reporting the cells done (report_only=true)")
        todo = []
    else:
        print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already done; running {len(todo)} ({cfg.parallel} at a time) in {out}")
    futures: dict[str, Future] = {}
    walls = {}
    with ThreadPoolExecutor(cfg.parallel) as pool:
        # Each world model, then the cells that do not need it, then those that do: a cell waits for its
        # world model's future, submitted before it, and world models never wait.
        for name in sorted(todo, key=lambda n: (group[n], jobs[n][3] is not None)):
            command, folder, done_file, needs = jobs[name]
            futures[name] = pool.submit(run, command, folder, done_file, futures.get(needs), store)
        for name, future in futures.items():
            walls[name] = future.result()
            if walls[name]:
                print(f"done in {walls[name] / 60:.1f} min: {Path(name).relative_to(out)}", flush=True)

    # --- collect -------------------------------------------------------------------------------------
    rows, per_seed, per_episode = [], {}, {}
    missing = [folder for *_, folder in cells if not (folder / "results.json").exists()]  # report_only: cells to do
    pairs = {}  # the table's rows, in the grid's order, done or not
    for dataset, task, method, setup, seed, folder in cells:
        pairs[short(dataset) if len(cfg.setups) == 1 else f"{short(dataset)} ({setup})", task] = None
        if folder in missing:
            continue
        results = json.loads((folder / "results.json").read_text())
        scores = [100 * r / results["expert_return"] for r in results[METHODS[method][2]]["returns"]]
        key = (short(dataset) if len(cfg.setups) == 1 else f"{short(dataset)} ({setup})", task, LABELS[method])
        per_seed.setdefault(key, []).append(statistics.mean(scores))
        per_episode.setdefault(key, []).extend(scores)
        rows += [dict(embodiment=dataset, task=task, method=LABELS[method], setup=setup, seed=seed, episode=i,
                      score=s) for i, s in enumerate(scores)]
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    walls_file = out / "walls.json"  # cells skipped now keep the wall time of the run that made them
    known = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    if store is not None:
        known.update(store.walls())
    known.update({Path(k).relative_to(out).as_posix(): v for k, v in walls.items() if v})
    walls_file.write_text(json.dumps(known, indent=1))
    methods = [LABELS[m] for m in cfg.methods]
    paper = "aime" in cfg.methods and "bco" in cfg.methods and cfg.embodiment == "walker" and list(cfg.setups) == ["mdp"]
    header = "| embodiment -> demos | " + " | ".join(methods) + (" | paper AIME-MDP | paper BCO-MDP |" if paper else " |")
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
                cells_text.append(f"{statistics.mean(values):.1f} +- {statistics.pstdev(values):.1f}")
        extra = []
        if paper:
            extra = [f"{v:.1f}" for v in PAPER_MDP[(dataset, task)]] if (dataset, task) in PAPER_MDP else ["-", "-"]
        lines.append(f"| {dataset} -> {task} | " + " | ".join(cells_text + extra) + " |")
    means = [[statistics.mean(v) for k, v in per_seed.items() if k[2] == m] for m in methods]
    lines.append("| **mean** | " + " | ".join(f"**{statistics.mean(v):.1f}**" if v else "-" for v in means)
                 + (" | | |" if paper else " |"))
    seeds = f"{len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''}"
    note = (f"Mean score (% of the demonstrations' return) over {cfg.eval_episodes} evaluation episodes"
            f"{', then mean +- std over ' + seeds if len(cfg.seeds) > 1 else ' (1 seed)'}.")
    if missing:
        note += (f" **Partial grid: {len(cells) - len(missing)} of {len(cells)} cells done** (- : none done; a cell's"
                 " +- is over the seeds done; the means are over the cells done).")
    (out / "table.md").write_text("\n".join([note, "", *lines]) + "\n")
    # Error bars: over seeds, or over the evaluation episodes of the one seed.
    plot_grid(per_seed if len(cfg.seeds) > 1 else per_episode, out / "figure.png",
              title=f"{cfg.embodiment}, {', '.join(cfg.setups)}; {seeds}")
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
