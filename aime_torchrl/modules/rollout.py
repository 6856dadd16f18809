# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior rollout (filtering) loop, optionally with a policy choosing the actions."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from tensordict.utils import unravel_key

from aime_torchrl.modules.filter_step import (
    feature_names, filter_sequence, plain_module, sequence_key, tanh_gaussian_actor, tanh_gaussian_net, window_noise,
)
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.rssm import GaussianHead, RSSMTransition


class PosteriorRollout(TensorDictModuleBase):
    """Filters a sequence of frames with an RSSM: only the sequential work sits in the loop.

    The input is a ``[*B, T]`` tensordict of *frames* in TorchRL's Dreamer key scheme: row t is the
    transition into frame t, with the previous latent state at the root (``"state"``,
    ``"belief"``; only row 0 is read: the initial state), the action ``"action"`` a_{t-1}, and the
    embedding of o_t under ``("next", "encoded_latents")``. For every row the loop runs

    1. ``policy`` (if given): writes ``"action"`` (and ``"loc"``, ``"scale"``) from the previous
       latent state, overriding the data; row 0 (the step from the initial state) keeps the
       data's action;
    2. ``transition``: ``(state, belief, action) -> ("next", "belief")`` (it may also write the prior
       parameters, as :class:`torchrl.modules.RSSMPrior` does);
    3. ``posterior``: ``(("next", "belief"), ("next", "encoded_latents")) ->
       ("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")``;

    and carries ``("next", "state")``/``("next", "belief")`` to the root of the next row. Encoding,
    prior heads and decoders do not depend on the previous step and are left out of the loop, to be
    run batched over the whole window.

    Args:
        transition (TensorDictModuleBase): the deterministic step (e.g. a TensorDictModule around
            :class:`~aime_torchrl.modules.RSSMTransition` or :class:`torchrl.modules.RSSMPrior`).
        posterior (TensorDictModuleBase): the posterior step (e.g. around
            :class:`~aime_torchrl.modules.GaussianHead` or :class:`torchrl.modules.RSSMPosterior`).

    Keyword Args:
        keys (LatentKeys, optional): the names of the state, belief, action, embedding and
            posterior parameters (the defaults are the ones above). Defaults to ``None``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from aime_torchrl.modules import GaussianHead, RSSMTransition
        >>> transition = TensorDictModule(RSSMTransition(8, 2, 16),
        ...     in_keys=["state", "belief", "action"], out_keys=[("next", "belief")])
        >>> posterior = TensorDictModule(GaussianHead(16 + 3, 8, sample=True),
        ...     in_keys=[("next", "belief"), ("next", "encoded_latents")],
        ...     out_keys=[("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")])
        >>> frames = TensorDict({"state": torch.zeros(4, 10, 8), "belief": torch.zeros(4, 10, 16),
        ...     "action": torch.zeros(4, 10, 2), ("next", "encoded_latents"): torch.randn(4, 10, 3)}, [4, 10])
        >>> PosteriorRollout(transition, posterior)(frames)["next", "state"].shape
        torch.Size([4, 10, 8])
    """

    def __init__(
        self,
        transition: TensorDictModuleBase,
        posterior: TensorDictModuleBase,
        *,
        keys: LatentKeys | None = None,
    ) -> None:
        super().__init__()
        self.transition = transition
        self.posterior = posterior
        self.keys = keys = LatentKeys.of(keys)
        produced = set(transition.out_keys) | set(posterior.out_keys)
        in_keys = [unravel_key(keys.state), unravel_key(keys.belief)]
        for key in (*transition.in_keys, *posterior.in_keys):
            if key not in produced and key not in in_keys:
                in_keys.append(key)
        self.in_keys = in_keys
        self.out_keys = list(dict.fromkeys([*transition.out_keys, *posterior.out_keys]))

    def forward(
        self, tensordict: TensorDictBase, policy: TensorDictModuleBase | None = None
    ) -> TensorDictBase:
        """Runs the filter over the last batch dimension of ``tensordict`` and writes the latents into it.

        Args:
            tensordict (TensorDictBase): the frames, ``[*B, T]``.
            policy (TensorDictModuleBase, optional): samples ``"action"`` from the latent state at
                every step after the first (AIME phase 2). Defaults to ``None`` (the data's actions).
        """
        nets = self.plain_nets()
        if nets is None:
            return self._forward_generic(tensordict, policy)
        return self._forward_tensors(tensordict, *nets, policy)

    def plain_nets(self) -> tuple[RSSMTransition, GaussianHead] | None:
        """Our own transition and posterior wired as :meth:`RSSMWorldModel.from_config` wires them
        (on :attr:`keys`): they run on the tensor path."""
        keys = self.keys
        transition = plain_module(self.transition, RSSMTransition, [keys.state, keys.belief, keys.action],
                                  [keys.next("belief")])
        posterior = plain_module(
            self.posterior, GaussianHead, [keys.next("belief"), keys.encoded_latents],
            [keys.posterior_mean, keys.posterior_std, keys.next("state")],
        )
        if transition is None or posterior is None:
            return None
        return transition, posterior

    def _forward_tensors(
        self,
        tensordict: TensorDictBase,
        transition: RSSMTransition,
        posterior: GaussianHead,
        policy: TensorDictModuleBase | None,
    ) -> TensorDictBase:
        """The filter on plain tensors with :func:`latent_step`, every noise sample drawn before the loop."""
        keys = self.keys
        time_dim = tensordict.batch_dims - 1
        length = tensordict.batch_size[time_dim]
        batch_size = tensordict.batch_size[:time_dim]
        state = tensordict.get(keys.state).select(time_dim, 0)
        belief = tensordict.get(keys.belief).select(time_dim, 0)
        embeddings = tensordict.get(keys.encoded_latents).unbind(time_dim)
        actions = tensordict.get(keys.action).unbind(time_dim)
        act = None
        policy_net = tanh_gaussian_net(policy, keys)
        noise, policy_noise = window_noise(state, actions[0], length, policy=policy_net is not None)
        if policy_net is not None:
            act = tanh_gaussian_actor(policy_net, feature_names(policy, keys), policy_noise)
        elif policy is not None:  # any other policy reads its keys from a TensorDict
            latents = (unravel_key(keys.state), unravel_key(keys.belief))
            names = {unravel_key(sequence_key(name, keys)): name for name in ("action", "loc", "scale")}
            policy_inputs = {
                unravel_key(k): tensordict.get(k).unbind(time_dim)
                for k in policy.in_keys
                if unravel_key(k) not in latents and k in tensordict.keys(True)
            }

            def act(t: int, state: torch.Tensor, belief: torch.Tensor) -> dict:
                step = {key: seq[t] for key, seq in policy_inputs.items()}
                out = _call(policy, {**step, latents[0]: state, latents[1]: belief}, batch_size)
                return {names.get(key, key): value for key, value in out.items()}

        outputs = filter_sequence(transition, posterior, state, belief, actions, embeddings, noise, act)
        for key, seq in outputs.items():
            tensordict.set(sequence_key(key, keys), torch.stack(seq, time_dim))
        return tensordict

    def _forward_generic(
        self, tensordict: TensorDictBase, policy: TensorDictModuleBase | None = None
    ) -> TensorDictBase:
        """Any TensorDictModules: the loop calls them through their keys."""
        keys = self.in_keys
        if policy is not None:
            keys = keys + [k for k in policy.in_keys if k not in keys]
        time_dim = tensordict.batch_dims - 1
        batch_size = tensordict.batch_size[:time_dim]
        # The loop runs on plain tensors: a TensorDict per step costs more than the step's
        # elementwise work at this size. Modules that are not plain TensorDictModules (the policy,
        # any custom module) are called on a small TensorDict built from the step's tensors.
        inputs = {unravel_key(k): tensordict.get(k).unbind(time_dim) for k in keys}
        state, belief = unravel_key(self.keys.state), unravel_key(self.keys.belief)
        next_state, next_belief = self.keys.next("state"), self.keys.next("belief")
        modules = [self.transition, self.posterior]
        out_keys = [state, belief, *(k for m in modules for k in m.out_keys)]
        if policy is not None:
            out_keys = out_keys + [k for k in policy.out_keys if k not in out_keys]
        outputs: dict = {key: [] for key in out_keys}
        for t in range(tensordict.batch_size[time_dim]):
            step = {key: seq[t] for key, seq in inputs.items()}
            if t:
                step[state], step[belief] = outputs[next_state][-1], outputs[next_belief][-1]
            if policy is not None:
                # Row 0 keeps the data's (zero) action; the policy still writes its distribution
                # parameters so that every row carries the same keys.
                kept = {k: step[k] for k in policy.out_keys if k in step} if t == 0 else {}
                step.update(_call(policy, step, batch_size))
                step.update(kept)
            for module in modules:
                step.update(_call(module, step, batch_size))
            for key, seq in outputs.items():
                seq.append(step[key])
        for key, seq in outputs.items():
            tensordict.set(key, torch.stack(seq, time_dim))
        return tensordict


def _call(module: TensorDictModuleBase, step: dict, batch_size: torch.Size) -> dict:
    """Runs ``module`` on a dict of tensors and returns its outputs as a dict."""
    if type(module) is TensorDictModule and module._kwargs is None and module.method is None:
        out = module.module(*(step[unravel_key(k)] for k in module.in_keys))
        if not isinstance(out, tuple):
            out = (out,)
        return dict(zip(module.out_keys, out))
    td = module(TensorDict(step, batch_size=batch_size))
    return {unravel_key(k): td.get(k) for k in module.out_keys}
