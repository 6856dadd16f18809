# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The regression of a dynamics ensemble on a frozen world model's posterior transitions."""
from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from aime_torchrl.modules.dynamics_ensemble import DynamicsEnsemble


class DynamicsEnsembleLoss(LossModule):
    """Mean squared error of every member of a :class:`~aime_torchrl.modules.DynamicsEnsemble` on the
    next posterior state of each transition.

    Reads a transition as :func:`~aime_torchrl.data.posterior_latents` lays it out: the latents after
    o_t (``belief``, ``state``), the behaviour's (latent) action (``behaviour_action``) and the state
    after o_{t+1} (``("next", state)``). The members share the batch; their initialisations differ.

    Keys (``set_keys``): ``belief``, ``state`` (also read under ``"next"``), ``behaviour_action``.

    Returns ``loss_dynamics`` (the sum over members of their mean squared errors) and, logged,
    ``disagreement`` (on this batch, in the ensemble's current unit: raw until
    :meth:`~aime_torchrl.modules.DynamicsEnsemble.calibrate` runs after training).

    Examples:
        >>> import torch
        >>> from aime_torchrl.modules import make_dynamics_ensemble, RSSMWorldModel
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> loss = DynamicsEnsembleLoss(make_dynamics_ensemble(wm, members=3, hidden=16))
        >>> batch = TensorDict({"belief": torch.randn(8, 16), "state": torch.randn(8, 4),
        ...     "behaviour_action": torch.rand(8, 2), ("next", "state"): torch.randn(8, 4)}, [8])
        >>> loss(batch)["loss_dynamics"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        belief: NestedKey = "belief"
        state: NestedKey = "state"
        behaviour_action: NestedKey = "behaviour_action"

    default_keys = _AcceptedKeys
    out_keys = ["loss_dynamics"]

    def __init__(self, ensemble: TensorDictModule) -> None:
        super().__init__()
        if not isinstance(getattr(ensemble, "module", None), DynamicsEnsemble):
            raise TypeError("DynamicsEnsembleLoss trains a DynamicsEnsemble wrapped in a TensorDictModule "
                            f"(make_dynamics_ensemble), got {type(ensemble).__name__}.")
        self.ensemble = ensemble

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        return [keys.belief, keys.state, keys.behaviour_action, ("next", keys.state)]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        inputs = [tensordict.get(k).detach() for k in (keys.belief, keys.state, keys.behaviour_action)]
        net: DynamicsEnsemble = self.ensemble.module
        predicted = net.predict(*inputs)
        target = tensordict.get(("next", keys.state)).detach()
        errors = (predicted - target).pow(2).flatten(1).mean(-1)  # per member
        spread = predicted.detach().std(0).mean() / net.data_disagreement
        return TensorDict({"loss_dynamics": errors.sum(), "disagreement": spread})
