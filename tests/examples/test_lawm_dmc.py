# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/lawm_dmc.py through its command line, tiny settings: the world models trained by
lawm_walker.py, a policy per world model (with the model-uncertainty penalty), the report and video,
resuming a run whose last policies are missing, and a bad config refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "examples" / "lawm_dmc.py"


def run(tmp_path: Path, *extra: str, ranks: int = 1) -> subprocess.CompletedProcess:
    world_models = [f"data.root={tmp_path / 'data'}", "data.episodes=5", "data.held_out=1", "data.workers=1",
                    "world_model.belief_dim=16", "world_model.state_dim=4", "world_model.hidden=16", "train.steps=3",
                    "train.batch_size=4", "train.horizon=8", "idm.steps=3", "idm.batch_size=8", "idm.hidden=16",
                    "eval.batches=1"]
    args = ["lawm_walker=[" + ",".join(f'"{o}"' for o in world_models) + "]", "fractions=[0.25,1.0]",
            "reward.steps=3", "reward.batch_size=8", "reward.hidden=16", "policy.steps=3", "policy.batch_size=8",
            "policy.horizon=3", "policy.hidden=16", "policy.uncertainty_scale=1.0", "ensemble.members=2",
            "ensemble.steps=3", "ensemble.batch_size=8", "ensemble.hidden=16", "eval.episodes=1", "checkpoint_every=2",
            "progress=false", "threads=1",
            *([] if any(e.startswith("out_dir=") for e in extra) else [f"out_dir={tmp_path / 'run'}"]), *extra]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else []
    return subprocess.run([sys.executable, *torchrun, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_lawm_dmc_trains_a_policy_per_world_model_and_resumes(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "run"
    assert (folder / "world_models" / "results.json").is_file()  # lawm_walker.py trained them first
    results = json.loads((folder / "results.json").read_text())
    policies = results["policies"]
    assert sorted(policies) == ["idm_labels@0.25", "labelled_only@0.25", "labelled_only@1.0", "latent@0.25", "latent@1.0"]
    # the latent model and the IDM's RSSM filter the 4 training episodes, the labelled-only one its labelled episode
    assert [policies[k]["latents"] for k in ("latent@0.25", "idm_labels@0.25", "labelled_only@0.25")] == [2000, 2000, 500]
    assert all(len(p["returns"]) == 1 and p["returns"][0] > 0 for p in policies.values())
    files = ("reward", "ensemble", "policy")
    assert all((folder / f"{kind}@{name}.pt").is_file() for name in policies for kind in files)
    assert (folder / "policy@latent@0.25.gif").stat().st_size > 0 and not (folder / "policy@labelled_only@0.25.gif").exists()
    table = (folder / "table.md").read_text()
    assert "| 25 % (1) |" in table and "| 100 % (4) |" in table and (folder / "figure.png").stat().st_size > 0
    assert results["expert_return"] > results["data_return"] > 0

    # A run stopped after its first policies: resuming trains only the missing ones and gives the same returns.
    (folder / "results.json").unlink()
    (folder / "policies.json").write_text(json.dumps({k: policies[k] for k in ("latent@0.25", "labelled_only@0.25")}))
    resumed = run(tmp_path, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained = [line.split()[0] for line in resumed.stdout.splitlines() if "@" in line.split(" ")[0]]
    assert trained == ["idm_labels@0.25", "latent@1.0", "labelled_only@1.0"]
    assert json.loads((folder / "results.json").read_text())["policies"] == policies

    # Finished world models of another task are refused (their data's rewards are not this task's).
    other = run(tmp_path, f"world_models={folder / 'world_models'}", "task=stand", f"out_dir={tmp_path / 'other'}")
    assert other.returncode != 0 and "was trained with task=walk; this run has task=stand" in other.stderr


def test_lawm_dmc_runs_under_torchrun(tmp_path):
    """2 gloo ranks: the world models trained first by lawm_walker.py under the same 2 ranks (its own process
    group), then the reward model, ensemble and policy in DDP, the evaluation episodes spread over the ranks
    and rank 0 alone writing."""
    done = run(tmp_path, "fractions=[1.0]", "models=[labelled_only]", "eval.episodes=3", ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "run"
    assert json.loads((folder / "world_models" / "results.json").read_text())["models"].keys() == {"labelled_only@1.0"}
    policy = json.loads((folder / "results.json").read_text())["policies"]["labelled_only@1.0"]
    assert len(policy["returns"]) == 3 and len(set(policy["returns"])) == 3  # 3 seeded episodes, not one rank's twice
    assert done.stdout.count("run folder: ") == 2 and done.stdout.count("(2 ranks)") == 2  # lawm_dmc's, lawm_walker's
    assert all((folder / f"{kind}@labelled_only@1.0.pt").is_file() for kind in ("reward", "ensemble", "policy"))


def test_lawm_dmc_refuses_a_bad_config(tmp_path):
    done = run(tmp_path, f"world_models={tmp_path / 'nothing'}")
    assert done.returncode != 0 and "not a run of examples/lawm_walker.py (no models.json)" in done.stderr
    done = run(tmp_path, "models=[latent,bc]")
    assert done.returncode != 0 and "choose from ['latent', 'labelled_only', 'idm_labels']" in done.stderr
