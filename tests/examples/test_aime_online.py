# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_online.py through its command line, at a tiny size: offline phases, a collector,
the online updates, and the score curve against env steps."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "examples" / "aime_online.py"


def test_online_aime_runs_and_writes_its_curve(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--phase1-steps", "20", "--phase2-steps", "10",
                           "--env-steps", "480", "--updates-per-batch", "2", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.reader(open(tmp_path / "curve.csv")))
    assert rows[0] == ["env_steps", "score_percent"] and [r[0] for r in rows[1:]] == ["0", "240", "480"]
    assert all(float(r[1]) == float(r[1]) for r in rows[1:])  # finite scores
