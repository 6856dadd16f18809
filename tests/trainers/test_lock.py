# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""RunLock: a run folder held by one process at a time, given back however the process ends."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from aime_torchrl.trainers import RunLock, RunLockedError


def test_a_held_folder_is_refused_naming_the_holder_until_it_is_released(tmp_path):
    folder = tmp_path / "new" / "run"
    with RunLock(folder) as lock:  # the folder is made
        assert lock.held and (folder / ".lock").read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
        message = (f"{folder} is in use by another run (pid {os.getpid()} on {socket.gethostname()} holds its .lock): "
                   "wait for that run to end, or pass another buffer_dir.")
        with pytest.raises(RunLockedError, match=message.replace("(", r"\(").replace(")", r"\)")):
            RunLock(folder, key="buffer_dir").acquire()  # another open file: refused in the same process too
        assert lock.acquire() is lock  # taking it again is nothing
    assert not lock.held
    again = RunLock(folder).acquire()
    assert again.held
    again.release()
    again.release()


def test_the_lock_is_given_back_when_its_process_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aime_torchrl.trainers.lock import RunLock; "
                               f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no exit handler runs
        holder.wait(timeout=60)
    assert RunLock(tmp_path).acquire().held


def test_ranks_other_than_0_leave_the_folder_to_rank_0(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it
    with RunLock(tmp_path / "run") as lock:
        assert not lock.held and not (tmp_path / "run").exists()
        with RunLock(tmp_path / "run", enabled=True):  # the flag decides when given
            assert (tmp_path / "run" / ".lock").is_file()
    monkeypatch.setenv("RANK", "0")
    assert RunLock(tmp_path / "run").enabled
