# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The step protocol of a world model on plain tensors, and the one filter loop and prior loop on it.

Every world model of the library runs on a *core*: an object holding its networks that implements

* ``encode(observations, batch_size) -> embedding``;
* ``filter_step(state, belief, action, embedding, noise, sample) -> (belief', prior, posterior,
  state', outputs)``: the transition and the posterior (``prior``: the prior's parameters when the
  transition computes them, else ``None``), ``embedding`` being the row's entry of
  ``filter_inputs(embeddings, actions)`` (the row's embedding, or what the core computed for the
  whole window before the loop);
* ``prior_step(state, belief, action, noise, sample) -> (belief', prior, state')``: a step of imagination;
* ``prior(belief) -> params``: the prior, batched over a window after the loop;
* ``decode(belief, state) -> {sensor: (loc, scale)}``: the decoders' Gaussians;

with a :mod:`latent distribution <aime_torchrl.modules.latent>` (``kl``, ``mode``, ``sample``) for its
stochastic state. On it, :meth:`WorldModelCore.observe` is the filter (the training ELBO, the
test-time :class:`~aime_torchrl.modules.FilteringActor`, the posterior rollout and open-loop
prediction all call it) and :meth:`WorldModelCore.imagine` the prior rollout (open-loop
prediction, the imagination env). The TensorDict modules and their keys stay the public face: the
world model's :class:`~aime_torchrl.modules.PosteriorRollout` wraps the core as TorchRL's
``RSSMRollout`` wraps its step.

Three cores cover every world model: :class:`RSSMCore` (this package's RSSM/RSSMO networks, noise as
an argument, so a window's ELBO is a pure function ``torch.compile`` fuses), :class:`DreamerV3Core`
(TorchRL's ``RSSMPriorV3``/``RSSMPosteriorV3`` through their public ``forward``) and
:class:`KeyedCore` (any TensorDictModules, called through their keys). The world model picks its
core once, when it is built.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from tensordict import TensorDict
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from aime_torchrl.modules.fused_filter import fusable, fusable_policy, fused_observe
from aime_torchrl.modules.fused_v3_filter import fusable_v3, fused_v3_observe
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.latent import CategoricalLatent, GaussianLatent, LatentDistribution, Params
from aime_torchrl.modules.policy import TensorActor

#: ``actor(t, state, belief, embedding) -> {"action": ..., <other outputs by key>}``: what acts inside
#: the filter at row t, from the previous latents and the row's embedding (see :func:`make_actor`).
Actor = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], dict]


class WorldModelCore:
    """The step protocol (see the module) and the two loops defined once on it.

    Subclasses set ``latent`` (a latent distribution), ``keys`` (the world model's
    :class:`~aime_torchrl.modules.LatentKeys`), ``state_dim``, ``belief_dim`` and
    ``external_noise``: whether the posterior's noise is an argument of :meth:`filter_step` (then
    a whole window's standard normal noise, ``noise_dim`` wide, is drawn before the loop,
    :meth:`draw_noise`) or sampled inside the modules.
    """

    latent: LatentDistribution
    keys: LatentKeys
    state_dim: int
    belief_dim: int
    external_noise: bool

    @property
    def noise_dim(self) -> int:
        """The width of a row's posterior noise (:meth:`draw_noise`): the state's by default."""
        return self.state_dim

    def encode(self, observations: Mapping[str, torch.Tensor], batch_size: torch.Size) -> torch.Tensor:
        """The embedding ``[*batch_size, E]`` of the sensors ``[*batch_size, ...]``."""
        raise NotImplementedError

    def filter_step(
        self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor, embedding: torch.Tensor,
        noise: torch.Tensor | None, sample: bool,
    ) -> tuple[torch.Tensor, Params | None, Params, torch.Tensor, dict]:
        raise NotImplementedError

    def filter_inputs(self, embeddings: torch.Tensor, actions: torch.Tensor | None) -> Sequence:
        """What :meth:`filter_step` gets as each row's ``embedding`` in :meth:`observe`: the rows of
        ``embeddings`` ``[*B, T, E]``. A core may compute here, once for the window, what its steps
        would compute from the embeddings alone or from the data's ``actions`` (``None`` where an
        actor chooses them)."""
        return embeddings.unbind(embeddings.ndim - 2)

    def prior_step(
        self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None,
        sample: bool,
    ) -> tuple[torch.Tensor, Params, torch.Tensor]:
        raise NotImplementedError

    def prior(self, belief: torch.Tensor) -> Params:
        raise NotImplementedError(f"{type(self).__name__} computes the prior inside its transition only.")

    def decode(self, belief: torch.Tensor, state: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | float]]:
        raise NotImplementedError

    def initial(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The zero state and belief of a batch ``like.shape[:-1]`` (after ``reset()``, as in training)."""
        batch = like.shape[:-1]
        return like.new_zeros(*batch, self.state_dim), like.new_zeros(*batch, self.belief_dim)

    def draw_noise(self, like: torch.Tensor, length: int) -> list[torch.Tensor] | None:
        """The posterior's standard normal noise of ``length`` rows for a batch ``like.shape[:-1]``
        (one row's tensor, e.g. an action ``[*B, A]``), drawn row by row (as the step-by-step test-time
        filter draws it); ``None`` for a core that samples inside its modules."""
        if not self.external_noise:
            return None
        zeros = like.new_zeros(*like.shape[:-1], self.noise_dim)
        return [torch.randn_like(zeros) for _ in range(length)]

    def _draw(self, params: Params, noise: torch.Tensor | None, sample: bool) -> torch.Tensor:
        """The state of a step: a sample for ``noise`` (drawn now if ``None``), or the mode."""
        if not sample:
            return self.latent.mode(params)
        return self.latent.sample(params, self.latent.noise_like(params) if noise is None else noise)

    def observe(
        self,
        embeddings: torch.Tensor,
        actions: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        belief: torch.Tensor | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        sample: bool = True,
        actor: Actor | None = None,
    ) -> dict:
        """The filter over a window ``[*B, T]``: the one filter loop of the library.

        Row t is the transition into frame t: from the previous latents (``state``, ``belief``; the
        zero ones, :meth:`initial`, for row 0 unless given) with ``actions[..., t, :]``, then the
        posterior on ``embeddings[..., t, :]`` with ``noise[t]`` (a sample, or the mode with
        ``sample=False``). With ``actor``, ``actor(t, state, belief, embedding)`` acts from the
        previous latents and the row's embedding; its action replaces the data's from row 1 on
        (row 0 keeps the initial state's action) and its other outputs are recorded.

        Returns a dict of ``[*B, T, ...]`` tensors: ``"state"``, ``"belief"`` (the previous
        latents), ``"next_belief"``, ``"next_state"``, ``"action"``, ``"posterior"`` and ``"prior"``
        (parameter tuples; ``"prior"`` is ``None`` when the transition does not compute it: see
        :meth:`prior_params`) and ``"outputs"`` (the actor's and the modules' other outputs, by key).

        Examples:
            >>> import torch
            >>> from aime_torchrl.modules import RSSMWorldModel
            >>> core = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16).core
            >>> embeddings = core.encode({"observation": torch.randn(5, 7, 3)}, torch.Size([5, 7]))
            >>> rows = core.observe(embeddings, torch.zeros(5, 7, 2), noise=core.draw_noise(embeddings[:, 0], 7))
            >>> rows["next_state"].shape, rows["posterior"][0].shape
            (torch.Size([5, 7, 4]), torch.Size([5, 7, 4]))
        """
        time_dim = embeddings.ndim - 2
        if state is None or belief is None:
            state, belief = self.initial(embeddings.select(time_dim, 0))
        embedded, given = embeddings.unbind(time_dim), actions.unbind(time_dim)
        inputs = self.filter_inputs(embeddings, actions if actor is None else None)
        names = ("state", "belief", "action", "next_belief", "next_state")
        seqs: dict[str, list] = {name: [] for name in names}
        posteriors, priors, outputs = [], [], {}
        for t in range(len(embedded)):
            action = given[t]
            seqs["state"].append(state)
            seqs["belief"].append(belief)
            if actor is not None:
                acted = dict(actor(t, state, belief, embedded[t]))
                chosen = acted.pop("action")
                if t:
                    action = chosen
                for key, value in acted.items():
                    outputs.setdefault(key, []).append(value)
            seqs["action"].append(action)
            step_noise = None if noise is None else noise[t]
            belief, prior, posterior, state, produced = self.filter_step(
                state, belief, action, inputs[t], step_noise, sample)
            seqs["next_belief"].append(belief)
            seqs["next_state"].append(state)
            posteriors.append(posterior)
            if prior is not None:
                priors.append(prior)
            for key, value in produced.items():
                outputs.setdefault(key, []).append(value)
        rows = {name: torch.stack(seq, time_dim) for name, seq in seqs.items()}
        rows["posterior"] = tuple(torch.stack(p, time_dim) for p in zip(*posteriors))
        rows["prior"] = tuple(torch.stack(p, time_dim) for p in zip(*priors)) if priors else None
        rows["outputs"] = {key: torch.stack(seq, time_dim) for key, seq in outputs.items()}
        return rows

    def prior_params(self, rows: dict) -> Params:
        """The prior's parameters of :meth:`observe`'s rows: computed in the loop, or batched now."""
        return rows["prior"] if rows["prior"] is not None else self.prior(rows["next_belief"])

    def imagine(
        self,
        state: torch.Tensor,
        belief: torch.Tensor,
        actions: torch.Tensor,
        *,
        noise: Sequence[torch.Tensor] | None = None,
        sample: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior rolled forward from ``state``/``belief`` with ``actions`` ``[*B, T, A]``: the one
        imagination loop. ``sample=False`` takes the prior's mode; ``sample=True`` samples it
        (reparameterised, with ``noise[t]`` where the core takes its noise as an argument).

        Returns the beliefs and states ``[*B, T, ...]``.

        Examples:
            >>> import torch
            >>> from aime_torchrl.modules import RSSMWorldModel
            >>> core = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16).core
            >>> state, belief = core.initial(torch.zeros(5, 1))
            >>> core.imagine(state, belief, torch.zeros(5, 3, 2))[1].shape
            torch.Size([5, 3, 4])
        """
        time_dim = actions.ndim - 2
        beliefs, states = [], []
        for t, action in enumerate(actions.unbind(time_dim)):
            belief, _, state = self.prior_step(state, belief, action, None if noise is None else noise[t], sample)
            beliefs.append(belief)
            states.append(state)
        return torch.stack(beliefs, time_dim), torch.stack(states, time_dim)


class RSSMCore(WorldModelCore):
    """This package's RSSM/RSSMO (:meth:`~aime_torchrl.modules.RSSMWorldModel.from_config`) on plain
    tensors: Gaussian latents, the noise an argument.

    Args:
        encoder (nn.Module): :class:`~aime_torchrl.modules.ObservationEncoder`, reading the sensors
            in ``observation_keys`` order.
        transition (nn.Module): :class:`~aime_torchrl.modules.RSSMTransition`.
        posterior, prior (nn.Module): :class:`~aime_torchrl.modules.GaussianHead` (``params``).
        decoders (Mapping[str, tuple[nn.Module, float | None]]): each sensor's net on ``(belief,
            state)`` and its fixed std (``None``: the net returns ``(loc, scale)``).

    Keyword Args:
        observation_keys (Sequence[str]): the sensors, in the encoder's order.
        keys (LatentKeys): the world model's names.
        state_dim, belief_dim (int): the latents' sizes.
    """

    external_noise = True

    def __init__(
        self,
        encoder: nn.Module,
        transition: nn.Module,
        posterior: nn.Module,
        prior: nn.Module,
        decoders: Mapping[str, tuple[nn.Module, float | None]],
        *,
        observation_keys: Sequence[str],
        keys: LatentKeys,
        state_dim: int,
        belief_dim: int,
    ) -> None:
        self.encoder, self.transition, self.posterior, self.prior_head = encoder, transition, posterior, prior
        self.decoders = dict(decoders)
        self.observation_keys = list(observation_keys)
        self.keys, self.state_dim, self.belief_dim = keys, state_dim, belief_dim
        self.latent = GaussianLatent()
        self.fused = fusable(transition, posterior)

    def encode(self, observations: Mapping[str, torch.Tensor], batch_size: torch.Size) -> torch.Tensor:
        return self.encoder(*(observations[key] for key in self.observation_keys))

    def observe(self, embeddings, actions, *, state=None, belief=None, noise=None, sample=True, actor=None):
        """The generic loop's rows; in eager mode without autocast, with no actor or a policy of
        :func:`~aime_torchrl.modules.make_policy` acting, computed by
        :class:`~aime_torchrl.modules.fused_filter.FusedRSSMFilter` (the same arithmetic, faster)."""
        device = embeddings.device.type
        acting = actor is not None
        fusable_actor = not acting or (isinstance(actor, TensorActorSteps)
                                       and fusable_policy(actor.policy, self.keys.belief, self.keys.state))
        if not (self.fused and fusable_actor) or torch.compiler.is_compiling() or torch.is_autocast_enabled(device):
            return super().observe(embeddings, actions, state=state, belief=belief, noise=noise, sample=sample,
                                   actor=actor)
        if state is None or belief is None:
            state, belief = self.initial(embeddings.select(embeddings.ndim - 2, 0))
        if sample and noise is None:
            noise = self.draw_noise(actions.select(actions.ndim - 2, 0), actions.shape[-2])
        return fused_observe(self.transition, self.posterior, embeddings, actions, state, belief,
                             noise if sample else None, *((actor.policy, actor.noise) if acting else ()),
                             belief_key=self.keys.belief)

    def filter_step(self, state, belief, action, embedding, noise, sample):
        belief = self.transition(state, belief, action)
        posterior = self.posterior.params(belief, embedding)
        return belief, None, posterior, self._draw(posterior, noise, sample), {}

    def prior_step(self, state, belief, action, noise, sample):
        belief = self.transition(state, belief, action)
        prior = self.prior_head.params(belief)
        return belief, prior, self._draw(prior, noise, sample)

    def prior(self, belief: torch.Tensor) -> Params:
        return self.prior_head.params(belief)

    def decode(self, belief, state):
        decoded = {}
        for key, (net, fixed_std) in self.decoders.items():
            out = net(belief, state)
            decoded[key] = (out, fixed_std) if fixed_std is not None else out
        return decoded


class _V3Weights(NamedTuple):
    """A window's views of the DreamerV3 RSSM's first layers, split by what they read (made once per
    window in :meth:`DreamerV3Core.filter_inputs`; their gradients flow back to the parameters)."""

    latents: torch.Tensor  # the block GRU's first block-linear layer on the belief's and state's projections
    action: torch.Tensor  # the same layer on the action's projection
    own_block: torch.Tensor  # the same layer on each block's own belief: [blocks, block, block]
    bias: torch.Tensor
    hidden_rest: nn.Module  # the rest of the GRU's hidden layers (norm, activation, further layers)
    posterior_belief: torch.Tensor  # the posterior's first layer on the belief
    posterior_rest: nn.Module  # the posterior's layers after its first


class DreamerV3Core(WorldModelCore):
    """TorchRL's DreamerV3 RSSM (``RSSMPriorV3`` with its block GRU as the transition,
    ``RSSMPosteriorV3``) with this package's encoder and decoders, on plain tensors: categorical
    latents, the posterior's noise an argument (:class:`~aime_torchrl.modules.latent.CategoricalLatent`
    samples, straight-through with unimix, as the modules do), the prior's logits batched over a
    window after the loop, as :class:`RSSMCore`'s.

    The filter computes the modules' arithmetic from their submodules (``rnn``, ``rnn_to_prior_projector``,
    ``obs_rnn_to_post_projector``: the names of their checkpoints' entries) in fewer, larger
    operations: no prior logits and sample per step (``RSSMPriorV3.forward`` adds them), the
    posterior's first layer on the embeddings and the block GRU's on the data's actions computed for
    the whole window before the loop (:meth:`filter_inputs`), the block GRU's first layer as one GEMM
    on the projections and a small batched one on each block's own belief instead of a GEMM on the
    projections repeated for every block. A test holds it equal to the modules' own ``forward``;
    imagination (:meth:`prior_step`) calls that ``forward``. In eager mode :meth:`observe` runs the
    same arithmetic as one autograd node with its own backward
    (:class:`~aime_torchrl.modules.fused_v3_filter.FusedV3Filter`) where it recognises the modules.

    Args and keyword args as :class:`RSSMCore`'s, ``transition``/``posterior`` being TorchRL's
    modules (there is no separate prior), and ``unimix`` (the modules' uniform mixture).
    """

    external_noise = True

    def __init__(
        self,
        encoder: nn.Module,
        transition: nn.Module,
        posterior: nn.Module,
        decoders: Mapping[str, tuple[nn.Module, float | None]],
        *,
        observation_keys: Sequence[str],
        keys: LatentKeys,
        state_dim: int,
        belief_dim: int,
        unimix: float,
    ) -> None:
        if getattr(transition, "recurrent_model", None) != "block_gru":
            raise ValueError("DreamerV3Core runs RSSMPriorV3(recurrent_model='block_gru') only.")
        self.encoder, self.transition, self.posterior = encoder, transition, posterior
        self.decoders = dict(decoders)
        self.observation_keys = list(observation_keys)
        self.keys, self.state_dim, self.belief_dim = keys, state_dim, belief_dim
        self.latent = CategoricalLatent(unimix)

    @property
    def noise_dim(self) -> int:
        return self.posterior.num_categoricals  # one normal per categorical

    @property
    def classes(self) -> tuple[int, int]:
        return self.posterior.num_categoricals, self.posterior.num_classes

    encode = RSSMCore.encode
    decode = RSSMCore.decode

    @property
    def fused(self) -> bool:
        """Whether :meth:`observe` may run :class:`~aime_torchrl.modules.fused_v3_filter.FusedV3Filter`
        (TorchRL's modules as :func:`~aime_torchrl.modules.fused_v3_filter.fusable_v3` knows them)."""
        if "_fusable" not in self.__dict__:
            self._fusable = fusable_v3(self.transition, self.posterior)
        return self._fusable

    @fused.setter
    def fused(self, value: bool) -> None:  # False: the generic loop (as RSSMCore.fused)
        self._fusable = bool(value) and fusable_v3(self.transition, self.posterior)

    def observe(self, embeddings, actions, *, state=None, belief=None, noise=None, sample=True, actor=None):
        """The generic loop's rows; in eager mode without autocast, sampling, with no actor or a policy
        of :func:`~aime_torchrl.modules.make_policy` acting, computed by
        :class:`~aime_torchrl.modules.fused_v3_filter.FusedV3Filter` (the same arithmetic, faster)."""
        acting = actor is not None
        if (torch.compiler.is_compiling() or torch.is_autocast_enabled(embeddings.device.type) or not sample
                or not self.fused or acting and not (
                    isinstance(actor, TensorActorSteps) and actions.shape[-2] > 1
                    and fusable_policy(actor.policy, self.keys.belief, self.keys.state))):
            return super().observe(embeddings, actions, state=state, belief=belief, noise=noise, sample=sample,
                                   actor=actor)
        if state is None or belief is None:
            state, belief = self.initial(embeddings.select(embeddings.ndim - 2, 0))
        if noise is None:
            noise = self.draw_noise(actions.select(actions.ndim - 2, 0), actions.shape[-2])
        return fused_v3_observe(self, embeddings, actions, state, belief, noise,
                                *((actor.policy, actor.noise) if acting else ()))

    def filter_weights(self) -> _V3Weights:
        """The window's :class:`_V3Weights` (views of the parameters: gradients flow back to them)."""
        rnn, head = self.transition.rnn, self.posterior.obs_rnn_to_post_projector
        block_linear = rnn.hidden_layers[0]
        blocks, block_in, block = block_linear.weight.shape
        features = block_linear.weight[:, block:].transpose(0, 1).reshape(block_in - block, blocks * block)
        projection = features.shape[0] // 3  # [belief's, state's, action's projections] in the GRU's order
        return _V3Weights(features[:2 * projection], features[2 * projection:], block_linear.weight[:, :block],
                          block_linear.bias, rnn.hidden_layers[1:], head[0].weight[:, :self.belief_dim], head[1:])

    def action_features(self, actions: torch.Tensor) -> torch.Tensor:
        """The block GRU's projection of ``actions`` (bounded as DreamerV3 bounds them)."""
        return self.transition.rnn.action_projection(_bounded(actions))

    def filter_inputs(self, embeddings, actions):
        """Each row's ``(embedding part, action part, weights)``: the posterior's first layer on the
        row's embedding (with its bias), the block GRU's first layer on the projection of the data's
        action (``None`` where an actor acts), and the window's :class:`_V3Weights`."""
        head = self.posterior.obs_rnn_to_post_projector
        weights = self.filter_weights()
        embedded = nn.functional.linear(embeddings, head[0].weight[:, self.belief_dim:], head[0].bias)
        time_dim = embeddings.ndim - 2
        acted = [None] * embeddings.shape[time_dim]
        if actions is not None:
            acted = (self.action_features(actions) @ weights.action).unbind(time_dim)
        return [(e, a, weights) for e, a in zip(embedded.unbind(time_dim), acted)]

    def filter_step(self, state, belief, action, embedding, noise, sample):
        """A row of the filter; ``embedding`` is the row's entry of :meth:`filter_inputs`."""
        embedded, acted, weights = embedding
        belief = self._block_gru(state, belief, action, acted, weights)
        logits = weights.posterior_rest(nn.functional.linear(belief, weights.posterior_belief) + embedded)
        posterior = (logits.unflatten(-1, self.classes),)
        return belief, None, posterior, self._draw(posterior, noise, sample), {}

    def _block_gru(self, state, belief, action, acted, weights: _V3Weights) -> torch.Tensor:
        """The block GRU's next belief (its ``forward``'s arithmetic; ``acted``: the action's part of
        its first layer, computed from ``action`` if ``None``)."""
        rnn = self.transition.rnn
        if acted is None:
            acted = self.action_features(action) @ weights.action
        blocks, block, _ = weights.own_block.shape
        own = torch.bmm(belief.reshape(-1, blocks, block).transpose(0, 1), weights.own_block)
        projected = torch.cat([rnn.belief_projection(belief), rnn.state_projection(state)], -1)
        hidden = projected @ weights.latents + acted + own.transpose(0, 1).reshape(belief.shape) + weights.bias
        gates = rnn.gates(weights.hidden_rest(hidden)).unflatten(-1, (blocks, 3, block))
        reset, candidate, update = (gate.flatten(-2) for gate in gates.unbind(-2))
        candidate = (reset.sigmoid() * candidate).tanh()
        update = (update - 1.0).sigmoid()  # the block GRU's update bias
        return update * candidate + (1 - update) * belief

    def prior_step(self, state, belief, action, noise, sample):
        belief = self.transition.rnn(state, belief, action)
        prior = self.prior(belief)
        return belief, prior, self._draw(prior, noise, sample)

    def prior(self, belief: torch.Tensor) -> Params:
        return (self.transition.rnn_to_prior_projector(belief).unflatten(-1, self.classes),)


def _bounded(action: torch.Tensor) -> torch.Tensor:
    """The action as DreamerV3's block GRU reads it: divided by its magnitude where that exceeds 1."""
    return action / action.detach().abs().clamp_min(1)


def run_module(module: TensorDictModuleBase, step: dict, batch: torch.Size) -> dict:
    """``module`` on a TensorDict of a step's tensors (by key); its outputs as a dict (those it wrote:
    a TensorDictModule discards the outputs it names ``"_"``)."""
    out = module(TensorDict(step, batch_size=batch))
    written = ((unravel_key(key), out.get(key, None)) for key in module.out_keys)
    return {key: value for key, value in written if value is not None}


class KeyedCore(WorldModelCore):
    """Any TensorDictModules in the world model's key scheme, called through their keys.

    What a world model assembled from other modules (TorchRL's ``RSSMPrior``/``RSSMPosterior``,
    ``ObsEncoder``/``ObsDecoder``, one's own) runs on. The posterior samples inside its module
    (``sample=False`` takes the mode of its parameters instead); the prior's parameters come from the
    transition when it writes them (TorchRL's ``RSSMPrior``), else from ``prior`` after the loop.

    Args:
        transition (TensorDictModuleBase): ``(state, belief, action) -> next belief`` (and maybe the prior).
        posterior (TensorDictModuleBase): ``(next belief, encoded_latents) -> posterior parameters, next state``.

    Keyword Args:
        keys (LatentKeys): the names the modules read and write.
        latent (LatentDistribution): the state's distribution.
        state_dim, belief_dim (int): the latents' sizes.
        encoder (TensorDictModuleBase, optional): ``("next", <sensor>) -> encoded_latents``.
        prior (TensorDictModuleBase, optional): ``next belief -> prior parameters``.
        decoders (Mapping[str, ProbabilisticTensorDictSequential], optional): per sensor, on the next latents.
        observation_keys (Sequence[str], optional): the sensors.
    """

    external_noise = False

    def __init__(
        self,
        transition: TensorDictModuleBase,
        posterior: TensorDictModuleBase,
        *,
        keys: LatentKeys,
        latent: LatentDistribution,
        state_dim: int,
        belief_dim: int,
        encoder: TensorDictModuleBase | None = None,
        prior: TensorDictModuleBase | None = None,
        decoders: Mapping[str, ProbabilisticTensorDictSequential] | None = None,
        observation_keys: Sequence[str] = (),
    ) -> None:
        self.transition, self.posterior, self.encoder, self.prior_module = transition, posterior, encoder, prior
        self.decoders = dict(decoders or {})
        self.observation_keys = list(observation_keys)
        self.keys, self.latent, self.state_dim, self.belief_dim = keys, latent, state_dim, belief_dim
        self._prior_keys = [unravel_key(k) for k in latent.prior_keys(keys)]
        self._posterior_keys = [unravel_key(k) for k in latent.posterior_keys(keys)]
        self._in_loop_prior = set(self._prior_keys) <= {unravel_key(k) for k in transition.out_keys}
        self._named = {unravel_key(k) for k in (keys.next("belief"), keys.next("state"), *self._posterior_keys,
                                                *(self._prior_keys if self._in_loop_prior else ()))}

    def encode(self, observations, batch_size):
        inputs = {("next", key): value for key, value in observations.items()}
        return self.encoder(TensorDict(inputs, batch_size=batch_size)).get(self.keys.encoded_latents)

    def filter_step(self, state, belief, action, embedding, noise, sample):
        keys = self.keys
        batch = state.shape[:-1]
        step = {unravel_key(keys.state): state, unravel_key(keys.belief): belief, unravel_key(keys.action): action,
                unravel_key(keys.encoded_latents): embedding}
        produced = run_module(self.transition, step, batch)
        step.update(produced)
        posterior_out = run_module(self.posterior, step, batch)
        step.update(posterior_out)
        produced.update(posterior_out)
        posterior = tuple(step[k] for k in self._posterior_keys)
        prior = tuple(step[k] for k in self._prior_keys) if self._in_loop_prior else None
        state = step[unravel_key(keys.next("state"))] if sample else self.latent.mode(posterior)
        others = {k: v for k, v in produced.items() if k not in self._named}
        return step[unravel_key(keys.next("belief"))], prior, posterior, state, others

    def prior_step(self, state, belief, action, noise, sample):
        keys = self.keys
        batch = state.shape[:-1]
        step = {unravel_key(keys.state): state, unravel_key(keys.belief): belief, unravel_key(keys.action): action}
        step.update(run_module(self.transition, step, batch))
        if not self._in_loop_prior:
            step.update(run_module(self.prior_module, step, batch))
        prior = tuple(step[k] for k in self._prior_keys)
        if not sample:
            state = self.latent.mode(prior)
        elif unravel_key(keys.prior_state) in step:
            state = step[unravel_key(keys.prior_state)]
        else:
            state = self._draw(prior, noise, sample)
        return step[unravel_key(keys.next("belief"))], prior, state

    def prior(self, belief):
        if self.prior_module is None:
            return super().prior(belief)
        out = run_module(self.prior_module, {unravel_key(self.keys.next("belief")): belief}, belief.shape[:-1])
        return tuple(out[k] for k in self._prior_keys)

    def decode(self, belief, state):
        keys = self.keys
        latents = TensorDict({keys.next("belief"): belief, keys.next("state"): state}, batch_size=belief.shape[:-1])
        decoded = {}
        for key, decoder in self.decoders.items():
            base = decoder.get_dist(latents).base_dist
            decoded[key] = (base.loc, base.scale)
        return decoded


class TensorActorSteps:
    """The :data:`Actor` of a :class:`~aime_torchrl.modules.policy.TensorActor` (:func:`make_actor`):
    at row t it acts on the latents with ``noise[t]`` (drawn at the row if ``noise`` is ``None``).
    A core may run ``policy`` inside a fused filter instead (:class:`RSSMCore`)."""

    def __init__(self, policy: TensorActor, keys: LatentKeys, noise: Sequence[torch.Tensor] | None) -> None:
        self.policy, self.keys, self.noise = policy, keys, noise
        self.latents = [unravel_key(k) for k in (keys.state, keys.belief, keys.encoded_latents)]
        self.action_key = unravel_key(keys.action)

    def __call__(self, t: int, state: torch.Tensor, belief: torch.Tensor, embedding: torch.Tensor) -> dict:
        out = self.policy.act(dict(zip(self.latents, (state, belief, embedding))),
                              None if self.noise is None else self.noise[t])
        out["action"] = out.pop(self.action_key)
        return out


def make_actor(
    policy: TensorDictModuleBase,
    keys: LatentKeys,
    *,
    noise: Sequence[torch.Tensor] | None = None,
    inputs: Mapping[NestedKey, Sequence[torch.Tensor]] | None = None,
) -> Actor:
    """The :data:`Actor` of ``policy`` for :meth:`WorldModelCore.observe`.

    A :class:`~aime_torchrl.modules.policy.TensorActor` (the AIME policy of
    :func:`~aime_torchrl.modules.make_policy`, the IDM, a latent-action model's inference) acts on
    plain tensors, its sample drawn with ``noise[t]`` at row t (at the row if ``noise`` is ``None``);
    any other policy is called on a TensorDict of the step's latents, embedding and ``inputs``
    (per-row tensors of other keys it reads).
    """
    if isinstance(policy, TensorActor):
        return TensorActorSteps(policy, keys, noise)
    latents = [unravel_key(k) for k in (keys.state, keys.belief, keys.encoded_latents)]
    action_key = unravel_key(keys.action)
    others = dict(inputs or {})

    def act(t: int, state: torch.Tensor, belief: torch.Tensor, embedding: torch.Tensor) -> dict:
        step = {key: seq[t] for key, seq in others.items()}
        step.update(zip(latents, (state, belief, embedding)))
        out = run_module(policy, step, state.shape[:-1])
        out["action"] = out.pop(action_key)
        return out

    return act
