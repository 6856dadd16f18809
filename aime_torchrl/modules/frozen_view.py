# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The one way a trained module is frozen: a view whose parameters are detached aliases."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Generic, TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def frozen(module: M, keep: Iterable[nn.Parameter] = ()) -> M:
    """A frozen view of ``module``: the same modules, whose parameters are detached aliases of its
    own (the same storage, ``requires_grad=False``), those in ``keep`` left live.

    Gradients flow *through* the view into whatever feeds it (a policy acting inside a frozen world
    model), never into its weights, and no weight gradient is computed. The original's
    ``requires_grad`` flags are never touched (TorchRL's ``hold_out_net`` flips them all back on exit,
    which unfreezes what a user froze), and its later updates show in the view (shared storage).
    What :class:`~aime_torchrl.AIMELoss` runs phase 2 on, and what an imagination env or a labelling
    model is built on once its own training is over.

    Examples:
        >>> import torch
        >>> net = torch.nn.Linear(3, 2)
        >>> view = frozen(net)
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> view(x).sum().backward()
        >>> x.grad is not None, net.weight.grad is None, net.weight.requires_grad
        (True, True, True)
        >>> view.weight.data_ptr() == net.weight.data_ptr()
        True
    """
    live = set(keep)
    memo = {id(p): p if p in live else nn.Parameter(p.detach(), requires_grad=False) for p in module.parameters()}
    return copy.deepcopy(module, memo)


class FrozenView(Generic[M]):
    """:func:`frozen` of a module that may be moved or reloaded: built on the first call and again
    only when the module's parameters were replaced (``.to()``, ``load_state_dict(..., assign=True)``).

    Examples:
        >>> import torch
        >>> net = torch.nn.Linear(3, 2)
        >>> view = FrozenView(net)
        >>> view() is view(), view().weight.requires_grad
        (True, False)
    """

    def __init__(self, module: M, keep: Iterable[nn.Parameter] = ()) -> None:
        self.module = module
        self.keep = list(keep)
        self._signature: tuple = ()
        self._view: M | None = None

    def __call__(self) -> M:
        signature = tuple((id(p), p.data_ptr()) for p in self.module.parameters())
        if self._view is None or signature != self._signature:
            self._view, self._signature = frozen(self.module, self.keep), signature
        return self._view
