# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The key scheme of a world model's frames: the one definition of every name it reads and writes."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tensordict.utils import NestedKey


@dataclass
class LatentKeys:
    """Where a world model's frames hold everything but the sensors (TorchRL's Dreamer names by default).

    :class:`~aime_torchrl.modules.RSSMWorldModel` builds its modules on these names
    (``from_config(..., keys=LatentKeys(state="latent"))``), its rollout carries the latent state
    under them, :func:`~aime_torchrl.modules.make_policy` and the IDM read and write them, and the
    losses read them (``_AcceptedKeys`` of :class:`~aime_torchrl.WorldModelLoss` and
    :class:`~aime_torchrl.AIMELoss`, whose ``set_keys`` checks them against the world model's).
    Rename them when a name clashes with the data, e.g. an environment whose observation is called
    ``"state"``.

    Attributes:
        state (NestedKey): the stochastic state s; the previous one at the root of a frame, the
            frame's own under ``"next"``. Defaults to ``"state"``.
        belief (NestedKey): the deterministic state h, laid out as ``state``. Defaults to ``"belief"``.
        action (NestedKey): the action of each window step (data) and of each frame (a_{t-1}: the
            transition reads it, a policy writes it). Defaults to ``"action"``.
        encoded_latents (NestedKey): the embedding of the frame's observations. Defaults to
            ``("next", "encoded_latents")``.
        prior_mean, prior_std, posterior_mean, posterior_std (NestedKey): Gaussian latents' parameters.
            Default to ``("next", "prior_mean")`` etc.
        prior_logits, posterior_logits (NestedKey): categorical latents' logits ``[..., N, K]``
            (TorchRL's DreamerV3 modules). Default to ``("next", "prior_logits")`` etc.
        prior_state (NestedKey): a prior sample written by DreamerV3's transition (not the state:
            the posterior's sample is). Defaults to ``("next", "prior_state")``.
        loc, scale (NestedKey): the policy's Gaussian parameters (before the tanh). Default to
            ``"loc"``, ``"scale"``.
        idm_loc, idm_scale (NestedKey): the latent IDM's. Default to ``"idm_loc"``, ``"idm_scale"``.

    Examples:
        >>> keys = LatentKeys(state="latent")
        >>> keys.next("state"), keys.encoded_latents
        (('next', 'latent'), ('next', 'encoded_latents'))
    """

    state: NestedKey = "state"
    belief: NestedKey = "belief"
    action: NestedKey = "action"
    encoded_latents: NestedKey = ("next", "encoded_latents")
    prior_mean: NestedKey = ("next", "prior_mean")
    prior_std: NestedKey = ("next", "prior_std")
    posterior_mean: NestedKey = ("next", "posterior_mean")
    posterior_std: NestedKey = ("next", "posterior_std")
    prior_logits: NestedKey = ("next", "prior_logits")
    posterior_logits: NestedKey = ("next", "posterior_logits")
    prior_state: NestedKey = ("next", "prior_state")
    loc: NestedKey = "loc"
    scale: NestedKey = "scale"
    idm_loc: NestedKey = "idm_loc"
    idm_scale: NestedKey = "idm_scale"

    def next(self, name: str) -> tuple[str, ...]:
        """The key of attribute ``name`` under ``"next"`` (the frame's own state or belief)."""
        key = getattr(self, name)
        return ("next", *((key,) if isinstance(key, str) else key))

    def as_dict(self) -> dict[str, NestedKey]:
        return asdict(self)

    @classmethod
    def of(cls, keys: LatentKeys | dict | None) -> LatentKeys:
        """``keys`` as a :class:`LatentKeys` (a mapping gives the names to change; ``None`` the defaults)."""
        if isinstance(keys, LatentKeys):  # a loss's keys may hold more fields (e.g. ``labelled``)
            return cls(**{k: v for k, v in keys.as_dict().items() if k in cls.__dataclass_fields__})
        unknown = set(keys or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown latent keys {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}.")
        return cls(**(keys or {}))
