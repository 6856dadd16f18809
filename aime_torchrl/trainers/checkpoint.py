# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Checkpoints: atomic files, the random state, modules with their configs (flat/unflat) and the run
folder's checkpoint (:class:`RunCheckpoint`): what a stopped run needs to continue exactly, and nothing non-finite."""
from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


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


def unflat(items: Mapping[str, Any]) -> dict:
    """The inverse of :func:`flat`."""
    config: dict = {}
    for key, value in items.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config


def _non_finite(state: Any, prefix: str) -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict holding NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, Mapping):
        return [name for key, value in state.items() for name in _non_finite(value, f"{prefix}.{key}")]
    if isinstance(state, (list, tuple)):
        return [name for i, value in enumerate(state) for name in _non_finite(value, f"{prefix}.{i}")]
    return []


class RunCheckpoint:
    """``<folder>/checkpoint.pt``: config, stage, step, weights, optimiser states, random state and
    logger state of a run, written atomically, never with a non-finite tensor.

    :meth:`save` refuses a state with NaN or inf anywhere in a module's or optimiser's state (it
    raises, naming the tensor and the step, and the last finite checkpoint stays in place).
    :meth:`resume_config` gives a resumed run its own config back (``resume=true out_dir=<run>`` is
    enough), :meth:`restore` puts the weights, optimiser states and random state back, and
    :meth:`logger_state` the logger's, with its folder moved to where the run now lives.

    Args:
        folder (path): the run folder.

    Examples:
        >>> import tempfile, torch
        >>> run = RunCheckpoint(tempfile.mkdtemp())
        >>> net = torch.nn.Linear(2, 2)
        >>> opt = torch.optim.Adam(net.parameters())
        >>> _ = run.save({"lr": 1e-3}, "train", 10, modules={"net": net}, optimizers={"opt": opt})
        >>> state = run.load()
        >>> run.restore(state, modules={"net": net}, optimizers={"opt": opt})
        >>> state["stage"], state["step"]
        ('train', 10)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(float("nan"))
        >>> run.save({"lr": 1e-3}, "train", 20, modules={"net": net})
        Traceback (most recent call last):
        ...
        FloatingPointError: ...non-finite values at step 20 in net.weight...
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "checkpoint.pt"

    def exists(self) -> bool:
        return self.path.exists()

    def save(
        self,
        config: Mapping[str, Any],
        stage: str,
        step: int,
        *,
        modules: Mapping[str, nn.Module | None],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        logger: Any = None,
        **extra: Any,
    ) -> Path:
        """Writes the run's state after ``step`` steps of ``stage``; ``extra`` entries are stored as given."""
        weights = {name: module.state_dict() if module is not None else None for name, module in modules.items()}
        optimizer_states = {name: opt.state_dict() for name, opt in (optimizers or {}).items()}
        bad = _non_finite(weights, "")[:5] + _non_finite(optimizer_states, "")[:5]
        if bad:
            kept = f"{self.path} still holds the last finite state" if self.exists() else "nothing was written"
            raise FloatingPointError(
                f"refusing to checkpoint non-finite values at step {step} in {', '.join(b.lstrip('.') for b in bad)} "
                f"({kept}). Lower the learning rate or the gradient clipping and resume."
            )
        return save_checkpoint(self.path, {
            "config": dict(config), "stage": stage, "step": step, "modules": weights, "optimizers": optimizer_states,
            "rng": rng_state(), "logger": logger.state_dict() if logger is not None else None, **extra,
        })

    def load(self) -> dict[str, Any]:
        """The saved state (raises, naming the file, when there is none). Checkpoints written by
        examples/aime_walker.py before RunCheckpoint (``world_model``/``policy``/``optimizer`` at the
        top level) are read into this layout."""
        state = load_checkpoint(self.path)
        if "modules" not in state and "world_model" not in state:
            raise ValueError(f"{self.path} was written by an older version of this script, in a layout that cannot be "
                             "resumed: continue in another out_dir (or delete it).")
        if "modules" not in state:
            state = {**state, "modules": {"world_model": state.pop("world_model"), "policy": state.pop("policy")},
                     "optimizers": {"optimizer": state.pop("optimizer")}}
        return state

    @staticmethod
    def restore(
        state: Mapping[str, Any],
        *,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    ) -> None:
        """Loads the saved weights into ``modules`` and optimiser states into ``optimizers`` (by
        name; a name saved as ``None`` is skipped), then the random state."""
        for name, module in modules.items():
            if state["modules"].get(name) is not None:
                module.load_state_dict(state["modules"][name])
        for name, optimizer in (optimizers or {}).items():
            optimizer.load_state_dict(state["optimizers"][name])
        set_rng_state(state["rng"])

    def logger_state(self, state: Mapping[str, Any], log_dir: str | Path) -> dict[str, Any] | None:
        """The saved state of a TorchRL logger, writing into ``log_dir`` (the run folder may have moved)."""
        saved = state.get("logger")
        return None if saved is None else {**saved, "log_dir": str(Path(log_dir).absolute())}

    @staticmethod
    def resume_config(
        saved: Mapping[str, Any],
        now: Mapping[str, Any],
        defaults: Mapping[str, Any],
        resumable: Sequence[str] = (),
        explicit: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The config of a resumed run: the saved one, except where ``now`` sets a key that starts
        with one of ``resumable`` (it does not change what is trained), and for keys the saved
        config lacks (added to the config since: from ``now``). ``now`` setting any other key to
        another value than the saved one is an error. The keys ``now`` sets are ``explicit`` (the
        command line's, e.g. from Hydra's ``HydraConfig.get().overrides.task``) or, when it is
        ``None``, those whose value differs from ``defaults``.

        Examples:
            >>> RunCheckpoint.resume_config({"lr": 0.1, "eval": {"episodes": 5}, "resume": False},
            ...     {"lr": 1.0, "eval": {"episodes": 10}, "resume": True},
            ...     {"lr": 1.0, "eval": {"episodes": 10}, "resume": False}, resumable=["resume", "eval."])
            {'lr': 0.1, 'eval': {'episodes': 5}, 'resume': True}
        """
        old, new, default = flat(saved), flat(now), flat(defaults)
        prefixes = tuple(resumable)
        merged, conflicts = dict(old), []
        given = set(explicit) if explicit is not None else {k for k, v in new.items() if v != default.get(k)}
        for key, value in new.items():
            if key not in old:
                merged[key] = value
            elif key in given and value != old[key]:
                if key.startswith(prefixes):
                    merged[key] = value
                else:
                    conflicts.append(f"{key}={value!r} (the run has {old[key]!r})")
        if conflicts:
            raise ValueError(
                f"resume=true continues the run with its own config, but the command line changes {', '.join(conflicts)}; "
                f"drop these overrides (only {', '.join(prefixes)} may change), or start a new run in another out_dir."
            )
        return unflat(merged)
