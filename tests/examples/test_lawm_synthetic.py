# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/lawm_synthetic.py with tiny settings, through its command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_lawm_synthetic_compares_the_four_models(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples" / "lawm_synthetic.py"), "--steps", "5", "--episodes", "10",
                    "--length", "20", "--labelled", "0.2", "--seeds", "0", "1", "--out", str(tmp_path)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=600)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["labelled_episodes"] == 2 for r in runs)
    for run in runs:
        assert set(run["latent"]) >= {"open_loop_mse", "inferred_action_r2", "wall_s"}
        assert all(run[m]["open_loop_mse"] > 0 for m in ("latent", "all_labels", "labelled_only", "idm_labels"))
    table = (tmp_path / "table.md").read_text()
    assert "| idm_labels |" in table and "R^2" in table


def test_lawm_synthetic_runs_under_torchrun(tmp_path):
    """2 gloo ranks with half of every batch each: every model trains in DDP, rank 0 alone writes."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*torchrun, str(ROOT / "examples" / "lawm_synthetic.py"), "--steps", "3", "--episodes", "10",
                           "--length", "20", "--labelled", "0.2", "--batch-size", "8", "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert len(runs) == 1 and all(runs[0][m]["open_loop_mse"] > 0 for m in ("latent", "all_labels", "idm_labels"))
    assert done.stdout.count('"seed": 0') == 1  # printed by rank 0 alone
    odd = subprocess.run([*torchrun, str(ROOT / "examples" / "lawm_synthetic.py"), "--batch-size", "7",
                          "--out", str(tmp_path / "odd")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert odd.returncode != 0 and "--batch-size=7 is the global batch, split across 2 ranks" in odd.stderr
