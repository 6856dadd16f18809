# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A latent-action world model end to end on a small controlled linear system: 2 of 40 episodes
labelled. Its inverse model must infer the true actions of held-out episodes, and, driven by
true actions through its action encoder, it must predict them better than an action-conditioned
model of the labelled episodes alone (examples/lawm_synthetic.py measures the full comparison)."""
from __future__ import annotations

import torch

from aime_torchrl import RSSMWorldModel, WorldModelLoss
from aime_torchrl.data import LabelledMixture, LinearControlSystem, make_window_buffer, split_labelled
from aime_torchrl.evaluation import latent_action_diagnostics, open_loop_errors
from aime_torchrl.modules import LatentActionWorldModel
from aime_torchrl.objectives import LatentActionLoss
from aime_torchrl.trainers import train_offline

HORIZON, BATCH, STEPS = 16, 32, 1000
SIZES = dict(belief_dim=64, state_dim=16, hidden=64)


def test_inferred_actions_match_and_the_model_predicts_from_few_labels():
    torch.manual_seed(0)
    system = LinearControlSystem(obs_dim=4, action_dim=2, seed=0)
    labelled, action_free = split_labelled(system.rollout(40, 60, seed=1), 2, seed=0)
    held_out = make_window_buffer(system.rollout(16, 60, seed=3), horizon=HORIZON, batch_size=64)
    windows = [held_out.sample() for _ in range(2)]

    model = LatentActionWorldModel.from_config({"observation": 4}, 2, **SIZES)
    mixture = LabelledMixture(make_window_buffer(labelled, horizon=HORIZON, batch_size=BATCH),
                              make_window_buffer(action_free, horizon=HORIZON, batch_size=BATCH), batch_size=BATCH)
    log = train_offline(LatentActionLoss(model, nll_reweight="none"), mixture.sample,
                        torch.optim.Adam(model.parameters(), lr=1e-3), steps=STEPS, progress=False, log_every=50)
    assert log["elbo"][-1] > log["elbo"][0] and log["action_mse"][-1] < log["action_mse"][0] / 5
    latent = latent_action_diagnostics(model, windows)

    baseline = RSSMWorldModel.from_config({"observation": 4}, 2, **SIZES)
    train_offline(WorldModelLoss(baseline, nll_reweight="none"),
                  make_window_buffer(labelled, horizon=HORIZON, batch_size=BATCH).sample,
                  torch.optim.Adam(baseline.parameters(), lr=1e-3), steps=STEPS, progress=False)
    with torch.no_grad():
        labelled_only = sum(open_loop_errors(baseline, w)["open_loop_mse"].item() for w in windows) / len(windows)
    print(latent, labelled_only)
    assert latent["inferred_action_r2"] >= 0.9
    assert latent["open_loop_mse"] < labelled_only
