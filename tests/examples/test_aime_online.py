# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_online.py through its command line, at a tiny size: offline phases, a collector,
the online updates, and the score curve against env steps."""
from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "examples" / "aime_online.py"


def test_online_aime_runs_and_writes_its_curve(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--phase1-steps", "20", "--phase2-steps", "10",
                           "--env-steps", "480", "--updates-per-batch", "2", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.reader(open(tmp_path / "curve.csv")))
    assert rows[0] == ["env_steps", "score_percent"] and [r[0] for r in rows[1:]] == ["0", "240", "480"]
    assert all(float(r[1]) == float(r[1]) for r in rows[1:])  # finite scores


def test_sigterm_saves_the_online_phase_and_resume_finishes_it(tmp_path):
    args = [sys.executable, str(SCRIPT), "--phase1-steps", "20", "--phase2-steps", "10", "--env-steps", "1440",
            "--updates-per-batch", "2", "--device", "cpu", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not (tmp_path / "checkpoint.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "SIGTERM: finishing the current step" in stdout + stderr, stderr[-2000:]
    assert "(--resume continues)" in stderr
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert 240 <= saved["frames"] < 1440 and saved["online"] is not None
    refused = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "already holds a run: pass --resume" in refused.stderr
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed after {saved['frames']} env steps" in done.stdout
    rows = list(csv.reader(open(tmp_path / "curve.csv")))[1:]
    assert [int(r[0]) for r in rows] == list(range(0, 1441, 240))  # every point once, across the stop
