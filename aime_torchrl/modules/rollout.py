# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior rollout (filtering) over TensorDict frames, optionally with a policy choosing the actions."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import unravel_key

from aime_torchrl.modules.core import KeyedCore, make_actor, WorldModelCore
from aime_torchrl.modules.keys import LatentKeys
from aime_torchrl.modules.latent import GaussianLatent
from aime_torchrl.modules.policy import TensorActor


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
        core (WorldModelCore, optional): the step the loop runs
            (:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`): a world model passes its own.
            Defaults to ``None``: the two modules through their keys
            (:class:`~aime_torchrl.modules.core.KeyedCore`), Gaussian latents.

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
        core: WorldModelCore | None = None,
    ) -> None:
        super().__init__()
        self.transition = transition
        self.posterior = posterior
        self.keys = keys = LatentKeys.of(keys)
        if core is None:  # the sizes are the frames': the loop starts from their latents
            core = KeyedCore(transition, posterior, keys=keys, latent=GaussianLatent(), state_dim=0, belief_dim=0)
        self.core = core
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
        return write_rows(tensordict, self.rows(tensordict, policy), self.keys, self.core)

    def rows(self, tensordict: TensorDictBase, policy: TensorDictModuleBase | None = None) -> dict:
        """What :meth:`forward` writes, as :meth:`~aime_torchrl.modules.core.WorldModelCore.observe`'s rows."""
        keys, core = self.keys, self.core
        time_dim = tensordict.batch_dims - 1
        length = tensordict.batch_size[time_dim]
        state = tensordict.get(keys.state).select(time_dim, 0)
        belief = tensordict.get(keys.belief).select(time_dim, 0)
        actions = tensordict.get(keys.action)
        noise = core.draw_noise(state, length)
        actor = None
        if policy is not None:
            latents = {unravel_key(k) for k in (keys.state, keys.belief, keys.encoded_latents)}
            inputs = {unravel_key(k): tensordict.get(k).unbind(time_dim) for k in policy.in_keys
                      if unravel_key(k) not in latents and k in tensordict.keys(True)}
            actor = make_actor(policy, keys, noise=actor_noise(policy, core, actions, length), inputs=inputs)
        return core.observe(tensordict.get(keys.encoded_latents), actions, state=state, belief=belief, noise=noise,
                            actor=actor)


def actor_noise(
    policy: TensorDictModuleBase | None, core: WorldModelCore, actions: torch.Tensor, length: int
) -> list[torch.Tensor] | None:
    """A :class:`~aime_torchrl.modules.policy.TensorActor`'s noise of a window, drawn after the
    posterior's (:meth:`~aime_torchrl.modules.core.WorldModelCore.draw_noise`), one draw like an
    action per row, where the core takes its noise as an argument (the window's ELBO is then a pure
    function); ``None`` otherwise (the actor draws at each row, in the order of the modules' own
    samples)."""
    if not isinstance(policy, TensorActor) or not core.external_noise:
        return None
    action = actions.select(actions.ndim - 2, 0)
    return [torch.randn_like(action) for _ in range(length)]


def write_rows(frames: TensorDictBase, rows: dict, keys: LatentKeys, core: WorldModelCore) -> TensorDictBase:
    """Writes the rows of :meth:`~aime_torchrl.modules.core.WorldModelCore.observe` into the frames
    under ``keys``: the previous and next latents, the action, the posterior's parameters (and the
    prior's when the transition computed them) and every other output by its key."""
    frames.set(keys.state, rows["state"])
    frames.set(keys.belief, rows["belief"])
    frames.set(keys.action, rows["action"])
    frames.set(keys.next("belief"), rows["next_belief"])
    frames.set(keys.next("state"), rows["next_state"])
    for key, value in zip(core.latent.posterior_keys(keys), rows["posterior"]):
        frames.set(key, value)
    if rows["prior"] is not None:
        for key, value in zip(core.latent.prior_keys(keys), rows["prior"]):
            frames.set(key, value)
    for key, value in rows["outputs"].items():
        frames.set(key, value)
    return frames
