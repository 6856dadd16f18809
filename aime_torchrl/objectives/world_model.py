# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Phase 1 of AIME: the ELBO of an embodiment dataset (observations and actions)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.objectives.elbo import ELBOLossBase

#: The reference's phase-1 loss options for each world model preset (argmax-ai/aime): pass them with
#: ``WorldModelLoss(wm, **LOSS_PRESETS["rssmo"])``. Phase 2 uses the true ELBO (no free nats).
LOSS_PRESETS: dict[str, dict] = {
    "rssm": dict(nll_reweight="dim_wise", free_nats=0.0, kl_balance=None),
    "rssmo": dict(nll_reweight="none", free_nats=1.0, kl_balance=0.8),
}


class WorldModelLoss(ELBOLossBase):
    """Trains a variational world model by maximising the ELBO of observations given actions.

    For a window ``[B, T]`` (TorchRL layout: root o_t and ``action`` a_t, ``("next", o)``
    o_{t+1}) the model filters the T + 1 observations with the posterior from the zero state,
    and every frame gets a reconstruction term and a KL term (as the reference):

        ELBO = mean_b sum_t [ sum_sensors log p(o_t | s_t, h_t) - KL(q(s_t | h_t, o_t) || p(s_t | h_t)) ]

    Args:
        world_model (RSSMWorldModel): the model to train.

    Keyword Args:
        kl_scale (float, optional): weight of the KL in the loss. Defaults to ``1.0``.
        free_nats (float, optional): free nats on the per-step KL (straight-through; the logged
            KL stays exact). Defaults to ``0.0``.
        kl_balance (float, optional): KL balancing factor; ``None`` disables. Defaults to ``None``.
        nll_reweight (str, optional): ``"dim_wise"`` (beta-NLL, the KL re-weighted by the mean
            decoder std, as the reference walker config) or ``"none"``. Defaults to ``"dim_wise"``.

        compile (bool or str, optional): ``torch.compile`` the window's ELBO on the world model's core
            (:func:`~aime_torchrl.objectives.window_elbo.window_elbo`), forward and backward; a string is the compile mode
            (``"reduce-overhead"``: CUDA graphs). The first steps pay the compilation. Defaults to ``False``.

    The defaults are the walker (RSSM) settings; :data:`LOSS_PRESETS` holds the cheetah (RSSMO) ones.

    Returns a TensorDict with ``loss_recon`` and ``loss_kl`` (sum them to optimise), and the
    detached ``elbo``, ``kl`` and ``recon_<sensor>``. If the world model has an IDM
    (``world_model.idm``), ``loss_idm`` is its negative log-likelihood of the actions given the
    detached previous latent state and the next embedding, summed over the batch and averaged over
    time (the reference's ``idm_mode=detach`` and reduction); it trains the IDM only.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import RSSMWorldModel
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=32, state_dim=8, hidden=32)
        >>> loss = WorldModelLoss(wm)
        >>> window = TensorDict({"observation": torch.randn(4, 10, 5), "action": torch.rand(4, 10, 2),
        ...     ("next", "observation"): torch.randn(4, 10, 5)}, [4, 10])
        >>> out = loss(window)
        >>> (out["loss_recon"] + out["loss_kl"]).backward()
        >>> sorted(out.keys())
        ['elbo', 'kl', 'loss_kl', 'loss_recon', 'recon_observation']
    """

    @dataclass
    class _AcceptedKeys(ELBOLossBase._AcceptedKeys):
        """The window's ``action`` and the names of the latents the IDM reads (with
        ``world_model.idm``): ``belief``, ``state`` and ``encoded_latents``, the world model's
        (:class:`~aime_torchrl.modules.keys.LatentKeys`)."""

        belief: NestedKey = LatentKeys.belief
        state: NestedKey = LatentKeys.state
        encoded_latents: NestedKey = LatentKeys.encoded_latents

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        world_model: RSSMWorldModel,
        *,
        kl_scale: float = 1.0,
        free_nats: float = 0.0,
        kl_balance: float | None = None,
        nll_reweight: str = "dim_wise",
        compile: bool | str = False,
    ) -> None:
        super().__init__(
            kl_scale=kl_scale, free_nats=free_nats, kl_balance=kl_balance, nll_reweight=nll_reweight, compile=compile
        )
        self.world_model = world_model
        self.set_keys(**self._names_from(world_model.keys))

    @property
    def in_keys(self) -> list:
        obs = self.world_model.observation_keys
        return [*obs, *(("next", k) for k in obs), self.tensor_keys.action]

    @property
    def out_keys(self) -> list:
        """What :meth:`forward` returns, from the options: the losses, the ELBO's terms and ``loss_idm``
        with an IDM."""
        idm = ["loss_idm"] if self.world_model.idm is not None else []
        return ["loss_recon", "loss_kl", *idm, "elbo", "kl", *(f"recon_{k}" for k in self.world_model.decoders)]

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        self._check_finite_once(tensordict)
        out, rows = self._window_terms(self.world_model, tensordict, with_actions=True)
        if self.world_model.idm is not None:
            out.set("loss_idm", idm_nll(self.world_model.idm, rows, self.tensor_keys))
        return out


def idm_nll(idm: TensorDictModuleBase, rows: dict, keys: LatentKeys | WorldModelLoss._AcceptedKeys) -> torch.Tensor:
    """The IDM's negative log-likelihood of the actions a_1..a_T of the filter's rows
    (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`; row 0's action is the zero action of
    the initial state, not data), from detached inputs; sum over the batch, mean over time. Actions
    are clamped to +-0.999 as in the reference."""
    inputs = {keys.belief: rows["belief"], keys.state: rows["state"], keys.encoded_latents: rows["embedding"]}
    batch = rows["action"][..., 1:, 0].shape
    inputs = TensorDict({key: value[..., 1:, :].detach() for key, value in inputs.items()}, batch)
    action = rows["action"][..., 1:, :].clamp(-0.999, 0.999)
    return -idm.get_dist(inputs).log_prob(action).mean(-1).sum()
