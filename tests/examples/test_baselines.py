# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/baselines.py (BC, BCO(0), IIDM) and examples/compare.py with tiny settings."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aime_torchrl.data import build_dataset
from aime_torchrl.trainers import RunLock

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    for name in ("walker-random", "walker-stand-expert"):
        build_dataset(name, num_episodes=3, root=root, workers=1, progress=False)
    return root


def tiny(data_root: Path) -> list[str]:
    return [
        "data.embodiment=walker-random", "data.embodiment_episodes=3", "data.demos=walker-stand-expert",
        "data.num_demos=3", "data.workers=1", f"data.root={data_root}", "hidden=16", "batch_size=8",
        "model_steps=20", "policy_steps=20", "validate_every=10", "validation_batches=2", "eval.episodes=1",
        "eval.workers=0", "progress=false",
    ]


def test_baselines_train_and_evaluate(data_root, tmp_path):
    methods = {"bc": "BC", "bco": "BCO(0)", "iidm": "IIDM"}
    procs = {method: subprocess.Popen([sys.executable, str(ROOT / "examples" / "baselines.py"), *tiny(data_root),
                                       f"method={method}", f"out_dir={tmp_path / method}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for method in methods}  # the three at once: each mostly imports
    for method, label in methods.items():
        out, err = procs[method].communicate(timeout=600)
        assert procs[method].returncode == 0, err[-3000:]
        assert f"| {label} | 1 |" in out
        results = json.loads((tmp_path / method / "results.json").read_text())
        assert len(results[label]["returns"]) == 1 and results[label]["mean"] > 0 and results["method"] == label
        trained = results["training"]
        assert set(trained) == ({"policy"} if method == "bc" else {"policy", "idm" if method == "bco" else "model"})
        for fit in trained.values():  # validated at 0, 10, 20 on held-out episodes; the best weights kept
            assert [step for step, _ in fit["curve"]] == [0, 10, 20]
            assert fit["best_loss"] == min(loss for _, loss in fit["curve"])
        assert (tmp_path / method / "policy.pt").is_file()


def test_baselines_run_under_torchrun(data_root, tmp_path):
    """BCO(0) with 2 gloo ranks, each half of every batch: its IDM and policy in DDP, rank 0 alone writing."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*torchrun, str(ROOT / "examples" / "baselines.py"), *tiny(data_root), "method=bco",
                           "threads=1", f"out_dir={tmp_path / 'bco'}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| BCO(0) | 1 |") == 1  # rank 0's table only
    trained = json.loads((tmp_path / "bco" / "results.json").read_text())["training"]
    assert [step for step, _ in trained["policy"]["curve"]] == [0, 10, 20]


def test_baselines_and_compare_refuse_nothing_to_do_a_missing_device_and_a_folder_in_use(tmp_path):
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    data_root = tmp_path / "datasets"  # never made: every refusal comes before the data
    compare = [str(ROOT / "examples" / "compare.py"), f"data_root={data_root}"]
    baselines = [str(ROOT / "examples" / "baselines.py"), f"data.root={data_root}"]
    cases = {
        "seeds": ([*compare, "seeds=[]", f"out_dir={tmp_path / 'seeds'}"], "seeds=[]: must list at least one value."),
        "held": ([*compare, f"out_dir={tmp_path / 'held'}"],
                 f"{tmp_path / 'held'} is in use by another run (pid {os.getpid()} on {socket.gethostname()} holds its "
                 ".lock): wait for that run to end, or pass another out_dir."),
        "steps": ([*baselines, "policy_steps=0", f"out_dir={tmp_path / 'steps'}"], "policy_steps=0: must be a number > 0."),
        "device": ([*baselines, f"device=cuda:{cuda}", f"out_dir={tmp_path / 'device'}"], f"device=cuda:{cuda}: this "
                   "machine has "),
    }
    with RunLock(tmp_path / "held"):  # as a grid in progress holds it
        procs = {name: subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for name, (command, _) in cases.items()}  # at once: each mostly imports
        errors = {name: proc.communicate(timeout=600)[1] for name, proc in procs.items()}
    for name, (_, message) in cases.items():
        assert procs[name].returncode != 0 and message in errors[name], (name, errors[name][-2000:])
    assert not data_root.exists() and not (tmp_path / "steps").exists() and not (tmp_path / "device").exists()


def test_compare_grid_runs_skips_done_cells_and_plots(data_root, tmp_path):
    out, store = tmp_path / "grid", tmp_path / "store"
    aime = ["world_model.belief_dim=16", "world_model.state_dim=4", "world_model.hidden=16", "phase1.steps=4",
            "phase1.batch_size=4", "phase1.horizon=8", "phase2.steps=4", "phase2.batch_size=4", "phase2.horizon=8",
            "phase2.policy_hidden=16", "data.workers=1"]
    base = ["hidden=16", "batch_size=8", "model_steps=10", "policy_steps=10", "validate_every=5",
            "validation_batches=1", "data.workers=1"]
    args = [
        sys.executable, str(ROOT / "examples" / "compare.py"), "embodiments=[walker-random]", "tasks=[stand]",
        "methods=[aime,bco,bc]", "seeds=[0]", "embodiment_episodes=3", "num_demos=3", "eval_episodes=1", "parallel=2",
        f"data_root={data_root}", f"out_dir={out}", f"publish={tmp_path / 'docs'}",
        "aime_overrides=[" + ",".join(f"'{a}'" for a in aime) + "]",
        "baseline_overrides=[" + ",".join(f"'{b}'" for b in base) + "]",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "4 jobs, 0 done or not needed; running 4 (2 at a time)" in done.stdout
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["method"] for r in rows) == ["AIME", "BC", "BCO(0)"]
    table = (tmp_path / "docs" / "table.md").read_text()
    assert "| random -> stand |" in table and "40.1 | 57.1" in table  # next to the paper's numbers
    assert (tmp_path / "docs" / "figure.png").is_file()
    # Given a store, the cells done before go into it, with the wall times of the run that made them.
    again = subprocess.run(args + [f"store={store}"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "4 jobs, 4 done or not needed; running 0" in again.stdout
    kept = sorted(p.relative_to(store).as_posix() for p in store.rglob("results.json"))
    assert kept == ["cells/bc/stand-mdp-seed0/results.json", "cells/random/stand/aime-mdp-seed0/results.json",
                    "cells/random/stand/bco-mdp-seed0/results.json"]
    walls = json.loads((out / "walls.json").read_text())
    for cell in kept:
        assert json.loads((store / cell.replace("results.json", "wall.json")).read_text()) == walls[cell.rsplit("/", 1)[0]] > 0
    wm = "world_models/random-mdp-seed0"  # a world model keeps its wall time only
    assert [p.name for p in (store / wm).iterdir()] == ["wall.json"]
    assert json.loads((store / wm / "wall.json").read_text()) == walls[wm] > 0
    # With the run folder gone (world model included), nothing runs again and the same table comes out.
    shutil.rmtree(out)
    (tmp_path / "docs" / "table.md").unlink()
    moved = subprocess.run(args + [f"store={store}"], capture_output=True, text=True, timeout=600)
    assert moved.returncode == 0, moved.stdout[-2000:] + moved.stderr[-3000:]
    assert "4 jobs, 4 done or not needed; running 0" in moved.stdout and not (out / "world_models").exists()
    assert (tmp_path / "docs" / "table.md").read_text() == table
    assert json.loads((tmp_path / "docs" / "walls.json").read_text()) == walls  # every job's, from the store
    # A store holds the cells of one setting of the grid: another is refused, naming what differs.
    other = [a.replace("num_demos=3", "num_demos=2") for a in args] + [f"store={store}"]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "with other settings (num_demos: 3 there, 2 here)" in refused.stderr
    # A larger grid, stopped before its new cells: report_only tables the cells done, running nothing.
    (store / "cells" / "random" / "stand" / "bco-mdp-seed0" / "results.json").unlink()
    shutil.rmtree(out)
    wider = [a.replace("tasks=[stand]", "tasks=[stand,walk]") for a in args] + [f"store={store}", "report_only=true"]
    partial = subprocess.run(wider, capture_output=True, text=True, timeout=600)
    assert partial.returncode == 0, partial.stdout[-2000:] + partial.stderr[-3000:]
    assert "reporting the cells done" in partial.stdout and not (out / "world_models").exists()
    table = (tmp_path / "docs" / "table.md").read_text()
    assert "Partial grid: 2 of 6 cells done" in table
    assert re.search(r"\| random -> stand \| [\d.]+ \| - \| [\d.]+ \| 40.1 \| 57.1 \|", table)  # BCO(0) not done
    assert "| random -> walk | - | - | - | 17.6 | 13.5 |" in table
    with open(out / "scores.csv") as f:
        assert sorted(r["method"] for r in csv.DictReader(f)) == ["AIME", "BC"]
    nothing = subprocess.run([a.replace("seeds=[0]", "seeds=[1]") for a in wider], capture_output=True, text=True,
                             timeout=600)
    assert nothing.returncode == 0 and "No cell is done yet" in nothing.stdout


def test_imitation_study_runs_variants_skips_done_runs_and_reports_diagnostics(data_root, tmp_path):
    out = tmp_path / "study"
    tiny = ["world_model.belief_dim=16", "world_model.state_dim=4", "world_model.hidden=16", "phase1.steps=4",
            "phase1.batch_size=4", "phase1.horizon=8", "phase2.steps=4", "phase2.batch_size=4", "phase2.horizon=8",
            "phase2.policy_hidden=16", "data.workers=1", "data.embodiment_episodes=3", "data.num_demos=3",
            "diagnostics.batches=1", "log_every=2"]
    args = [
        sys.executable, str(ROOT / "examples" / "imitation_study.py"), "cells=[[walker-random,stand]]",
        "run=[quick,phase2_more]", "+variants.phase2_more=['phase2.steps=6']", "seeds=[0]", "eval_episodes=1",
        "eval_every=0", f"data_root={data_root}", f"out_dir={out}", f"publish={tmp_path / 'docs'}",
        "overrides=[" + ",".join(f"'{a}'" for a in tiny) + "]",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "2 runs, 0 already done" in done.stdout
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["variant"] for r in rows) == ["phase2_more", "quick"]
    assert all(float(r["action_mse"]) > 0 and r["cell"] == "random -> stand" for r in rows)
    assert all(float(r["state_distance"]) > 0 for r in rows)  # expert states are not random play's
    table = (tmp_path / "docs" / "table.md").read_text()
    assert "| quick | random -> stand | 0 |" in table and "| phase2_more | random -> stand | 0 |" in table
    assert (tmp_path / "docs" / "figure.png").is_file() and (tmp_path / "docs" / "diagnostics.png").is_file()
    log = out / "cells" / "quick" / "random-stand-seed0" / "stdout.log"
    first_log = log.read_text()
    again = subprocess.run(args[:4] + ["run=[quick]"] + args[5:], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "1 runs, 1 already done" in again.stdout
    assert log.read_text() == first_log  # the finished run was not started again
    assert "| phase2_more |" in (out / "table.md").read_text()  # the report keeps every run found
