# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""train_offline: resuming, Ctrl-C handling, logging, non-finite losses."""
from __future__ import annotations

import signal

import pytest
import torch
from torchrl.record.loggers import CSVLogger

from aime_torchrl import WorldModelLoss
from aime_torchrl.trainers import train_offline

from conftest import make_window, small_world_model


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_finishes_the_step_then_stops(signum, tmp_path):
    wm = small_world_model()
    batch = make_window()
    calls, seen = [0], []

    def sample():
        calls[0] += 1
        if calls[0] == 3:
            signal.raise_signal(signum)
        return batch

    logger = CSVLogger("t", log_dir=str(tmp_path))
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt, match="after step 3"):
        train_offline(WorldModelLoss(wm), sample, torch.optim.Adam(wm.parameters()), steps=10, progress=False,
                      on_step=lambda done, last: seen.append((done, last)), logger=logger, log_every=2)
    assert seen == [(1, False), (2, False), (3, True)]
    assert signal.getsignal(signum) is before  # restored
    lines = (tmp_path / "t" / "scalars" / "train" / "elbo.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["2"]


def test_resuming_continues_the_step_count():
    wm = small_world_model()
    batch = make_window()
    seen = []
    means = train_offline(WorldModelLoss(wm), lambda: batch, torch.optim.Adam(wm.parameters()), steps=5, start=3,
                          progress=False, on_step=lambda done, last: seen.append((done, last)))
    assert seen == [(4, False), (5, True)] and means["step"].tolist() == [5]


def test_non_finite_loss_names_the_step():
    wm = small_world_model()
    batch, broken = make_window(), make_window().clone()
    broken["next", "observation"][0, 2] = float("nan")
    batches = iter([batch, broken, batch])  # the loss reads only its first window's values (finite here)
    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 1"):
        train_offline(WorldModelLoss(wm), lambda: next(batches), torch.optim.Adam(wm.parameters()), steps=3,
                      progress=False)
    with pytest.raises(ValueError, match=r"NaN or inf in next\.observation"):  # a loss's first window is checked
        train_offline(WorldModelLoss(wm), lambda: broken, torch.optim.Adam(wm.parameters()), steps=1, progress=False)


def test_a_non_finite_step_leaves_weights_and_optimiser_finite_until_the_read():
    """The check is read every log_every steps; in between no update may store a non-finite value."""
    wm = small_world_model()
    good, bad = make_window(), make_window()
    bad["next", "observation"][0, 2] = float("inf")
    batches = iter([good, bad, good, good, good, good])
    optimizer = torch.optim.Adam(wm.parameters())
    saved = []

    def on_step(done, last):  # what a checkpoint would store
        saved.append(all(torch.isfinite(p).all() for p in wm.parameters()))
        saved.append(all(torch.isfinite(v).all() for s in optimizer.state.values() for v in s.values()))

    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 1"):
        train_offline(WorldModelLoss(wm), lambda: next(batches), optimizer, steps=6, log_every=4, progress=False,
                      on_step=on_step)
    assert len(saved) == 6 and all(saved)  # steps 1-3 ran (the read at step 4 stops before on_step)


def test_bfloat16_autocast_trains_and_logs_float32_means():
    wm = small_world_model()
    batch = make_window()
    before = [p.detach().clone() for p in wm.parameters()]
    means = train_offline(WorldModelLoss(wm), lambda: batch, torch.optim.Adam(wm.parameters()), steps=3, log_every=3,
                          progress=False, autocast=torch.bfloat16)
    assert means["elbo"].dtype == torch.float32 and torch.isfinite(means["elbo"]).all()
    assert all(p.dtype == torch.float32 for p in wm.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, wm.parameters()))


def test_a_loop_step_without_backward_is_an_error():
    from aime_torchrl.trainers import OfflineLoop

    net = torch.nn.Linear(2, 1)
    with pytest.raises(RuntimeError, match="must call loop.backward"):
        for _ in OfflineLoop(torch.optim.SGD(net.parameters(), lr=0.1), steps=2, progress=False):
            pass
