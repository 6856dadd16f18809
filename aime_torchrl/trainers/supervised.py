# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Training with model selection on a validation loss (the baselines' protocol)."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from tensordict import TensorDictBase
from torchrl.objectives import LossModule
from torchrl.record.loggers import Logger

from aime_torchrl.trainers.distributed import DistributedContext
from aime_torchrl.trainers.guard import total_loss
from aime_torchrl.trainers.offline import train_offline


@torch.no_grad()
def validation_loss(loss_module: LossModule, batches: Sequence[TensorDictBase]) -> float:
    """Mean total loss of ``loss_module`` over fixed batches."""
    return sum(total_loss(loss_module(batch)).item() for batch in batches) / len(batches)


def train_with_validation(
    loss_module: LossModule,
    sample: Callable[[], TensorDictBase],
    validation: Sequence[TensorDictBase],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    validate_every: int,
    grad_clip: float | None = None,
    progress: bool = True,
    desc: str | None = None,
    logger: Logger | None = None,
    log_prefix: str = "train",
    distributed: DistributedContext | None = None,
) -> dict:
    """Trains ``loss_module`` for ``steps`` steps and keeps the weights with the lowest validation loss.

    With ``distributed`` (a ``torchrun`` launch, :func:`~aime_torchrl.trainers.init_distributed`) every rank
    trains on its own batches in DDP and validates on the same batches, so every rank keeps the same weights.

    Every ``validate_every`` steps (and at the end) the loss on the fixed ``validation`` batches is
    computed (and logged as ``<log_prefix>/validation_loss``); the trainable weights of the best
    evaluation are loaded back at the end. (The reference stops early after 3 epochs without
    improvement, from epoch 50 on, and tests the best checkpoint; a fixed budget with the same
    selection keeps CPU runs short and predictable.)

    Returns ``{"best_step", "best_loss", "curve": [(step, loss), ...]}``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_stack_module
        >>> from aime_torchrl.objectives import BCLoss
        >>> loss = BCLoss(make_stack_module({"velocity": 3}, [], 2, frames=1, hidden=8))
        >>> batch = TensorDict({("stack", "velocity"): torch.randn(16, 1, 3), "action": torch.rand(16, 2) - 0.5}, [16])
        >>> result = train_with_validation(loss, lambda: batch, [batch], torch.optim.Adam(loss.parameters(), 1e-2),
        ...     steps=20, validate_every=5, progress=False)
        >>> [step for step, _ in result["curve"]]
        [0, 5, 10, 15, 20]
    """
    best = {"step": 0, "loss": validation_loss(loss_module, validation), "state": copy.deepcopy(loss_module.state_dict())}
    curve = [(0, best["loss"])]

    def on_step(done: int, last: bool) -> None:
        if done % validate_every and not last:
            return
        loss = validation_loss(loss_module, validation)
        curve.append((done, loss))
        if logger is not None:
            logger.log_metrics({f"{log_prefix}/validation_loss": loss}, step=done)
        if loss < best["loss"]:
            best.update(step=done, loss=loss, state=copy.deepcopy(loss_module.state_dict()))

    distributed = distributed or DistributedContext()
    train_offline(distributed.wrap(loss_module), sample, optimizer, steps=steps, grad_clip=grad_clip,
                  progress=progress and distributed.is_main, desc=desc, logger=logger, log_every=validate_every,
                  log_prefix=log_prefix, on_step=on_step, distributed=distributed)
    loss_module.load_state_dict(best["state"])
    return {"best_step": best["step"], "best_loss": best["loss"], "curve": curve}
