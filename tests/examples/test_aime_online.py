# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_online.py through its command line, at a tiny size: offline phases, a collector,
the online updates, and the score curve against env steps."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[2] / "examples" / "aime_online.py"
TINY = ["offline.phase1_steps=20", "offline.phase2_steps=10", "online.updates_per_batch=2", "device=cpu",
        "progress=false", "threads=1"]


def test_online_aime_runs_and_writes_its_curve(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, "online.env_steps=480", "logger=csv",
                           f"out_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.reader(open(tmp_path / "run" / "curve.csv")))
    assert rows[0] == ["env_steps", "score_percent"] and [r[0] for r in rows[1:]] == ["0", "240", "480"]
    assert all(float(r[1]) == float(r[1]) for r in rows[1:])  # finite scores
    assert json.loads((tmp_path / "run" / "results.json").read_text())["final_score"] == float(rows[-1][1])
    assert (tmp_path / "run" / "curve.png").is_file()
    logged = next((tmp_path / "run" / "logs").rglob("online/score.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in logged] == ["240", "480"]  # through the TorchRL logger
    trainer = subprocess.run([sys.executable, str(SCRIPT), *TINY, "online.env_steps=480", "online.trainer=torchrl",
                              f"out_dir={tmp_path / 'trainer'}"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert trainer.returncode == 0, trainer.stderr[-3000:]
    loop, under_trainer = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=False) for name in ("run", "trainer"))
    assert under_trainer["step"] == loop["step"] == 4 and under_trainer["curve"] == loop["curve"]
    for module, state in loop["modules"].items():  # torchrl.trainers.Trainer: the same updates, the same weights
        for key, value in state.items():
            assert torch.equal(under_trainer["modules"][module][key], value), (module, key)
    workers = subprocess.run([sys.executable, str(SCRIPT), *TINY, "online.env_steps=480", "online.workers=2",
                              "online.envs=2", f"out_dir={tmp_path / 'workers'}"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)  # TorchRL's MultiSyncCollector
    assert workers.returncode == 0, workers.stderr[-3000:]
    rows = list(csv.reader(open(tmp_path / "workers" / "curve.csv")))
    assert [r[0] for r in rows[1:]] == ["0", "240", "480"]
    unsynced = subprocess.run([sys.executable, str(SCRIPT), *TINY, "online.env_steps=480", "online.workers=2",
                               "online.envs=2", "online.sync=false", f"out_dir={tmp_path / 'async'}"],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)  # TorchRL's MultiAsyncCollector
    assert unsynced.returncode == 0, unsynced.stderr[-3000:]
    assert [r[0] for r in list(csv.reader(open(tmp_path / "async" / "curve.csv")))[1:]] == ["0", "240", "480"]
    for name in ("workers", "async"):  # the workers' episodes written whole, one id each: 60 steps per id
        online = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["online"][0]
        assert online["collector", "traj_ids"].bincount().tolist() == [60] * 8, name
    bad = subprocess.run([sys.executable, str(SCRIPT), "online.frames_per_batch=250", f"out_dir={tmp_path / 'bad'}"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert bad.returncode != 0 and "online.frames_per_batch=250: must be a multiple of online.envs=4" in bad.stderr


def test_sigterm_saves_the_online_phase_and_resume_finishes_it(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, str(SCRIPT), *TINY, "online.env_steps=1440", f"out_dir={out}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    while proc.poll() is None and not (out / "checkpoint.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "SIGTERM: finishing the current step" in stdout + stderr, stderr[-2000:]
    assert f"resume=true out_dir={out} continues" in stderr
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 240 <= saved["frames"] < 1440 and saved["online"] is not None
    refused = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert refused.returncode != 0 and "already holds a run: pass resume=true" in refused.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "resume=true", f"out_dir={out}", "online.env_steps=1680"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed after {saved['frames']} env steps" in done.stdout
    rows = list(csv.reader(open(out / "curve.csv")))[1:]
    assert [int(r[0]) for r in rows] == list(range(0, 1681, 240))  # every point once, across the stop, trained on


def test_online_aime_runs_under_torchrun_and_resumes_in_one_process(tmp_path):
    """2 gloo ranks, each collecting half of every batch with its own envs and training in DDP on half of every
    batch: rank 0 alone writes the curve; one process resumes the run with both ranks' online windows."""
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*torchrun, str(SCRIPT), *TINY, "online.env_steps=720", f"out_dir={out}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder: ") == 1 and "(2 ranks)" in done.stdout
    rows = list(csv.reader(open(out / "curve.csv")))
    assert [r[0] for r in rows[1:]] == ["0", "480", "720"]  # 30 steps per env and batch: no episode ends at 240
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert len(saved["online"]) == 2 and all(len(share) == 240 for share in saved["online"])  # 4 envs x 60 steps each
    ids = [share["collector", "traj_ids"] for share in saved["online"]]  # each rank its own episodes
    assert not torch.equal(saved["online"][0]["observation"], saved["online"][1]["observation"])
    assert all(i.unique().tolist() == [0, 1, 2, 3] for i in ids)
    resumed = subprocess.run([sys.executable, str(SCRIPT), "resume=true", f"out_dir={out}", "online.env_steps=960"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    online = torch.load(out / "checkpoint.pt", weights_only=False)["online"]
    assert len(online) == 1 and online[0]["collector", "traj_ids"].unique().tolist() == list(range(12))  # 8 + 4 new
