# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from aime_torchrl.data.replay import make_window_buffer
from aime_torchrl.data.synthetic import LinearControlSystem

__all__ = ["LinearControlSystem", "make_window_buffer"]
