# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""A latent-action world model: one RSSM driven by the latent actions u = g(a) of real actions, given
where a step is labelled and inferred from the observations where it is not."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key

from aime_torchrl.modules.core import Actor
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.mlp import make_mlp
from aime_torchrl.modules.policy import TanhGaussianActor, TanhGaussianPolicyNet
from aime_torchrl.modules.rollout import write_rows
from aime_torchrl.modules.world_model import RSSMWorldModel

#: How the frames of a latent-action world model name its latent action u and the inverse model's
#: Gaussian (before the tanh); the real actions stay under ``"action"``, the inferred ones under
#: :data:`INFERRED_ACTION`.
LATENT_ACTION_KEYS = dict(action="latent_action", loc="inferred_action_loc", scale="inferred_action_scale")
#: Where the frames hold the action the inverse model samples (a real action, in [-1, 1]).
INFERRED_ACTION = "inferred_action"
#: What the action prior p(a | h, s) writes: its Gaussian (before the tanh) and a sample.
ACTION_PRIOR_KEYS = ("action_prior_loc", "action_prior_scale", "action")


class LatentActionWorldModel(TensorDictModuleBase):
    """An RSSM whose transition reads a latent action u_t = g(a_t), with a semi-supervised inverse model
    that infers a_t where the data have none.

    Our design of the model of "Latent Action World Models for Control with Unlabeled Trajectories"
    (Alles et al., 2025; only the abstract is public): the variational RSSM of AIME, whose transition
    ``h_{t+1} = f(h_t, s_t, u_t)`` reads a latent action, and

    * ``action_encoder`` g: a real action -> its latent action (an MLP; AdaWorld's and Garrido et al.'s
      controller from real actions into the latent space). On labelled steps the transition is driven
      by g of the real action, in the same filter pass as the rest (so the dynamics is trained on what
      drives it at evaluation and deployment);
    * ``inference`` q(a_t | h_t, s_t, e_{t+1}): an inverse model in the *real* action space (AIME's IDM
      head, a TanhGaussian), whose reparameterised sample drives the transition through g on action-free
      steps. Its latent actions so stay on g's image of real actions, where a policy can reach them
      (the remedy for future leakage: u cannot be an arbitrary code of the next frame), and it is
      trained by the ELBO of the action-free steps and, on labelled steps, by the likelihood of the
      real actions (LAOM's and CLAM's supervision while the latents are learnt; SS-ORL's IDM);
    * ``action_prior`` p(a_t | h_t, s_t): the prior of the inferred actions (a behaviour policy). An
      action-free step's action is a latent variable of the ELBO, KL(q || p) its price (the
      semi-supervised VAE of Kingma et al. 2014, "M2"): what q writes into a beyond what the state
      predicts costs nats, against future leakage. Labelled steps train it by their likelihood.

    With every step labelled the model is an RSSM with a learned action embedding g (and an inverse
    model beside it). A policy acts in the real action space; the world model imagines through g
    (:func:`~aime_torchrl.modules.make_imagination_env` given this model,
    :class:`~aime_torchrl.modules.LatentActionFilteringActor`).

    The world model underneath is a plain :class:`RSSMWorldModel` of action size ``latent_action_dim``
    whose frames hold u under ``"latent_action"`` (:data:`LATENT_ACTION_KEYS`); its own tools
    (:func:`~aime_torchrl.evaluation.open_loop_prediction`, checkpoints) apply to it.

    Args:
        world_model (RSSMWorldModel): the RSSM, its action being the latent action.
        inference (TanhGaussianActor): ``(belief, state, encoded_latents) -> inferred_action_loc,
            inferred_action_scale, inferred_action``.
        action_encoder (TensorDictModule): ``action -> latent_action``.
        action_prior (TanhGaussianActor): ``(belief, state) -> action_prior_loc, action_prior_scale, action``.

    Keyword Args:
        action_dim (int): size of the real action.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, latent_action_dim=3,
        ...     belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(5, 8, 4),
        ...     ("next", "observation"): torch.randn(5, 8, 4)}, [5, 8])
        >>> frames = model(model.to_frames(window))    # actions inferred from observations alone
        >>> frames["latent_action"].shape, frames["inferred_action"].shape
        (torch.Size([5, 9, 3]), torch.Size([5, 9, 2]))
    """

    def __init__(
        self,
        world_model: RSSMWorldModel,
        inference: TanhGaussianActor,
        action_encoder: TensorDictModule,
        action_prior: TanhGaussianActor,
        *,
        action_dim: int,
    ) -> None:
        super().__init__()
        self.world_model = world_model
        self.inference = inference
        self.action_encoder = action_encoder
        self.action_prior = action_prior
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
        :meth:`forward` fills; the window's real actions, if any, are not read."""
        return self.world_model.to_frames(window, with_actions=False)

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """The latent actions g(a) of real ``actions`` ``[..., action_dim]``."""
        return self.action_encoder.module(actions)

    def actor(
        self,
        actions: torch.Tensor | None = None,
        labelled: torch.Tensor | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        sample: bool = True,
        detach: bool = False,
    ) -> Actor:
        """What acts inside the filter (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`): at
        row t the inverse model samples a_{t-1} ~ q(. | h, s, e_t) (with ``noise[t]``, or drawn at the
        row); where ``labelled[..., t]`` the row's real action ``actions[..., t, :]`` replaces it; the
        transition reads u = g(a). Also records the inferred action and q's parameters.

        Args:
            actions (torch.Tensor, optional): the frames' real actions ``[*B, T + 1, action_dim]``.
            labelled (torch.Tensor, optional): ``[*B, T + 1]`` booleans, which rows' actions are real.
                Both absent: every action is inferred.
            noise (Sequence[torch.Tensor], optional): standard normal noise ``[*B, action_dim]`` per row.
            sample (bool, optional): ``False``: the inferred action is q's mode ``tanh(loc)`` instead of a
                sample (``noise`` unused). Defaults to ``True``.
            detach (bool, optional): ``True``: the inferred action drives the transition as a
                pseudo-label: q runs without autograd (no gradient into q through the filter; its
                recorded parameters are detached: :meth:`inference_params` recomputes them with
                gradients, batched). Defaults to ``False``.
        """
        keys = [unravel_key(k) for k in (self.keys.state, self.keys.belief, self.keys.encoded_latents)]
        time_dim = None if actions is None else actions.ndim - 2

        def act(t: int, state: torch.Tensor, belief: torch.Tensor, embedding: torch.Tensor) -> dict:
            step_noise = torch.zeros_like(state[..., :1]) if not sample else None if noise is None else noise[t]
            with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
                out = self.inference.act(dict(zip(keys, (state, belief, embedding))), step_noise)
            action = out[INFERRED_ACTION]
            if actions is not None:
                given = actions.select(time_dim, t)
                action = torch.where(labelled.select(time_dim, t).unsqueeze(-1), given, action)
            out["action"] = self.encode_actions(action)
            return out

        return act

    def forward(
        self, frames: TensorDictBase, actions: torch.Tensor | None = None, labelled: torch.Tensor | None = None
    ) -> TensorDictBase:
        """Encodes and filters the frames (see :meth:`actor`: the real ``actions`` where ``labelled``,
        ``[*B, T + 1]`` frame rows, else inferred; row 0, from the initial state, keeps its zero latent
        action) and runs the prior; writes u, the inferred actions and q's parameters into every frame."""
        world_model, core = self.world_model, self.world_model.core
        observations = {key: frames.get(("next", key)) for key in world_model.observation_keys}
        embeddings = core.encode(observations, frames.batch_size)
        frames.set(self.keys.encoded_latents, embeddings)
        noise = core.draw_noise(embeddings.select(embeddings.ndim - 2, 0), frames.batch_size[-1])
        rows = core.observe(embeddings, frames.get(self.keys.action), noise=noise, actor=self.actor(actions, labelled))
        rows["prior"] = core.prior_params(rows)
        return write_rows(frames, rows, self.keys, core)

    def inference_params(self, belief: torch.Tensor, state: torch.Tensor,
                         embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian (before the tanh) of the inverse model q(a | h, s, e) for the previous
        latents and the next embedding, e.g. over the filter's rows at once."""
        keys = self.keys
        return self.inference.params({unravel_key(keys.belief): belief, unravel_key(keys.state): state,
                                      unravel_key(keys.encoded_latents): embedding})

    def action_prior_params(self, belief: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian (before the tanh) of the action prior p(a | h, s), e.g. over the filter's rows."""
        return self.action_prior.params({unravel_key(self.keys.belief): belief, unravel_key(self.keys.state): state})

    def with_encoded_actions(self, window: TensorDictBase, action_key: NestedKey = "action") -> TensorDictBase:
        """A copy of a labelled ``window`` whose latent actions are g of its real actions
        (``action_key``): the world model driven by real actions (e.g.
        ``open_loop_prediction(model.world_model, ...)``)."""
        out = window.clone(False)
        out.set(self.keys.action, self.encode_actions(window.get(action_key)))
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
        device: torch.device | str | None = None,
        **overrides,
    ) -> LatentActionWorldModel:
        """The world model of ``variant`` (:meth:`RSSMWorldModel.from_config` and its ``overrides``)
        on latent actions of size ``latent_action_dim`` (default: ``action_dim``), with MLPs (``hidden``
        wide, 2 layers) for the inverse model and the action prior (TanhGaussian heads) and the action
        encoder.

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
        hidden = world_model.config["hidden"]
        net = TanhGaussianPolicyNet(world_model.feature_dim + embedding, action_dim, hidden=hidden, layers=2, device=device)
        inference = TanhGaussianActor(net, in_keys=[keys.belief, keys.state, keys.encoded_latents], loc_key=keys.loc,
                                      scale_key=keys.scale, action_key=INFERRED_ACTION, device=device)
        action_encoder = TensorDictModule(make_mlp(action_dim, latent_action_dim, hidden, 2, device=device),
                                          in_keys=["action"], out_keys=[keys.action])
        prior_net = TanhGaussianPolicyNet(world_model.feature_dim, action_dim, hidden=hidden, layers=2, device=device)
        loc, scale, action = ACTION_PRIOR_KEYS
        action_prior = TanhGaussianActor(prior_net, in_keys=[keys.belief, keys.state], loc_key=loc, scale_key=scale,
                                         action_key=action, device=device)
        model = cls(world_model, inference, action_encoder, action_prior, action_dim=action_dim)
        rssm = {k: v for k, v in world_model.config.items() if k not in ("action_dim", "idm", "keys")}
        model.config = dict(rssm, action_dim=action_dim, latent_action_dim=latent_action_dim)
        return model


def frame_labels(actions: torch.Tensor, labelled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A window's real actions ``[*B, T, A]`` and labelled steps ``[*B, T]`` laid out on its frames
    ``[*B, T + 1]`` (frame t + 1 holds a_t; frame 0, the initial state's, is never labelled)."""
    return (torch.cat([torch.zeros_like(actions[..., :1, :]), actions], -2),
            torch.cat([torch.zeros_like(labelled[..., :1]), labelled], -1))
