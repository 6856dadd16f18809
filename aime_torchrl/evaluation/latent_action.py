# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""How well a latent-action world model ties its latent actions to real ones."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from aime_torchrl.evaluation.prediction import open_loop_errors
from aime_torchrl.modules.latent_action import LatentActionWorldModel


def latent_action_diagnostics(
    model: LatentActionWorldModel, windows: Sequence[TensorDictBase], *, context: int = 5, action_key: NestedKey = "action"
) -> dict[str, float]:
    """Measures a latent-action world model on labelled windows it was not trained on (their actions
    are only compared with, never trained on), averaged over ``windows``:

    * ``open_loop_mse``: the open-loop prediction error (:func:`~aime_torchrl.evaluation.open_loop_errors`)
      of the model driven by the windows' real actions through the action encoder (g's mean), the
      number to set against an action-conditioned world model's;
    * ``open_loop_mse_inferred``: the same, driven by the latent actions the inference model infers
      from the windows' observations (q's mean): the dynamics alone, without the alignment;
    * ``decoded_action_r2`` and ``decoded_action_mse``: the action decoder's mean for the inferred
      latent actions against the real actions (R^2 over all steps and dimensions).

    The real actions are read from ``action_key``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 4), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 4)}, [3, 10])
        >>> sorted(latent_action_diagnostics(model, [window]))
        ['decoded_action_mse', 'decoded_action_r2', 'open_loop_mse', 'open_loop_mse_inferred']
    """
    if not windows:
        raise ValueError("latent_action_diagnostics needs at least one window.")
    keys = model.keys
    squared, count, driven, inferred = 0.0, 0, 0.0, 0.0
    actions = []
    with torch.no_grad():
        for window in windows:
            driven += open_loop_errors(model.world_model, model.with_encoded_actions(window, action_key),
                                       context=context)["open_loop_mse"].item()
            rows = model(model.to_frames(window))[..., 1:]
            q_mean = rows.get(keys.loc)
            with_inferred = window.clone(False).set(keys.action, q_mean)
            inferred += open_loop_errors(model.world_model, with_inferred, context=context)["open_loop_mse"].item()
            true = window.get(action_key).clamp(-1, 1)
            squared += (model.decode(q_mean) - true).pow(2).sum().item()
            count += true.numel()
            actions.append(true.reshape(-1, true.shape[-1]))
    actions = torch.cat(actions)
    total = (actions - actions.mean(0)).pow(2).sum().item()  # > 0 unless every action is the same
    return {
        "open_loop_mse": driven / len(windows),
        "open_loop_mse_inferred": inferred / len(windows),
        "decoded_action_r2": 1 - squared / total,
        "decoded_action_mse": squared / count,
    }
