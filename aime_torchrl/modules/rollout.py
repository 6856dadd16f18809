# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior rollout (filtering) loop, optionally with a policy choosing the actions."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey


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
        state_key (NestedKey, optional): the stochastic state. Defaults to ``"state"``.
        belief_key (NestedKey, optional): the deterministic state. Defaults to ``"belief"``.

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
        state_key: NestedKey = "state",
        belief_key: NestedKey = "belief",
    ) -> None:
        super().__init__()
        self.transition = transition
        self.posterior = posterior
        self.state_key = state_key
        self.belief_key = belief_key
        produced = set(transition.out_keys) | set(posterior.out_keys)
        in_keys = [state_key, belief_key]
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
        keys = self.in_keys
        if policy is not None:
            keys = keys + [k for k in policy.in_keys if k not in keys]
        steps = tensordict.select(*keys).unbind(-1)
        next_state, next_belief = ("next", self.state_key), ("next", self.belief_key)
        out: list[TensorDictBase] = []
        for step in steps:
            if out:
                step.set(self.state_key, out[-1].get(next_state))
                step.set(self.belief_key, out[-1].get(next_belief))
                if policy is not None:
                    step = policy(step)
            elif policy is not None:
                # Row 0 keeps the data's (zero) action; the policy still writes its distribution
                # parameters so that every row carries the same keys.
                action = {k: step.get(k) for k in policy.out_keys if k in step.keys(True)}
                step = policy(step).update(action)
            step = self.posterior(self.transition(step))
            out.append(step)
        return tensordict.update(torch.stack(out, tensordict.ndim - 1))
