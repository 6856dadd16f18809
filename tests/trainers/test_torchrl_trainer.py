# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Both offline phases under TorchRL's Trainer: the same weights as the OfflineLoop, the same
non-finite guard, and SIGTERM -> a checkpoint -> a resume to the same weights."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from torchrl.record.loggers import CSVLogger

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.trainers import train_offline, train_with_trainer
from conftest import make_window

STEPS = 6


def batches(seed: int = 0) -> list:
    torch.manual_seed(seed)
    return [make_window(batch=4, time=6) for _ in range(STEPS)]


def phase(name: str):
    """A fresh loss of phase 1 or 2 and its optimiser (the same initial weights each call)."""
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
    if name == "phase1":
        loss = WorldModelLoss(wm)
        return loss, torch.optim.Adam(wm.parameters(), lr=1e-3), wm
    policy = make_policy(4, 16, 2, hidden=16)
    loss = AIMELoss(wm, policy)
    return loss, torch.optim.Adam(policy.parameters(), lr=1e-3), policy


def fit(train, name: str, data: list, **kwargs):
    loss, optimizer, trained = phase(name)
    step = iter(data)
    torch.manual_seed(1)  # the losses' noise
    means = train(loss, lambda: next(step), optimizer, steps=STEPS, progress=False, log_every=2, **kwargs)
    return trained, means


@pytest.mark.parametrize("name", ["phase1", "phase2"])
def test_the_trainer_gives_the_offline_loop_s_weights_and_logs(name, tmp_path):
    data = batches()
    ours, ours_means = fit(train_offline, name, data)
    logger = CSVLogger("run", log_dir=str(tmp_path))
    theirs, their_means = fit(train_with_trainer, name, data, logger=logger, log_prefix=name)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert their_means["step"].tolist() == [2, 4, 6]
    torch.testing.assert_close(ours_means, their_means)
    logged = {f.stem for f in (tmp_path / "run" / "scalars" / name).glob("*.csv")}
    assert {"elbo", "grad_norm", "steps_per_s"} <= logged


def test_a_non_finite_step_stops_the_trainer_naming_it_with_finite_weights():
    data = batches()
    data[3] = data[3].clone().apply(lambda x: x.clone())
    data[3]["next", "observation"][0, 0, 0] = float("inf")  # the loss's own data check only reads the first window
    loss, optimizer, wm = phase("phase1")
    step = iter(data)
    with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step 3"):
        train_with_trainer(loss, lambda: next(step), optimizer, steps=STEPS, progress=False, log_every=2)
    assert all(torch.isfinite(p).all() for p in wm.parameters())


def test_sigterm_saves_stops_and_resumes_to_the_same_weights():
    data = batches()
    reference, _ = fit(train_with_trainer, "phase1", data)

    loss, optimizer, wm = phase("phase1")
    saved, calls = {}, []

    def on_step(done: int, last: bool) -> None:
        calls.append((done, last))
        if done == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        if last:
            saved.update(done=done, wm=wm.state_dict(), opt=optimizer.state_dict(), rng=torch.get_rng_state())

    step = iter(data)
    torch.manual_seed(1)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="interrupted after step 3"):
        train_with_trainer(loss, lambda: next(step), optimizer, steps=STEPS, progress=False, on_step=on_step)
    assert calls == [(1, False), (2, False), (3, True)]  # the signal lets step 3 finish, then saves
    assert signal.getsignal(signal.SIGTERM) is handler  # the Trainer's run gives the handler back

    loss, optimizer, wm = phase("phase1")  # a new process: everything from the checkpoint
    wm.load_state_dict(saved["wm"])
    optimizer.load_state_dict(saved["opt"])
    torch.set_rng_state(saved["rng"])
    step = iter(data[saved["done"]:])
    train_with_trainer(loss, lambda: next(step), optimizer, steps=STEPS, start=saved["done"], progress=False)
    for p, q in zip(reference.parameters(), wm.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
