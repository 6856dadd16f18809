# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/train_expert.py with tiny settings: outputs, the buffer dataset, and resuming."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aime_torchrl.data import AIMEDataset

SCRIPT = Path(__file__).parents[2] / "examples" / "train_expert.py"


def run(out: Path, frames: int) -> str:
    args = [
        f"total_frames={frames}", "init_random_frames=1000", "eval_every=1000", "checkpoint_every=500",
        "eval_episodes=1", "batch_size=32", "hidden=32", f"out_dir={out}", f"buffer_dir={out}/buffer",
    ]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_train_expert_saves_buffer_and_resumes(tmp_path):
    out = tmp_path / "walker-stand"
    run(out, 1500)
    buffer = out / "buffer"
    assert sorted(p.name for p in buffer.glob("*.npz")) == ["0.npz", "1.npz", "2.npz"]
    assert (out / "actor.pt").exists() and (out / "checkpoint.pt").exists()
    assert json.loads((out / "run.json").read_text())["frames"] == 1500

    log = run(out, 2000)  # continue the same run for one more episode
    assert "resumed from" in log and "at 1500 frames" in log
    assert len(list(buffer.glob("*.npz"))) == 4
    data = AIMEDataset(buffer, horizon=50, batch_size=4, root=tmp_path / "cache", progress=False)
    assert data.num_episodes == 4 and len(data) == 2000
    curve = (out / "eval.csv").read_text().splitlines()
    assert curve[0] == "frames,mean_return,std_return" and curve[-1].startswith("2000,")
    assert (out / "logs" / "sac" / "scalars" / "eval_return.csv").exists()
