# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The ELBO of a window under this package's RSSM on plain tensors: the fast path of both losses.

No TensorDict and no distribution object between the inputs and the losses, and every noise sample
is an input: the function is pure, so ``torch.compile`` (the losses' ``compile=True``) turns the
whole filter, the prior, the decoders and the ELBO, forward and backward, into a few fused kernels.
World models of other modules take the generic path through their keys.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from aime_torchrl.modules.filter_step import filter_sequence, tanh_gaussian_actor
from aime_torchrl.modules.policy import TanhGaussianPolicyNet
from aime_torchrl.modules.world_model import RSSMNets
from aime_torchrl.objectives.elbo import elbo_from_params


def window_elbo(
    nets: RSSMNets,
    observations: dict[str, torch.Tensor],
    actions: torch.Tensor,
    noise: Sequence[torch.Tensor],
    *,
    policy: TanhGaussianPolicyNet | None = None,
    features: Sequence[str] = ("belief", "state"),
    policy_noise: Sequence[torch.Tensor] = (),
    **elbo_options,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encodes, filters, runs the prior and the decoders over frames ``[*B, T]`` and returns the ELBO.

    Args:
        nets (RSSMNets): the world model's networks (:meth:`RSSMWorldModel.plain_nets`).
        observations (dict[str, torch.Tensor]): each sensor over the frames, ``[*B, T, ...]``.
        actions (torch.Tensor): ``[*B, T, A]``, row t's action a_{t-1} (row 0: the initial zero action).
        noise (Sequence[torch.Tensor]): the posterior's standard normal noise of every row, ``T x [*B, S]``.

    Keyword Args:
        policy (TanhGaussianPolicyNet, optional): acts from row 1 on in place of ``actions`` (AIME).
        features (Sequence[str]): the latents the policy reads, in order (``"belief"``, ``"state"``).
        policy_noise (Sequence[torch.Tensor]): the policy's noise of every row, ``T x [*B, A]``.
        **elbo_options: :func:`~aime_torchrl.objectives.elbo.elbo_from_params`'s options but ``batch_dims``.

    Returns the ELBO terms (a dict of scalars) and the actions of the rows (the policy's where it acted).
    """
    time_dim = actions.ndim - 2
    embedding = nets.encoder(*observations.values())
    initial_state = embedding.new_zeros(*actions.shape[:time_dim], nets.state_dim)
    initial_belief = embedding.new_zeros(*actions.shape[:time_dim], nets.belief_dim)
    act = tanh_gaussian_actor(policy, features, policy_noise) if policy is not None else None
    rows = filter_sequence(
        nets.transition, nets.posterior, initial_state, initial_belief,
        actions.unbind(time_dim), embedding.unbind(time_dim), noise, act,
    )
    belief = torch.stack(rows["next", "belief"], time_dim)
    state = torch.stack(rows["next", "state"], time_dim)
    prior_mean, prior_std = nets.prior.params(belief)
    likelihoods = {}
    for key, (decoder, fixed_std) in nets.decoders.items():
        out = decoder(belief, state)
        loc, scale = (out, fixed_std) if fixed_std is not None else out
        likelihoods[key] = (loc, scale, observations[key])
    terms = elbo_from_params(
        likelihoods,
        (torch.stack(rows["next", "posterior_mean"], time_dim), torch.stack(rows["next", "posterior_std"], time_dim)),
        (prior_mean, prior_std),
        batch_dims=time_dim + 1,
        **elbo_options,
    )
    return terms, torch.stack(rows["action"], time_dim)
