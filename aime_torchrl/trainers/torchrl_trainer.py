# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The offline phases under TorchRL's :class:`~torchrl.trainers.Trainer`: a batch source in the place
of its collector, an optimisation stepper with the guarded step, and hooks for logging, checkpoints
and signals."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule
from torchrl.record.loggers import Logger
from torchrl.trainers import OptimizationStepper, Trainer
from tqdm.auto import tqdm

from aime_torchrl.trainers.guard import GuardedBackward
from aime_torchrl.trainers.offline import deferred_interrupt


class OfflineCollector:
    """What a :class:`~torchrl.trainers.Trainer` iterates over in an offline phase, in the place of a
    collector: one ``sample()`` batch (e.g. of a window replay buffer) per optimisation step, for the
    steps ``start, ..., steps - 1``. It has the collector methods the Trainer calls (``set_seed``,
    ``state_dict``, ``update_policy_weights_``, ``shutdown``: nothing to do offline).

    Args:
        sample (Callable[[], TensorDictBase]): draws a batch.
        steps (int): the total number of steps.

    Keyword Args:
        start (int, optional): the steps already done (resuming). Defaults to ``0``.

    Examples:
        >>> from tensordict import TensorDict
        >>> batches = OfflineCollector(lambda: TensorDict(batch_size=[2]), steps=3, start=1)
        >>> len(list(batches)), batches.state_dict()
        (2, {'done': 3})
    """

    init_random_frames = 0

    def __init__(self, sample: Callable[[], TensorDictBase], steps: int, *, start: int = 0) -> None:
        self.sample, self.steps, self.done = sample, steps, start

    def __iter__(self) -> Iterator[TensorDictBase]:
        while self.done < self.steps:
            batch = self.sample()
            self.done += 1
            yield batch

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        return seed

    def update_policy_weights_(self, *args: Any, **kwargs: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = state_dict["done"]


class AIMEOptimizationStepper(OptimizationStepper):
    """TorchRL's optimisation step for the ELBO losses: the loss module on the batch, the guarded
    backward (:class:`~aime_torchrl.trainers.GuardedBackward`: clipped gradients, a non-finite step
    zeroes them, checked on the device with no host sync) and the optimiser's step; the same step as
    :class:`~aime_torchrl.trainers.OfflineLoop`'s.

    Args:
        loss_module (LossModule): e.g. :class:`~aime_torchrl.WorldModelLoss` or :class:`~aime_torchrl.AIMELoss`.
        optimizer (torch.optim.Optimizer): its parameters' optimiser.

    Keyword Args:
        grad_clip (float, optional): max global gradient norm; ``None`` disables. Defaults to ``100.0``.
        start (int, optional): the steps already done (names the step of a non-finite loss). Defaults to ``0``.
        desc (str, optional): what is trained, for errors. Defaults to ``"training"``.
        autocast (torch.dtype, optional): the forward pass under :func:`torch.autocast` of this dtype. Defaults to ``None``.
    """

    def __init__(
        self,
        loss_module: LossModule,
        optimizer: torch.optim.Optimizer,
        *,
        grad_clip: float | None = 100.0,
        start: int = 0,
        desc: str = "training",
        autocast: torch.dtype | None = None,
    ) -> None:
        self.loss_module, self.optimizer, self.done, self.dtype = loss_module, optimizer, start, autocast
        self.guard = GuardedBackward([p for g in optimizer.param_groups for p in g["params"]], grad_clip=grad_clip,
                                     desc=desc)

    def step(self, trainer: Trainer, sub_batch: TensorDictBase) -> TensorDictBase:
        device = self.guard.params[0].device.type
        with torch.autocast(device, dtype=self.dtype, enabled=self.dtype is not None):
            losses = self.loss_module(sub_batch)
        self.guard.backward(losses, self.done)
        self.optimizer.step()
        self.done += 1
        return losses.detach()

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = state_dict["done"]


class CallableStepper(OptimizationStepper):
    """An optimisation step of TorchRL's :class:`~torchrl.trainers.Trainer` defined by a function: ``step()``
    makes one update (of as many losses and optimisers as it likes, e.g. the world model, a reward model and
    the policy of online imitation) and returns its detached losses. The same function then drives a
    plain loop and the Trainer (``optim_steps_per_batch`` calls per collected batch): one definition of
    the step.

    Examples:
        >>> from tensordict import TensorDict
        >>> stepper = CallableStepper(lambda: TensorDict(loss=torch.zeros(())))
        >>> stepper.step(None, TensorDict())["loss"].item(), stepper.done
        (0.0, 1)
    """

    def __init__(self, step: Callable[[], TensorDictBase]) -> None:
        self.fn, self.done = step, 0

    def step(self, trainer: Trainer, sub_batch: TensorDictBase) -> TensorDictBase:
        losses = self.fn()
        self.done += 1
        return losses

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = state_dict["done"]


def train_with_trainer(
    loss_module: LossModule,
    sample: Callable[[], TensorDictBase],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    start: int = 0,
    grad_clip: float | None = 100.0,
    progress: bool = True,
    desc: str | None = None,
    logger: Logger | None = None,
    log_every: int = 100,
    log_prefix: str = "train",
    log_offset: int = 0,
    on_step: Callable[[int, bool], None] | None = None,
    autocast: torch.dtype | None = None,
) -> TensorDict:
    """:func:`~aime_torchrl.trainers.train_offline` under TorchRL's :class:`~torchrl.trainers.Trainer`:
    the same arguments, steps, logs, checkpoints (``on_step``) and signals, and the same weights for
    the same seed (tested).

    The Trainer iterates over an :class:`OfflineCollector` of ``sample()`` batches and steps with an
    :class:`AIMEOptimizationStepper`; a ``post_steps`` hook reads the on-device accumulators every
    ``log_every`` steps (the one host sync: a non-finite step raises :class:`FloatingPointError`
    naming it), logs their means as ``<log_prefix>/<key>``, calls ``on_step(done, last)`` and, on
    SIGINT/SIGTERM, saves through ``on_step(done, True)`` and asks the Trainer to stop
    (``request_stop``), after which :class:`KeyboardInterrupt` is raised as by
    :class:`~aime_torchrl.trainers.OfflineLoop`. Returns the logged means (``step`` included).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl import RSSMWorldModel, WorldModelLoss
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 1, belief_dim=16, state_dim=4, hidden=16)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "action": torch.rand(2, 5, 1),
        ...     ("next", "observation"): torch.randn(2, 5, 3)}, [2, 5])
        >>> means = train_with_trainer(WorldModelLoss(wm), lambda: batch, torch.optim.Adam(wm.parameters()),
        ...     steps=5, log_every=2, progress=False)
        >>> means["step"].tolist()
        [2, 4, 5]
    """
    stepper = AIMEOptimizationStepper(loss_module, optimizer, grad_clip=grad_clip, start=start,
                                      desc=desc or "training", autocast=autocast)
    collector = OfflineCollector(sample, steps, start=start)
    trainer = Trainer(collector=collector, total_frames=torch.iinfo(torch.int64).max, frame_skip=1,
                      optim_steps_per_batch=1, loss_module=loss_module, optimizer=optimizer,
                      optimization_stepper=stepper, progress_bar=False, auto_log_optim_steps=False)
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not progress, dynamic_ncols=True)
    means: list[TensorDict] = []
    interrupted_by: list[str] = []

    def after_step(interrupted: Callable[[], bool]) -> None:
        done = stepper.done
        bar.update(1)
        stop, last = interrupted(), done == steps
        if done % log_every == 0 or last:
            read = stepper.guard.log(done, logger, prefix=log_prefix, offset=log_offset)
            if read is not None:
                means.append(read)
                if "elbo" in read.keys():
                    bar.set_postfix(elbo=f"{read['elbo'].item():.1f}", refresh=False)
        elif stop:
            stepper.guard.read()  # the non-finite check
        if on_step is not None:
            on_step(done, stop or last)
        if stop:
            interrupted_by.append(f"{desc or 'training'} interrupted after step {done}")
            trainer.request_stop(interrupted_by[0])

    with deferred_interrupt() as interrupted:
        trainer.register_op("post_steps", after_step, interrupted=interrupted)
        stepper.guard.clock = time.perf_counter()  # steps/s from the first step
        try:
            trainer.train()
        finally:
            bar.close()
    if interrupted_by:
        raise KeyboardInterrupt(interrupted_by[0])
    return torch.stack(means) if means else TensorDict()
