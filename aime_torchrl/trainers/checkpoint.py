# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Atomic checkpoints and the random state needed to resume a run exactly."""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Writes ``state`` with :func:`torch.save` atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over ``path``. A crash or kill at any moment leaves either the
    previous checkpoint or the new one, never a truncated file.

    Examples:
        >>> import tempfile, torch
        >>> path = save_checkpoint(f"{tempfile.mkdtemp()}/checkpoint.pt", {"step": 3})
        >>> load_checkpoint(path)["step"]
        3
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`, with an error naming the file if it is
    missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise RuntimeError(f"Checkpoint {path} cannot be read ({err}).") from err


def rng_state() -> dict[str, Any]:
    """The state of every global random generator a run uses (Python, NumPy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_module(path: str | Path, module: torch.nn.Module, config: dict[str, Any]) -> Path:
    """Saves ``module``'s weights with the ``config`` that builds it (atomically)."""
    return save_checkpoint(path, {"config": dict(config), "state_dict": module.state_dict()})


def flat(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    items = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def load_module(path: str | Path, module: torch.nn.Module, config: dict[str, Any], *, what: str = "module") -> None:
    """Loads weights saved by :func:`save_module` into ``module``, strictly, after checking that they
    were saved with the same ``config`` (nested dicts compared key by key; a key the file lacks, as
    in files written before it was recorded, is not compared): a mismatch raises an error listing
    the differences rather than loading part of the weights.

    Examples:
        >>> import tempfile, torch
        >>> path = save_module(f"{tempfile.mkdtemp()}/net.pt", torch.nn.Linear(2, 3), {"hidden": 3})
        >>> load_module(path, torch.nn.Linear(2, 4), {"hidden": 4}, what="net")
        Traceback (most recent call last):
        ...
        ValueError: ...net.pt was saved with a different net config: hidden: saved 3, now 4.
    """
    saved = load_checkpoint(path)
    if not isinstance(saved, dict) or "config" not in saved or "state_dict" not in saved:
        raise ValueError(f"{path} is not a {what} file written by aime_torchrl (no config and state_dict).")
    old, now = flat(saved["config"]), flat(config)
    # a key the file lacks was not recorded when it was written (older files): not compared
    diff = [f"{k}: saved {old[k]}, now {now.get(k, '<absent>')}" for k in sorted(old) if old[k] != now.get(k, "<absent>")]
    if diff:
        raise ValueError(f"{path} was saved with a different {what} config: {'; '.join(diff)}.")
    module.load_state_dict(saved["state_dict"], strict=True)
