# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Phase 2 of AIME: infer the actions of observation-only demonstrations with a policy."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from torchrl.envs.utils import ExplorationType

from aime_torchrl.modules.world_model import RSSMWorldModel
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
            ``"belief"``) and writing ``"action"`` with a reparameterised sample, e.g.
            :func:`~aime_torchrl.modules.make_policy`.

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

    out_keys = ["loss_recon", "loss_kl", "elbo", "kl"]
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
    ) -> None:
        super().__init__(
            kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, nll_reweight=nll_reweight
        )
        if "action" not in policy.out_keys:
            raise ValueError(
                f"The policy must write 'action', which the world model's transition reads; it writes {policy.out_keys}."
            )
        self.policy = policy
        self.kl_only = kl_only
        # Held out like DreamerActorLoss's value model: not a submodule, so loss.parameters() is
        # exactly the policy's and an optimiser built on it can never touch the world model.
        self.__dict__["world_model"] = world_model

    @property
    def in_keys(self) -> list:
        obs = self.world_model.observation_keys
        return [*obs, *(("next", k) for k in obs)]

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        world_model = self.world_model
        with _held_out(world_model):
            frames = world_model.to_frames(tensordict, action_key=None)
            frames = world_model(frames, policy=self.policy)
            out = self._elbo(world_model, frames, kl_only=self.kl_only)
        true_action = tensordict.get(self.tensor_keys.action, None)
        if true_action is not None:
            inferred = frames.get("action")[..., 1:, :]
            out.set("action_mse", (inferred.detach() - true_action).pow(2).mean())
        return out


@contextlib.contextmanager
def _held_out(module: torch.nn.Module) -> Iterator[None]:
    """No parameter of ``module`` requires grad inside; each gets its own flag back on exit.

    (TorchRL's ``hold_out_net`` reads the first parameter's flag only and re-enables all of them,
    which lets gradients into a partly frozen model and unfreezes what the user froze.)
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
