# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Labelled subsets: the split, the mixed batches, the IDM's pseudo-labels."""
from __future__ import annotations

import pytest
import torch

from aime_torchrl.data import LabelledMixture, LinearControlSystem, make_window_buffer, pseudo_label, split_labelled
from aime_torchrl.modules import make_stack_module


def test_split_keeps_actions_of_the_chosen_episodes_only():
    episodes = LinearControlSystem().rollout(20, 10, seed=1)
    labelled, free = split_labelled(episodes, 0.05, seed=3)
    assert labelled.batch_size == (1, 10) and free.batch_size == (19, 10)
    assert "action" in labelled.keys() and "action" not in free.keys()
    ids = torch.cat([labelled["episode"][:, 0], free["episode"][:, 0]]).sort().values
    assert ids.tolist() == list(range(20))  # disjoint, and together every episode
    assert split_labelled(episodes, 5, seed=3)[0].batch_size[0] == 5
    assert split_labelled(episodes, 1.0)[1] is None
    assert torch.equal(split_labelled(episodes, 4, seed=3)[0]["episode"], split_labelled(episodes, 4, seed=3)[0]["episode"])
    for bad in (0, 21, 0.0, 1.5):
        with pytest.raises(ValueError, match="label|fraction"):
            split_labelled(episodes, bad)


def test_mixture_batches_hold_the_ratio_and_hide_the_action_free_actions():
    episodes = LinearControlSystem().rollout(20, 10, seed=1)
    labelled, free = split_labelled(episodes, 4)
    mixture = LabelledMixture(make_window_buffer(labelled, horizon=5, batch_size=2),
                              make_window_buffer(free, horizon=5, batch_size=2), batch_size=10, labelled_fraction=0.3)
    batch = mixture.sample()
    assert batch.batch_size == (10, 5)
    flags = batch["labelled"]
    assert flags[:3].all() and not flags[3:].any()
    assert (batch["action"][3:] == 0).all() and (batch["action"][:3] != 0).any()
    assert set(batch["episode"][3:, 0].tolist()) <= set(free["episode"][:, 0].tolist())
    only = LabelledMixture(make_window_buffer(episodes, horizon=5, batch_size=2), None, batch_size=6).sample()
    assert only["labelled"].all() and only.batch_size == (6, 5)


def test_pseudo_labels_are_the_idm_s_actions_of_each_transition():
    episodes = LinearControlSystem().rollout(3, 8, seed=1)
    idm = make_stack_module({"observation": 4}, [], 2, frames=2, in_group="transition")
    labelled = pseudo_label(idm, episodes.exclude("action"), ["observation"])
    step = episodes[1, 4]
    expected = idm(step.select().set(("transition", "observation"), torch.stack(
        [step["observation"], step["next", "observation"]])))["action"]
    torch.testing.assert_close(labelled["action"][1, 4], expected)
    assert torch.equal(labelled["observation"], episodes["observation"])
