# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The variational world model of AIME: encoders, RSSM and per-sensor decoders, with TorchRL keys."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey, unravel_key
from tensordict.nn import (
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictModuleBase,
)
from torch import nn

from aime_torchrl.modules.core import DreamerV3Core, KeyedCore, RSSMCore, WorldModelCore
from aime_torchrl.modules.decoders import CNNDecoder, GaussianMLPDecoder, make_decoder
from aime_torchrl.modules.encoders import ObservationEncoder
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.latent import make_latent
from aime_torchrl.modules.rollout import PosteriorRollout, write_rows
from aime_torchrl.modules.rssm import GaussianHead, RSSMTransition

#: Hyper-parameters of the two world models of the reference (argmax-ai/aime).
WORLD_MODEL_PRESETS: dict[str, dict] = {
    # walker: Dreamer-v1 style RSSM, identity encoders, smlp decoders with learnt std.
    "rssm": dict(
        belief_dim=512, state_dim=128, hidden=128, layers=2, activation=nn.ELU, norm=False,
        min_std=1e-6, std_mapping="softplus", transition_input=None, head_layers=2,
        vector_encoder=None, learn_std=True,
    ),
    # cheetah: "as in the original Dreamer repo", LayerNorm + SiLU, std = 2 sigmoid(x/2) + 0.1.
    "rssmo": dict(
        belief_dim=512, state_dim=30, hidden=512, layers=2, activation=nn.SiLU, norm=True,
        min_std=0.1, std_mapping="sigmoid", transition_input=512, head_layers=1,
        vector_encoder=512, learn_std=False,
    ),
    # TorchRL's DreamerV3 RSSM (RSSMPriorV3 with its block GRU, RSSMPosteriorV3): categorical latents
    # (categoricals x classes, straight-through samples, 1 % unimix); small sizes for a CPU. The
    # encoders and decoders are this package's (vector MLPs, the reference's 64x64 conv nets). Two
    # changes for AIME, which infers actions from how much the ELBO depends on them: decoders that
    # learn their std (DreamerV3's are fixed) and no RMS norm after the block GRU's action projection
    # (it leaves only the action's direction to the belief); with TorchRL's modules as they are
    # (learn_std=False, action_norm=True) AIME does not imitate (docs/dreamerv3).
    "dreamerv3": dict(
        belief_dim=256, hidden=256, categoricals=16, classes=16, blocks=8, unimix=0.01, layers=2,
        activation=nn.SiLU, norm=True, vector_encoder=256, learn_std=True, action_norm=False,
    ),
}


class RSSMWorldModel(TensorDictModuleBase):
    """An RSSM world model assembled from TensorDictModules in TorchRL's Dreamer key scheme.

    It turns TorchRL windows into *frames*, encodes them, filters them with a
    :class:`~aime_torchrl.modules.PosteriorRollout` (optionally with a policy choosing the
    actions) and evaluates the prior heads batched over the window. Decoders are per sensor
    probabilistic modules; the losses call ``decoders[key].get_dist(frames)``.

    Any modules with the right keys can be plugged in, including TorchRL's own
    :class:`~torchrl.modules.RSSMPrior` (as ``transition``, writing the prior parameters itself,
    with ``prior=None``), :class:`~torchrl.modules.RSSMPosterior`, :class:`~torchrl.modules.ObsEncoder`
    and :class:`~torchrl.modules.ObsDecoder`. :meth:`from_config` builds the reference's networks.

    Frames: a window ``[*B, T]`` in TorchRL layout (row t holds o_t, ``action`` a_t and
    ``("next", o)`` o_{t+1}) holds T+1 observations. :meth:`to_frames` lays them out as T+1 rows,
    row t being the transition into o_t: ``("next", <sensor>)`` = o_t and ``action`` = a_{t-1}.
    Row 0 starts from the zero state with a zero action, which is exactly the test-time filter
    after ``reset()``. (The reference feeds the real previous action to the zero state for windows
    starting mid-episode; see the README.)

    The key names below are the defaults of ``keys`` (:class:`~aime_torchrl.modules.keys.LatentKeys`);
    every module must read and write the names ``keys`` gives (``from_config(..., keys=...)`` builds
    them so), and the rollout carries the latent state under them.

    Args:
        encoder (TensorDictModuleBase): ``("next", <sensor>) -> ("next", "encoded_latents")``.
        transition (TensorDictModuleBase): ``("state", "belief", "action") -> ("next", "belief")``.
        posterior (TensorDictModuleBase): ``(("next", "belief"), ("next", "encoded_latents")) ->
            ("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")``.
        decoders (Mapping[str, ProbabilisticTensorDictSequential]): one per reconstructed sensor,
            reading ``("next", "belief"), ("next", "state")``.
        prior (TensorDictModuleBase, optional): ``("next", "belief") -> ("next", "prior_mean"),
            ("next", "prior_std")``, run after the loop. ``None`` if ``transition`` writes them.
        idm (TensorDictModuleBase, optional): a latent inverse dynamics model (see
            :func:`~aime_torchrl.modules.make_idm`), trained in phase 1 by
            :class:`~aime_torchrl.WorldModelLoss` and used by AIME with IDM. Defaults to ``None``.

    Keyword Args:
        observation_keys (Sequence[str]): the sensors the model reads, in order.
        state_dim (int): size of ``state``.
        belief_dim (int): size of ``belief``.
        action_dim (int): size of ``action``.
        latent (str, optional): the latent distribution the losses read: ``"gaussian"`` (the
            ``*_mean``/``*_std`` keys) or ``"categorical"`` (``("next", "prior_logits")`` and
            ``("next", "posterior_logits")``, ``[..., N, K]``, as TorchRL's DreamerV3 modules write
            them). Defaults to ``"gaussian"``.
        unimix (float, optional): the uniform mixture of categorical latents (their KL uses it). Defaults to ``0.0``.
        keys (LatentKeys or dict, optional): the names of the latents, the action and the embedding
            in the frames (a dict gives the names to change). Defaults to ``None`` (TorchRL's Dreamer names).
        core (WorldModelCore, optional): the step protocol on plain tensors that every computation of
            the model runs on (:mod:`aime_torchrl.modules.core`); :meth:`from_config` passes the one of
            its networks. Defaults to ``None``: the modules through their keys
            (:class:`~aime_torchrl.modules.core.KeyedCore`, latents of ``latent``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=32, state_dim=8, hidden=32)
        >>> window = TensorDict({"observation": torch.randn(4, 10, 5), "action": torch.rand(4, 10, 2),
        ...     ("next", "observation"): torch.randn(4, 10, 5)}, [4, 10])
        >>> frames = wm(wm.to_frames(window))
        >>> frames["next", "prior_mean"].shape   # 11 frames: o_0 ... o_10
        torch.Size([4, 11, 8])
    """

    def __init__(
        self,
        encoder: TensorDictModuleBase,
        transition: TensorDictModuleBase,
        posterior: TensorDictModuleBase,
        decoders: Mapping[str, ProbabilisticTensorDictSequential],
        prior: TensorDictModuleBase | None = None,
        idm: TensorDictModuleBase | None = None,
        *,
        observation_keys: Sequence[str],
        state_dim: int,
        belief_dim: int,
        action_dim: int,
        latent: str = "gaussian",
        unimix: float = 0.0,
        keys: LatentKeys | Mapping | None = None,
        core: WorldModelCore | None = None,
    ) -> None:
        super().__init__()
        self.keys = LatentKeys.of(keys)
        if core is None:
            core = KeyedCore(transition, posterior, keys=self.keys, latent=make_latent(latent, unimix),
                             state_dim=state_dim, belief_dim=belief_dim, encoder=encoder, prior=prior,
                             decoders=decoders, observation_keys=observation_keys)
        self.core = core  # a plain object holding (not owning) the modules' networks
        self.encoder = encoder
        self.rollout = PosteriorRollout(transition, posterior, keys=self.keys, core=core)
        self.prior = prior
        self.idm = idm
        self.decoders = nn.ModuleDict(decoders)
        self.observation_keys = list(observation_keys)
        self.state_dim = state_dim
        self.belief_dim = belief_dim
        self.action_dim = action_dim
        self.in_keys = [("next", key) for key in self.observation_keys] + [unravel_key(self.keys.action)]
        self.out_keys = list(
            dict.fromkeys(
                [*encoder.out_keys, *self.rollout.out_keys, *(prior.out_keys if prior else [])]
            )
        )

    @property
    def feature_dim(self) -> int:
        """Size of the state feature ``[belief, state]`` read by decoders and policies."""
        return self.state_dim + self.belief_dim

    @property
    def transition(self) -> TensorDictModuleBase:
        return self.rollout.transition

    @property
    def posterior(self) -> TensorDictModuleBase:
        return self.rollout.posterior

    @property
    def latent(self) -> str:
        """``"gaussian"`` or ``"categorical"``: the state's distribution (``core.latent``)."""
        return self.core.latent.name

    def to_frames(
        self, window: TensorDictBase, with_actions: bool = True, action_key: NestedKey | None = None
    ) -> TensorDictBase:
        """Lays a TorchRL window ``[*B, T]`` out as ``[*B, T + 1]`` frames (see the class docstring).

        Args:
            window (TensorDictBase): o_t at the root, ``("next", o)`` = o_{t+1}, and the actions a_t.
            with_actions (bool, optional): read the window's actions; ``False`` leaves every action at
                zero (demonstrations: AIME's phase 2 never reads actions). Defaults to ``True``.
            action_key (NestedKey, optional): where the window holds the actions. Defaults to
                ``keys.action`` (where the frames hold them).
        """
        action_key = (action_key or self.keys.action) if with_actions else None
        if window.batch_dims < 1:
            raise ValueError(
                f"Expected a window with a time dimension, [*B, T]; got batch_size {window.batch_size}."
            )
        wanted = [k for key in self.observation_keys for k in (key, ("next", key))]
        if action_key is not None:
            wanted.append(action_key)
        missing = [k for k in wanted if k not in window.keys(include_nested=True)]
        if missing:
            raise KeyError(
                f"The window lacks {_fmt(missing)}; the world model reads the sensors "
                f"{_fmt(self.observation_keys)} (at the root and under next) and the actions "
                f"{_fmt([action_key] if action_key else [])}. Available: {_fmt(window.keys(True, True))}."
            )
        self._check_shapes(window, action_key)
        *batch, length = window.batch_size
        time_dim = window.batch_dims - 1
        frames = TensorDict(batch_size=[*batch, length + 1], device=window.device)
        for key in self.observation_keys:
            first = window.get(key).narrow(time_dim, 0, 1)
            frames.set(("next", key), torch.cat([first, window.get(("next", key))], time_dim))
        ref = window.get(("next", self.observation_keys[0]))
        param = next(self.parameters(), None)
        zeros = dict(device=ref.device, dtype=param.dtype if param is not None else torch.get_default_dtype())
        n = frames.batch_size
        if action_key is None:
            frames.set(self.keys.action, torch.zeros(*n, self.action_dim, **zeros))
        else:
            actions = window.get(action_key)
            frames.set(self.keys.action, torch.cat([torch.zeros_like(actions[..., :1, :]), actions], -2))
        frames.set(self.keys.state, torch.zeros(*n, self.state_dim, **zeros))
        frames.set(self.keys.belief, torch.zeros(*n, self.belief_dim, **zeros))
        return frames

    def sensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one frame of every sensor the model reads (``(size,)`` for vectors,
        ``(3, 64, 64)`` for images), for checking data before training; empty when the encoder is
        not this package's."""
        encoder = getattr(self.encoder, "module", None)
        return encoder.sensor_shapes() if isinstance(encoder, ObservationEncoder) else {}

    def _check_shapes(self, window: TensorDictBase, action_key) -> None:
        """Every sensor's frame shape and dtype and the actions' size against the model's, with an
        error that names the key (cheap: no data is read)."""
        if window.batch_size[-1] == 0:
            raise ValueError(f"The window has no step (batch_size {tuple(window.batch_size)}): it needs T >= 1 "
                             "transitions (T + 1 frames).")
        shapes = self.sensor_shapes()
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        checks = [(k, key, shapes.get(key)) for key in self.observation_keys for k in (key, ("next", key))]
        if action_key is not None:
            checks.append((action_key, "action", (self.action_dim,)))
        for key, sensor, expected in checks:
            value = window.get(key)
            shape = tuple(value.shape[window.batch_dims:])
            if expected is not None and shape != expected:
                raise ValueError(
                    f"{_fmt([key])} has shape {shape} per frame, but the world model reads {sensor} as {expected} "
                    f"(window batch_size {tuple(window.batch_size)}): build the world model for this data (its "
                    "sensor sizes, 64x64 images) or convert the data."
                )
            if value.is_floating_point() and value.dtype != dtype:
                raise TypeError(f"{_fmt([key])} is {value.dtype} but the world model computes in {dtype}: cast the "
                                f"window first (e.g. window.to({dtype})).")

    def forward(
        self, frames: TensorDictBase, policy: TensorDictModuleBase | None = None
    ) -> TensorDictBase:
        """Encodes, filters (with ``policy`` choosing actions after the first frame) and runs the prior."""
        observations = {key: frames.get(("next", key)) for key in self.observation_keys}
        frames.set(self.keys.encoded_latents, self.core.encode(observations, frames.batch_size))
        rows = self.rollout.rows(frames, policy)
        rows["prior"] = self.core.prior_params(rows)
        return write_rows(frames, rows, self.keys, self.core)

    @classmethod
    def from_config(
        cls,
        vector_dims: Mapping[str, int],
        action_dim: int,
        *,
        pixel_keys: Sequence[str] = (),
        variant: str = "rssm",
        idm: bool = False,
        keys: LatentKeys | Mapping | None = None,
        device: torch.device | str | None = None,
        **overrides,
    ) -> RSSMWorldModel:
        """Builds the reference world model: ``variant="rssm"`` (walker) or ``"rssmo"`` (cheetah), or
        ``"dreamerv3"``: TorchRL's DreamerV3 RSSM (categorical latents) with this package's encoders
        and decoders.

        Args:
            vector_dims (Mapping[str, int]): vector sensors (name -> size), in order.
            action_dim (int): size of the action.

        Keyword Args:
            pixel_keys (Sequence[str], optional): image sensors (3x64x64, uint8 or [0, 1]).
            variant (str, optional): ``"rssm"``, ``"rssmo"`` or ``"dreamerv3"``. Defaults to ``"rssm"``.
            idm (bool, optional): add the reference's IDM head (``hidden`` wide, 2 layers, ELU).
                Defaults to ``False``.
            keys (LatentKeys or dict, optional): the names every module reads and writes (see the
                class). Defaults to ``None`` (TorchRL's Dreamer names).
            device (torch.device, optional): device of the parameters. Defaults to ``None``.
            **overrides: any key of :data:`WORLD_MODEL_PRESETS` (``belief_dim``, ``state_dim``,
                ``hidden``, ``layers``, ``min_std``, ``learn_std``, ...).

        The model's ``config`` attribute holds the options it was built with (the preset's and these;
        those that are plain values).
        """
        if variant not in WORLD_MODEL_PRESETS:
            raise ValueError(f"Unknown world model {variant!r}; choose from {list(WORLD_MODEL_PRESETS)}.")
        cfg = dict(WORLD_MODEL_PRESETS[variant])
        unknown = set(overrides) - set(cfg)
        if unknown:
            raise TypeError(f"Unknown world model options {sorted(unknown)}; valid: {sorted(cfg)}.")
        cfg.update(overrides)
        keys = LatentKeys.of(keys)
        if variant == "dreamerv3":
            model = _dreamerv3_world_model(cls, vector_dims, action_dim, pixel_keys, idm, device, cfg, keys)
            model.config = _plain_config(cfg, variant, vector_dims, pixel_keys, action_dim, idm, keys)
            return model
        state_dim, belief_dim = cfg["state_dim"], cfg["belief_dim"]
        mlp = dict(hidden=cfg["hidden"], activation=cfg["activation"], norm=cfg["norm"], device=device)
        if cfg["vector_encoder"] and vector_dims:
            enc = ObservationEncoder.mlp(vector_dims, pixel_keys, hidden=cfg["vector_encoder"], device=device)
        else:
            enc = ObservationEncoder(vector_dims, pixel_keys, device=device)
        observation_keys = [*vector_dims, *pixel_keys]
        encoder = TensorDictModule(enc, in_keys=[("next", k) for k in observation_keys], out_keys=[keys.encoded_latents])
        transition = TensorDictModule(
            RSSMTransition(state_dim, action_dim, belief_dim, input_hidden=cfg["transition_input"], device=device),
            in_keys=[keys.state, keys.belief, keys.action],
            out_keys=[keys.next("belief")],
        )
        head = dict(mlp, layers=cfg["head_layers"], std_mapping=cfg["std_mapping"], min_std=cfg["min_std"])
        prior = TensorDictModule(
            GaussianHead(belief_dim, state_dim, **head),
            in_keys=[keys.next("belief")],
            out_keys=[keys.prior_mean, keys.prior_std],
        )
        posterior = TensorDictModule(
            GaussianHead(belief_dim + enc.embedding_dim, state_dim, sample=True, **head),
            in_keys=[keys.next("belief"), keys.encoded_latents],
            out_keys=[keys.posterior_mean, keys.posterior_std, keys.next("state")],
        )
        decoder_nets = _decoder_nets(vector_dims, pixel_keys, state_dim + belief_dim, cfg, mlp, device)
        decoders = _decoders(decoder_nets, keys)
        core = RSSMCore(enc, transition.module, posterior.module, prior.module, decoder_nets,
                        observation_keys=observation_keys, keys=keys, state_dim=state_dim, belief_dim=belief_dim)
        idm_module = None
        if idm:
            from aime_torchrl.modules.idm import make_idm

            idm_module = make_idm(state_dim, belief_dim, enc.embedding_dim, action_dim, hidden=cfg["hidden"], keys=keys,
                                  device=device)
        model = cls(
            encoder, transition, posterior, decoders, prior, idm_module,
            observation_keys=observation_keys, state_dim=state_dim, belief_dim=belief_dim, action_dim=action_dim,
            keys=keys, core=core,
        )
        model.config = _plain_config(cfg, variant, vector_dims, pixel_keys, action_dim, idm, keys)
        return model


def _decoder_nets(vector_dims, pixel_keys, feature: int, cfg: dict, mlp: dict, device) -> dict:
    """Each sensor's decoder net on ``(belief, state)`` and its fixed std (``None``: learnt, the net
    returns ``(loc, scale)``): MLPs for vectors, the reference's conv net (std 1) for images."""
    nets = {key: (GaussianMLPDecoder(feature, dim, layers=cfg["layers"], learn_std=cfg["learn_std"], **mlp),
                  None if cfg["learn_std"] else 1.0)
            for key, dim in vector_dims.items()}
    for key in pixel_keys:
        nets[key] = (CNNDecoder(feature, device=device), 1.0)
    return nets


def _decoders(nets: Mapping[str, tuple[nn.Module, float | None]], keys: LatentKeys) -> dict:
    """The decoder nets as probabilistic modules on the next latents (:func:`make_decoder`)."""
    in_keys = [keys.next("belief"), keys.next("state")]
    return {key: make_decoder(net, key, event_dim=1 if isinstance(net, GaussianMLPDecoder) else 3,
                              learn_std=fixed_std is None, in_keys=in_keys)
            for key, (net, fixed_std) in nets.items()}


def _plain_config(cfg: dict, variant: str, vector_dims, pixel_keys, action_dim: int, idm: bool, keys: LatentKeys) -> dict:
    """What decides a world model's architecture, as plain values (for save_module / load_module;
    ``from_config(**config)`` rebuilds it)."""
    plain = {k: v for k, v in cfg.items() if v is None or isinstance(v, (bool, int, float, str))}
    return dict(plain, variant=variant, vector_dims=dict(vector_dims), pixel_keys=list(pixel_keys),
                action_dim=action_dim, idm=idm, keys=keys.as_dict())


def _dreamerv3_world_model(cls, vector_dims, action_dim, pixel_keys, idm, device, cfg, keys) -> RSSMWorldModel:
    """:meth:`RSSMWorldModel.from_config` of the ``"dreamerv3"`` preset: TorchRL's RSSMPriorV3 (block
    GRU) as the transition, writing the prior logits in the filter loop, and RSSMPosteriorV3."""
    from torchrl.modules import RSSMPosteriorV3, RSSMPriorV3

    if idm:
        raise ValueError("The latent IDM head is built for Gaussian RSSMs; use idm=False with variant='dreamerv3'.")
    belief_dim, state_dim = cfg["belief_dim"], cfg["categoricals"] * cfg["classes"]
    if belief_dim % cfg["blocks"]:
        divisors = [b for b in range(1, min(belief_dim, 16) + 1) if belief_dim % b == 0]
        raise ValueError(
            f"belief_dim {belief_dim} is not a multiple of blocks {cfg['blocks']}: DreamerV3's block GRU splits the "
            f"belief into equal blocks. Set world_model.blocks to a divisor of world_model.belief_dim (e.g. one of "
            f"{divisors}) or belief_dim to a multiple of blocks."
        )
    latents = dict(num_categoricals=cfg["categoricals"], num_classes=cfg["classes"], unimix=cfg["unimix"], device=device)
    if vector_dims and cfg["vector_encoder"]:
        enc = ObservationEncoder.mlp(vector_dims, pixel_keys, hidden=cfg["vector_encoder"], device=device)
    else:
        enc = ObservationEncoder(vector_dims, pixel_keys, device=device)
    observation_keys = [*vector_dims, *pixel_keys]
    encoder = TensorDictModule(enc, in_keys=[("next", k) for k in observation_keys], out_keys=[keys.encoded_latents])
    transition = TensorDictModule(  # its prior sample is not the state: the posterior's is
        RSSMPriorV3(hidden_dim=cfg["hidden"], rnn_hidden_dim=belief_dim, action_dim=action_dim,
                    recurrent_model="block_gru", num_blocks=cfg["blocks"], **latents),
        in_keys=[keys.state, keys.belief, keys.action],
        out_keys=[keys.prior_logits, keys.prior_state, keys.next("belief")],
    )
    if not cfg["action_norm"]:
        _drop_action_norm(transition.module)
    posterior = TensorDictModule(
        RSSMPosteriorV3(hidden_dim=cfg["hidden"], rnn_hidden_dim=belief_dim, obs_embed_dim=enc.embedding_dim,
                        use_rms_norm=True, **latents),
        in_keys=[keys.next("belief"), keys.encoded_latents],
        out_keys=[keys.posterior_logits, keys.next("state")],
    )
    mlp = dict(hidden=cfg["hidden"], activation=cfg["activation"], norm=cfg["norm"], device=device)
    decoder_nets = _decoder_nets(vector_dims, pixel_keys, state_dim + belief_dim, cfg, mlp, device)
    core = DreamerV3Core(enc, transition.module, posterior.module, decoder_nets, observation_keys=observation_keys,
                         keys=keys, state_dim=state_dim, belief_dim=belief_dim, unimix=cfg["unimix"])
    return cls(encoder, transition, posterior, _decoders(decoder_nets, keys), None, None,
               observation_keys=observation_keys, state_dim=state_dim, belief_dim=belief_dim, action_dim=action_dim,
               latent="categorical", unimix=cfg["unimix"], keys=keys, core=core)


def _drop_action_norm(prior: nn.Module) -> None:
    """Removes the RMS norm after the action's projection in ``RSSMPriorV3``'s block GRU
    (``rnn.action_projection``: Linear, norm, SiLU). Normalised, ``W a + b`` hardly depends on the
    action's magnitude (exactly not, while ``b`` is zero): harmless when the actions are given, it
    leaves AIME's inferred actions free along each ray."""
    projection = getattr(getattr(prior, "rnn", None), "action_projection", None)
    if not (isinstance(projection, nn.Sequential) and len(projection) == 3 and isinstance(projection[0], nn.Linear)):
        raise TypeError(
            "world_model.action_norm=false (the dreamerv3 preset's default) expects TorchRL's RSSMPriorV3 block GRU "
            f"with rnn.action_projection = (Linear, norm, activation); this TorchRL has {projection!r}. Set "
            "world_model.action_norm=true (AIME then infers the actions' direction only)."
        )
    projection[1] = nn.Identity()


def _fmt(keys) -> str:
    """Nested keys as ``a, next.b`` for error messages."""
    return ", ".join(sorted(k if isinstance(k, str) else ".".join(k) for k in keys)) or "nothing"
