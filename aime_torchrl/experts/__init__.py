# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""SAC experts trained on CPU with ``examples/train_expert.py``, shipped with the package.

Each expert is ``<embodiment>-<task>.pt`` (actor weights) beside a model card ``<embodiment>-<task>.md``
(command, steps, wall time, seed, evaluation return).
"""
from aime_torchrl.experts.sac import available_experts, EXPERTS_DIR, load_expert, make_sac_actor

__all__ = ["EXPERTS_DIR", "available_experts", "load_expert", "make_sac_actor"]
