# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""What budget buys what in cross-task imitation: AIME over a grid of budgets, with its diagnostics.

    python examples/imitation_study.py          # quick + phase1_10k, 2 cells, 3 seeds
    python examples/imitation_study.py run=[phase2_10k,demos_50] seeds=[0]
    python examples/imitation_study.py "demos='/data/walker-{task}-expert'" \\
        'cells=[[/data/walker-stand-buffer,walk],[/data/walker-walk-buffer,stand]]' \\
        publish=docs/imitation_study

Every cell (variant x embodiment dataset -> task x seed) is one run of examples/aime_walker.py (its
quick profile plus the variant's overrides) in
``out_dir/cells/<variant>/<dataset>-<task>-seed<seed>``; done cells are skipped and interrupted
ones resume (the library's grid runner). The report covers every cell found under ``out_dir``, so
variants run on different days share one table:

* ``table.md``: per variant and cell, the AIME score (% of the demonstrations' return; mean +- std
  over seeds), the diagnostics aime_walker.py saves (how well the world model explains the
  demonstrations next to its own data before phase 2: ELBO per window and open-loop error; the
  MSE of the inferred actions against the demonstrations' true ones after phase 2) and wall time;
* ``scores.csv`` (one row per run), ``figure.png`` (a panel per cell, a bar per variant) and
  ``diagnostics.png`` (score against the inferred actions' error, one point per run).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from aime_torchrl.evaluation import plot_grid, state_coverage
from aime_torchrl.trainers import check_config, RunLock
from aime_torchrl.trainers.grid import run_job

EXAMPLES = Path(__file__).parent


def short(dataset: str) -> str:
    """/data/walker-stand-buffer -> stand-buffer, walker-random -> random."""
    return Path(dataset).name.split("-", 1)[-1]


def plot_diagnostics(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for cell in dict.fromkeys(r["cell"] for r in runs):
        mine = [r for r in runs if r["cell"] == cell]
        axes[0].scatter([r["action_mse"] for r in mine], [r["score"] for r in mine], label=cell)
        axes[1].scatter(
            [r["demos_elbo"] - r["embodiment_elbo"] for r in mine],
            [r["score"] for r in mine],
            label=cell,
        )
    axes[0].set_xlabel("MSE of the inferred actions (after phase 2)")
    axes[1].set_xlabel("ELBO: demonstrations - own data (before phase 2)")
    for ax in axes:
        ax.set_ylabel("AIME score (% of the demonstrations)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mean_std(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if not math.isnan(v)]  # e.g. no wall time for a run made elsewhere
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.pstdev(values):.{digits}f}"


def check(
    cfg: DictConfig,
) -> None:  # the config, before anything runs (errors name the key and what is allowed)
    check_config(
        cfg,
        positive=["parallel", "threads", "eval_episodes", "eval_every_episodes"],
        non_negative=["eval_every"],
        non_empty=["coverage_sensors"],
    )  # an empty grid (run=[]) only reports the runs found
    unknown = set(cfg.run) - set(cfg.variants)
    if unknown:
        raise ValueError(
            f"run lists unknown variants {sorted(unknown)}; the config's variants are "
            f"{sorted(cfg.variants)}."
        )


@hydra.main(config_path="../configs", config_name="imitation_study", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check(cfg)
    out = Path(hydra.utils.to_absolute_path(cfg.out_dir))
    with RunLock(out):  # one study at a time in out
        study(cfg, out)


def study(cfg: DictConfig, out: Path) -> None:
    """Runs the cells not done yet, then reports every run found under ``out`` (see the module's
    docstring)."""
    common = [
        f"threads={cfg.threads}",
        "progress=false",
        "eval.workers=0",
        "eval.video=false",
        f"eval.episodes={cfg.eval_episodes}",
        f"eval.every={cfg.eval_every}",
        f"eval.every_episodes={cfg.eval_every_episodes}",
        *cfg.overrides,
    ]
    if cfg.data_root:
        common.append(f"data.root={cfg.data_root}")
    jobs = []
    for variant in cfg.run:
        for seed in cfg.seeds:
            for dataset, task in cfg.cells:
                folder = out / "cells" / variant / f"{short(dataset)}-{task}-seed{seed}"
                command = [
                    sys.executable,
                    str(EXAMPLES / "aime_walker.py"),
                    *common,
                    f"data.embodiment={dataset}",
                    f"data.demos={cfg.demos.format(task=task)}",
                    f"task={task}",
                    f"seed={seed}",
                    f"out_dir={folder}",
                    *cfg.variants[variant],
                ]
                jobs.append((command, folder))
    todo = [folder for _, folder in jobs if not (folder / "results.json").exists()]
    print(
        f"{len(jobs)} runs, {len(jobs) - len(todo)} already done; running {len(todo)} "
        f"({cfg.parallel} at a time) in {out}"
    )
    walls_file = out / "walls.json"  # runs skipped now keep the wall time of the run that made them
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    with ThreadPoolExecutor(cfg.parallel) as pool:
        futures = {
            folder: pool.submit(run_job, command, folder, "results.json")
            for command, folder in jobs
            if folder in todo  # a finished run is not started again (its stdout.log stays)
        }
        for folder, future in futures.items():
            wall = future.result()
            if wall:
                walls[folder.relative_to(out).as_posix()] = wall
                walls_file.write_text(json.dumps(walls, indent=1))
                print(f"done in {wall / 60:.1f} min: {folder.relative_to(out)}", flush=True)

    # --- report: every run found under out_dir ----------------------------------------------------
    # (embodiment folders, demonstration folders) -> how far the demonstrations' states are from the
    # data's
    coverage = {}

    def state_distance(results: dict) -> float:
        key = (tuple(results["embodiment_dataset"]), tuple(results["demos"]))
        if key not in coverage:
            coverage[key] = state_coverage(
                results["demos"],
                results["embodiment_dataset"],
                cfg.coverage_sensors,
                demo_episodes=len(results["demonstrations"]["returns"]),
            )["distance_median"]
        return coverage[key]

    runs = []
    for path in sorted(out.glob("cells/*/*/results.json")):
        results = json.loads(path.read_text())
        variant, name = path.parent.parent.name, path.parent.name
        cell, seed = name.rsplit("-seed", 1)
        dataset, task = cell.rsplit("-", 1)
        diag = results.get("diagnostics", {})
        runs.append(
            dict(
                variant=variant,
                cell=f"{dataset} -> {task}",
                seed=int(seed),
                score=results["AIME"]["score_mean"],
                state_distance=state_distance(results),
                action_mse=diag.get("demos_action_mse", float("nan")),
                demos_elbo=diag.get("demos_elbo", float("nan")),
                embodiment_elbo=diag.get("embodiment_elbo", float("nan")),
                demos_open_loop_mse=diag.get("demos_open_loop_mse", float("nan")),
                embodiment_open_loop_mse=diag.get("embodiment_open_loop_mse", float("nan")),
                wall_min=walls.get(f"cells/{variant}/{name}", float("nan")) / 60,
            )
        )
    if not runs:
        print("no finished runs yet")
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(runs[0]))
        writer.writeheader()
        writer.writerows(runs)
    order = list(cfg.variants) + sorted({r["variant"] for r in runs} - set(cfg.variants))
    lines = [
        "| variant | embodiment -> demos | seeds | AIME score | demos' distance to the data | "
        "inferred-action MSE | ELBO: demos / own data | open-loop MSE: demos / own data | "
        "wall (min) |",
        "|---" * 9 + "|",
    ]
    per_seed = {}
    for variant in order:
        for cell in dict.fromkeys(r["cell"] for r in runs):
            mine = [r for r in runs if r["variant"] == variant and r["cell"] == cell]
            if not mine:
                continue
            per_seed[(*cell.split(" -> "), variant)] = [r["score"] for r in mine]

            def col(key: str, digits: int = 1) -> str:
                return mean_std([r[key] for r in mine], digits)

            seeds = ",".join(str(r["seed"]) for r in mine)
            lines.append(
                f"| {variant} | {cell} | {seeds} | {col('score')} | "
                f"{col('state_distance', 2)} | {col('action_mse', 3)} | "
                f"{col('demos_elbo', 0)} / {col('embodiment_elbo', 0)} | "
                f"{col('demos_open_loop_mse', 3)} / {col('embodiment_open_loop_mse', 3)} | "
                f"{col('wall_min')} |"
            )
    note = (
        f"AIME score: % of the demonstrations' return over {cfg.eval_episodes} evaluation "
        "episodes, mean +- std over the seeds listed. Diagnostics (examples/aime_walker.py, "
        "diagnostics.batches windows of the demonstrations, with their true actions for measuring "
        "only): the world model's ELBO per window and open-loop MSE (5 context frames) on the "
        "demonstrations next to its own embodiment data, before phase 2; the MSE of the policy's "
        "actions in the posterior rollout of the demonstrations against their true actions, after "
        "phase 2. Demos' distance to the data: median over demonstration frames of the distance to "
        f"the nearest embodiment-data frame ({', '.join(cfg.coverage_sensors)}, standardised by "
        "the "
        "data; evaluation.state_coverage)."
    )
    (out / "table.md").write_text("\n".join([note, "", *lines]) + "\n")
    plot_grid(per_seed, out / "figure.png", title="AIME score by budget (bars: mean over seeds)")
    plot_diagnostics(runs, out / "diagnostics.png")
    print("\n".join(lines))
    if cfg.publish:
        target = Path(hydra.utils.to_absolute_path(cfg.publish))
        target.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "scores.csv", "figure.png", "diagnostics.png", "walls.json"):
            if (out / name).exists():
                shutil.copyfile(out / name, target / name)
        (target / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        print(f"published to {target}")


if __name__ == "__main__":
    main()
