# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The one definition of a guarded gradient step: backward, clipping, and a non-finite guard that
never waits for the device."""
from __future__ import annotations

import time

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.record.loggers import Logger


def total_loss(losses: TensorDictBase) -> torch.Tensor:
    """Sums the ``loss_*`` entries of a loss module's output (TorchRL's convention)."""
    return sum(value for key, value in losses.items() if key.startswith("loss_"))


class GuardedBackward:
    """Back-propagates a loss module's output with clipped gradients, guarded on the device.

    From the first non-finite loss or gradient norm on, every gradient is zeroed (checked on the
    device, no host sync): no update can store a non-finite value in the weights or the optimiser
    state, so neither can a checkpoint. The detached outputs (and ``grad_norm``) are summed on the
    device; :meth:`read` is the only host sync: it raises :class:`FloatingPointError` naming the first
    bad step, or returns the means since the last read. What :class:`~aime_torchrl.trainers.OfflineLoop`
    and :class:`~aime_torchrl.trainers.AIMEOptimizationStepper` (TorchRL's Trainer) both step with.

    Args:
        params (list of torch.nn.Parameter): the trained parameters (those of the optimiser).

    Keyword Args:
        grad_clip (float, optional): max global gradient norm; ``None`` disables. Defaults to ``100.0``.
        desc (str, optional): what is trained, for the error. Defaults to ``"training"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> guard = GuardedBackward([w])
        >>> _ = guard.backward(TensorDict({"loss_a": (w * 2).sum()}), step=0)
        >>> w.grad.tolist(), guard.read()["loss_a"].item()
        ([2.0, 2.0], 4.0)
        >>> _ = guard.backward(TensorDict({"loss_a": (w * float("nan")).sum()}), step=1)
        >>> w.grad.tolist()
        [0.0, 0.0]
        >>> guard.read()
        Traceback (most recent call last):
        ...
        FloatingPointError: training: non-finite loss or gradient at step 1 ...
    """

    def __init__(self, params: list[torch.nn.Parameter], *, grad_clip: float | None = 100.0,
                 desc: str = "training") -> None:
        self.params = list(params)
        self.max_norm = grad_clip if grad_clip is not None else float("inf")
        self.desc = desc
        self.sums: TensorDict | None = None
        self.count = 0
        self.first_bad: torch.Tensor | None = None
        self.clock = time.perf_counter()

    def backward(self, losses: TensorDictBase, step: int) -> torch.Tensor:
        """Zeroes the gradients, back-propagates the sum of the ``loss_*`` entries of ``losses``,
        clips and guards the gradients, and adds the detached outputs to the sums. Returns the total."""
        loss = total_loss(losses)
        for p in self.params:
            p.grad = None
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        bad = self.first_bad
        self.first_bad = torch.where(finite, -1, step) if bad is None else torch.where((bad < 0) & ~finite, step, bad)
        healthy = (self.first_bad < 0).to(loss.dtype)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(healthy).nan_to_num_(0.0, 0.0, 0.0)
        out = losses.detach().float()
        out.set("grad_norm", grad_norm.detach())
        self.sums = out if self.sums is None else self.sums + out
        self.count += 1
        return loss

    def read(self) -> TensorDict | None:
        """The means of the outputs since the last read (``None`` if no step was taken); raises
        :class:`FloatingPointError` if a step was non-finite (the host sync of the loop)."""
        if self.count == 0:
            return None
        bad = int(self.first_bad.item())
        means = self.sums / self.count
        if bad >= 0:
            summary = ", ".join(f"{k}={v.item():.4g}" for k, v in means.items() if v.numel() == 1)
            raise FloatingPointError(
                f"{self.desc}: non-finite loss or gradient at step {bad} (its gradients and all later ones were "
                f"zeroed, so the weights stay finite; means of the last {self.count} steps: {summary})."
            )
        self.sums, self.count = None, 0
        return means

    def log(self, done: int, logger: Logger | None = None, *, prefix: str = "train", offset: int = 0) -> TensorDict | None:
        """:meth:`read`, then the means with their ``step`` (``done``), also sent to ``logger`` as
        ``<prefix>/<key>`` at step ``offset + done`` with ``steps_per_s`` since the last log."""
        count = self.count
        means = self.read()
        if means is None:
            return None
        means = means.float()
        if logger is not None:
            elapsed = time.perf_counter() - self.clock
            logged = means.clone().set("steps_per_s", torch.tensor(count / elapsed))
            logger.log_metrics({f"{prefix}/{k}": v for k, v in logged.items()}, step=offset + done)
        self.clock = time.perf_counter()
        return means.set("step", torch.tensor(done))
