# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A latent-action world model: one RSSM driven by latent actions, inferred from observations
wherever real actions are missing, and tied to the real actions where they are known."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.policy import GaussianActor
from aime_torchrl.modules.rssm import GaussianHead
from aime_torchrl.modules.world_model import RSSMWorldModel

#: How the frames of a latent-action world model name its latent action and the inference model's
#: Gaussian (the "policy" of its rollout); the real actions stay under ``"action"`` in the data.
LATENT_ACTION_KEYS = dict(action="latent_action", loc="latent_action_loc", scale="latent_action_scale")


class LatentActionWorldModel(TensorDictModuleBase):
    """An RSSM whose transition reads a latent action u_t, with the three maps that tie u to real actions.

    Our design of the model of "Latent Action World Models for Control with Unlabeled Trajectories"
    (Alles et al., 2025; only the abstract is public): the variational RSSM of AIME, whose
    transition ``h_{t+1} = f(h_t, s_t, u_t)`` reads a latent action instead of the action, and

    * ``inference`` q(u_t | h_t, s_t, e_{t+1}): a latent inverse model (AIME's IDM head, LAPO's
      latent IDM) that infers u_t from the latent state and the embedding of the next observation;
      it samples every u_t of the rollout (reparameterised), on labelled and action-free windows alike;
    * ``action_encoder`` g(u | a): a Gaussian over the latent space from a real action. On labelled
      steps it is the prior of u (the ELBO's KL(q || g) aligns the inferred latent actions with the
      real ones); on action-free steps the prior is N(0, I);
    * ``action_decoder`` p(a | u): maps any latent action back to a real action (trained on the
      labelled steps' inferred u, as CLAM trains its decoder jointly), so a latent-action policy can act.

    The world model underneath is a plain :class:`RSSMWorldModel` of action size ``latent_action_dim``
    whose frames hold u under ``"latent_action"`` (:data:`LATENT_ACTION_KEYS`); its own tools
    (:func:`~aime_torchrl.evaluation.open_loop_prediction`, checkpoints) apply to it.

    Args:
        world_model (RSSMWorldModel): the RSSM, its action being the latent action.
        inference (TensorDictModuleBase): ``(belief, state, encoded_latents) -> latent_action_loc,
            latent_action_scale, latent_action`` (the names of ``world_model.keys``).
        action_encoder (TensorDictModuleBase): ``action -> action_latent_loc, action_latent_scale``.
        action_decoder (TensorDictModuleBase): ``latent_action -> action_loc, action_scale``.

    Keyword Args:
        action_dim (int): size of the real action.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, latent_action_dim=3,
        ...     belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(5, 8, 4),
        ...     ("next", "observation"): torch.randn(5, 8, 4)}, [5, 8])
        >>> frames = model(model.to_frames(window))    # latent actions inferred from observations alone
        >>> frames["latent_action"].shape
        torch.Size([5, 9, 3])
        >>> model.decode(frames["latent_action"]).shape
        torch.Size([5, 9, 2])
    """

    def __init__(
        self,
        world_model: RSSMWorldModel,
        inference: TensorDictModuleBase,
        action_encoder: TensorDictModuleBase,
        action_decoder: TensorDictModuleBase,
        *,
        action_dim: int,
    ) -> None:
        super().__init__()
        self.world_model = world_model
        self.inference = inference
        self.action_encoder = action_encoder
        self.action_decoder = action_decoder
        self.action_dim = action_dim
        self.in_keys = [("next", key) for key in world_model.observation_keys]
        self.out_keys = list(dict.fromkeys([*world_model.out_keys, *inference.out_keys]))

    @property
    def keys(self) -> LatentKeys:
        return self.world_model.keys

    @property
    def latent_action_dim(self) -> int:
        return self.world_model.action_dim

    def to_frames(self, window: TensorDictBase) -> TensorDictBase:
        """The window's frames (:meth:`RSSMWorldModel.to_frames`) with zero latent actions, which
        :meth:`forward` infers; the window's real actions, if any, are not read."""
        return self.world_model.to_frames(window, with_actions=False)

    def forward(self, frames: TensorDictBase) -> TensorDictBase:
        """Encodes and filters the frames, the inference model sampling each latent action u_{t-1}
        from the previous latents and the frame's embedding (row 0, from the initial state, keeps
        its zero latent action); writes u and q's parameters into every frame."""
        return self.world_model(frames, policy=self.inference)

    def encode_actions(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and std of g(u | a) for real ``actions`` ``[..., action_dim]``."""
        encoded = self.action_encoder(TensorDict({self.action_encoder.in_keys[0]: actions}, actions.shape[:-1]))
        return tuple(encoded.get(k) for k in self.action_encoder.out_keys)

    def decode(self, latent_actions: torch.Tensor) -> torch.Tensor:
        """The decoder's mean action for ``latent_actions`` ``[..., latent_action_dim]``, in [-1, 1]."""
        return self.decode_params(latent_actions)[0].clamp(-1, 1)

    def decode_params(self, latent_actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and std of p(a | u)."""
        decoded = self.action_decoder(TensorDict({self.keys.action: latent_actions}, latent_actions.shape[:-1]))
        return tuple(decoded.get(k) for k in self.action_decoder.out_keys)

    def with_encoded_actions(self, window: TensorDictBase, action_key: NestedKey = "action") -> TensorDictBase:
        """A copy of a labelled ``window`` whose latent actions are g's means for its real actions
        (``action_key``): the world model driven by real actions (e.g.
        ``open_loop_prediction(model.world_model, ...)``)."""
        out = window.clone(False)
        out.set(self.keys.action, self.encode_actions(window.get(action_key))[0])
        return out

    @classmethod
    def from_config(
        cls,
        vector_dims: Mapping[str, int],
        action_dim: int,
        *,
        latent_action_dim: int | None = None,
        pixel_keys: Sequence[str] = (),
        variant: str = "rssm",
        head_min_std: float = 0.01,
        device: torch.device | str | None = None,
        **overrides,
    ) -> LatentActionWorldModel:
        """The world model of ``variant`` (:meth:`RSSMWorldModel.from_config` and its ``overrides``)
        on latent actions of size ``latent_action_dim`` (default: ``action_dim``), with Gaussian MLP
        heads (``hidden`` wide, 2 layers, std at least ``head_min_std``) for the inference model, the
        action encoder and the action decoder.

        Examples:
            >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
            >>> model.latent_action_dim, model.action_dim
            (2, 2)
            >>> LatentActionWorldModel.from_config(**model.config).config == model.config   # a plain-value config
            True
        """
        if variant not in ("rssm", "rssmo"):
            raise ValueError(f"Latent-action world models are built on the Gaussian RSSMs ('rssm', 'rssmo'); got {variant!r}.")
        latent_action_dim = action_dim if latent_action_dim is None else latent_action_dim
        if latent_action_dim < 1:
            raise ValueError(f"latent_action_dim must be a positive size (or None: the action's), got {latent_action_dim}.")
        world_model = RSSMWorldModel.from_config(vector_dims, latent_action_dim, pixel_keys=pixel_keys, variant=variant,
                                                 keys=LATENT_ACTION_KEYS, device=device, **overrides)
        keys = world_model.keys
        embedding = world_model.encoder.module.embedding_dim
        head = dict(hidden=world_model.config["hidden"], layers=2, min_std=head_min_std, device=device)
        inference = GaussianActor(
            GaussianHead(world_model.feature_dim + embedding, latent_action_dim, sample=True, **head),
            in_keys=[keys.belief, keys.state, keys.encoded_latents], loc_key=keys.loc, scale_key=keys.scale,
            sample_key=keys.action,
        )
        action_encoder = TensorDictModule(
            GaussianHead(action_dim, latent_action_dim, **head),
            in_keys=["action"], out_keys=["action_latent_loc", "action_latent_scale"],
        )
        action_decoder = TensorDictModule(
            GaussianHead(latent_action_dim, action_dim, **head),
            in_keys=[keys.action], out_keys=["action_loc", "action_scale"],
        )
        model = cls(world_model, inference, action_encoder, action_decoder, action_dim=action_dim)
        rssm = {k: v for k, v in world_model.config.items() if k not in ("action_dim", "idm", "keys")}
        model.config = dict(rssm, action_dim=action_dim, latent_action_dim=latent_action_dim, head_min_std=head_min_std)
        return model
