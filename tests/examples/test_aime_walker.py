# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_walker.py run as a user runs it (its command line, never imported), tiny settings:
the run folder, SIGTERM and resuming, one run per folder, errors before training, wandb offline."""
from __future__ import annotations

import json
import math
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from aime_torchrl.data import build_dataset, load_episode, save_episode
from aime_torchrl.trainers import RunLock

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "examples" / "aime_walker.py"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    for name in ("walker-random", "walker-stand-expert"):
        build_dataset(name, num_episodes=2, root=root, workers=1, progress=False)
    return root


def tiny(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "data.embodiment=walker-random", "data.embodiment_episodes=2", "data.demos=walker-stand-expert",
        "data.num_demos=2", "data.workers=1", f"data.root={data_root}",
        "world_model.belief_dim=16", "world_model.state_dim=4", "world_model.hidden=16",
        "phase1.steps=6", "phase1.batch_size=4", "phase1.horizon=8",
        "phase2.steps=6", "phase2.batch_size=4", "phase2.horizon=8", "phase2.policy_hidden=16",
        "eval.episodes=1", "eval.workers=0", "eval.video=false", "checkpoint_every=2", "log_every=2", "progress=false",
        "diagnostics.batches=1", "threads=1",
        f"out_dir={out}", *extra,
    ]


def start(args: list[str], cwd: Path, output=subprocess.PIPE, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=output, stderr=output, text=True, cwd=cwd,
                            env={**os.environ, **env})


def cli(*runs: list[str], cwd: Path, **env: str) -> list[subprocess.CompletedProcess]:
    """Runs the example's command line once per argument list, 3 at a time (each mostly imports)."""
    done = []
    for i in range(0, len(runs), 3):
        procs = [start(args, cwd, **env) for args in runs[i:i + 3]]
        for args, proc in zip(runs[i:i + 3], procs):
            out, err = proc.communicate(timeout=600)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_pipeline_through_hydra_cli(data_root, tmp_path):
    out = tmp_path / "run"
    args = tiny(data_root, out, "eval.video=true", "eval.workers=1")  # the evaluation env is sent to a worker process
    done = ok(cli(args, cwd=tmp_path)[0])
    assert "| AIME | 1 |" in done.stdout and "| random policy | 1 |" in done.stdout
    for name in ("config.yaml", "checkpoint.pt", "world_model.pt", "policy.pt", "results.json", "results.md",
                 "scores.png", "videos/aime_vs_demonstration.gif"):
        assert (out / name).is_file(), name
    logged = list((out / "logs").rglob("*aime_vs_demonstration*"))  # the video through the TorchRL logger too
    assert logged and all(p.stat().st_size > 0 for p in logged), list((out / "logs").rglob("*"))
    results = json.loads((out / "results.json").read_text())
    assert len(results["AIME"]["returns"]) == 1 and len(results["demonstrations"]["returns"]) == 2
    assert results["demonstrations"]["score_mean"] == pytest.approx(100.0)
    diagnostics = results["diagnostics"]  # the world model on the demonstrations, the inferred actions' error
    assert {"demos_elbo", "embodiment_elbo", "demos_open_loop_mse", "demos_action_mse"} <= set(diagnostics)
    assert all(math.isfinite(v) for v in diagnostics.values()) and diagnostics["demos_action_mse"] > 0
    action_mse = next((out / "logs").rglob("diagnostics/demos_action_mse.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in action_mse] == ["8", "10", "12"]  # every log_every phase-2 steps
    elbo = next((out / "logs").rglob("phase1/elbo.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in elbo] == ["2", "4", "6"]
    assert next((out / "logs").rglob("phase2/elbo.csv")).read_text().splitlines()[-1].startswith("12,")
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["stage"] == "phase2" and saved["step"] == 6


def saved_at(checkpoint: Path) -> tuple[str | None, int]:
    try:
        saved = torch.load(checkpoint, weights_only=False)
        return saved["stage"], saved["step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None, 0


def terminate_in(stage: str, args: list[str], cwd: Path, out: Path, before: int) -> subprocess.CompletedProcess:
    """Starts a run and sends it SIGTERM (what `kill`, `timeout` and schedulers send) once it has
    checkpointed in ``stage`` at a step below ``before``, i.e. while it still trains that stage."""
    proc = start(args, cwd)
    while proc.poll() is None and saved_at(out / "checkpoint.pt")[0] != stage:
        time.sleep(0.01)
    assert saved_at(out / "checkpoint.pt")[1] < before, "the run got too far before the test saw its checkpoint"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def test_sigterm_in_both_phases_then_a_moved_run_resumes_to_the_uninterrupted_weights(data_root, tmp_path):
    steps = ["phase1.steps=400", "phase2.steps=400", "checkpoint_every=50", "log_every=50"]
    full, out = tmp_path / "full", tmp_path / "interrupted"
    log = open(tmp_path / "full.log", "w")
    first = start(tiny(data_root, full, *steps), tmp_path, output=log)  # the same run, uninterrupted, alongside

    done = terminate_in("phase1", tiny(data_root, out, *steps), tmp_path, out, before=300)
    assert done.returncode != 0 and "SIGTERM: finishing the current step" in done.stderr + done.stdout
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["stage"] == "phase1" and 50 <= saved["step"] < 400, (saved["stage"], saved["step"])
    refused = cli(tiny(data_root, out, *steps), cwd=tmp_path)[0]
    assert refused.returncode != 0 and "already holds a run: pass resume=true" in refused.stderr

    # resume=true and out_dir are enough (the run's own overrides are its config); SIGTERM again in phase 2
    done = terminate_in("phase2", ["resume=true", f"out_dir={out}"], tmp_path, out, before=300)
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert done.returncode != 0 and saved["stage"] == "phase2" and 50 <= saved["step"] < 400, done.stderr[-2000:]

    moved = tmp_path / "moved"  # the run folder moves: it resumes there and logs there
    shutil.move(out, moved)
    resumed = ok(cli(["resume=true", f"out_dir={moved}"], cwd=tmp_path)[0])
    assert not out.exists() and "| AIME | 1 |" in resumed.stdout
    assert first.wait(timeout=600) == 0, (tmp_path / "full.log").read_text()[-3000:]
    log.close()
    for name in ("world_model.pt", "policy.pt"):
        a, b = (torch.load(folder / name)["state_dict"] for folder in (full, moved))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
    results = json.loads((moved / "results.json").read_text())
    assert results["AIME"]["returns"] == json.loads((full / "results.json").read_text())["AIME"]["returns"]
    elbo = next(moved.rglob("phase2/elbo.csv")).read_text().splitlines()
    assert [int(line.split(",")[0]) for line in elbo] == list(range(450, 801, 50))  # in the new place, once each

    again, changed = cli(["resume=true", f"out_dir={moved}"], ["resume=true", f"out_dir={moved}", "phase2.lr=0.1"],
                         cwd=tmp_path)
    assert "is finished (results.json): nothing to resume" in ok(again).stdout
    assert next(moved.rglob("phase2/elbo.csv")).read_text().splitlines() == elbo  # nothing run or logged again
    assert changed.returncode != 0 and "changes phase2.lr=0.1 (the run has 0.001)" in changed.stderr


def test_a_run_folder_is_held_by_one_run_at_a_time(data_root, tmp_path):
    out = tmp_path / "run"
    first = start(tiny(data_root, out), tmp_path)
    while first.poll() is None and saved_at(out / "checkpoint.pt")[0] is None:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # paused in phase 1, so that it surely holds the folder meanwhile
    try:  # a second run in the same out_dir (another seed), and resume=true of the run: both refused at once
        second, resumed = cli(tiny(data_root, out, "seed=1"), ["resume=true", f"out_dir={out}"], cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGCONT)
    held = (f"{out} is in use by another run (pid {first.pid} on {socket.gethostname()} holds its .lock): wait for that "
            "run to end, or pass another out_dir.")
    for done in (second, resumed):
        assert done.returncode != 0 and held in done.stderr, done.stderr[-2000:]
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]  # the first run finishes, its folder as if it had been alone
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 0 and len(results["AIME"]["returns"]) == 1
    assert OmegaConf.load(out / "config.yaml").seed == 0 and saved_at(out / "checkpoint.pt") == ("phase2", 6)
    elbo = next((out / "logs").rglob("phase1/elbo.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in elbo] == ["2", "4", "6"]
    with RunLock(out) as lock:  # its process gone, the folder is free again
        assert lock.held


def damaged_copy(source: Path, folder: Path, change, every: bool = False) -> Path:
    """A copy of a dataset with episode 1 (or every episode) changed."""
    folder.mkdir()
    for f in sorted(source.glob("*.npz")):
        episode = load_episode(f)
        if every or f.stem == "1":
            change(episode)
        save_episode(folder / f.name, episode)
    return folder


def test_errors_name_the_key_or_file_and_come_before_training(data_root, tmp_path):
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cheetah = build_dataset("cheetah-random", num_episodes=2, root=data_root, workers=1, progress=False)
    random = data_root / "walker-random-n2-seed0"
    narrow = damaged_copy(random, tmp_path / "narrow", lambda e: e.update(velocity=e["velocity"][:, :8]), every=True)
    huge = damaged_copy(random, tmp_path / "huge", lambda e: e.update(velocity=e["velocity"].astype(np.float64) * 1e300))
    small = damaged_copy(random, tmp_path / "small", lambda e: e.update(image=np.zeros((501, 32, 32, 3), np.uint8)),
                         every=True)
    cases = [
        (["data.embodiment=walker-nonsense"], "Unknown dataset 'walker-nonsense'"),
        ([f"data.embodiment={tmp_path}/missing"], "missing does not exist"),
        ([f"data.demos={cheetah}"], "holds cheetah episodes"),
        (["setup=visual", f"data.embodiment={random}"], "lacks the sensors ['pixels']"),
        ([f"data.embodiment={narrow}"], "the sensor 'velocity' has shape (8,) per frame, but the world model of the mdp "
                                        "setup reads (9,)"),
        ([f"data.embodiment={huge}"], "huge/1.npz: velocity has values beyond float32's range"),
        (["setup=visual", f"data.embodiment={small}"],
         "the sensor 'pixels' has shape (3, 32, 32) per frame, but the world model of the visual setup reads (3, 64, 64)"),
        (["setup=foo"], "setup='foo' is not one of 'mdp', 'lpomdp', 'visual'"),
        (["embodiment=foo"], "embodiment='foo' is not one of 'walker', 'cheetah'"),
        (["task=jump"], "task='jump' is not one of 'stand', 'walk', 'run'"),
        (["checkpoint_every=0"], "checkpoint_every=0: must be a number > 0"),
        (["log_every=0"], "log_every=0: must be a number > 0"),
        (["phase1.steps=-5"], "phase1.steps=-5: must be a number >= 0 (e.g. phase1.steps=0 skips it)"),
        (["phase2.lr=-1"], "phase2.lr=-1: must be a number > 0"),
        (["data.demos=[]"], "data.demos=[]: must list at least one value."),
        ([f"device=cuda:{cuda}"], f"device=cuda:{cuda}: this machine has "),  # one past the last CUDA device
        (["resume=true"], "resume=true: {run} holds no run to continue (no checkpoint.pt): pass the out_dir of a run, or "
                          "drop resume=true to start a new one."),  # the folder does not exist
    ]
    if not cuda:
        why = "is built without CUDA" if torch.version.cuda is None else "finds no CUDA device"
        cases.append((["device=cuda"], f"device=cuda: this machine has no CUDA device (torch {torch.__version__} {why}); "
                                       "pass device=auto (CUDA when there is one) or device=cpu."))
    runs = [tiny(data_root, tmp_path / f"run{i}", *extra) for i, (extra, _) in enumerate(cases)]
    for i, ((extra, message), done) in enumerate(zip(cases, cli(*runs, cwd=tmp_path))):
        message = message.format(run=tmp_path / f"run{i}")
        assert done.returncode != 0 and message in done.stderr, (extra, done.stderr[-2000:])
        assert not (tmp_path / f"run{i}" / "checkpoint.pt").exists(), extra  # refused before any training
        if any(s in message for s in ("is not one of", "must be a number", "must list", "device", "holds no run")):
            assert not (tmp_path / f"run{i}").exists(), extra  # and before anything is written: Hydra's files removed


def test_a_diverging_run_keeps_its_last_finite_checkpoint(data_root, tmp_path):
    out = tmp_path / "run"
    done = cli(tiny(data_root, out, "phase1.lr=1e4", "phase1.steps=200", "phase1.grad_clip=null", "log_every=20",
                    "checkpoint_every=1"), cwd=tmp_path)[0]  # a checkpoint after every step, also after the diverging one
    assert done.returncode != 0 and "phase 1: world model: non-finite loss or gradient at step" in done.stderr
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (saved["stage"], saved["step"]) == ("phase1", 19)  # the first read of the loss (step 20) stopped it
    for state in (saved["modules"]["world_model"], *saved["optimizers"]["optimizer"]["state"].values()):
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_wandb_offline_idm_ablations_dreamerv3_and_presets(data_root, tmp_path):
    pytest.importorskip("wandb")
    short = ["phase1.steps=2", "phase2.steps=2"]
    presets = [
        (["profile=paper", "world_model=rssmo"], dict(variant="rssmo", belief_dim=512, state_dim=30, hidden=512)),
        (["profile=paper"], dict(variant="rssm", belief_dim=512, state_dim=128, hidden=128)),
        (["world_model=rssmo"], dict(variant="rssmo", belief_dim=128, state_dim=32, hidden=128)),  # the quick sizes
    ]
    runs = {
        "wandb": tiny(data_root, tmp_path / "wandb", "logger=wandb", *short),
        "tensorboard": tiny(data_root, tmp_path / "tensorboard", "logger=tensorboard", "eval.video=true", *short),
        "idm": tiny(data_root, tmp_path / "idm", "phase1.idm=true", "phase2.use_idm=true", *short),
        "dreamerv3": tiny(data_root, tmp_path / "dreamerv3", "world_model=dreamerv3", "world_model.state_dim=null",
                          "world_model.categoricals=2", "world_model.classes=4", "world_model.blocks=2", *short),
        **{name: tiny(data_root, tmp_path / name, extra, *short) for name, extra in
           (("kl_only", "phase2.kl_only=true"), ("recon_only", "loss.kl_scale=0"), ("bf16", "bf16=true"))},
        **{f"preset{i}": [*overrides, "data.embodiment=walker-random", "data.embodiment_episodes=2",
                          "data.demos=walker-stand-expert", "data.num_demos=2", "data.workers=1", f"data.root={data_root}",
                          "phase1.steps=0", "phase2.steps=0", "eval.episodes=0", "diagnostics.batches=0",
                          "progress=false", f"out_dir={tmp_path / f'preset{i}'}"] for i, (overrides, _) in enumerate(presets)},
    }
    for name, done in zip(runs, cli(*runs.values(), cwd=tmp_path, WANDB_MODE="offline", WANDB_SILENT="true")):
        ok(done)
    wandb_runs = list((tmp_path / "wandb" / "logs").rglob("offline-run-*"))
    assert wandb_runs and list(wandb_runs[0].glob("run-*.wandb"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = [tag for events in (tmp_path / "tensorboard" / "logs").rglob("events.out.tfevents.*")
              for tag in EventAccumulator(str(events)).Reload().Tags()["images"]]
    assert "videos/aime_vs_demonstration" in images, images  # the video, through the logger
    log = next((tmp_path / "idm" / "logs").rglob("phase2/action_kl.csv")).read_text()
    assert log.splitlines()[-1].startswith("4,")
    for name in ("kl_only", "recon_only", "bf16", "dreamerv3"):
        assert (tmp_path / name / "results.json").is_file()
    saved = torch.load(tmp_path / "dreamerv3" / "world_model.pt", weights_only=False)["config"]
    assert (saved["variant"], saved["categoricals"], saved["classes"]) == ("dreamerv3", 2, 4)
    for i, (_, sizes) in enumerate(presets):  # WORLD_MODEL_PRESETS is the one source of sizes
        saved = torch.load(tmp_path / f"preset{i}" / "world_model.pt", weights_only=False)
        assert {k: saved["config"][k] for k in sizes} == sizes
        gru = saved["state_dict"]["rollout.transition.module.gru.weight_hh"]
        assert gru.shape == (3 * sizes["belief_dim"], sizes["belief_dim"])
    wm = tmp_path / "preset2" / "world_model.pt"
    done = cli(tiny(data_root, tmp_path / "other", f"phase1.world_model={wm}", "world_model.belief_dim=32"), cwd=tmp_path)[0]
    assert done.returncode != 0 and "different world model config: belief_dim: saved 128, now 32" in done.stderr


def test_visual_setup_builds_image_datasets_and_predicts_open_loop(data_root, tmp_path):
    out = tmp_path / "visual"
    ok(cli(tiny(data_root, out, "setup=visual", "eval.video=true", "phase1.steps=2", "phase2.steps=2"), cwd=tmp_path)[0])
    assert (data_root / "walker-random-images-n2-seed0").is_dir()
    from PIL import Image

    with Image.open(out / "videos" / "open_loop_prediction.gif") as gif:
        assert gif.n_frames == 9 and gif.size == (2 * (2 * 64 + 2), 4 * 2 * 64)  # 4 windows of 9 frames, 2x upscaled
    assert (out / "videos" / "aime_vs_demonstration.gif").is_file()


def test_torchrun_two_ranks_a_sigterm_to_one_stops_both_then_one_process_resumes(data_root, tmp_path):
    """Data parallel on CPU: 2 ranks train with half the batch each, rank 0 alone writes; SIGTERM to
    one rank stops both ranks after the same step with rank 0's checkpoint; one process resumes it."""
    out = tmp_path / "run"
    args = tiny(data_root, out, "phase1.steps=400", "phase2.steps=4", "checkpoint_every=50", "log_every=50")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen([*torchrun, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    while proc.poll() is None and saved_at(out / "checkpoint.pt")[0] != "phase1":
        time.sleep(0.01)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()  # torchrun's ranks
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGTERM)  # one of the two ranks
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "SIGTERM: finishing the current step" in stdout + stderr
    assert "run folder: " in stdout and "(2 ranks)" in stdout and stdout.count("run folder: ") == 1  # rank 0 only
    stage, step = saved_at(out / "checkpoint.pt")
    assert stage == "phase1" and 50 <= step < 400
    stops = re.findall(r"phase 1: world model interrupted after step (\d+)", stderr)
    assert stops == [str(step)] * 2, stops  # both ranks, after the step rank 0 saved
    resumed = ok(cli(["resume=true", f"out_dir={out}"], cwd=tmp_path)[0])  # one process
    assert "| AIME | 1 |" in resumed.stdout
    assert json.loads((out / "results.json").read_text())["AIME"]["returns"]


def test_online_phase_continues_a_walker_run(data_root, tmp_path):
    """examples/aime_online.py from_run=<run>: the run's world model, policy and data, a collector over 2
    walker envs, windows of whole episodes, and the score curve against env steps."""
    out = tmp_path / "run"
    ok(cli(tiny(data_root, out, "phase1.steps=2", "phase2.steps=2"), cwd=tmp_path)[0])
    online = tmp_path / "online"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "aime_online.py"), f"from_run={out}", "horizon=8",
                           "batch_size=4", "online.envs=2", "online.frames_per_batch=1000", "online.env_steps=2000",
                           "online.updates_per_batch=1", "eval.episodes=1", "threads=1", "device=cpu", "progress=false",
                           f"out_dir={online}"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    ok(done)
    rows = (online / "curve.csv").read_text().splitlines()
    assert rows[0] == "env_steps,score_percent" and [r.split(",")[0] for r in rows[1:]] == ["0", "1000", "2000"]
    assert (online / "videos" / "aime_vs_demonstration.gif").is_file()


def test_torchrun_ranks_share_the_evaluation_episodes(data_root, tmp_path):
    """Under torchrun each rank runs its share of the evaluation episodes; rank 0 gets every return, in order:
    the same returns as one process evaluating the saved policy."""
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = tiny(data_root, out, "phase1.steps=2", "phase2.steps=2", "eval.episodes=3")
    done = subprocess.run([*torchrun, str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    ok(done)
    spread = json.loads((out / "results.json").read_text())
    alone = tmp_path / "alone"
    ok(cli(tiny(data_root, alone, "eval.episodes=3", f"phase1.world_model={out / 'world_model.pt'}",
                f"phase2.policy={out / 'policy.pt'}"), cwd=tmp_path)[0])
    one = json.loads((alone / "results.json").read_text())
    assert len(spread["AIME"]["returns"]) == 3
    assert spread["AIME"]["returns"] == one["AIME"]["returns"]
    assert spread["random policy"]["returns"] == one["random policy"]["returns"]
