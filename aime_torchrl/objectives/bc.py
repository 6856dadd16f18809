# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Behaviour cloning by regression: BC, the IDM of BCO(0), and BCO(0)'s policy on IDM labels."""
from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule


class BCLoss(LossModule):
    """Mean squared error between the action a deterministic module predicts and a target action.

    - **BC** (the oracle): the frame-stacked policy on the demonstrations' true actions.
    - **BCO(0)**, step 1: the inverse dynamics model (IDM) on the embodiment dataset's actions.
    - **BCO(0)**, step 2: the policy on the demonstrations labelled by the frozen IDM.

    The module runs on a copy holding only its inputs, so its output never overwrites the target.

    Args:
        actor (TensorDictModuleBase): writes ``"action"`` (e.g. :func:`~aime_torchrl.modules.make_stack_module`).

    Keys (``set_keys``): ``action`` (the module's output), ``target`` (the target action).

    Returns ``loss_action`` (the MSE, mean over batch and action dimensions).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_stack_module
        >>> loss = BCLoss(make_stack_module({"velocity": 9}, [], 6, frames=1))
        >>> batch = TensorDict({("stack", "velocity"): torch.randn(4, 1, 9), "action": torch.rand(4, 6)}, [4])
        >>> loss(batch)["loss_action"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        action: NestedKey = "action"
        target: NestedKey = "action"

    default_keys = _AcceptedKeys
    out_keys = ["loss_action"]

    def __init__(self, actor: TensorDictModuleBase) -> None:
        super().__init__()
        self.actor = actor

    @property
    def in_keys(self) -> list:
        return [*self.actor.in_keys, self.tensor_keys.target]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        predicted = self.actor(tensordict.select(*self.actor.in_keys)).get(self.tensor_keys.action)
        target = tensordict.get(self.tensor_keys.target)
        return TensorDict({"loss_action": (predicted - target).pow(2).mean()})
