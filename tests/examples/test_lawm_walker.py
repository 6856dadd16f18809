# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/lawm_walker.py through its command line, tiny settings: every model of every fraction,
the report, resuming a run whose last models are missing, and a bad config refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "examples" / "lawm_walker.py"


def run(tmp_path: Path, *extra: str, ranks: int = 1) -> subprocess.CompletedProcess:
    args = [f"data.root={tmp_path / 'data'}", "data.episodes=5", "data.held_out=1", "data.workers=1", "fractions=[0.25,1.0]",
            "world_model.belief_dim=16", "world_model.state_dim=4", "world_model.hidden=16", "train.steps=3",
            "train.batch_size=4", "train.horizon=8", "idm.steps=3", "idm.batch_size=8", "idm.hidden=16", "eval.batches=1",
            "checkpoint_every=2", "progress=false", "threads=1", f"out_dir={tmp_path / 'run'}", *extra]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else []
    return subprocess.run([sys.executable, *torchrun, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_lawm_walker_runs_under_torchrun(tmp_path):
    """2 gloo ranks, each with half of every batch: every model of every fraction, rank 0 alone writing."""
    done = run(tmp_path, ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    models = json.loads((tmp_path / "run" / "results.json").read_text())["models"]
    assert sorted(models) == ["idm_labels@0.25", "labelled_only@0.25", "labelled_only@1.0", "latent@0.25", "latent@1.0"]
    assert done.stdout.count("run folder: ") == 1 and "(2 ranks)" in done.stdout


def test_lawm_walker_trains_every_model_and_resumes(tmp_path):
    done = run(tmp_path, "loss.action_scale=2.0")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "run"
    results = json.loads((folder / "results.json").read_text())
    models = results["models"]
    # 4 training episodes: 1 labelled at 25 %, all 4 at 100 % (where idm_labels would be labelled_only's twin)
    assert sorted(models) == ["idm_labels@0.25", "labelled_only@0.25", "labelled_only@1.0", "latent@0.25", "latent@1.0"]
    assert [models[f"latent@{f}"]["labelled_episodes"] for f in (0.25, 1.0)] == [1, 4]
    assert all(m["open_loop_mse"] > 0 for m in models.values())
    assert {"inferred_action_r2", "open_loop_mse_inferred"} <= set(models["latent@0.25"])
    assert all((folder / f"{name}.pt").is_file() for name in models)
    table = (folder / "table.md").read_text()
    assert "| 25 % (1) |" in table and "| 100 % (4) |" in table and (folder / "figure.png").stat().st_size > 0

    # A run stopped after its first models: resuming trains only the missing ones (the IDM is kept) and
    # gives the same numbers.
    (folder / "results.json").unlink()
    kept = {k: models[k] for k in ("latent@0.25", "labelled_only@0.25")}
    (folder / "models.json").write_text(json.dumps(kept))
    idm_written = (folder / "idm@0.25.pt").stat().st_mtime_ns
    resumed = run(tmp_path, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained = [line.split()[0] for line in resumed.stdout.splitlines() if "@" in line.split(" ")[0]]
    assert trained == ["idm_labels@0.25", "latent@1.0", "labelled_only@1.0"]
    assert (folder / "idm@0.25.pt").stat().st_mtime_ns == idm_written
    assert json.loads((folder / "results.json").read_text())["models"] == models


def test_lawm_walker_refuses_a_bad_config(tmp_path):
    done = run(tmp_path, "eval.context=8")
    assert done.returncode != 0 and "eval.context=8 must be below train.horizon=8" in done.stderr
    done = run(tmp_path, "fractions=[0.0,0.5]")
    assert done.returncode != 0 and "every fraction of labelled episodes must be in (0, 1]" in done.stderr
    done = run(tmp_path, "models=[latent,bc]")
    assert done.returncode != 0 and "choose from ['latent', 'labelled_only', 'idm_labels']" in done.stderr
    done = run(tmp_path, "loss.action_scale=-1.0")
    assert done.returncode != 0 and "loss.action_scale=-1.0: must be a number >= 0" in done.stderr
    done = run(tmp_path, "checkpoint_every=0")
    assert done.returncode != 0 and "checkpoint_every=0: must be a number > 0." in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written (Hydra's files removed)
