# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""IIDM: a forward model trained on the embodiment data, inverted by gradients into a policy."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from torchrl.objectives import LossModule

from aime_torchrl.modules.frozen_view import FrozenView


def _prediction_error(model: TensorDictModuleBase, td: TensorDictBase, keys: Sequence[str]) -> torch.Tensor:
    predicted = model(td).get(model.out_keys[0])
    target = torch.cat([td.get(("next", k)).flatten(td.batch_dims) for k in keys], -1)
    return (predicted - target).pow(2).sum(-1).mean()


class ForwardModelLoss(LossModule):
    """MSE (summed over the predicted sensors, mean over the batch) of a deterministic forward
    model ``[enc(o_{t-k+1..t}), a_t] -> o_{t+1}`` on the embodiment data (the paper's IIDM baseline).

    Args:
        model (TensorDictModuleBase): reads ``("stack", key)`` and ``"action"``, writes the
            concatenated prediction of ``("next", key)`` for ``keys`` (e.g.
            ``make_stack_module(dims, [], sum(dims.values()), frames=k, extra_keys=["action"],
            extra_dim=action_dim, out_key="prediction", squash=False)``).
        keys (Sequence[str]): the predicted sensors, in the model's output order.

    Returns ``loss_model``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_stack_module
        >>> model = make_stack_module({"velocity": 9}, [], 9, frames=1, extra_keys=["action"], extra_dim=6,
        ...     out_key="prediction", squash=False)
        >>> batch = TensorDict({("stack", "velocity"): torch.randn(4, 1, 9), "action": torch.rand(4, 6),
        ...     ("next", "velocity"): torch.randn(4, 9)}, [4])
        >>> ForwardModelLoss(model, ["velocity"])(batch)["loss_model"].shape
        torch.Size([])
    """

    out_keys = ["loss_model"]

    def __init__(self, model: TensorDictModuleBase, keys: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = list(keys)

    @property
    def in_keys(self) -> list:
        return [*self.model.in_keys, *(("next", k) for k in self.keys)]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.select(*self.in_keys)
        return TensorDict({"loss_model": _prediction_error(self.model, td, self.keys)})


class IIDMLoss(LossModule):
    """Trains a policy through a frozen forward model: the policy's action for ``o_{t-k+1..t}``
    must make the model predict the demonstration's ``o_{t+1}`` (MSE). Demonstration actions are
    never read. The model is held out (not a parameter of the loss, no gradient), as in
    :class:`~aime_torchrl.AIMELoss`.

    Args:
        model (TensorDictModuleBase): a trained forward model (see :class:`ForwardModelLoss`).
        policy (TensorDictModuleBase): reads ``("stack", key)`` and writes ``"action"``.
        keys (Sequence[str]): the predicted sensors.

    Returns ``loss_policy``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_stack_module
        >>> model = make_stack_module({"velocity": 9}, [], 9, frames=1, extra_keys=["action"], extra_dim=6,
        ...     out_key="prediction", squash=False)
        >>> loss = IIDMLoss(model, make_stack_module({"velocity": 9}, [], 6, frames=1), ["velocity"])
        >>> batch = TensorDict({("stack", "velocity"): torch.randn(4, 1, 9), ("next", "velocity"): torch.randn(4, 9)}, [4])
        >>> loss(batch)["loss_policy"].backward()
        >>> all(p.grad is None for p in model.parameters())
        True
    """

    out_keys = ["loss_policy"]

    def __init__(self, model: TensorDictModuleBase, policy: TensorDictModuleBase, keys: Sequence[str]) -> None:
        super().__init__()
        self.policy = policy
        self.keys = list(keys)
        self.__dict__["model"] = model
        self._frozen = FrozenView(model)

    @property
    def in_keys(self) -> list:
        return [*self.policy.in_keys, *(("next", k) for k in self.keys)]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.select(*self.in_keys).exclude("action")
        td = self.policy(td)
        error = _prediction_error(self._frozen(), td, self.keys)
        return TensorDict({"loss_policy": error})
