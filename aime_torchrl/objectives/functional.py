# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The math of the ELBO on plain tensors: KL balancing, free nats, the latents' KL and the ELBO itself.

Functions only (no module, no TensorDict): the losses and the window ELBO build on them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from aime_torchrl.modules.encoders import to_float_image
from aime_torchrl.modules.latent import (
    categorical_kl, GaussianLatent, gaussian_kl, LatentDistribution, LATENTS, make_latent, Params,
)

NLL_REWEIGHTS = ("none", "dim_wise")

__all__ = ["balanced_kl", "categorical_kl", "elbo", "free_nats_kl", "gaussian_kl", "latent_kl", "LATENTS",
           "NLL_REWEIGHTS"]


def balanced_kl(
    mean_q: torch.Tensor,
    std_q: torch.Tensor,
    mean_p: torch.Tensor,
    std_p: torch.Tensor,
    balance: float | None = None,
) -> torch.Tensor:
    """Per-dimension KL(q || p) of diagonal Gaussians, optionally with KL balancing (DreamerV2).

    With ``balance = alpha`` the value is unchanged but the gradient is that of
    ``alpha * KL(sg(q) || p) + (1 - alpha) * KL(q || sg(p))``: the prior moves towards the
    posterior ``alpha / (1 - alpha)`` times faster than the posterior towards the prior.

    Examples:
        >>> import torch
        >>> q, p = torch.tensor([0.5]), torch.tensor([0.0])
        >>> balanced_kl(q, torch.ones(1), p, torch.ones(1), balance=0.8)
        tensor([0.1250])
    """
    return sum(weight * kl for weight, kl in _balanced_terms(GaussianLatent(), (mean_q, std_q), (mean_p, std_p), balance))


def _balanced_terms(
    latent: LatentDistribution, posterior: Params, prior: Params, balance: float | None
) -> list[tuple[float, torch.Tensor]]:
    """The weighted KL terms of balancing: ``[(1, KL(q || p))]``, or with ``balance = alpha``
    ``[(alpha, KL(sg(q) || p)), (1 - alpha, KL(q || sg(p)))]``."""
    if balance is not None and not 0.0 <= balance <= 1.0:
        raise ValueError(f"kl_balance must be in [0, 1] or None, got {balance}.")
    return latent.balanced_kl(posterior, prior, balance)


def free_nats_kl(kl: torch.Tensor, nats: float) -> torch.Tensor:
    """Straight-through free nats on the per-step KL (last dim = latent dims).

    The value is left unchanged (the logged KL stays the true one), but the gradient is that of
    ``max(sum_d kl, nats)`` spread equally over the dims: a step whose total KL is below ``nats``
    gets no KL gradient. With ``nats = 0`` this is the identity.

    Examples:
        >>> import torch
        >>> kl = torch.tensor([[0.2, 0.3]], requires_grad=True)
        >>> out = free_nats_kl(kl, 1.0)
        >>> out.sum().backward()
        >>> out.detach(), kl.grad
        (tensor([[0.2000, 0.3000]]), tensor([[0., 0.]]))
    """
    if nats <= 0:
        return kl
    dims = kl.shape[-1]
    clamped = kl.sum(-1, keepdim=True).clamp_min(nats) / dims
    return clamped + (kl - clamped).detach()


def latent_kl(
    posterior: Params,
    prior: Params,
    *,
    latent: str | LatentDistribution = "gaussian",
    balance: float | None = None,
    free_nats: float = 0.0,
    unimix: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL of every step between the posterior and the prior latents: ``(value, optimised)``,
    both ``[*B, T]``. ``value`` is the true KL (detached); ``optimised`` carries its gradient with KL
    balancing (``balance`` alpha: ``alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p))``) and
    straight-through free nats (no gradient for a step whose KL is below ``free_nats``).

    ``latent`` is a latent distribution (:mod:`aime_torchrl.modules.latent`) or its name:

    * ``"gaussian"``: ``posterior = (mean_q, std_q)``, ``prior = (mean_p, std_p)``, ``[*B, T, D]``
      (DreamerV2's balancing of the sum, free nats on the balanced KL, as the reference).
    * ``"categorical"`` (with ``unimix``): ``posterior = (logits_q,)``, ``prior = (logits_p,)``,
      ``[*B, T, N, K]`` (DreamerV3's: free nats, its "free bits", on each of the two balanced terms;
      its beta_dyn = 0.5, beta_rep = 0.1 are ``balance = 5/6`` with a KL scale of 0.6).

    Examples:
        >>> import torch
        >>> value, optimised = latent_kl((torch.zeros(1, 2, 3, 4),), (torch.zeros(1, 2, 3, 4),), latent="categorical",
        ...                              free_nats=1.0)
        >>> value.shape, bool(optimised.requires_grad)
        (torch.Size([1, 2]), False)
    """
    if isinstance(latent, str):
        latent = make_latent(latent, unimix)
    terms = _balanced_terms(latent, posterior, prior, balance)
    if latent.free_nats_per_term:
        value = terms[0][1].detach().sum(-1)  # every term's value is KL(q || p)
        return value, sum(weight * free_nats_kl(kl, free_nats).sum(-1) for weight, kl in terms)
    kl = sum(weight * kl for weight, kl in terms)  # [*B, T, D]
    return kl.detach().sum(-1), free_nats_kl(kl, free_nats).sum(-1)


def elbo(
    likelihoods: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    posterior: tuple[torch.Tensor, ...],
    prior: tuple[torch.Tensor, ...],
    *,
    batch_dims: int,
    latent: LatentDistribution | str = "gaussian",
    unimix: float = 0.0,
    kl_scale: float = 1.0,
    free_nats: float = 0.0,
    kl_balance: float | None = None,
    nll_reweight: str = "none",
    kl_only: bool = False,
    extra_kl: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The ELBO of a window on plain tensors and the losses that optimise it: the one definition.

    Reductions follow the reference: sum over time and dimensions, mean over the batch. Returns
    ``loss_recon`` (absent when ``kl_only``) and ``loss_kl`` (already multiplied by ``kl_scale``), and
    the detached diagnostics ``elbo``, ``kl`` and ``recon_<sensor>`` (the log-likelihood term of each
    sensor). With ``nll_reweight="dim_wise"`` (beta-NLL with beta=1/2, Seitzer et al. 2022) each
    log-likelihood dim is weighted by the detached decoder std, and the KL of every step by the mean
    decoder std over all output dims of all sensors, as in the reference; decoders with a fixed std
    of 1 are left unchanged.

    Args:
        likelihoods (Mapping[str, tuple]): sensor -> ``(loc, scale, target)`` of its Gaussian
            decoder (``scale`` broadcastable to ``loc``; uint8 targets are scaled to [0, 1]).
        posterior, prior (tuple of torch.Tensor): the latents' parameters (:func:`latent_kl`):
            ``(mean, std)`` ``[*B, T, D]`` each, or ``(logits,)`` ``[*B, T, N, K]``.

    Keyword Args:
        batch_dims (int): the leading dims ``[*B, T]`` of every tensor (the rest is one event).
        latent (LatentDistribution or str): the state's distribution (:func:`latent_kl`), with ``unimix``.
        kl_scale (float): weight of the KL term in the loss.
        free_nats (float): free nats (straight-through, per step); 0 disables.
        kl_balance (float, optional): KL balancing factor alpha; ``None`` disables.
        nll_reweight (str): ``"none"`` or ``"dim_wise"``.
        kl_only (bool): optimise only the KL term (the paper's KL-only ablation).
        extra_kl (torch.Tensor, optional): the KL per step ``[B, T]`` of further latents (a latent
            action's), optimised with the state's (the dim-wise weight and ``kl_scale`` apply; free
            nats and balancing do not) but left out of the logged ``kl`` and ``elbo``.

    Returns a dict of scalar tensors.

    Examples:
        >>> import torch
        >>> gaussian = (torch.zeros(2, 3, 4), torch.ones(2, 3, 4))
        >>> out = elbo({"obs": (torch.zeros(2, 3, 5), 1.0, torch.zeros(2, 3, 5))}, gaussian, gaussian, batch_dims=2)
        >>> sorted(out), float(out["kl"])
        (['elbo', 'kl', 'loss_kl', 'loss_recon', 'recon_obs'], 0.0)
    """
    if nll_reweight not in NLL_REWEIGHTS:
        raise ValueError(f"nll_reweight must be one of {NLL_REWEIGHTS}, got {nll_reweight!r}.")
    out: dict[str, torch.Tensor] = {}
    recon_total = 0.0
    recon_loss = 0.0
    std_sum = 0.0
    std_count = 0
    for key, (loc, scale, target) in likelihoods.items():
        target = to_float_image(target, loc.dtype)
        scale = scale.expand_as(loc) if isinstance(scale, torch.Tensor) else torch.full_like(loc, scale)
        # Normal log-density, as torch.distributions.Normal.log_prob computes it.
        log_prob = -((target - loc) ** 2) / (2 * scale.pow(2)) - scale.log() - math.log(math.sqrt(2 * math.pi))
        event = tuple(range(batch_dims, log_prob.ndim))
        recon = log_prob.sum(event)  # [B, T]
        recon_total = recon_total + recon
        out[f"recon_{key}"] = recon.sum(-1).mean().detach()
        if nll_reweight == "dim_wise":
            std = scale.detach()
            recon_loss = recon_loss - (std * log_prob).sum(event)
            std_sum = std_sum + std.sum(event)
            std_count += std[(0,) * batch_dims].numel()
        else:
            recon_loss = recon_loss - recon

    kl_value, kl_opt = latent_kl(posterior, prior, latent=latent, balance=kl_balance, free_nats=free_nats,
                                 unimix=unimix)  # [B, T]: the true KL, and the one optimised
    if extra_kl is not None:
        kl_opt = kl_opt + extra_kl
    if nll_reweight == "dim_wise":
        kl_opt = kl_opt * (std_sum / std_count)

    out["loss_kl"] = kl_scale * kl_opt.sum(-1).mean()
    if not kl_only:
        out["loss_recon"] = recon_loss.sum(-1).mean()
    out["kl"] = kl_value.sum(-1).mean()
    out["elbo"] = (recon_total.detach() - kl_value).sum(-1).mean()
    return out
