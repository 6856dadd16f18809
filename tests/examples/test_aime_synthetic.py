# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_synthetic.py through its command line: a device this machine lacks is refused before anything runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "examples" / "aime_synthetic.py"


def test_a_cuda_device_this_machine_lacks_is_refused(tmp_path):
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", f"cuda:{cuda}", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and f"error: --device=cuda:{cuda}: this machine has " in done.stderr, done.stderr[-2000:]
    assert "; pass --device=auto (CUDA when there is one)" in done.stderr and "--device=cpu" in done.stderr
    assert not (tmp_path / "run").exists()


def test_both_phases_run_under_torchrl_s_trainer(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--trainer", "torchrl", "--phase1-steps", "20", "--phase2-steps",
                           "20", "--device", "cpu", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| held-out demo windows: action MSE vs the hidden expert actions |" in done.stdout
