# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The plain offline training loop of both AIME phases (TorchRL's Dreamer recipes use plain loops too)."""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule
from torchrl.record.loggers import Logger
from tqdm.auto import tqdm

from aime_torchrl.trainers.distributed import DistributedContext
from aime_torchrl.trainers.guard import GuardedBackward


class OfflineLoop:
    """The bookkeeping of an offline training loop around a gradient step written by the caller::

        loop = OfflineLoop(optimizer, steps=1000, logger=logger)
        for step in loop:
            with loop.autocast():
                losses = loss_module(replay_buffer.sample())
            loop.backward(losses)  # the loss_* terms' total, backward, clipped gradients
            optimizer.step()

    Iterating yields the steps ``start, ..., steps - 1``. :meth:`backward` clips the gradients to
    ``grad_clip`` (global norm) over the parameters the optimiser holds.

    The loop never waits for the device: the outputs are summed on the device and read every
    ``log_every`` steps (progress bar, logger, :attr:`means`). A non-finite loss or gradient norm
    is caught on the device too: from that step on :meth:`backward` zeroes the gradients (no
    update can store a non-finite value in the weights or the optimiser state, so neither can a
    checkpoint), and the next read stops the run with an error naming the step.

    Interruption: a ``SIGINT`` (Ctrl-C) or ``SIGTERM`` (what ``timeout``, ``kill`` and job
    schedulers send) lets the current step finish, calls ``on_step(done, True)`` (save a
    checkpoint there) and then raises :class:`KeyboardInterrupt`; a second signal interrupts at once.

    Args:
        optimizer (torch.optim.Optimizer): the optimiser of the trained parameters.

    Keyword Args:
        steps (int): total number of gradient steps.
        start (int, optional): steps already done (resuming). Defaults to ``0``.
        grad_clip (float, optional): max global gradient norm; ``None`` disables. Defaults to ``100.0``.
        progress (bool, optional): show a progress bar with the ELBO of the last ``log_every`` steps. Defaults to ``True``.
        desc (str, optional): label of the progress bar and of errors.
        logger (Logger, optional): a TorchRL logger; receives the mean of every output, the
            gradient norm and the speed every ``log_every`` steps as ``<log_prefix>/<key>``.
        log_every (int, optional): steps between reads of the accumulators (logging, progress,
            the non-finite check). Defaults to ``100``.
        log_prefix (str, optional): prefix of the logged names. Defaults to ``"train"``.
        log_offset (int, optional): added to the step in the logs (phase 2 after phase 1). Defaults to ``0``.
        on_step (Callable[[int, bool], None], optional): called after every step with the number
            of steps done and whether the loop is about to stop (last step or interrupted).
        autocast (torch.dtype, optional): the dtype of :meth:`autocast` (``torch.bfloat16``: mixed
            precision on GPUs that have it); the backward, clipping and update stay in the
            parameters' dtype. Defaults to ``None`` (off).
        distributed (DistributedContext, optional): on a data-parallel run, a signal received by
            any rank stops every rank after the same step (one all-reduce of a flag per step).
            Defaults to one process.

    Attributes:
        means (TensorDict): the means of the detached outputs (and ``grad_norm``) over each
            ``log_every`` steps, with the ``step`` at which each ends: ``[ceil((steps - start) / log_every)]``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl import RSSMWorldModel, WorldModelLoss
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 1, belief_dim=16, state_dim=4, hidden=16)
        >>> loss = WorldModelLoss(wm)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "action": torch.rand(2, 5, 1),
        ...     ("next", "observation"): torch.randn(2, 5, 3)}, [2, 5])
        >>> optimizer = torch.optim.Adam(wm.parameters())
        >>> loop = OfflineLoop(optimizer, steps=5, log_every=2, progress=False)
        >>> for step in loop:
        ...     _ = loop.backward(loss(batch))
        ...     optimizer.step()
        >>> loop.means["step"].tolist()
        [2, 4, 5]
    """

    def __init__(
        self,
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
        distributed: DistributedContext | None = None,
    ) -> None:
        self.distributed = distributed or DistributedContext()
        self.optimizer, self.steps, self.start, self.desc = optimizer, steps, start, desc
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.guard = GuardedBackward(self.params, grad_clip=grad_clip, desc=desc or "training")
        self.progress, self.logger, self.log_every = progress, logger, log_every
        self.log_prefix, self.log_offset, self.on_step, self.dtype = log_prefix, log_offset, on_step, autocast
        self._means: list[TensorDict] = []
        self._step, self._done_backward = start, False

    @property
    def means(self) -> TensorDict:
        return torch.stack(self._means) if self._means else TensorDict()

    def autocast(self) -> contextlib.AbstractContextManager:
        """:func:`torch.autocast` with the loop's ``autocast`` dtype (a no-op without one): wrap the forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.params[0].device.type, dtype=self.dtype)

    def backward(self, losses: TensorDictBase) -> torch.Tensor:
        """Back-propagates the sum of the ``loss_*`` entries of ``losses`` (gradients zeroed first),
        clips the gradients and guards them: from the first non-finite loss or gradient on, every
        gradient is zeroed (checked on the device, no host sync). Returns the total loss."""
        loss = self.guard.backward(losses, self._step)
        self._done_backward = True
        return loss

    def __iter__(self) -> Iterator[int]:
        bar = tqdm(range(self.start, self.steps), desc=self.desc, disable=not self.progress, dynamic_ncols=True,
                   initial=self.start, total=self.steps)
        self.guard.clock = time.perf_counter()  # steps/s from the first step
        with deferred_interrupt() as interrupted:
            for step in bar:
                self._step, self._done_backward = step, False
                yield step
                if not self._done_backward:
                    raise RuntimeError("Each step of an OfflineLoop must call loop.backward(losses).")
                done = step + 1
                stop = self.distributed.any_rank(interrupted())  # a signal to one rank stops them all here
                log = done % self.log_every == 0 or done == self.steps
                if log or stop:
                    self._flush(done, bar, log=log)
                if self.on_step is not None:
                    self.on_step(done, stop or done == self.steps)
                if stop:
                    bar.close()
                    raise KeyboardInterrupt(f"{self.desc or 'training'} interrupted after step {done}")

    def _flush(self, done: int, bar: tqdm, log: bool = True) -> None:
        """Reads the on-device accumulators (the only host sync): stops on a non-finite loss, logs the means."""
        if not log:
            self.guard.read()  # the non-finite check
            return
        metrics = self.guard.log(done, self.logger, prefix=self.log_prefix, offset=self.log_offset)
        if metrics is None:
            return
        self._means.append(metrics)
        if "elbo" in metrics.keys():
            bar.set_postfix(elbo=f"{metrics['elbo'].item():.1f}", refresh=False)


def train_offline(
    loss_module: LossModule,
    sample: Callable[[], TensorDictBase],
    optimizer: torch.optim.Optimizer,
    **loop: Any,
) -> TensorDict:
    """Runs gradient steps of ``loss_module`` on batches from ``sample()`` in an :class:`OfflineLoop`
    (``loop``: its keyword arguments, ``steps`` among them) and returns the loop's :attr:`~OfflineLoop.means`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl import RSSMWorldModel, WorldModelLoss
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 1, belief_dim=16, state_dim=4, hidden=16)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "action": torch.rand(2, 5, 1),
        ...     ("next", "observation"): torch.randn(2, 5, 3)}, [2, 5])
        >>> means = train_offline(WorldModelLoss(wm), lambda: batch, torch.optim.Adam(wm.parameters()),
        ...     steps=5, log_every=2, progress=False)
        >>> means["step"].tolist()
        [2, 4, 5]
    """
    training = OfflineLoop(optimizer, **loop)
    for _ in training:
        with training.autocast():
            losses = loss_module(sample())
        training.backward(losses)
        optimizer.step()
    return training.means


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within: the first SIGINT (Ctrl-C) or SIGTERM (``kill``, ``timeout``, job schedulers) only
    raises a flag, read with the yielded callable, so that a loop can finish its step and save a
    checkpoint; a second one interrupts at once. Outside the main thread, signals are left alone.

    Examples:
        >>> import os, signal
        >>> with deferred_interrupt() as interrupted:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     print(interrupted())
        SIGTERM: finishing the current step and saving a checkpoint (send it again to abort).
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    # a handler installed outside Python reads as None: restore the default one then
    previous = {signum: signal.getsignal(signum) or signal.SIG_DFL for signum in signums}

    def handler(signum, frame):
        if received:
            for s, h in previous.items():
                signal.signal(s, h)
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice")
        received.append(signum)
        tqdm.write(f"{signal.Signals(signum).name}: finishing the current step and saving a checkpoint "
                   "(send it again to abort).")

    for signum in signums:
        signal.signal(signum, handler)
    try:
        yield lambda: bool(received)
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)
