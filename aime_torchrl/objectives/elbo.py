# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The terms of the ELBO shared by both AIME phases, and the tricks of the reference around them.

Reductions follow the reference: sum over time and dimensions, mean over the batch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import unravel_key
from torchrl.objectives import LossModule

from aime_torchrl.modules.encoders import to_float_image
from aime_torchrl.modules.filter_step import feature_names, tanh_gaussian_net, window_noise
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.world_model import RSSMNets, RSSMWorldModel

NLL_REWEIGHTS = ("none", "dim_wise")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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


def balanced_kl(
    mean_q: torch.Tensor,
    std_q: torch.Tensor,
    mean_p: torch.Tensor,
    std_p: torch.Tensor,
    balance: float | None = None,
) -> torch.Tensor:
    """Per-dimension KL(q || p), optionally with KL balancing (DreamerV2).

    With ``balance = alpha`` the value is unchanged but the gradient is that of
    ``alpha * KL(sg(q) || p) + (1 - alpha) * KL(q || sg(p))``: the prior moves towards the
    posterior ``alpha / (1 - alpha)`` times faster than the posterior towards the prior.

    Examples:
        >>> import torch
        >>> q, p = torch.tensor([0.5]), torch.tensor([0.0])
        >>> balanced_kl(q, torch.ones(1), p, torch.ones(1), balance=0.8)
        tensor([0.1250])
    """
    if balance is None:
        return gaussian_kl(mean_q, std_q, mean_p, std_p)
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"kl_balance must be in [0, 1] or None, got {balance}.")
    to_prior = gaussian_kl(mean_q.detach(), std_q.detach(), mean_p, std_p)
    to_posterior = gaussian_kl(mean_q, std_q, mean_p.detach(), std_p.detach())
    return balance * to_prior + (1 - balance) * to_posterior


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
    log_q, log_p = logits_q.log_softmax(-1), logits_p.log_softmax(-1)
    if unimix > 0:
        classes = logits_q.shape[-1]
        log_q = ((1 - unimix) * log_q.exp() + unimix / classes).log()
        log_p = ((1 - unimix) * log_p.exp() + unimix / classes).log()
    return (log_q.exp() * (log_q - log_p)).sum(-1)


#: The latent distributions the ELBO knows: their parameters, as (posterior, prior) pairs.
LATENTS = ("gaussian", "categorical")


def latent_kl(
    posterior: tuple[torch.Tensor, ...],
    prior: tuple[torch.Tensor, ...],
    *,
    latent: str = "gaussian",
    balance: float | None = None,
    free_nats: float = 0.0,
    unimix: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KL of every step between the posterior and the prior latents: ``(value, optimised)``,
    both ``[*B, T]``. ``value`` is the true KL (detached); ``optimised`` carries its gradient with KL
    balancing (``balance`` alpha: ``alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p))``) and
    straight-through free nats (no gradient for a step whose KL is below ``free_nats``).

    * ``"gaussian"``: ``posterior = (mean_q, std_q)``, ``prior = (mean_p, std_p)``, ``[*B, T, D]``
      (DreamerV2's balancing of the sum, free nats on the balanced KL, as the reference).
    * ``"categorical"``: ``posterior = (logits_q,)``, ``prior = (logits_p,)``, ``[*B, T, N, K]``
      (DreamerV3's: free nats, its "free bits", on each of the two balanced terms; its
      beta_dyn = 0.5, beta_rep = 0.1 are ``balance = 5/6`` with a KL scale of 0.6).

    Examples:
        >>> import torch
        >>> value, optimised = latent_kl((torch.zeros(1, 2, 3, 4),), (torch.zeros(1, 2, 3, 4),), latent="categorical",
        ...                              free_nats=1.0)
        >>> value.shape, bool(optimised.requires_grad)
        (torch.Size([1, 2]), False)
    """
    if latent == "gaussian":
        kl = balanced_kl(*posterior, *prior, balance)  # [*B, T, D]
        return kl.detach().sum(-1), free_nats_kl(kl, free_nats).sum(-1)
    if latent != "categorical":
        raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}.")
    (logits_q,), (logits_p,) = posterior, prior

    def kl(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # per step, straight-through free nats
        return free_nats_kl(categorical_kl(q, p, unimix), free_nats).sum(-1)

    value = categorical_kl(logits_q, logits_p, unimix).detach().sum(-1)
    if balance is None:
        return value, kl(logits_q, logits_p)
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"kl_balance must be in [0, 1] or None, got {balance}.")
    return value, balance * kl(logits_q.detach(), logits_p) + (1 - balance) * kl(logits_q, logits_p.detach())


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
    """Computes the ELBO of filtered frames ``[B, T]`` and the losses that optimise it.

    Returns a TensorDict with the losses ``loss_recon`` (absent when ``kl_only``) and ``loss_kl``
    (already multiplied by ``kl_scale``), and the detached diagnostics ``elbo``, ``kl`` and
    ``recon_<sensor>`` (the log-likelihood term of each sensor). With ``nll_reweight="dim_wise"``
    (beta-NLL with beta=1/2, Seitzer et al. 2022) each log-likelihood dim is weighted by the
    detached decoder std, and the KL of every step by the mean decoder std over all output dims of
    all sensors, as in the reference; decoders with a fixed std of 1 are left unchanged.

    Args:
        decoders (Mapping[str, ProbabilisticTensorDictSequential]): sensor -> decoder; the target
            of each is ``frames["next", sensor]`` (uint8 images are scaled to [0, 1]).
        frames (TensorDictBase): frames holding the posterior and prior parameters.

    Keyword Args:
        prior_mean, prior_std, posterior_mean, posterior_std (NestedKey): where to read Gaussian latents.
        prior_logits, posterior_logits (NestedKey): where to read categorical latents ``[..., N, K]``.
        latent (str): ``"gaussian"`` or ``"categorical"`` (:func:`latent_kl`), with ``unimix`` for the latter.
        kl_scale (float): weight of the KL term in the loss.
        free_nats (float): free nats (straight-through, per step); 0 disables.
        kl_balance (float, optional): KL balancing factor alpha; ``None`` disables.
        nll_reweight (str): ``"none"`` or ``"dim_wise"``.
        kl_only (bool): optimise only the KL term (the paper's KL-only ablation).
        extra_kl (torch.Tensor, optional): the KL per step ``[B, T]`` of further latents (a latent
            action's), optimised with the state's (the dim-wise weight and ``kl_scale`` apply; free
            nats and balancing do not) but left out of the logged ``kl`` and ``elbo``.
    """
    likelihoods = {}
    for key, decoder in decoders.items():
        base = decoder.get_dist(frames).base_dist
        likelihoods[key] = (base.loc, base.scale, frames.get(("next", key)))
    if latent == "categorical":
        posterior, prior = (frames.get(posterior_logits),), (frames.get(prior_logits),)
    else:
        posterior = (frames.get(posterior_mean), frames.get(posterior_std))
        prior = (frames.get(prior_mean), frames.get(prior_std))
    out = elbo_from_params(
        likelihoods,
        posterior,
        prior,
        latent=latent,
        unimix=unimix,
        batch_dims=frames.batch_dims,
        kl_scale=kl_scale,
        free_nats=free_nats,
        kl_balance=kl_balance,
        nll_reweight=nll_reweight,
        kl_only=kl_only,
        extra_kl=extra_kl,
    )
    return TensorDict(out)


def elbo_from_params(
    likelihoods: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    posterior: tuple[torch.Tensor, ...],
    prior: tuple[torch.Tensor, ...],
    *,
    batch_dims: int,
    latent: str = "gaussian",
    unimix: float = 0.0,
    kl_scale: float = 1.0,
    free_nats: float = 0.0,
    kl_balance: float | None = None,
    nll_reweight: str = "none",
    kl_only: bool = False,
    extra_kl: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`elbo_terms` on plain tensors: the one definition of the ELBO and its losses.

    Args:
        likelihoods (Mapping[str, tuple]): sensor -> ``(loc, scale, target)`` of its Gaussian
            decoder (``scale`` broadcastable to ``loc``; uint8 targets are scaled to [0, 1]).
        posterior, prior (tuple of torch.Tensor): the latents' parameters (:func:`latent_kl`):
            ``(mean, std)`` ``[*B, T, D]`` each, or ``(logits,)`` ``[*B, T, N, K]``.

    Keyword Args:
        batch_dims (int): the leading dims ``[*B, T]`` of every tensor (the rest is one event).
        latent, unimix, kl_scale, free_nats, kl_balance, nll_reweight, kl_only, extra_kl: as :func:`elbo_terms`.

    Returns a dict of scalar tensors (see :func:`elbo_terms`).
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


class ELBOLossBase(LossModule):
    """Keys and options shared by :class:`WorldModelLoss` and :class:`AIMELoss` (same objective).

    Subclasses build the frames (with the data's or the policy's actions) and call :meth:`_elbo`.
    """

    @dataclass
    class _AcceptedKeys(LatentKeys):
        """Maintains default values for all configurable tensordict keys: those of
        :class:`~aime_torchrl.modules.keys.LatentKeys`, which the world model's modules, its rollout
        and the policy read and write, and which the loss reads: ``action`` (where the *window* holds
        a_t, which may differ from the world model's name: phase 1 reads it; phase 2 only compares it
        with the inferred actions, if present), ``state``,
        ``belief``, ``encoded_latents`` (the IDM's inputs), ``prior_mean``, ``prior_std``,
        ``posterior_mean``, ``posterior_std`` (Gaussian latents) or ``prior_logits``,
        ``posterior_logits`` (categorical ones, ``[..., N, K]``), ``loc``, ``scale``, ``idm_loc``,
        ``idm_scale`` (AIME with IDM), ``prior_state``.

        A loss starts from its world model's names (``world_model.keys``); ``set_keys`` checks that
        the world model was built on the names it is given (``from_config(..., keys=...)``).
        """

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
        from aime_torchrl.objectives.window_elbo import window_elbo  # it builds on this module

        self.compile = compile
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise ValueError(
                f"compile must be a bool or one of torch.compile's modes {COMPILE_MODES}, got {compile!r} "
                "(Hydra: the `compile` key)."
            )
        mode = compile if isinstance(compile, str) else None  # e.g. "reduce-overhead": CUDA graphs
        self._window_elbo = torch.compile(window_elbo, mode=mode) if compile else window_elbo
        self._inputs_checked = False

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """The names this loss reads must be those the world model's modules write."""
        ours, theirs = self.tensor_keys.as_dict(), self.world_model.keys.as_dict()
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

    def _tensor_elbo(
        self,
        world_model: RSSMWorldModel,
        nets: RSSMNets,
        tensordict: TensorDictBase,
        with_actions: bool,
        policy: TensorDictModuleBase | None = None,
        kl_only: bool = False,
    ) -> tuple[TensorDict, torch.Tensor]:
        """The fast path (:func:`window_elbo`, compiled with ``compile=True``): the ELBO terms and
        the actions of the frames. The noise is drawn here (:func:`window_noise`, as the rollout does)."""
        frames = world_model.to_frames(tensordict, with_actions, self.tensor_keys.action)
        observations = {key: frames.get(("next", key)) for key in world_model.observation_keys}
        actions = frames.get(world_model.keys.action)
        state = actions.new_zeros(*frames.batch_size[:-1], nets.state_dim)
        policy_net = tanh_gaussian_net(policy, world_model.keys)
        noise, policy_noise = window_noise(state, actions[..., 0, :], frames.batch_size[-1], policy=policy_net is not None)
        options = {}
        if policy_net is not None:
            options = dict(
                policy=policy_net,
                features=feature_names(policy, world_model.keys),
                policy_noise=policy_noise,
            )
        terms, actions = self._window_elbo(
            nets, observations, actions, noise, **options, kl_scale=self.kl_scale, free_nats=self.free_nats,
            kl_balance=self.kl_balance, nll_reweight=self.nll_reweight, kl_only=kl_only,
        )
        return TensorDict(terms), actions

    def _elbo(
        self, world_model: RSSMWorldModel, frames: TensorDictBase, kl_only: bool = False,
        extra_kl: torch.Tensor | None = None,
    ) -> TensorDict:
        keys = self.tensor_keys
        return elbo_terms(
            world_model.decoders,
            frames,
            prior_mean=keys.prior_mean,
            prior_std=keys.prior_std,
            posterior_mean=keys.posterior_mean,
            posterior_std=keys.posterior_std,
            prior_logits=keys.prior_logits,
            posterior_logits=keys.posterior_logits,
            latent=getattr(world_model, "latent", "gaussian"),
            unimix=getattr(world_model, "unimix", 0.0),
            kl_scale=self.kl_scale,
            free_nats=self.free_nats,
            kl_balance=self.kl_balance,
            nll_reweight=self.nll_reweight,
            kl_only=kl_only,
            extra_kl=extra_kl,
        )
