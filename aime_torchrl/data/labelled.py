# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Datasets of which only a few episodes keep their actions: the split, the mixed batches, and the
pseudo-labels of the IDM baseline."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import ReplayBuffer


def split_held_out(episodes: TensorDictBase, held_out: int, *, seed: int = 0) -> tuple[TensorDictBase, TensorDictBase]:
    """Splits ``[N, L]`` episodes into ``held_out`` randomly chosen ones (for evaluation) and the rest (for training).

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem
        >>> test, train = split_held_out(LinearControlSystem().rollout(20, 10), 5)
        >>> test.batch_size, train.batch_size
        (torch.Size([5, 10]), torch.Size([15, 10]))
    """
    total = episodes.batch_size[0]
    if not 0 < held_out < total:
        raise ValueError(f"Cannot hold out {held_out} of {total} episodes: hold out 1 to {total - 1}.")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return episodes[order[:held_out]], episodes[order[held_out:]]


def split_labelled(
    episodes: TensorDictBase, labelled: int | float, *, seed: int = 0, action_key: str = "action"
) -> tuple[TensorDictBase, TensorDictBase]:
    """Splits ``[N, L]`` episodes into the labelled ones and the action-free rest (their actions removed).

    Args:
        episodes (TensorDictBase): ``[N, L]`` episodes with actions.
        labelled (int or float): how many episodes keep their actions: a count (int), or a fraction of
            ``N`` (float in (0, 1]; at least one episode).

    Keyword Args:
        seed (int, optional): which episodes are labelled (a random choice). Defaults to ``0``.
        action_key (str, optional): the actions. Defaults to ``"action"``.

    Returns ``(labelled, action_free)``; ``action_free`` is ``None`` when every episode is labelled.

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem
        >>> labelled, free = split_labelled(LinearControlSystem().rollout(20, 10), 0.1)
        >>> labelled.batch_size, free.batch_size, "action" in free.keys()
        (torch.Size([2, 10]), torch.Size([18, 10]), False)
    """
    total = episodes.batch_size[0]
    if isinstance(labelled, float):
        if not 0 < labelled <= 1:
            raise ValueError(f"A labelled fraction must be in (0, 1], got {labelled}.")
        count = max(1, round(labelled * total))
    else:
        count = labelled
    if not 1 <= count <= total:
        raise ValueError(f"Cannot label {count} of {total} episodes: give 1 to {total} (or a fraction).")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    chosen, rest = order[:count].sort().values, order[count:].sort().values
    action_free = episodes[rest].exclude(action_key) if len(rest) else None
    return episodes[chosen], action_free


class LabelledMixture:
    """Batches of windows drawn from a labelled and an action-free replay buffer in a fixed ratio.

    Each batch holds ``max(1, round(labelled_fraction * batch_size))`` labelled windows (all of them when
    there is no action-free buffer) and action-free ones for the rest; action-free windows get zero
    actions, and every step a ``labelled`` flag (``[B, T]``), as
    :class:`~aime_torchrl.objectives.LatentActionLoss` reads them. Only keys present in both buffers'
    windows are kept.

    Args:
        labelled (ReplayBuffer): windows with actions (``sample(n)`` gives ``n`` windows, as
            :func:`~aime_torchrl.data.make_window_buffer` and :class:`~aime_torchrl.data.AIMEDataset`).
        action_free (ReplayBuffer, optional): windows without actions.

    Keyword Args:
        batch_size (int): windows per batch.
        labelled_fraction (float, optional): share of labelled windows in a batch (oversampling the
            few labelled episodes). Defaults to ``0.25``.
        action_key (str, optional): the actions. Defaults to ``"action"``.
        labelled_key (str, optional): the flag written. Defaults to ``"labelled"``.

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem, make_window_buffer
        >>> labelled, free = split_labelled(LinearControlSystem().rollout(20, 10), 2)
        >>> mixture = LabelledMixture(make_window_buffer(labelled, horizon=4, batch_size=1),
        ...     make_window_buffer(free, horizon=4, batch_size=1), batch_size=8, labelled_fraction=0.25)
        >>> batch = mixture.sample()
        >>> batch.batch_size, batch["labelled"][:, 0].tolist()
        (torch.Size([8, 4]), [True, True, False, False, False, False, False, False])
    """

    def __init__(
        self,
        labelled: ReplayBuffer,
        action_free: ReplayBuffer | None,
        *,
        batch_size: int,
        labelled_fraction: float = 0.25,
        action_key: str = "action",
        labelled_key: str = "labelled",
    ) -> None:
        if not 0 < labelled_fraction <= 1:
            raise ValueError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}.")
        self.labelled = labelled
        self.action_free = action_free
        self.num_labelled = batch_size if action_free is None else max(1, round(labelled_fraction * batch_size))
        self.batch_size = batch_size
        self.action_key = action_key
        self.labelled_key = labelled_key

    def sample(self) -> TensorDictBase:
        with_actions = self.labelled.sample(self.num_labelled)
        actions = with_actions.get(self.action_key)
        with_actions.set(self.labelled_key, torch.ones(with_actions.batch_size, dtype=torch.bool, device=actions.device))
        if self.num_labelled == self.batch_size:
            return with_actions
        free = self.action_free.sample(self.batch_size - self.num_labelled)
        free.set(self.action_key, actions.new_zeros(*free.batch_size, actions.shape[-1]))
        free.set(self.labelled_key, torch.zeros(free.batch_size, dtype=torch.bool, device=actions.device))
        keys = set(with_actions.keys(True, True)) & set(free.keys(True, True))
        return torch.cat([with_actions.select(*keys), free.select(*keys)], 0)


def pseudo_label(
    idm: TensorDictModuleBase, episodes: TensorDictBase, observation_keys: Sequence[str], *, action_key: str = "action"
) -> TensorDictBase:
    """``[N, L]`` episodes with the actions an inverse dynamics model infers from each transition
    (SS-ORL's pseudo-labels). ``idm`` reads ``("transition", key)`` = ``[o_t, o_{t+1}]`` for every
    sensor and writes ``action_key`` (as :func:`~aime_torchrl.modules.make_stack_module` with
    ``in_group="transition", frames=2``, trained by :class:`~aime_torchrl.objectives.BCLoss` on
    :func:`~aime_torchrl.modules.stack_window` samples of one-step windows).

    Examples:
        >>> from aime_torchrl.data import LinearControlSystem
        >>> from aime_torchrl.modules import make_stack_module
        >>> idm = make_stack_module({"observation": 4}, [], 2, frames=2, in_group="transition")
        >>> episodes = LinearControlSystem().rollout(3, 10).exclude("action")
        >>> pseudo_label(idm, episodes, ["observation"])["action"].shape
        torch.Size([3, 10, 2])
    """
    steps = TensorDict(
        {("transition", k): torch.stack([episodes.get(k), episodes.get(("next", k))], -2) for k in observation_keys},
        episodes.batch_size,
    )
    with torch.no_grad():
        actions = idm(steps.reshape(-1)).get(action_key).reshape(*episodes.batch_size, -1)
    out = episodes.clone(False)
    out.set(action_key, actions)
    return out
