# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/train_expert.py with tiny settings: outputs, the buffer dataset, resuming, and what it refuses."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from aime_torchrl.data import AIMEDataset
from aime_torchrl.trainers import RunLock

SCRIPT = Path(__file__).parents[2] / "examples" / "train_expert.py"


def args(out: Path, frames: int) -> list[str]:
    return [
        sys.executable, str(SCRIPT), f"total_frames={frames}", "init_random_frames=1000", "eval_every=1000",
        "checkpoint_every=500", "eval_episodes=1", "batch_size=32", "hidden=32", f"out_dir={out}", f"buffer_dir={out}/buffer",
    ]


def test_train_expert_saves_buffer_stops_on_sigterm_and_resumes(tmp_path):
    out = tmp_path / "walker-stand"
    buffer = out / "buffer"
    proc = subprocess.Popen(args(out, 2500), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not (buffer / "1.npz").exists():  # SIGTERM during the second episode or later
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "resume=true continues from" in err, err[-3000:]
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    stopped = saved["frames"]
    assert 1000 <= stopped < 2500 and stopped == 500 * saved["episodes"] == 500 * len(list(buffer.glob("*.npz")))
    assert (out / "actor.pt").exists()

    done = subprocess.run(args(out, 2500), capture_output=True, text=True, timeout=600)  # resume=true is the default
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out / 'checkpoint.pt'} at {stopped} frames" in done.stdout
    assert json.loads((out / "run.json").read_text())["frames"] == 2500
    assert sorted(p.name for p in buffer.glob("*.npz")) == [f"{k}.npz" for k in range(5)]
    data = AIMEDataset(buffer, horizon=50, batch_size=4, root=tmp_path / "cache", progress=False)
    assert data.num_episodes == 5 and len(data) == 2500
    curve = (out / "eval.csv").read_text().splitlines()
    assert curve[0] == "frames,mean_return,std_return" and curve[-1].startswith("2500,")
    assert (out / "logs" / "sac" / "scalars" / "eval_return.csv").exists()


def test_train_expert_refuses_nothing_to_do_and_folders_in_use(tmp_path):
    with RunLock(tmp_path / "held"), RunLock(tmp_path / "buffer"):  # as a run in progress holds them
        runs = {"nothing": args(tmp_path / "nothing", 0), "held": args(tmp_path / "held", 2500),
                "buffer": [*args(tmp_path / "other", 2500)[:-1], f"buffer_dir={tmp_path / 'buffer'}"]}
        procs = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, command in runs.items()}  # at once: each mostly imports
        errors = {name: proc.communicate(timeout=600)[1] for name, proc in procs.items()}
    assert all(proc.returncode != 0 for proc in procs.values())
    assert "total_frames=0: must be a number > 0." in errors["nothing"]
    assert not (tmp_path / "nothing" / "buffer").exists()  # refused before anything is written
    holder = f"(pid {os.getpid()} on {socket.gethostname()} holds its .lock): wait for that run to end, or pass another"
    assert f"{tmp_path / 'held'} is in use by another run {holder} out_dir." in errors["held"]
    assert f"{tmp_path / 'buffer'} is in use by another run {holder} buffer_dir." in errors["buffer"]
    assert not (tmp_path / "other" / "checkpoint.pt").exists()
