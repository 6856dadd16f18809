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

from aime_torchrl.modules.latent_action import LatentActionWorldModel
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.modules.latent import gaussian_kl
from aime_torchrl.objectives.elbo import ELBOLossBase
from aime_torchrl.objectives.functional import free_nats_kl


class LatentActionLoss(ELBOLossBase):
    """Trains a :class:`~aime_torchrl.modules.LatentActionWorldModel` on windows with or without actions.

    The latent action u_{t} of every step is a latent variable of the ELBO, inferred by
    q(u_t | h_t, s_t, e_{t+1}) inside the posterior rollout. Its prior is the action encoder
    g(u | a_t) on labelled steps and N(0, I) on action-free ones (with ``alignment="kl"``, the
    default), so one objective covers both:

        ELBO = sum_t [ log p(o_t | h_t, s_t) - KL(q(s_t) || p(s_t | h_t)) - KL(q(u_t) || prior(u_t)) ]

    On labelled steps the KL to g(u | a_t) is the *alignment* of inferred and real actions (it trains
    q and g towards each other); on action-free ones the KL to N(0, I) is an information bottleneck
    (beta-VAE, as AdaWorld's latent actions) that keeps u from carrying more than the step needs. The
    action decoder p(a_t | u_t) is trained on the labelled steps' sampled u (its gradient also shapes
    q, as CLAM trains its decoder jointly); it is not part of the ELBO.

    Args:
        model (LatentActionWorldModel): the model to train.

    Keyword Args:
        kl_scale, free_nats, kl_balance, nll_reweight: as :class:`~aime_torchrl.WorldModelLoss`'s;
            ``kl_scale`` and the dim-wise weight apply to both KLs, free nats and balancing to the state's only.
        bottleneck_scale (float, optional): weight of the action-free steps' KL(q || N(0, I)) (the
            bottleneck's beta; below 1, u may carry more of each step, which trains the dynamics on more
            precise latent actions). Defaults to ``1.0``.
        alignment_scale (float, optional): weight of the labelled steps' KL(q || g) (of g's regression
            with ``alignment="regression"``). Defaults to ``1.0``.
        decoder_scale (float, optional): weight of the action decoder's NLL. Defaults to ``1.0``.
        latent_free_nats (float, optional): free nats on every step's latent-action KL (straight-through,
            as :func:`~aime_torchrl.objectives.free_nats_kl`: no gradient pulls q towards its prior
            below them), against the latent actions collapsing into the state. Defaults to ``0.0``.
        alignment (str, optional): how the labelled steps tie u to the real actions. ``"kl"``: u's prior
            on them is g(u | a), so the ELBO's KL(q || g) trains q and g towards each other (weighted by
            ``alignment_scale``). ``"regression"``: every step's u has the bottleneck's prior N(0, I) and
            g's mean regresses onto q's detached mean (weighted by ``alignment_scale``, in ``loss_action``):
            g reads the latent space that q, the dynamics and the action decoder shape, without
            constraining it. A public attribute, so a training loop may switch it: the examples' alignment
            warm-up (``lawm_synthetic.py --alignment-warmup``, default 0.5; ``lawm_walker.py
            loss.alignment_warmup``, default 0) trains that share of the steps with ``"regression"`` first
            (u then finds every action direction, also those that move the observations little) and the
            rest with ``"kl"``. Defaults to ``"kl"``.

    Keys (``set_keys``): ``action`` (the window's real actions; a window without them is action-free),
    ``labelled`` (``[B, T]`` booleans: which steps have real actions; absent: every step of a window
    with actions is labelled), and the world model's latent keys.

    Returns ``loss_recon``, ``loss_kl`` (the state's KL and the latent actions' KL, the latter weighted by
    ``alignment_scale`` / ``bottleneck_scale``: with
    ``nll_reweight="dim_wise"`` both get the decoders' mean std as weight, else the latent actions would
    be 10-50x dearer than the state and collapse) and ``loss_action`` (the action decoder's NLL, and g's
    regression while ``alignment="regression"``; sum the three), and the detached
    ``elbo`` (per window), ``kl``, ``kl_latent_action`` (per window),
    ``alignment`` (KL(q || g) per labelled step; g's std is not trained while ``alignment="regression"``),
    ``action_nll`` (per labelled step), ``action_mse`` (the
    decoded mean of q against the real actions, labelled steps), ``labelled_fraction`` and ``recon_<sensor>``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
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
        """The keys of :class:`~aime_torchrl.objectives.elbo.ELBOLossBase` and ``labelled``: which
        steps (``[B, T]``) carry real actions. Defaults to ``"labelled"``."""

        labelled: NestedKey = "labelled"

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
        bottleneck_scale: float = 1.0,
        alignment_scale: float = 1.0,
        decoder_scale: float = 1.0,
        latent_free_nats: float = 0.0,
        alignment: str = "kl",
    ) -> None:
        super().__init__(kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, nll_reweight=nll_reweight)
        weights = dict(bottleneck_scale=bottleneck_scale, alignment_scale=alignment_scale, decoder_scale=decoder_scale,
                       latent_free_nats=latent_free_nats)
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"LatentActionLoss's weights must be >= 0, got {negative}.")
        self.model = model
        self.bottleneck_scale = bottleneck_scale
        self.alignment_scale = alignment_scale
        self.decoder_scale = decoder_scale
        self.latent_free_nats = latent_free_nats
        self.alignment = alignment
        self.set_keys(**{k: v for k, v in model.keys.as_dict().items() if k != "action"})  # action: the data's

    @property
    def alignment(self) -> str:
        """``"kl"`` or ``"regression"`` (see the class); may be switched between steps."""
        return self._alignment

    @alignment.setter
    def alignment(self, value: str) -> None:
        if value not in ("kl", "regression"):
            raise ValueError(f"LatentActionLoss's alignment must be 'kl' or 'regression', got {value!r}.")
        self._alignment = value

    @property
    def world_model(self) -> RSSMWorldModel:
        return self.model.world_model

    @property
    def in_keys(self) -> list:
        obs = self.world_model.observation_keys
        return [*obs, *(("next", k) for k in obs), self.tensor_keys.action, self.tensor_keys.labelled]

    @property
    def out_keys(self) -> list:
        return ["loss_recon", "loss_kl", "loss_action", "elbo", "kl", "kl_latent_action",
                "alignment", "action_nll", "action_mse", "labelled_fraction",
                *(f"recon_{k}" for k in self.world_model.decoders)]

    def labels(self, window: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """The window's real actions ``[B, T, A]`` (zeros where missing) and its labelled steps ``[B, T]``."""
        keys = self.tensor_keys
        actions = window.get(keys.action, None)
        device = window.get(self.world_model.observation_keys[0]).device
        if actions is None:
            zeros = torch.zeros(*window.batch_size, self.model.action_dim, device=device)
            return zeros, torch.zeros(window.batch_size, dtype=torch.bool, device=device)
        if actions.shape[-1] != self.model.action_dim:
            raise ValueError(f"The window's {keys.action!r} has {actions.shape[-1]} dims per step, but the model decodes "
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
        g_loc, g_scale = self.model.encode_actions(actions)
        keys = self.world_model.keys  # the frames' names (this loss's ``action`` is the window's)
        terms = {}

        def latent_action_kl(rows: dict) -> torch.Tensor:
            """u's KL of every row, optimised with the state's; row t + 1 holds u_t, inferred from o_{t+1}
            (row 0, the initial state's, has none)."""
            q_loc, q_scale = (rows["outputs"][unravel_key(k)][..., 1:, :] for k in (keys.loc, keys.scale))
            aligned = gaussian_kl(q_loc, q_scale, g_loc, g_scale)  # [B, T, U]
            free = gaussian_kl(q_loc, q_scale, torch.zeros_like(q_loc), torch.ones_like(q_scale))
            if self.alignment == "kl":
                kl_u = torch.where(labelled.unsqueeze(-1), aligned, free)  # the ELBO's KL of u
                weight = torch.where(labelled, self.alignment_scale, self.bottleneck_scale).unsqueeze(-1).to(kl_u.dtype)
            else:  # every step's u has the bottleneck prior; g only reads the latent space q defines
                kl_u, weight = free, self.bottleneck_scale
                terms["regression"] = (g_loc - q_loc.detach()).pow(2).sum(-1)
            terms.update(q_loc=q_loc, kl_u=kl_u.sum(-1), aligned=aligned.sum(-1))
            kl_opt = (weight * free_nats_kl(kl_u, self.latent_free_nats)).sum(-1)
            return torch.cat([torch.zeros_like(kl_opt[..., :1]), kl_opt], -1)

        out, rows = self._window_terms(self.world_model, tensordict, with_actions=False, policy=self.model.inference,
                                       extra_kl=latent_action_kl)
        q_loc = terms["q_loc"]
        a_loc, a_scale = self.model.decode_params(rows["action"][..., 1:, :])
        target = actions.clamp(-1, 1)
        nll = (((target - a_loc) / a_scale).pow(2) / 2 + a_scale.log() + math.log(2 * math.pi) / 2).sum(-1)
        mask = labelled.to(q_loc.dtype)
        count = mask.sum().clamp_min(1)
        loss_action = self.decoder_scale * (nll * mask).sum(-1).mean()
        if self.alignment == "regression":
            loss_action = loss_action + self.alignment_scale * (terms["regression"] * mask).sum(-1).mean()
        out.set("loss_action", loss_action)
        kl_u = terms["kl_u"].detach()
        out.set("elbo", out.get("elbo") - kl_u.sum(-1).mean())
        out.set("kl_latent_action", kl_u.sum(-1).mean())
        out.set("alignment", (terms["aligned"].detach() * mask).sum() / count)
        out.set("action_nll", (nll.detach() * mask).sum() / count)
        with torch.no_grad():
            decoded = self.model.decode(q_loc)
        out.set("action_mse", ((decoded - target).pow(2).mean(-1) * mask).sum() / count)
        out.set("labelled_fraction", mask.mean())
        return out
