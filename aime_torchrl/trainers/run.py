# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The checkpoint of a run folder: what a stopped run needs to continue exactly, and nothing non-finite."""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aime_torchrl.trainers.checkpoint import flat, load_checkpoint, rng_state, save_checkpoint, set_rng_state


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


def check_config(
    config: Mapping[str, Any],
    *,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    choices: Mapping[str, Sequence[Any]] | None = None,
    non_empty: Sequence[str] = (),
) -> None:
    """Refuses a config before anything runs: every key of ``positive`` must be a number > 0, of
    ``non_negative`` >= 0 (``None`` passes both: "not set"), of ``choices`` one of its values, and
    of ``non_empty`` a list (or string) of at least one item; the error names the key, the value and
    what is allowed (keys are dotted: ``"phase1.steps"``). Keys of ``positive`` and ``non_negative``
    may be glob patterns (``"*.lr"``, ``"*"``): a pattern checks the numbers it matches and leaves
    other values (strings, booleans, lists) alone; the first key or pattern that matches decides.

    Examples:
        >>> check_config({"phase1": {"steps": -3}}, non_negative=["phase1.steps"])
        Traceback (most recent call last):
        ...
        ValueError: phase1.steps=-3: must be a number >= 0 (e.g. phase1.steps=0 skips it).
        >>> check_config({"phase1": {"lr": 0.0, "name": "x"}}, positive=["*.lr"], non_negative=["*"])
        Traceback (most recent call last):
        ...
        ValueError: phase1.lr=0.0: must be a number > 0.
        >>> check_config({"setup": "foo"}, choices={"setup": ["mdp", "lpomdp", "visual"]})
        Traceback (most recent call last):
        ...
        ValueError: setup='foo' is not one of 'mdp', 'lpomdp', 'visual'.
        >>> check_config({"seeds": []}, non_empty=["seeds"])
        Traceback (most recent call last):
        ...
        ValueError: seeds=[]: must list at least one value.
    """
    values = flat(config)
    for key, allowed in (choices or {}).items():
        if values.get(key) not in allowed:
            raise ValueError(f"{key}={values.get(key)!r} is not one of {', '.join(repr(a) for a in allowed)}.")
    for key in non_empty:
        value = values.get(key)
        if not isinstance(value, Sequence) or len(value) == 0:
            raise ValueError(f"{key}={value!r}: must list at least one value.")
    rules = [(pattern, "> 0") for pattern in positive] + [(pattern, ">= 0") for pattern in non_negative]
    for key, value in values.items():
        rule = next(((pattern, low) for pattern, low in rules if fnmatch.fnmatchcase(key, pattern)), None)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if rule is None or value is None or (not number and rule[0] != key):
            continue
        low = rule[1]
        if not number or not (value > 0 if low == "> 0" else value >= 0):
            hint = f" (e.g. {key}=0 skips it)" if low == ">= 0" and key.endswith("steps") else ""
            raise ValueError(f"{key}={value!r}: must be a number {low}{hint}.")
