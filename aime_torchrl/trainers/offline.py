# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The plain offline training loop of both AIME phases (TorchRL's Dreamer recipes use plain loops too)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule
from tqdm.auto import tqdm


def total_loss(losses: TensorDictBase) -> torch.Tensor:
    """Sums the ``loss_*`` entries of a loss module's output (TorchRL's convention)."""
    return sum(value for key, value in losses.items() if key.startswith("loss_"))


def train_offline(
    loss_module: LossModule,
    sample: Callable[[], TensorDictBase],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    grad_clip: float | None = 100.0,
    progress: bool = True,
    desc: str | None = None,
) -> TensorDict:
    """Runs ``steps`` gradient steps of ``loss_module`` on batches from ``sample()``.

    Gradients are clipped to ``grad_clip`` (global norm) over the parameters the optimiser holds.
    A non-finite loss stops the loop with an error naming the step.

    Args:
        loss_module (LossModule): e.g. :class:`~aime_torchrl.WorldModelLoss` or :class:`~aime_torchrl.AIMELoss`.
        sample (Callable[[], TensorDictBase]): returns one batch, e.g. ``replay_buffer.sample``.
        optimizer (torch.optim.Optimizer): the optimiser of the trained parameters.

    Keyword Args:
        steps (int): number of gradient steps.
        grad_clip (float, optional): max global gradient norm; ``None`` disables. Defaults to ``100.0``.
        progress (bool, optional): show a progress bar. Defaults to ``True``.
        desc (str, optional): label of the progress bar.

    Returns the detached outputs of every step, stacked: a ``[steps]`` TensorDict.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        out = loss_module(sample())
        loss = total_loss(out)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc or 'training'}: non-finite loss {loss.item()} at step {step}.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        out = out.detach()
        history.append(out)
        if "elbo" in out.keys():
            bar.set_postfix(elbo=f"{out['elbo'].item():.1f}", refresh=False)
    return torch.stack(history)
