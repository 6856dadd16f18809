# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Checkpoints are atomic: a kill or an error while writing never leaves a corrupt file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from aime_torchrl.trainers import load_checkpoint, load_module, save_checkpoint, save_module

WRITER = """
import sys, torch
from aime_torchrl.trainers import save_checkpoint
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], {"step": step, "weights": torch.full((4_000_000,), float(step))})
    print(step, flush=True)
"""


def test_sigkill_while_writing_leaves_a_valid_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for delay in (0.05, 0.13, 0.21):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()  # one checkpoint written; now kill it at some point of the next writes
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        state = load_checkpoint(path)
        assert (state["weights"] == state["step"]).all()


def test_error_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.pt cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")
    path = save_module(tmp_path / "net.pt", torch.nn.Linear(2, 3), {"hidden": 3})
    with pytest.raises(ValueError, match="different net config: hidden: saved 3, now 4"):
        load_module(path, torch.nn.Linear(2, 4), {"hidden": 4}, what="net")
    net = torch.nn.Linear(2, 3)
    load_module(path, net, {"hidden": 3})
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a net file written by aime_torchrl"):
        load_module(tmp_path / "foreign.pt", net, {"hidden": 3}, what="net")


def test_a_module_saved_before_a_config_key_was_recorded_still_loads(tmp_path):
    from aime_torchrl.trainers import load_module, save_module

    net = torch.nn.Linear(2, 3)
    path = save_module(tmp_path / "old.pt", net, {"world_model": {"belief_dim": 16}, "hidden": 3})  # an older file
    load_module(path, torch.nn.Linear(2, 3), {"world_model": {"belief_dim": 16, "norm": False}, "hidden": 3})
    with pytest.raises(ValueError, match="world_model.belief_dim: saved 16, now 32"):
        load_module(path, torch.nn.Linear(2, 3), {"world_model": {"belief_dim": 32, "norm": False}, "hidden": 3})
