# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The torch device a config names, refused before anything runs when this machine lacks it."""
from __future__ import annotations

import torch


def resolve_device(spec: str, *, key: str = "device") -> torch.device:
    """The device of a config value: ``"auto"`` is CUDA when there is a CUDA device, else the CPU;
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or another torch device string) are taken as given. A CUDA
    device that this machine lacks (no CUDA at all, or ``N`` beyond the devices there are) and a
    string that is no device are refused, with an error naming ``key`` and the choices there are
    (torch itself would fail at the first tensor, naming neither).

    Args:
        spec (str): ``"auto"``, or a torch device string.
        key (str): the config key (or command-line option) that gave ``spec``. Defaults to ``"device"``.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device(f"cuda:{torch.cuda.device_count()}")  # one past the last CUDA device
        Traceback (most recent call last):
        ...
        ValueError: device=cuda:...: this machine has ... CUDA device...; pass device=auto (CUDA when there is one)...
    """
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices = [f"{key}=auto (CUDA when there is one)", f"{key}=cpu", *(f"{key}=cuda:{i}" for i in range(count))]
    fix = f"pass {', '.join(choices[:-1])} or {choices[-1]}."
    if spec == "auto":
        return torch.device("cuda" if count else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(f"{key}={spec!r} is not a device: {fix}") from None
    if device.type == "cuda" and not count:
        why = "is built without CUDA" if torch.version.cuda is None else "finds no CUDA device"
        raise ValueError(f"{key}={spec}: this machine has no CUDA device (torch {torch.__version__} {why}); {fix}")
    if device.type == "cuda" and device.index is not None and device.index >= count:
        present = ", ".join(f"cuda:{i}" for i in range(count))
        raise ValueError(f"{key}={spec}: this machine has {count} CUDA device{'s' if count > 1 else ''} ({present}); {fix}")
    return device
