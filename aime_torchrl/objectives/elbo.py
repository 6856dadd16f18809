# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The LossModule base of every ELBO loss: its keys, its options and the one call of the window ELBO.

The math lives in :mod:`aime_torchrl.objectives.functional`, the window's ELBO on a world model's core
in :mod:`aime_torchrl.objectives.window_elbo`; the losses (:class:`~aime_torchrl.WorldModelLoss`,
:class:`~aime_torchrl.AIMELoss`, :class:`~aime_torchrl.objectives.LatentActionLoss`) build on this.
"""
from __future__ import annotations

import getpass
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torchrl.objectives import LossModule

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.core import Actor, make_actor
from aime_torchrl.modules.rollout import actor_noise
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.objectives.functional import NLL_REWEIGHTS
from aime_torchrl.objectives.window_elbo import window_elbo

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ELBOLossBase(LossModule):
    """Keys and options shared by the ELBO losses (same objective).

    Subclasses call :meth:`_window_terms` with the data's actions or a policy acting.
    """

    @dataclass
    class _AcceptedKeys:
        """Maintains default values for all configurable tensordict keys: ``action``, where the
        *window* holds a_t, which may differ from the world model's name (phase 1 reads it; phase 2
        only compares it with the inferred actions, if present). Each loss adds the names of the world
        model's latents it reads (:class:`~aime_torchrl.modules.keys.LatentKeys`' fields).

        A loss starts from its world model's names (``world_model.keys``); ``set_keys`` checks that
        the world model was built on the names it is given (``from_config(..., keys=...)``).
        """

        action: NestedKey = "action"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        *,
        kl_scale: float,
        free_nats: float,
        kl_balance: float | None,
        nll_reweight: str,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if nll_reweight not in NLL_REWEIGHTS:
            raise ValueError(f"nll_reweight must be one of {NLL_REWEIGHTS}, got {nll_reweight!r}.")
        if kl_balance is not None and not 0.0 <= kl_balance <= 1.0:
            raise ValueError(f"kl_balance must be in [0, 1] or None, got {kl_balance}.")
        if kl_scale < 0 or free_nats < 0:
            raise ValueError(f"kl_scale and free_nats must be >= 0, got {kl_scale} and {free_nats}.")
        self.kl_scale = kl_scale
        self.free_nats = free_nats
        self.kl_balance = kl_balance
        self.nll_reweight = nll_reweight
        self.compile = compile
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise ValueError(
                f"compile must be a bool or one of torch.compile's modes {COMPILE_MODES}, got {compile!r} "
                "(Hydra: the `compile` key)."
            )
        mode = compile if isinstance(compile, str) else None  # e.g. "reduce-overhead": CUDA graphs
        self._window_elbo = torch.compile(window_elbo, mode=mode) if compile else window_elbo
        self._inputs_checked = False

    def _names_from(self, keys: LatentKeys) -> dict:
        """The names of ``keys`` (a world model's) that this loss reads: ``set_keys`` arguments."""
        return {f.name: getattr(keys, f.name) for f in fields(self.tensor_keys) if hasattr(keys, f.name)}

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """The names this loss reads must be those the world model's modules write."""
        ours, theirs = asdict(self.tensor_keys), self.world_model.keys.as_dict()
        ours.pop("action")  # the data's: to_frames moves it to the world model's
        wrong = {name: key for name, key in ours.items() if name in theirs and unravel_key(key) != unravel_key(theirs[name])}
        if wrong:
            told = ", ".join(f"{name}={key!r}" for name, key in wrong.items())
            built = ", ".join(f"{name}={theirs[name]!r}" for name in wrong)
            for name in wrong:  # the loss keeps reading what the world model writes
                setattr(self.tensor_keys, name, theirs[name])
            raise ValueError(
                f"set_keys({told}): the world model's modules read and write {built} (world_model.keys). Build the "
                f"world model on the same names, RSSMWorldModel.from_config(..., keys=LatentKeys({told})) (and "
                "make_policy(..., keys=world_model.keys)), or leave the loss's keys at the world model's."
            )

    def _check_finite_once(self, tensordict: TensorDictBase) -> None:
        """The entries this loss reads (``in_keys``) in the first window it sees must be finite (one
        read of the data, then never again: ``train_offline`` catches a non-finite loss later on
        without waiting for the device)."""
        if self._inputs_checked:
            return
        values = {key: tensordict.get(key, None) for key in self.in_keys}
        bad = [key for key, value in values.items()
               if value is not None and value.is_floating_point() and not bool(torch.isfinite(value).all())]
        if bad:
            names = ", ".join(k if isinstance(k, str) else ".".join(k) for k in bad)
            raise ValueError(f"The window holds NaN or inf in {names}: clean the data (the datasets built here and "
                             "AIMEDataset refuse such files).")
        self._inputs_checked = True

    def _window_terms(
        self,
        world_model: RSSMWorldModel,
        tensordict: TensorDictBase,
        *,
        with_actions: bool,
        policy: TensorDictModuleBase | None = None,
        actor: Actor | None = None,
        kl_only: bool = False,
        extra_kl: Callable[[dict], torch.Tensor] | None = None,
    ) -> tuple[TensorDict, dict]:
        """The window's ELBO terms on the world model's core (:func:`window_elbo`, compiled with
        ``compile=True``) and the filter's rows. The noise is drawn here, before the loop: the
        posterior's, then the acting ``policy``'s (:func:`~aime_torchrl.modules.rollout.actor_noise`); an
        ``actor`` (:data:`~aime_torchrl.modules.core.Actor`) comes with its own."""
        frames = world_model.to_frames(tensordict, with_actions, self.tensor_keys.action)
        core = world_model.core
        observations = {key: frames.get(("next", key)) for key in world_model.observation_keys}
        actions = frames.get(world_model.keys.action)
        length = frames.batch_size[-1]
        noise = core.draw_noise(actions[..., 0, :], length)
        if policy is not None:
            actor = make_actor(policy, world_model.keys, noise=actor_noise(policy, core, actions, length))
        try:
            terms, rows = self._window_elbo(
                core, observations, actions, noise, actor=actor, extra_kl=extra_kl, kl_scale=self.kl_scale,
                free_nats=self.free_nats, kl_balance=self.kl_balance, nll_reweight=self.nll_reweight, kl_only=kl_only,
            )
        except (ImportError, OSError) as err:
            if not self.compile:
                raise
            raise RuntimeError(
                f"compile={self.compile!r}: a compiled artefact in inductor's cache cannot be loaded ({err}); a "
                "compilation interrupted by a signal leaves such a truncated file. Remove the cache folder "
                f"{inductor_cache_dir()} (or set TORCHINDUCTOR_CACHE_DIR to a new one) and run again, or pass "
                "compile=false."
            ) from err
        return TensorDict(terms), rows


def inductor_cache_dir() -> str:
    """Where torch.compile's inductor keeps its compiled artefacts: ``$TORCHINDUCTOR_CACHE_DIR``, else
    its default ``<tmp>/torchinductor_<user>``."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
