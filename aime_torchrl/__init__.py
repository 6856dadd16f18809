# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""AIME (Action Inference by Maximising Evidence) as TorchRL building blocks."""
from aime_torchrl.modules import make_policy, RSSMWorldModel
from aime_torchrl.objectives import AIMELoss, WorldModelLoss

__version__ = "0.1.0"

__all__ = ["AIMELoss", "RSSMWorldModel", "WorldModelLoss", "make_policy"]
