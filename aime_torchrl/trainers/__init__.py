# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.trainers.offline import total_loss, train_offline

__all__ = ["total_loss", "train_offline"]
