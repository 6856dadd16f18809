# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Open-loop prediction: filter a few frames, then imagine the rest with the prior."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from aime_torchrl.modules.world_model import RSSMWorldModel


@torch.no_grad()
def open_loop_prediction(
    world_model: RSSMWorldModel, window: TensorDictBase, *, context: int = 5, action_key: NestedKey | None = None
) -> TensorDict:
    """Reconstructs the first ``context`` frames of a window and predicts the others open loop.

    The first ``context`` frames are filtered with the posterior (as in training); from the last
    filtered state on, the prior alone is rolled forward with the window's actions (its mean, no
    sampling; of categorical latents, each one's likeliest class), and every decoder's mean is read
    out. Comparing the output with the window shows
    how far the model's imagination holds.

    Args:
        world_model (RSSMWorldModel): a trained world model.
        window (TensorDictBase): a ``[*B, T]`` TorchRL window with actions (T + 1 frames).

    Keyword Args:
        context (int, optional): frames seen by the posterior (at least 1). Defaults to ``5``.
        action_key (NestedKey, optional): where the window holds its actions. Defaults to the world
            model's ``keys.action``.

    Returns a ``[*B, T + 1]`` TensorDict with one entry per decoded sensor: the predicted mean, on the
    data's scale (images in ``[0, 1]``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 5), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 5)}, [3, 10])
        >>> open_loop_prediction(wm, window, context=4)["observation"].shape
        torch.Size([3, 11, 5])
    """
    frames = world_model.to_frames(window, action_key=action_key)
    length = frames.batch_size[-1]
    if not 1 <= context <= length:
        raise ValueError(f"context must be in [1, {length}] for a window of {length} frames; got {context}.")
    keys = world_model.keys
    observed = world_model(frames[..., :context].clone())
    belief, state = observed.get(keys.next("belief"))[..., -1, :], observed.get(keys.next("state"))[..., -1, :]
    core = world_model.core
    beliefs, states = observed.get(keys.next("belief")), observed.get(keys.next("state"))
    if context < length:  # the prior's mode from the last filtered latents on
        imagined = core.imagine(state, belief, frames.get(keys.action)[..., context:, :])
        beliefs, states = torch.cat([beliefs, imagined[0]], -2), torch.cat([states, imagined[1]], -2)
    decoded = core.decode(beliefs, states)
    return TensorDict({key: loc for key, (loc, _) in decoded.items()}, frames.batch_size)


def open_loop_errors(
    world_model: RSSMWorldModel, window: TensorDictBase, *, context: int = 5, action_key: NestedKey | None = None
) -> dict[str, torch.Tensor]:
    """How far :func:`open_loop_prediction` lands from the window: the squared error per dimension of
    each decoded sensor (images: per pixel, in [0, 1]) over the predicted frames,
    ``open_loop_mse_<sensor>``, and their mean, ``open_loop_mse`` (``action_key`` as there).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 5), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 5)}, [3, 10])
        >>> sorted(open_loop_errors(wm, window))
        ['open_loop_mse', 'open_loop_mse_observation']
    """
    predicted = open_loop_prediction(world_model, window, context=context, action_key=action_key)[..., context:]
    truth = world_model.to_frames(window, action_key=action_key)[..., context:]  # the predicted frames only
    errors = {}
    for key in predicted.keys():
        target = truth.get(("next", key))
        if target.dtype == torch.uint8:
            target = target.float() / 255
        errors[f"open_loop_mse_{key}"] = (predicted.get(key) - target).pow(2).mean()
    errors["open_loop_mse"] = torch.stack(list(errors.values())).mean()
    return errors
