# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The latent step of the RSSM on plain tensors: the one definition of filtering and imagination.

Every noise sample is an argument, so a whole window's noise can be drawn before the time loop,
the step is a pure function of its inputs (what ``torch.compile`` and CUDA graphs want), and the
same step serves the training rollout (:class:`~aime_torchrl.modules.PosteriorRollout`), the
test-time actor (:class:`~aime_torchrl.modules.FilteringActor`) and open-loop imagination
(:func:`~aime_torchrl.evaluation.open_loop_prediction`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torchrl.modules import ProbabilisticActor, TanhNormal

from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.policy import TanhGaussianPolicyNet
from aime_torchrl.modules.rssm import GaussianHead, RSSMTransition

Latents = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def latent_step(
    transition: RSSMTransition,
    head: GaussianHead,
    state: torch.Tensor,
    belief: torch.Tensor,
    action: torch.Tensor,
    *head_inputs: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> Latents:
    """One RSSM step: ``h' = transition(s, h, a)``, ``(mean, std) = head(h', *head_inputs)``, ``s' = mean + std * noise``.

    With the posterior as ``head`` and the embedding of the new observation as ``head_inputs``
    this is the filter step; with the prior and no inputs it is a step of imagination.
    ``noise=None`` takes the mean.

    Returns ``(belief, mean, std, state)``.

    Examples:
        >>> import torch
        >>> transition, posterior = RSSMTransition(8, 2, 16), GaussianHead(16 + 3, 8)
        >>> belief, mean, std, state = latent_step(transition, posterior, torch.zeros(4, 8),
        ...     torch.zeros(4, 16), torch.zeros(4, 2), torch.randn(4, 3), noise=torch.randn(4, 8))
        >>> state.shape
        torch.Size([4, 8])
    """
    belief = transition(state, belief, action)
    mean, std = head.params(belief, *head_inputs)
    return belief, mean, std, mean if noise is None else mean + std * noise


def filter_sequence(
    transition: RSSMTransition,
    posterior: GaussianHead,
    state: torch.Tensor,
    belief: torch.Tensor,
    actions: Sequence[torch.Tensor],
    embeddings: Sequence[torch.Tensor],
    noise: Sequence[torch.Tensor],
    act: Callable[[int, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Filters a window step by step with :func:`latent_step`, on plain tensors.

    Row t is the transition into frame t: from the previous latents (``state``, ``belief``: the
    initial ones for row 0) with ``actions[t]``, then the posterior on ``embeddings[t]`` with
    ``noise[t]``. With ``act``, ``act(t, state, belief)`` returns ``{"action": ..., ...}`` from the
    previous latents; its action replaces ``actions[t]`` from row 1 on (row 0 keeps the data's
    action of the initial state) and every entry is recorded.

    Returns, per key, the list of the rows' tensors: ``"state"``, ``"belief"`` (the previous
    latents), ``("next", "belief")``, ``("next", "posterior_mean")``, ``("next", "posterior_std")``,
    ``("next", "state")``, ``"action"`` and what ``act`` writes.

    Examples:
        >>> import torch
        >>> transition, posterior = RSSMTransition(8, 2, 16), GaussianHead(16 + 3, 8)
        >>> out = filter_sequence(transition, posterior, torch.zeros(4, 8), torch.zeros(4, 16),
        ...     [torch.zeros(4, 2)] * 5, [torch.randn(4, 3)] * 5, [torch.randn(4, 8)] * 5)
        >>> len(out["next", "state"])
        5
    """
    outputs: dict = {key: [] for key in SEQUENCE_KEYS}
    for t in range(len(embeddings)):
        action = actions[t]
        outputs["state"].append(state)
        outputs["belief"].append(belief)
        if act is not None:
            acted = act(t, state, belief)
            if t:
                action = acted["action"]
            for key, value in acted.items():
                if key != "action":
                    outputs.setdefault(key, []).append(value)
        outputs["action"].append(action)
        belief, mean, std, state = latent_step(transition, posterior, state, belief, action, embeddings[t], noise=noise[t])
        for key, value in zip(SEQUENCE_KEYS[2:6], (belief, mean, std, state)):
            outputs[key].append(value)
    return outputs


#: What :func:`filter_sequence` returns for every row (and ``act``'s entries), by the default names.
SEQUENCE_KEYS = [
    "state", "belief", ("next", "belief"), ("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state"),
    "action",
]


def sequence_key(name: NestedKey, keys: LatentKeys) -> NestedKey:
    """The frames' key under ``keys`` of an entry of :func:`filter_sequence` (or of ``act``), named
    by default (``"state"``, ``("next", "posterior_mean")``, ``"loc"``, ...); other names are kept."""
    latent = {"state": "state", "belief": "belief", "action": "action", "loc": "loc", "scale": "scale",
              ("next", "posterior_mean"): "posterior_mean", ("next", "posterior_std"): "posterior_std"}
    if name in (("next", "state"), ("next", "belief")):
        return keys.next(name[1])
    return getattr(keys, latent[name]) if name in latent else name


def window_noise(
    state: torch.Tensor, action: torch.Tensor, length: int, policy: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The standard normal noise of a window of ``length`` rows, drawn before the loop in the one
    order every path uses (so they agree for the same seed): one draw like ``state`` per row for
    the posterior, then, if a policy acts, one like ``action`` per row. Drawn row by row, as the
    step-by-step :class:`~aime_torchrl.modules.FilteringActor` draws its posterior noise."""
    noise = [torch.randn_like(state) for _ in range(length)]
    return noise, [torch.randn_like(action) for _ in range(length)] if policy else []


def policy_step(
    policy: TanhGaussianPolicyNet, features: tuple[torch.Tensor, ...], noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The AIME policy on plain tensors: ``a = tanh(loc + scale * noise)`` (``tanh(loc)`` for ``noise=None``).

    The same action as :func:`~aime_torchrl.modules.make_policy`'s TanhNormal (reparameterised,
    clamped inside ``(-1, 1)`` as TorchRL's safe tanh). Returns ``(action, loc, scale)``.

    Examples:
        >>> import torch
        >>> net = TanhGaussianPolicyNet(24, 6)
        >>> action, loc, scale = policy_step(net, (torch.zeros(3, 16), torch.zeros(3, 8)), torch.randn(3, 6))
        >>> bool(action.abs().max() < 1)
        True
    """
    loc, scale = policy(*features)
    pre = loc if noise is None else loc + scale * noise
    lim = 1.0 - torch.finfo(pre.dtype).resolution
    return pre.tanh().clamp(-lim, lim), loc, scale


def tanh_gaussian_actor(
    policy: TanhGaussianPolicyNet, features: Sequence[str], noise: Sequence[torch.Tensor]
) -> Callable[[int, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """The ``act`` of :func:`filter_sequence` for the AIME policy: :func:`policy_step` on the
    latents ``features`` (``"belief"``, ``"state"``: :func:`feature_names`) with ``noise[t]`` at row t."""

    def act(t: int, state: torch.Tensor, belief: torch.Tensor) -> dict[str, torch.Tensor]:
        latents = {"state": state, "belief": belief}
        action, loc, scale = policy_step(policy, tuple(latents[k] for k in features), noise[t])
        return {"action": action, "loc": loc, "scale": scale}

    return act


def feature_names(policy: TensorDictModuleBase, keys: LatentKeys) -> list[str]:
    """What the network of a :func:`tanh_gaussian_net` policy reads, in order, as ``"state"``/``"belief"``."""
    names = {unravel_key(keys.state): "state", unravel_key(keys.belief): "belief"}
    return [names[unravel_key(k)] for k in policy.module[0].in_keys]


def plain_module(module: TensorDictModuleBase | None, cls: type | tuple[type, ...], in_keys: list, out_keys: list):
    """The network inside ``module`` if it is a plain TensorDictModule around ``cls`` with exactly
    these keys (then the fast tensor path may call it directly); ``None`` otherwise."""
    if (
        type(module) is TensorDictModule
        and isinstance(module.module, cls)
        and module._kwargs is None
        and module.method is None
        and list(module.in_keys) == [unravel_key(k) for k in in_keys]
        and list(module.out_keys) == [unravel_key(k) for k in out_keys]
    ):
        return module.module
    return None


def _unit_bounds(kwargs) -> bool:
    """Whether a TanhNormal's ``distribution_kwargs`` are exactly ``low=-1, high=1`` (plain numbers)."""
    kwargs = dict(kwargs)
    return set(kwargs) == {"low", "high"} and all(
        not torch.is_tensor(v) and float(v) == bound for v, bound in ((kwargs["low"], -1.0), (kwargs["high"], 1.0)))


def tanh_gaussian_net(
    policy: TensorDictModuleBase | None, keys: LatentKeys | None = None
) -> TanhGaussianPolicyNet | None:
    """The :class:`TanhGaussianPolicyNet` of a policy made by :func:`make_policy` on ``keys``, else ``None``.

    Only such a policy (a ProbabilisticActor sampling a TanhNormal on [-1, 1] from its ``loc``/``scale``,
    reading the state and belief) runs on the fast tensor path; any other TorchRL policy is called
    through its keys.
    """
    if type(policy) is not ProbabilisticActor or len(policy.module) != 2:
        return None
    net_module, dist_module = policy.module[0], policy.module[1]
    keys = LatentKeys.of(keys)
    loc, scale, action = (unravel_key(k) for k in (keys.loc, keys.scale, keys.action))
    if (
        dist_module.distribution_class is not TanhNormal
        or not _unit_bounds(dist_module.distribution_kwargs)
        or list(policy.out_keys) != [loc, scale, action]
        or not isinstance(net_module, TensorDictModule)
        or not set(net_module.in_keys) <= {unravel_key(keys.state), unravel_key(keys.belief)}
    ):
        return None
    return plain_module(net_module, TanhGaussianPolicyNet, list(net_module.in_keys), [loc, scale])
