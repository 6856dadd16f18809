# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The ELBO of a latent-action world model on labelled and action-free windows alike."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch
from tensordict.utils import NestedKey, unravel_key

from aime_torchrl.modules.latent import gaussian_kl
from aime_torchrl.modules.latent_action import frame_labels, LATENT_ACTION_KEYS, LatentActionWorldModel
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.objectives.elbo import ELBOLossBase


class LatentActionLoss(ELBOLossBase):
    """Trains a :class:`~aime_torchrl.modules.LatentActionWorldModel` on windows with or without actions.

    One filter pass over every window: the transition reads u_t = g(a_t), a_t being the real action on
    labelled steps and a reparameterised sample of the inverse model q(a_t | h_t, s_t, e_{t+1}) on
    action-free ones (AIME's inferred actions, inside the model's own training). The objective is the
    ELBO of the observations,

        ELBO = sum_t [ log p(o_t | h_t, s_t) - KL(q(s_t) || p(s_t | h_t)) ],

    which trains the dynamics, g and (through the action-free steps' samples) q, minus, on action-free
    steps, KL(q(a_t) || p(a_t | h_t, s_t)): their action is a latent variable with the action prior
    as its prior (the semi-supervised VAE, Kingma et al. 2014), so information q writes into it beyond
    what the state predicts costs nats. On labelled steps ``loss_action`` adds the negative
    log-likelihood of the real actions under q (weighted by ``action_scale``: the supervision that ties
    q's actions to real ones while the model learns, as LAOM and CLAM; SS-ORL's inverse model) and
    under the prior. With every step labelled this is the ELBO of an action-conditioned RSSM with an
    action embedding, with q's and the prior's likelihoods beside it.

    Args:
        model (LatentActionWorldModel): the model to train.

    Keyword Args:
        kl_scale, free_nats, kl_balance, nll_reweight, compile: as :class:`~aime_torchrl.WorldModelLoss`'s.
        action_scale (float, optional): weight of q's negative log-likelihood of the labelled actions
            (summed over the steps of a window and averaged over windows, as the ELBO). Defaults to ``1.0``.
        action_kl_scale (float, optional): weight of the action-free steps' KL(q || p) (0: the inferred
            actions cost nothing). Defaults to ``1.0``.
        inferred_action (str, optional): what drives the transition on action-free steps: ``"sample"``, a
            reparameterised sample of q (the ELBO), or ``"mean"``, q's mode tanh(loc) (a pseudo-label
            that the ELBO's gradient still trains; the KL then only regularises q). Defaults to ``"sample"``.
        elbo_trains_inference (bool, optional): ``False``: q learns from the labelled actions only and its
            actions drive the transition as pseudo-labels (SS-ORL's inverse model, inside the filter): no
            gradient of the ELBO or of the action KL reaches q, so it cannot write the next frame into an
            action. Defaults to ``True``.

    Keys (``set_keys``): ``action`` (the window's real actions; a window without them is action-free),
    ``labelled`` (``[B, T]`` booleans: which steps have real actions; absent: every step of a window
    with actions is labelled), ``loc`` and ``scale`` (where the inverse model writes its Gaussian,
    the model's names). An action-free step's action is never read.

    Returns ``loss_recon``, ``loss_kl`` (the state's and the action-free steps' action KL) and
    ``loss_action`` (sum the three), and the detached ``elbo`` (per window, the actions' KL included),
    ``kl`` (the state's), ``action_kl`` (per window), ``action_nll`` (per labelled step, of the Gaussian before the tanh),
    ``action_mse`` (q's mean action against the real ones on labelled steps), ``labelled_fraction`` and
    ``recon_<sensor>``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import LatentActionWorldModel
        >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> loss = LatentActionLoss(model)
        >>> window = TensorDict({"observation": torch.randn(6, 8, 4), ("next", "observation"): torch.randn(6, 8, 4),
        ...     "action": torch.rand(6, 8, 2) * 2 - 1,
        ...     "labelled": (torch.arange(6) < 2)[:, None].expand(6, 8)}, [6, 8])
        >>> out = loss(window)
        >>> sum(out[k] for k in loss.out_keys if k.startswith("loss_")).backward()
    """

    @dataclass
    class _AcceptedKeys(ELBOLossBase._AcceptedKeys):
        """The window's real ``action``, ``labelled`` (which steps, ``[B, T]``, carry real actions;
        defaults to ``"labelled"``) and ``loc``, ``scale``: the inverse model's Gaussian (before the
        tanh), the model's names (:data:`~aime_torchrl.modules.LATENT_ACTION_KEYS`)."""

        labelled: NestedKey = "labelled"
        loc: NestedKey = LATENT_ACTION_KEYS["loc"]
        scale: NestedKey = LATENT_ACTION_KEYS["scale"]

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        model: LatentActionWorldModel,
        *,
        kl_scale: float = 1.0,
        free_nats: float = 0.0,
        kl_balance: float | None = None,
        nll_reweight: str = "dim_wise",
        action_scale: float = 1.0,
        action_kl_scale: float = 1.0,
        inferred_action: str = "sample",
        elbo_trains_inference: bool = True,
        compile: bool | str = False,
    ) -> None:
        super().__init__(kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, nll_reweight=nll_reweight,
                         compile=compile)
        negative = {k: v for k, v in dict(action_scale=action_scale, action_kl_scale=action_kl_scale).items() if v < 0}
        if negative:
            raise ValueError(f"LatentActionLoss's weights must be >= 0, got {negative}.")
        if inferred_action not in ("sample", "mean"):
            raise ValueError(f"LatentActionLoss's inferred_action={inferred_action!r}: pass 'sample' or 'mean'.")
        self.model = model
        self.inferred_action = inferred_action
        self.elbo_trains_inference = elbo_trains_inference
        self.action_scale = action_scale
        self.action_kl_scale = action_kl_scale
        names = self._names_from(model.keys)
        names.pop("action")  # the data's: the model's action is its latent action u
        self.set_keys(**names)

    @property
    def world_model(self) -> RSSMWorldModel:
        return self.model.world_model

    @property
    def in_keys(self) -> list:
        obs = self.world_model.observation_keys
        return [*obs, *(("next", k) for k in obs), self.tensor_keys.action, self.tensor_keys.labelled]

    @property
    def out_keys(self) -> list:
        return ["loss_recon", "loss_kl", "loss_action", "elbo", "kl", "action_kl", "action_nll", "action_mse",
                "labelled_fraction", *(f"recon_{k}" for k in self.world_model.decoders)]

    def labels(self, window: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """The window's real actions ``[B, T, A]`` (zeros where missing) and its labelled steps ``[B, T]``."""
        keys = self.tensor_keys
        actions = window.get(keys.action, None)
        device = window.get(self.world_model.observation_keys[0]).device
        if actions is None:
            zeros = torch.zeros(*window.batch_size, self.model.action_dim, device=device)
            return zeros, torch.zeros(window.batch_size, dtype=torch.bool, device=device)
        if actions.shape[-1] != self.model.action_dim:
            raise ValueError(f"The window's {keys.action!r} has {actions.shape[-1]} dims per step, but the model reads "
                             f"{self.model.action_dim}-dim actions.")
        labelled = window.get(keys.labelled, None)
        if labelled is None:
            return actions, torch.ones(window.batch_size, dtype=torch.bool, device=device)
        labelled = labelled.reshape(window.batch_size).bool()
        return torch.where(labelled.unsqueeze(-1), actions, 0.0), labelled  # whatever an action-free step holds

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        self._check_finite_once(tensordict)
        actions, labelled = self.labels(tensordict)
        target = actions.clamp(-1, 1)
        keys, free = self.tensor_keys, ~labelled
        terms = {}

        def action_kl(rows: dict) -> torch.Tensor:
            """KL(q(a) || p(a | h, s)) of every action-free step (row t + 1 holds a_t, inferred from o_{t+1};
            row 0, the initial state's, has none), optimised with the state's KL."""
            if self.elbo_trains_inference:  # q's parameters as the filter computed them
                q = tuple(rows["outputs"][unravel_key(k)][..., 1:, :] for k in (keys.loc, keys.scale))
            else:  # q ran without autograd in the filter: its parameters again, batched, for its NLL
                q = self.model.inference_params(*(rows[k][..., 1:, :] for k in ("belief", "state", "embedding")))
            p = self.model.action_prior_params(rows["belief"][..., 1:, :], rows["state"][..., 1:, :])
            q_kl = q if self.elbo_trains_inference else tuple(x.detach() for x in q)  # else it trains p only
            kl = gaussian_kl(*q_kl, *p).sum(-1) * free  # the tanh is a bijection: the base Gaussians' KL
            terms.update(q=q, p=p, kl=kl)
            return torch.cat([torch.zeros_like(kl[..., :1]), self.action_kl_scale * kl], -1)

        # q's noise is drawn at each row, after the posterior's: with every step labelled, the ELBO is the
        # one of WorldModelLoss on the world model driven by g(a), sample for sample
        actor = self.model.actor(*frame_labels(target, labelled), sample=self.inferred_action == "sample",
                                 detach=not self.elbo_trains_inference)
        out, _ = self._window_terms(self.world_model, tensordict, with_actions=False, actor=actor, extra_kl=action_kl)
        lim = 1 - torch.finfo(target.dtype).resolution ** 0.5  # atanh's argument, away from +-1
        pre_tanh = torch.atanh(target.clamp(-lim, lim))

        def nll(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # of the labelled actions, per step
            return (((pre_tanh - loc) / scale).pow(2) / 2 + scale.log() + math.log(2 * math.pi) / 2).sum(-1)

        mask = labelled.to(target.dtype)
        count = mask.sum().clamp_min(1)
        nll_q, nll_p = nll(*terms["q"]), nll(*terms["p"])
        out.set("loss_action", ((self.action_scale * nll_q + nll_p) * mask).sum(-1).mean())
        kl = terms["kl"].detach()
        out.set("elbo", out.get("elbo") - kl.sum(-1).mean())
        out.set("action_kl", kl.sum(-1).mean())
        out.set("action_nll", (nll_q.detach() * mask).sum() / count)
        out.set("action_mse", ((terms["q"][0].detach().tanh() - target).pow(2).mean(-1) * mask).sum() / count)
        out.set("labelled_fraction", mask.mean())
        return out
