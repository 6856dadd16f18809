# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The shipped experts: one deterministic episode each (their cards report 10-episode means)."""
from __future__ import annotations

import pytest

from aime_torchrl.experts import available_experts, load_expert
from aime_torchrl.experts.card import evaluate_expert

# Issue bar for the 10-episode mean: stand >= 900, walk >= 850; a little lower for one episode.
THRESHOLDS = {"walker-stand": 850.0, "walker-walk": 800.0}


def test_experts_are_shipped():
    assert set(THRESHOLDS) <= set(available_experts())


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_expert_return(name):
    embodiment, task = name.split("-")
    (episode_return,) = evaluate_expert(embodiment, task, episodes=1, seed=0)
    assert episode_return >= THRESHOLDS[name], episode_return


def test_unknown_expert_names_the_fix():
    with pytest.raises(FileNotFoundError, match="train_expert.py embodiment=cheetah task=flip"):
        load_expert("cheetah", "flip")
