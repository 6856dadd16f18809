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

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule
from torchrl.record.loggers import Logger
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
    start: int = 0,
    grad_clip: float | None = 100.0,
    progress: bool = True,
    desc: str | None = None,
    logger: Logger | None = None,
    log_every: int = 100,
    log_prefix: str = "train",
    log_offset: int = 0,
    on_step: Callable[[int, bool], None] | None = None,
) -> TensorDict:
    """Runs gradient steps ``start, ..., steps - 1`` of ``loss_module`` on batches from ``sample()``.

    Gradients are clipped to ``grad_clip`` (global norm) over the parameters the optimiser holds.
    A non-finite loss stops the loop with an error naming the step.

    Interruption: a ``SIGINT`` (Ctrl-C) during the loop lets the current step finish, calls
    ``on_step(done, True)`` (save a checkpoint there) and then raises :class:`KeyboardInterrupt`;
    a second Ctrl-C interrupts at once.

    Args:
        loss_module (LossModule): e.g. :class:`~aime_torchrl.WorldModelLoss` or :class:`~aime_torchrl.AIMELoss`.
        sample (Callable[[], TensorDictBase]): returns one batch, e.g. ``replay_buffer.sample``.
        optimizer (torch.optim.Optimizer): the optimiser of the trained parameters.

    Keyword Args:
        steps (int): total number of gradient steps.
        start (int, optional): steps already done (resuming). Defaults to ``0``.
        grad_clip (float, optional): max global gradient norm; ``None`` disables. Defaults to ``100.0``.
        progress (bool, optional): show a progress bar with the live loss. Defaults to ``True``.
        desc (str, optional): label of the progress bar and of errors.
        logger (Logger, optional): a TorchRL logger; receives the mean of every output, the
            gradient norm and the speed every ``log_every`` steps as ``<log_prefix>/<key>``.
        log_every (int, optional): logging period in steps. Defaults to ``100``.
        log_prefix (str, optional): prefix of the logged names. Defaults to ``"train"``.
        log_offset (int, optional): added to the step in the logs (phase 2 after phase 1). Defaults to ``0``.
        on_step (Callable[[int, bool], None], optional): called after every step with the number
            of steps done and whether the loop is about to stop (last step or interrupted).

    Returns the detached outputs of the steps run, stacked: a ``[steps - start]`` TensorDict.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl import RSSMWorldModel, WorldModelLoss
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 1, belief_dim=16, state_dim=4, hidden=16)
        >>> batch = TensorDict({"observation": torch.randn(2, 5, 3), "action": torch.rand(2, 5, 1),
        ...     ("next", "observation"): torch.randn(2, 5, 3)}, [2, 5])
        >>> history = train_offline(WorldModelLoss(wm), lambda: batch, torch.optim.Adam(wm.parameters()),
        ...     steps=3, progress=False)
        >>> history["elbo"].shape
        torch.Size([3])
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history, window = [], []
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, dynamic_ncols=True, initial=start, total=steps)
    tic = time.perf_counter()
    with _deferred_interrupt() as interrupted:
        for step in bar:
            out = loss_module(sample())
            loss = total_loss(out)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{desc or 'training'}: non-finite loss {loss.item()} at step {step} ({_fmt_losses(out)})."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else float("inf"))
            optimizer.step()
            out = out.detach()
            out.set("grad_norm", grad_norm.detach())
            history.append(out)
            window.append(out)
            if "elbo" in out.keys():
                bar.set_postfix(elbo=f"{out['elbo'].item():.1f}", refresh=False)
            done = step + 1
            if logger is not None and (done % log_every == 0 or done == steps):
                metrics = torch.stack(window).float().mean(0)
                metrics.set("steps_per_s", torch.tensor(len(window) / (time.perf_counter() - tic)))
                logger.log_metrics({f"{log_prefix}/{k}": v for k, v in metrics.items()}, step=log_offset + done)
                window, tic = [], time.perf_counter()
            stop = interrupted()
            if on_step is not None:
                on_step(done, stop or done == steps)
            if stop:
                bar.close()
                raise KeyboardInterrupt(f"{desc or 'training'} interrupted after step {done}")
    return torch.stack(history) if history else TensorDict()


def _fmt_losses(out: TensorDictBase) -> str:
    return ", ".join(f"{k}={v.item():.4g}" for k, v in out.items() if v.numel() == 1)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within: the first SIGINT only raises a flag (read with the yielded callable); a second one
    interrupts at once. Outside the main thread, signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if received:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        received.append(signum)
        tqdm.write("Interrupted: finishing the current step and saving a checkpoint (Ctrl-C again to abort).")

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
