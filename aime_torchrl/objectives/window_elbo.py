# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The ELBO of a window: from a world model's core (what the losses optimise) or of filtered frames.

:func:`window_elbo` encodes, filters (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`,
optionally with a policy acting), runs the prior and the decoders and evaluates
:func:`~aime_torchrl.objectives.functional.elbo`, with every noise sample an input: on a core that
takes its noise as an argument (our RSSMs) the function is pure, so ``torch.compile`` (the losses'
``compile=True``) turns the filter, the prior, the decoders and the ELBO, forward and backward, into
a few fused kernels.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential

from aime_torchrl.modules.core import Actor, WorldModelCore
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.latent import make_latent
from aime_torchrl.objectives.functional import elbo


def window_elbo(
    core: WorldModelCore,
    observations: Mapping[str, torch.Tensor],
    actions: torch.Tensor,
    noise: Sequence[torch.Tensor] | None,
    *,
    actor: Actor | None = None,
    extra_kl: Callable[[dict], torch.Tensor] | None = None,
    **elbo_options,
) -> tuple[dict[str, torch.Tensor], dict]:
    """The ELBO of frames ``[*B, T]`` under a world model's core.

    Args:
        core (WorldModelCore): the world model's (``world_model.core``).
        observations (Mapping[str, torch.Tensor]): each sensor over the frames, ``[*B, T, ...]``.
        actions (torch.Tensor): ``[*B, T, A]``, row t's action a_{t-1} (row 0: the initial zero action).
        noise (Sequence[torch.Tensor], optional): the posterior's noise of every row
            (:meth:`~aime_torchrl.modules.core.WorldModelCore.draw_noise`; ``None`` for a core that
            samples inside its modules).

    Keyword Args:
        actor (Actor, optional): acts from row 1 on in place of ``actions`` (AIME's policy through
            :func:`~aime_torchrl.modules.core.make_actor`, a latent-action model's inverse model).
        extra_kl (Callable, optional): ``rows -> [*B, T]``: the KL of further latents from the filter's
            rows (a latent action's), optimised with the state's (:func:`~aime_torchrl.objectives.functional.elbo`).
        **elbo_options: :func:`~aime_torchrl.objectives.functional.elbo`'s options but ``batch_dims``
            and ``latent``.

    Returns the ELBO terms (a dict of scalars) and the filter's rows
    (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`, with the embeddings under ``"embedding"``
    and the prior's parameters under ``"prior"``).

    Examples:
        >>> import torch
        >>> from aime_torchrl.modules import RSSMWorldModel
        >>> core = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16).core
        >>> actions = torch.zeros(5, 7, 2)
        >>> terms, rows = window_elbo(core, {"observation": torch.randn(5, 7, 3)}, actions, core.draw_noise(actions[:, 0], 7))
        >>> sorted(terms), rows["next_state"].shape
        (['elbo', 'kl', 'loss_kl', 'loss_recon', 'recon_observation'], torch.Size([5, 7, 4]))
    """
    time_dim = actions.ndim - 2
    embeddings = core.encode(observations, actions.shape[:-1])
    rows = core.observe(embeddings, actions, noise=noise, actor=actor)
    rows["embedding"] = embeddings
    rows["prior"] = core.prior_params(rows)
    decoded = core.decode(rows["next_belief"], rows["next_state"])
    likelihoods = {key: (loc, scale, observations[key]) for key, (loc, scale) in decoded.items()}
    terms = elbo(likelihoods, rows["posterior"], rows["prior"], latent=core.latent, batch_dims=time_dim + 1,
                 extra_kl=None if extra_kl is None else extra_kl(rows), **elbo_options)
    return terms, rows


def elbo_terms(
    decoders: Mapping[str, ProbabilisticTensorDictSequential],
    frames: TensorDictBase,
    *,
    prior_mean: tuple[str, ...] | str = ("next", "prior_mean"),
    prior_std: tuple[str, ...] | str = ("next", "prior_std"),
    posterior_mean: tuple[str, ...] | str = ("next", "posterior_mean"),
    posterior_std: tuple[str, ...] | str = ("next", "posterior_std"),
    prior_logits: tuple[str, ...] | str = ("next", "prior_logits"),
    posterior_logits: tuple[str, ...] | str = ("next", "posterior_logits"),
    latent: str = "gaussian",
    unimix: float = 0.0,
    kl_scale: float = 1.0,
    free_nats: float = 0.0,
    kl_balance: float | None = None,
    nll_reweight: str = "none",
    kl_only: bool = False,
    extra_kl: torch.Tensor | None = None,
) -> TensorDict:
    """The ELBO of filtered frames ``[B, T]`` (:func:`~aime_torchrl.objectives.functional.elbo` on
    the parameters the frames hold) and the losses that optimise it.

    Returns :func:`~aime_torchrl.objectives.functional.elbo`'s terms as a TensorDict.

    Args:
        decoders (Mapping[str, ProbabilisticTensorDictSequential]): sensor -> decoder; the target
            of each is ``frames["next", sensor]`` (uint8 images are scaled to [0, 1]).
        frames (TensorDictBase): frames holding the posterior and prior parameters.

    Keyword Args:
        prior_mean, prior_std, posterior_mean, posterior_std (NestedKey): where to read Gaussian latents.
        prior_logits, posterior_logits (NestedKey): where to read categorical latents ``[..., N, K]``.
        latent (str): ``"gaussian"`` or ``"categorical"``, with ``unimix`` for the latter.
        kl_scale, free_nats, kl_balance, nll_reweight, kl_only, extra_kl: as
            :func:`~aime_torchrl.objectives.functional.elbo`'s.
    """
    likelihoods = {}
    for key, decoder in decoders.items():
        base = decoder.get_dist(frames).base_dist
        likelihoods[key] = (base.loc, base.scale, frames.get(("next", key)))
    distribution = make_latent(latent, unimix)
    keys = LatentKeys(prior_mean=prior_mean, prior_std=prior_std, posterior_mean=posterior_mean,
                      posterior_std=posterior_std, prior_logits=prior_logits, posterior_logits=posterior_logits)
    out = elbo(
        likelihoods,
        tuple(frames.get(key) for key in distribution.posterior_keys(keys)),
        tuple(frames.get(key) for key in distribution.prior_keys(keys)),
        latent=distribution,
        batch_dims=frames.batch_dims,
        kl_scale=kl_scale,
        free_nats=free_nats,
        kl_balance=kl_balance,
        nll_reweight=nll_reweight,
        kl_only=kl_only,
        extra_kl=extra_kl,
    )
    return TensorDict(out)
