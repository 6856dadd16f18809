# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Phase 2 of AIME: infer the actions of observation-only demonstrations with a policy."""
from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torchrl.envs.utils import ExplorationType

from aime_torchrl.modules.frozen_view import FrozenView
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.policy import TanhGaussianActor
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.modules.latent import gaussian_kl
from aime_torchrl.objectives.elbo import ELBOLossBase


class AIMELoss(ELBOLossBase):
    """Action Inference by Maximising Evidence: trains a policy inside a frozen world model.

    The demonstration window is filtered as in phase 1, except that each action is sampled with
    the reparameterisation trick from the policy at the previous latent state, ``a_t ~ pi(. | s_t,
    h_t)``. The same ELBO is then maximised with respect to the policy alone: the gradient flows
    into every action through the frozen GRU, posterior, prior and decoders, and back through time.
    The world model is held out: it is not a parameter (nor a submodule) of this loss and receives
    no gradient, so ``loss.parameters()`` is the policy's and ``loss.to(device)`` moves only the
    policy: put the world model on the same device yourself.

    Sampling is stochastic inside the loss (``deterministic_sampling_mode = RANDOM``), unlike
    TorchRL's default for losses. Demonstration actions are never used, except to log
    ``action_mse`` when the window happens to carry them.

    Args:
        world_model (RSSMWorldModel): the trained world model (phase 1).
        policy (TensorDictModuleBase): a stochastic actor reading the latent state (``"state"``,
            ``"belief"``) and writing ``"action"`` with a reparameterised sample (the names of
            ``world_model.keys``), e.g. :func:`~aime_torchrl.modules.make_policy` (``keys=world_model.keys``).

    Keyword Args:
        kl_scale (float, optional): weight of the KL; ``0`` gives the recon-only ablation.
            Defaults to ``1.0``.
        free_nats (float, optional): free nats; the reference uses none in phase 2 (the paper:
            the true ELBO works better once the model is frozen). Defaults to ``0.0``.
        kl_balance (float, optional): KL balancing factor; ``None`` disables. Defaults to ``None``.
        nll_reweight (str, optional): ``"dim_wise"`` or ``"none"``; use the world model's phase-1
            setting. Defaults to ``"dim_wise"``.
        kl_only (bool, optional): optimise only the KL term (the paper's KL-only ablation).
            Defaults to ``False``.
        use_idm (bool, optional): AIME with IDM (paper appendix C): the world model's IDM
            (``world_model.idm``, trained in phase 1) samples every action from the previous
            latent state and the next embedding, and the policy is trained by
            ``kl_scale * KL(q_idm || pi)`` (base Gaussians; summed over actions and time, mean over
            the batch), logged as ``action_kl``. Defaults to ``False``.
        idm_trainable (bool, optional): with ``use_idm``, also train the IDM on the demonstrations'
            ELBO (its parameters join the loss's). The reference keeps it frozen; then only the
            action KL has a gradient and ``loss_recon``/``loss_kl`` are not returned. Defaults to ``False``.
        compile (bool or str, optional): ``torch.compile`` the window's ELBO on the world model's core with
            the policy inside (:func:`~aime_torchrl.objectives.window_elbo.window_elbo`); a string is the compile mode
            (``"reduce-overhead"``: CUDA graphs). Defaults to ``False``.

    Returns a TensorDict with ``loss_recon`` (unless ``kl_only``) and ``loss_kl``, and the detached
    ``elbo``, ``kl``, ``recon_<sensor>`` and, when true actions are present, ``action_mse``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import RSSMWorldModel, make_policy
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=32, state_dim=8, hidden=32)
        >>> policy = make_policy(wm.state_dim, wm.belief_dim, wm.action_dim, hidden=32)
        >>> loss = AIMELoss(wm, policy)
        >>> demos = TensorDict({"observation": torch.randn(4, 10, 5),
        ...     ("next", "observation"): torch.randn(4, 10, 5)}, [4, 10])
        >>> out = loss(demos)
        >>> (out["loss_recon"] + out["loss_kl"]).backward()
        >>> all(p.grad is None for p in wm.parameters())
        True
    """

    @dataclass
    class _AcceptedKeys(ELBOLossBase._AcceptedKeys):
        """The window's ``action`` (compared with the inferred actions, if present) and the names of
        the world model's latents (:class:`~aime_torchrl.modules.keys.LatentKeys`) the loss reads:
        ``belief``, ``state``, ``encoded_latents`` (the policy's and the IDM's inputs), ``loc``,
        ``scale`` (the policy's Gaussian), ``idm_loc``, ``idm_scale`` (the IDM's, ``use_idm=True``)."""

        belief: NestedKey = LatentKeys.belief
        state: NestedKey = LatentKeys.state
        encoded_latents: NestedKey = LatentKeys.encoded_latents
        loc: NestedKey = LatentKeys.loc
        scale: NestedKey = LatentKeys.scale
        idm_loc: NestedKey = LatentKeys.idm_loc
        idm_scale: NestedKey = LatentKeys.idm_scale

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    deterministic_sampling_mode = ExplorationType.RANDOM

    def __init__(
        self,
        world_model: RSSMWorldModel,
        policy: TensorDictModuleBase,
        *,
        kl_scale: float = 1.0,
        free_nats: float = 0.0,
        kl_balance: float | None = None,
        nll_reweight: str = "dim_wise",
        kl_only: bool = False,
        use_idm: bool = False,
        idm_trainable: bool = False,
        compile: bool | str = False,
    ) -> None:
        super().__init__(
            kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, nll_reweight=nll_reweight, compile=compile
        )
        keys = world_model.keys
        if unravel_key(keys.action) not in policy.out_keys:
            raise ValueError(
                f"The policy must write {keys.action!r} (world_model.keys.action), which the world model's transition "
                f"reads; it writes {policy.out_keys}: make_policy(..., keys=world_model.keys)."
            )
        if isinstance(policy, TanhGaussianActor):
            sizes = (policy.feature_dim, policy.action_dim)
            if sizes != (world_model.feature_dim, world_model.action_dim):
                raise ValueError(
                    f"The policy maps {sizes[0]} features to {sizes[1]} actions, but the world model has "
                    f"{world_model.feature_dim} (state {world_model.state_dim} + belief {world_model.belief_dim}) and "
                    f"{world_model.action_dim} actions: make_policy(world_model.state_dim, world_model.belief_dim, "
                    "world_model.action_dim)."
                )
        self.policy = policy
        self.kl_only = kl_only
        if use_idm and getattr(world_model, "idm", None) is None:
            raise ValueError("use_idm=True needs a world model with an IDM trained in phase 1 (from_config(..., idm=True)).")
        self.use_idm = use_idm
        self.idm_trainable = use_idm and idm_trainable
        if self.idm_trainable:
            self.idm = world_model.idm  # a submodule: its parameters are trained with the policy's
        # Held out like DreamerActorLoss's value model: not a submodule, so loss.parameters() is
        # exactly the policy's and an optimiser built on it can never touch the world model.
        self.__dict__["world_model"] = world_model
        # Phase 2 runs on a frozen view (a trainable IDM kept live): no gradient reaches the world
        # model, no weight gradient is computed, and its requires_grad flags are never touched
        self._frozen = FrozenView(world_model, keep=self.idm.parameters() if self.idm_trainable else ())
        self.set_keys(**self._names_from(keys))

    @property
    def out_keys(self) -> list:
        """What :meth:`forward` returns, from the options (and ``action_mse`` when the window has actions)."""
        elbo = [] if self.use_idm and not self.idm_trainable else [*([] if self.kl_only else ["loss_recon"]), "loss_kl"]
        idm = ["loss_action_kl", "action_kl"] if self.use_idm else []
        return [*elbo, *idm, "elbo", "kl", *(f"recon_{k}" for k in self.world_model.decoders)]

    @property
    def in_keys(self) -> list:
        obs = self.world_model.observation_keys
        return [*obs, *(("next", k) for k in obs)]

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        self._check_finite_once(tensordict)
        world_model = self._frozen()
        keys = self.tensor_keys
        actor = _IDMActor(world_model.idm, self.policy, world_model.keys) if self.use_idm else self.policy
        out, rows = self._window_terms(world_model, tensordict, with_actions=False, policy=actor, kl_only=self.kl_only)
        if self.use_idm:
            # row 0 keeps the zero action of the initial state
            params = [rows["outputs"][unravel_key(k)][..., 1:, :] for k in (keys.idm_loc, keys.idm_scale, keys.loc,
                                                                            keys.scale)]
            kl = gaussian_kl(*params).sum(-1).sum(-1).mean()
            if not self.idm_trainable:  # nothing else has a gradient
                out = out.exclude("loss_recon", "loss_kl")
            out.set("loss_action_kl", self.kl_scale * kl)
            out.set("action_kl", kl.detach())
        true_action = tensordict.get(self.tensor_keys.action, None)
        if true_action is not None:  # how far the inferred actions are from the window's true ones
            out.set("action_mse", (rows["action"][..., 1:, :].detach() - true_action).pow(2).mean())
        return out


class _IDMActor(TensorDictModuleBase):
    """Acts with the IDM (a sample of q(a | s, h, e')) and writes the policy's ``loc``/``scale`` too."""

    def __init__(self, idm: TensorDictModuleBase, policy: TensorDictModuleBase, keys: LatentKeys) -> None:
        super().__init__()
        self.idm = idm
        self.policy = policy
        self.in_keys = list(dict.fromkeys([*idm.in_keys, *policy.in_keys]))
        self.out_keys = [unravel_key(k) for k in (keys.action, keys.idm_loc, keys.idm_scale, keys.loc, keys.scale)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self.policy.get_dist_params(self.idm(tensordict))
