# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""examples/aime_walker.py with tiny settings: the run folder, resuming, errors, wandb offline."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from aime_torchrl.data import AIMEDataset, build_dataset

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
        "diagnostics.batches=1",
        f"out_dir={out}", *extra,
    ]


def load_example():
    spec = importlib.util.spec_from_file_location("aime_walker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(overrides: list[str]) -> dict:
    """Runs the example's main with a config composed by Hydra from ``overrides``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("aime_walker", overrides=overrides)
        return load_example().main(cfg)


def test_pipeline_through_hydra_cli(data_root, tmp_path):
    out = tmp_path / "run"
    args = tiny(data_root, out, "eval.video=true", "eval.workers=1")  # the evaluation env is sent to a worker process
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| AIME | 1 |" in done.stdout and "| random policy | 1 |" in done.stdout
    for name in ("config.yaml", "checkpoint.pt", "world_model.pt", "policy.pt", "results.json", "results.md",
                 "scores.png", "videos/aime_vs_demonstration.gif"):
        assert (out / name).is_file(), name
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


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    return out, run_in_process(tiny(data_root, out))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_moved_run_resumes_to_the_uninterrupted_weights(signum, uninterrupted, data_root, tmp_path, monkeypatch):
    full, full_results = uninterrupted
    calls = {"n": 0, "at": 0}
    original = AIMEDataset.sample

    def sample(self, *args, **kwargs):  # Ctrl-C (SIGINT) or `kill` (SIGTERM) while batch number `at` is sampled
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            signal.raise_signal(signum)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AIMEDataset, "sample", sample)
    out = tmp_path / "interrupted"
    calls["at"] = 3  # phase 1, step 3
    with pytest.raises(KeyboardInterrupt):
        run_in_process(tiny(data_root, out))
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (saved["stage"], saved["step"]) == ("phase1", 3)
    with pytest.raises(FileExistsError, match="resume=true"):
        run_in_process(tiny(data_root, out))
    calls["n"], calls["at"] = 0, 3 + 2 + 4  # phase 1 steps 4-6, the diagnostics' 2 windows, then phase 2, step 4
    with pytest.raises(KeyboardInterrupt):
        run_in_process(tiny(data_root, out, "resume=true"))
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (saved["stage"], saved["step"]) == ("phase2", 4)

    moved = tmp_path / "moved"  # the run folder moves; resume=true and out_dir are enough to continue it
    shutil.move(out, moved)
    resumed = run_in_process(["resume=true", f"out_dir={moved}"])
    assert not out.exists()
    for name in ("world_model.pt", "policy.pt"):
        a = torch.load(full / name)["state_dict"]
        b = torch.load(moved / name)["state_dict"]
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
    assert resumed["AIME"]["returns"] == full_results["AIME"]["returns"]
    elbo = next(moved.rglob("phase2/elbo.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in elbo] == ["8", "10", "12"]  # logged in the new place, once each

    assert run_in_process(["resume=true", f"out_dir={moved}"]) == resumed  # finished: nothing is run or logged again
    assert next(moved.rglob("phase2/elbo.csv")).read_text().splitlines() == elbo
    with pytest.raises(ValueError, match="changes phase2.lr=0.1 .the run has 0.001"):
        run_in_process(["resume=true", f"out_dir={moved}", "phase2.lr=0.1"])


def test_clear_errors(data_root, tmp_path):
    cheetah = build_dataset("cheetah-random", num_episodes=2, root=data_root, workers=1, progress=False)
    cases = [
        (["data.embodiment=walker-nonsense"], ValueError, "Unknown dataset 'walker-nonsense'"),
        ([f"data.embodiment={tmp_path}/missing"], FileNotFoundError, "missing does not exist"),
        ([f"data.demos={cheetah}"], ValueError, "holds cheetah episodes"),
        (["setup=visual", f"data.embodiment={data_root}/walker-random-n2-seed0"], KeyError,
         "lacks the sensors \\['pixels'\\]"),
        (["setup=foo"], ValueError, "setup='foo' is not one of 'mdp', 'lpomdp', 'visual'"),
        (["embodiment=foo"], ValueError, "embodiment='foo' is not one of 'walker', 'cheetah'"),
        (["task=jump"], ValueError, "task='jump' is not one of 'stand', 'walk', 'run'"),
        (["checkpoint_every=0"], ValueError, "checkpoint_every=0: must be a number > 0"),
        (["log_every=0"], ValueError, "log_every=0: must be a number > 0"),
        (["phase1.steps=-5"], ValueError, "phase1.steps=-5: must be a number >= 0"),
    ]
    for i, (extra, error, message) in enumerate(cases):
        with pytest.raises(error, match=message):
            run_in_process(tiny(data_root, tmp_path / f"run{i}", *extra))
        if "is not one of" in message or "must be a number" in message:  # refused before anything is written
            assert not (tmp_path / f"run{i}").exists()
    run_in_process(tiny(data_root, tmp_path / "ok", "phase2.steps=0", "eval.episodes=1"))
    wm = tmp_path / "ok" / "world_model.pt"
    with pytest.raises(ValueError, match="different world model config: belief_dim: saved 16, now 32"):
        run_in_process(tiny(data_root, tmp_path / "other", f"phase1.world_model={wm}", "world_model.belief_dim=32"))


def test_wandb_offline(data_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    run_in_process(tiny(data_root, out, "logger=wandb", "phase1.steps=2", "phase2.steps=2"))
    import wandb

    wandb.finish()
    runs = list((out / "logs").rglob("offline-run-*"))
    assert runs and list(runs[0].glob("run-*.wandb")), sorted(p.name for p in (out / "logs").rglob("*"))


def test_aime_with_idm_and_ablations_run(data_root, tmp_path):
    base = tiny(data_root, tmp_path / "idm", "phase1.idm=true", "phase2.use_idm=true", "phase1.steps=2", "phase2.steps=2")
    results = run_in_process(base)
    assert len(results["AIME"]["returns"]) == 1
    log = next((tmp_path / "idm" / "logs").rglob("phase2/action_kl.csv")).read_text()
    assert log.splitlines()[-1].startswith("4,")
    for name, extra in (("kl_only", "phase2.kl_only=true"), ("recon_only", "loss.kl_scale=0"), ("bf16", "bf16=true")):
        run_in_process(tiny(data_root, tmp_path / name, extra, "phase1.steps=2", "phase2.steps=2"))
        assert (tmp_path / name / "results.json").is_file()


def test_visual_setup_builds_image_datasets_and_predicts_open_loop(data_root, tmp_path):
    out = tmp_path / "visual"
    run_in_process(tiny(data_root, out, "setup=visual", "eval.video=true", "phase1.steps=2", "phase2.steps=2"))
    assert (data_root / "walker-random-images-n2-seed0").is_dir()
    from PIL import Image

    with Image.open(out / "videos" / "open_loop_prediction.gif") as gif:
        assert gif.n_frames == 9 and gif.size == (2 * (2 * 64 + 2), 4 * 2 * 64)  # 4 windows of 9 frames, 2x upscaled
    assert (out / "videos" / "aime_vs_demonstration.gif").is_file()


@pytest.mark.parametrize("overrides,sizes", [
    (["profile=paper", "world_model=rssmo"], dict(variant="rssmo", belief_dim=512, state_dim=30, hidden=512)),
    (["profile=paper"], dict(variant="rssm", belief_dim=512, state_dim=128, hidden=128)),
    (["world_model=rssmo"], dict(variant="rssmo", belief_dim=128, state_dim=32, hidden=128)),  # the quick profile's sizes
])
def test_the_world_model_presets_are_the_one_source_of_sizes(overrides, sizes, data_root, tmp_path):
    out = tmp_path / "run"
    run_in_process([
        *overrides, "data.embodiment=walker-random", "data.embodiment_episodes=2", "data.demos=walker-stand-expert",
        "data.num_demos=2", "data.workers=1", f"data.root={data_root}", "phase1.steps=0", "phase2.steps=0",
        "eval.episodes=0", "diagnostics.batches=0", "progress=false", f"out_dir={out}",
    ])
    saved = torch.load(out / "world_model.pt", weights_only=False)
    assert {k: saved["config"][k] for k in sizes} == sizes
    assert saved["state_dict"]["rollout.transition.module.gru.weight_hh"].shape == (3 * sizes["belief_dim"], sizes["belief_dim"])
