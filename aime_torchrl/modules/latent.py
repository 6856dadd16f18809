# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The latent distributions of a world model's stochastic state: their KL, mode and sample.

A world model's state ``s`` is drawn from a posterior q(s | h, e) and scored against a prior
p(s | h). The two distributions the library knows differ only in their parameters and their KL:

* :class:`GaussianLatent`: a diagonal Gaussian, parameters ``(mean, std)`` ``[..., D]`` (our RSSMs);
* :class:`CategoricalLatent`: N categoricals of K classes, parameters ``(logits,)`` ``[..., N, K]``,
  the state a flat one-hot ``[..., N * K]`` (DreamerV3; TorchRL's ``RSSMPriorV3``/``RSSMPosteriorV3``).

The filter, the imagination and the ELBO read a world model's latent through this interface
only, so no code path branches on which one it is.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict.utils import NestedKey

from aime_torchrl.modules.keys import LatentKeys

Params = tuple[torch.Tensor, ...]


def gaussian_kl(
    mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """Per-dimension KL(N(mean_q, std_q) || N(mean_p, std_p)) of diagonal Gaussians.

    Examples:
        >>> import torch
        >>> gaussian_kl(torch.zeros(2), torch.ones(2), torch.zeros(2), torch.ones(2))
        tensor([0., 0.])
    """
    var_ratio = (std_q / std_p).pow(2)
    return 0.5 * (var_ratio + ((mean_q - mean_p) / std_p).pow(2) - 1 - var_ratio.log())


def categorical_kl(logits_q: torch.Tensor, logits_p: torch.Tensor, unimix: float = 0.0) -> torch.Tensor:
    """KL(q || p) of each categorical of ``[..., N, K]`` logits (N categoricals of K classes),
    summed over the classes: ``[..., N]``. With ``unimix`` each distribution is mixed with the
    uniform one, ``(1 - unimix) softmax(logits) + unimix / K``, as DreamerV3 (and TorchRL's
    ``RSSMPriorV3``/``RSSMPosteriorV3`` when sampling) do.

    Examples:
        >>> import torch
        >>> categorical_kl(torch.zeros(2, 4), torch.zeros(2, 4))
        tensor([0., 0.])
    """
    (q, log_q), (_, log_p) = _mixed(logits_q, unimix), _mixed(logits_p, unimix)
    return (q * (log_q - log_p)).sum(-1)


def _mixed(logits: torch.Tensor, unimix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities of ``logits [..., K]`` mixed with ``unimix`` of the uniform, and their log."""
    if unimix == 0:
        log_probs = logits.log_softmax(-1)
        return log_probs.exp(), log_probs
    probs = (1 - unimix) * logits.softmax(-1) + unimix / logits.shape[-1]
    return probs, probs.log()


def balanced_terms(kl: Callable[[Params, Params], torch.Tensor], posterior: Params, prior: Params,
                   balance: float | None) -> list[tuple[float, torch.Tensor]]:
    """The weighted terms of KL balancing: ``[(1, KL(q || p))]``, or with ``balance = alpha``
    ``[(alpha, KL(sg(q) || p)), (1 - alpha, KL(q || sg(p)))]`` (each of the value of ``KL(q || p)``)."""
    if balance is None:
        return [(1.0, kl(posterior, prior))]
    detached = (tuple(p.detach() for p in posterior), tuple(p.detach() for p in prior))
    return [(balance, kl(detached[0], prior)), (1 - balance, kl(posterior, detached[1]))]


def categorical_mode(logits: torch.Tensor) -> torch.Tensor:
    """The likeliest class of each categorical of ``[..., N, K]`` logits as a flat one-hot state
    ``[..., N * K]`` (categorical latents' counterpart of a Gaussian's mean).

    Examples:
        >>> categorical_mode(torch.tensor([[0.1, 2.0], [3.0, 0.0]]))
        tensor([0., 1., 1., 0.])
    """
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype).flatten(-2)


class GaussianLatent:
    """A diagonal Gaussian state: parameters ``(mean, std)``, sampled as ``mean + std * noise``.

    ``kl`` is per dimension (``[..., D]``); free nats apply to the balanced KL of a step (DreamerV2
    and the AIME reference: ``free_nats_per_term = False``).

    Examples:
        >>> import torch
        >>> latent = GaussianLatent()
        >>> params = (torch.zeros(3, 4), torch.ones(3, 4))
        >>> latent.kl(params, params).shape, latent.sample(params, torch.ones(3, 4)).sum().item()
        (torch.Size([3, 4]), 12.0)
    """

    name = "gaussian"
    free_nats_per_term = False

    def kl(self, posterior: Params, prior: Params) -> torch.Tensor:
        return gaussian_kl(*posterior, *prior)

    def balanced_kl(self, posterior: Params, prior: Params, balance: float | None) -> list[tuple[float, torch.Tensor]]:
        """The weighted terms of KL balancing (:func:`balanced_terms`)."""
        return balanced_terms(self.kl, posterior, prior, balance)

    def mode(self, params: Params) -> torch.Tensor:
        return params[0]

    def sample(self, params: Params, noise: torch.Tensor) -> torch.Tensor:
        """The reparameterised sample for standard normal ``noise`` ``[..., D]``."""
        mean, std = params
        return mean + std * noise

    def noise_like(self, params: Params) -> torch.Tensor:
        """Standard normal noise for one :meth:`sample` of ``params``."""
        return torch.randn_like(params[0])

    def posterior_keys(self, keys: LatentKeys) -> list[NestedKey]:
        """Where frames hold the posterior's parameters."""
        return [keys.posterior_mean, keys.posterior_std]

    def prior_keys(self, keys: LatentKeys) -> list[NestedKey]:
        """Where frames hold the prior's parameters."""
        return [keys.prior_mean, keys.prior_std]


class CategoricalLatent:
    """N categoricals of K classes: parameters ``(logits,)`` ``[..., N, K]``, the state a flat
    one-hot ``[..., N * K]``, each distribution mixed with ``unimix`` of the uniform one.

    ``kl`` is per categorical (``[..., N]``); free nats (DreamerV3's free bits) apply to each of the
    two balanced terms (``free_nats_per_term = True``). A sample is one-hot forward and the mixed
    probabilities backward (straight-through, as TorchRL's ``RSSMPriorV3``/``RSSMPosteriorV3`` sample),
    drawn by inverting each categorical's CDF at ``Phi(noise)`` for standard normal ``noise``
    ``[..., N]``: every external noise of the library is standard normal.

    Examples:
        >>> import torch
        >>> latent = CategoricalLatent(unimix=0.01)
        >>> logits = (torch.zeros(3, 4, 5),)
        >>> latent.kl(logits, logits).shape, latent.mode(logits).shape
        (torch.Size([3, 4]), torch.Size([3, 20]))
        >>> latent.sample((torch.tensor([[0.0, 9.0, 0.0]]),), torch.zeros(1)).tolist()
        [0.0, 1.0, 0.0]
    """

    name = "categorical"
    free_nats_per_term = True

    def __init__(self, unimix: float = 0.0) -> None:
        self.unimix = unimix

    def kl(self, posterior: Params, prior: Params) -> torch.Tensor:
        return categorical_kl(posterior[0], prior[0], self.unimix)

    def balanced_kl(self, posterior: Params, prior: Params, balance: float | None) -> list[tuple[float, torch.Tensor]]:
        """The weighted terms of KL balancing (:func:`balanced_terms`), both from one computation of
        the mixed probabilities and their logs."""
        if balance is None:
            return [(1.0, self.kl(posterior, prior))]
        (q, log_q), (_, log_p) = _mixed(posterior[0], self.unimix), _mixed(prior[0], self.unimix)
        return [(balance, (q.detach() * (log_q.detach() - log_p)).sum(-1)),
                (1 - balance, (q * (log_q - log_p.detach())).sum(-1))]

    def mode(self, params: Params) -> torch.Tensor:
        return categorical_mode(params[0])

    def sample(self, params: Params, noise: torch.Tensor) -> torch.Tensor:
        """The straight-through one-hot sample ``[..., N * K]`` for standard normal ``noise`` ``[..., N]``."""
        logits = params[0]
        probs = logits.softmax(-1)
        if self.unimix > 0:
            probs = (1 - self.unimix) * probs + self.unimix / logits.shape[-1]
        uniform = torch.special.ndtr(noise).unsqueeze(-1)
        index = (uniform > probs.detach().cumsum(-1)).sum(-1, keepdim=True).clamp_max(logits.shape[-1] - 1)
        one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
        return (probs + (one_hot - probs).detach()).flatten(-2)

    def noise_like(self, params: Params) -> torch.Tensor:
        """Standard normal noise ``[..., N]`` for one :meth:`sample` of ``params``."""
        return torch.randn_like(params[0][..., 0])

    def posterior_keys(self, keys: LatentKeys) -> list[NestedKey]:
        return [keys.posterior_logits]

    def prior_keys(self, keys: LatentKeys) -> list[NestedKey]:
        return [keys.prior_logits]


LatentDistribution = GaussianLatent | CategoricalLatent

#: The latent distributions by name (``RSSMWorldModel(..., latent=...)``).
LATENTS = ("gaussian", "categorical")


def make_latent(name: str, unimix: float = 0.0) -> LatentDistribution:
    """The latent distribution called ``name`` (``"gaussian"`` or ``"categorical"``, with ``unimix``)."""
    if name == "gaussian":
        return GaussianLatent()
    if name == "categorical":
        return CategoricalLatent(unimix)
    raise ValueError(f"latent must be one of {LATENTS}, got {name!r}.")
