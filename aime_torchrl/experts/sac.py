# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The SAC actor of the experts, and loading the shipped weights."""
from __future__ import annotations

from pathlib import Path

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal

from aime_torchrl.envs.dmc import SENSOR_DIMS, SENSORS

#: Where the shipped experts' weights (``<embodiment>-<task>.pt``) and model cards live.
EXPERTS_DIR = Path(__file__).parent


def make_sac_actor(
    obs_dim: int, action_dim: int, hidden: int = 256, device: torch.device | str | None = None
) -> ProbabilisticActor:
    """SAC's TanhNormal actor: a ``2 x hidden`` ReLU MLP on ``"observation"``, writing ``"action"``.

    Examples:
        >>> actor = make_sac_actor(24, 6)
        >>> [k for k in actor.out_keys if k == "action"]
        ['action']
    """
    net = nn.Sequential(
        MLP(
            in_features=obs_dim,
            out_features=2 * action_dim,
            num_cells=[hidden, hidden],
            activation_class=nn.ReLU,
            device=device,
        ),
        NormalParamExtractor(scale_mapping="biased_softplus_1.0", scale_lb=1e-4),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, (action_dim,), device=device),
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=False,
    )


class _ConcatSensors(nn.Module):
    def forward(self, *sensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(sensors, -1)


def available_experts() -> list[str]:
    """Names ``<embodiment>-<task>`` of the shipped experts."""
    return sorted(p.stem for p in EXPERTS_DIR.glob("*.pt"))


def load_expert(embodiment: str, task: str, device: torch.device | str | None = None) -> TensorDictSequential:
    """A shipped expert as a TorchRL policy for :func:`~aime_torchrl.envs.make_env` envs (any setup
    that provides the MDP sensors, i.e. ``mdp`` or ``pixels=True``).

    It concatenates the sensors into ``"observation"`` and acts with ``tanh(loc)`` under
    ``ExplorationType.DETERMINISTIC`` (a sample under ``RANDOM``).
    """
    name = f"{embodiment}-{task}"
    path = EXPERTS_DIR / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"No shipped expert {name!r}; available: {available_experts()}. "
            f"Train one with: python examples/train_expert.py embodiment={embodiment} task={task}"
        )
    sensors = list(SENSORS[embodiment]["mdp"])
    obs_dim = sum(SENSOR_DIMS[embodiment][k] for k in sensors)
    actor = make_sac_actor(obs_dim, 6, device=device)
    actor.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return TensorDictSequential(
        TensorDictModule(_ConcatSensors(), in_keys=sensors, out_keys=["observation"]), actor
    )
