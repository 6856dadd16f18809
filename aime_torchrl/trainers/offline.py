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
    autocast: torch.dtype | None = None,
) -> TensorDict:
    """Runs gradient steps ``start, ..., steps - 1`` of ``loss_module`` on batches from ``sample()``.

    Gradients are clipped to ``grad_clip`` (global norm) over the parameters the optimiser holds.

    The loop never waits for the device: the outputs are summed on the device and read every
    ``log_every`` steps (progress bar, logger, returned means). A non-finite loss or gradient norm
    is caught on the device too: from that step on the gradients are zeroed (no update can store a
    non-finite value in the weights or the optimiser state, so neither can a checkpoint), and the
    next read stops the run with an error naming the step.

    Interruption: a ``SIGINT`` (Ctrl-C) or ``SIGTERM`` (what ``timeout``, ``kill`` and job
    schedulers send) during the loop lets the current step finish, calls ``on_step(done, True)``
    (save a checkpoint there) and then raises :class:`KeyboardInterrupt`; a second signal
    interrupts at once.

    Args:
        loss_module (LossModule): e.g. :class:`~aime_torchrl.WorldModelLoss` or :class:`~aime_torchrl.AIMELoss`.
        sample (Callable[[], TensorDictBase]): returns one batch, e.g. ``replay_buffer.sample``.
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
        autocast (torch.dtype, optional): run the loss's forward under :func:`torch.autocast` with
            this dtype (``torch.bfloat16``: mixed precision on GPUs that have it); the backward,
            clipping and update stay in the parameters' dtype. Defaults to ``None`` (off).

    Returns the means of the detached outputs (and ``grad_norm``) over each ``log_every`` steps, with
    the ``step`` at which each ends: a ``[ceil((steps - start) / log_every)]`` TensorDict.

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
    params = [p for group in optimizer.param_groups for p in group["params"]]
    mixed = torch.autocast(params[0].device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    max_norm = grad_clip if grad_clip is not None else float("inf")
    means = []
    sums, count, first_bad = None, 0, None
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, dynamic_ncols=True, initial=start, total=steps)
    tic = time.perf_counter()

    def flush(done: int, log: bool = True) -> None:
        """Reads the on-device accumulators (the only host sync): stops on a non-finite loss, logs the means."""
        nonlocal sums, count, tic
        if count == 0:
            return
        bad = int(first_bad.item())
        if bad >= 0:
            raise FloatingPointError(
                f"{desc or 'training'}: non-finite loss or gradient at step {bad} (its gradients and all later ones "
                f"were zeroed, so the weights stay finite; means of the last {count} steps: {_fmt_losses(sums / count)})."
            )
        if not log:
            return
        metrics = (sums / count).float()
        metrics.set("step", torch.tensor(done))
        means.append(metrics)
        if "elbo" in metrics.keys():
            bar.set_postfix(elbo=f"{metrics['elbo'].item():.1f}", refresh=False)
        if logger is not None:
            metrics = metrics.exclude("step")
            metrics.set("steps_per_s", torch.tensor(count / (time.perf_counter() - tic)))
            logger.log_metrics({f"{log_prefix}/{k}": v for k, v in metrics.items()}, step=log_offset + done)
        sums, count, tic = None, 0, time.perf_counter()

    with _deferred_interrupt() as interrupted:
        for step in bar:
            with mixed:
                out = loss_module(sample())
                loss = total_loss(out)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            # On-device guard, no host sync: from the first non-finite loss or gradient on, every
            # gradient is zeroed, so no update can write a non-finite value into the weights or the
            # optimiser state (and a checkpoint taken before the next read stays finite).
            finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
            first_bad = (
                torch.where(finite, -1, step) if first_bad is None else torch.where((first_bad < 0) & ~finite, step, first_bad)
            )
            healthy = (first_bad < 0).to(loss.dtype)
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(healthy).nan_to_num_(0.0, 0.0, 0.0)
            optimizer.step()
            out = out.detach().float()
            out.set("grad_norm", grad_norm.detach())
            sums = out if sums is None else sums + out
            count += 1
            done = step + 1
            stop = interrupted()
            log = done % log_every == 0 or done == steps
            if log or stop:
                flush(done, log=log)
            if on_step is not None:
                on_step(done, stop or done == steps)
            if stop:
                bar.close()
                raise KeyboardInterrupt(f"{desc or 'training'} interrupted after step {done}")
    return torch.stack(means) if means else TensorDict()


def _fmt_losses(out: TensorDictBase) -> str:
    return ", ".join(f"{k}={v.item():.4g}" for k, v in out.items() if v.numel() == 1)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within: the first SIGINT or SIGTERM only raises a flag (read with the yielded callable); a
    second one interrupts at once. Outside the main thread, signals are left alone."""
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
