# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The test-time actor of AIME: filter real observations through the world model, then act."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import unravel_key
from torchrl.data import Unbounded
from torchrl.envs import Compose, TensorDictPrimer

from aime_torchrl.envs.noise import NoiseSource
from aime_torchrl.modules.world_model import RSSMWorldModel


class FilteringActor(TensorDictModuleBase):
    """A recurrent TorchRL policy: the world model's posterior filter followed by the AIME policy.

    At every env step, with the current observation o_t at the root of the tensordict and the
    recurrent state carried in it (``"belief"``, ``"state"`` and ``"prev_action"``, the action
    actually executed before o_t; all zero after a reset, as in training):

    1. ``belief' = transition(state, belief, prev_action)``;
    2. ``state' ~ posterior(belief', encoder(o_t))`` (sampled, as the reference's test-time actor;
       ``sample_posterior=False`` takes the mode); steps 1-2 are one row of the world model's filter,
       :meth:`~aime_torchrl.modules.core.WorldModelCore.observe`; the standard normal noise is read from
       ``"posterior_noise"`` when the tensordict holds it (:meth:`make_noise_source`: each env
       then owns its episode's randomness, so batched evaluation gives the same episodes as one env
       at a time), else drawn from torch's global generator (world models of other modules sample
       inside their posterior);
    3. ``action = policy(belief', state')``: ``tanh(loc)`` under
       ``set_exploration_type(ExplorationType.DETERMINISTIC)``, a sample otherwise.

    It writes what the policy writes (``"action"``, its ``"loc"``/``"scale"``) and the next recurrent
    state under ``"next"``, like TorchRL's
    :class:`~torchrl.modules.LSTMModule`: append :meth:`make_tensordict_primer` to the env so
    that ``reset()`` zeroes the state and ``step_mdp`` carries it, and it runs under
    ``env.rollout`` and TorchRL collectors. Where ``"is_init"`` is present (TorchRL's
    :class:`~torchrl.envs.InitTracker`) and true, the state is zeroed too.

    Args:
        world_model (RSSMWorldModel): the trained world model (only its encoder, transition and
            posterior run here).
        policy (TensorDictModuleBase): reads ``"belief"`` and ``"state"``, writes ``"action"``
            (e.g. :func:`~aime_torchrl.modules.make_policy`). These names, and the recurrent state's
            in the env, are the world model's (``world_model.keys``).

    Keyword Args:
        sample_posterior (bool, optional): sample the posterior state (the reference) rather than
            take its mean. Defaults to ``True``.

    Examples:
        >>> import torch
        >>> from aime_torchrl.envs import make_env
        >>> from aime_torchrl.modules import make_policy, RSSMWorldModel
        >>> env = make_env("walker", "stand", "mdp", seed=0)
        >>> wm = RSSMWorldModel.from_config({"orientations": 14, "height": 1, "velocity": 9}, 6,
        ...     belief_dim=32, state_dim=8, hidden=32)
        >>> actor = FilteringActor(wm, make_policy(8, 32, 6, hidden=32))
        >>> env = env.append_transform(actor.make_tensordict_primer())
        >>> with torch.no_grad():
        ...     rollout = env.rollout(5, actor)
        >>> rollout["next", "belief"].shape
        torch.Size([5, 32])
    """

    def __init__(
        self,
        world_model: RSSMWorldModel,
        policy: TensorDictModuleBase,
        *,
        sample_posterior: bool = True,
    ) -> None:
        super().__init__()
        self.world_model = world_model
        self.policy = policy
        self.sample_posterior = sample_posterior
        keys = world_model.keys
        self.recurrent_keys = [unravel_key(keys.belief), unravel_key(keys.state), "prev_action"]
        self.in_keys = [*world_model.observation_keys, *self.recurrent_keys]
        self.out_keys = list(dict.fromkeys([unravel_key(keys.action), *(unravel_key(k) for k in policy.out_keys),
                                            *(unravel_key(("next", key)) for key in self.recurrent_keys)]))

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """A transform that adds the zero recurrent state to the env's ``reset()`` and specs."""
        wm = self.world_model
        sizes = dict(zip(self.recurrent_keys, (wm.belief_dim, wm.state_dim, wm.action_dim)))
        return TensorDictPrimer({key: Unbounded(shape=(size,)) for key, size in sizes.items()}, expand_specs=True)

    def make_env_transform(self, seed: int) -> Compose:
        """What an env needs to run this actor: :meth:`make_tensordict_primer` and
        :meth:`make_noise_source` (``seed``), e.g. ``make_env(..., seed=s).append_transform(actor.make_env_transform(s))``."""
        return Compose(self.make_tensordict_primer(), self.make_noise_source(seed))

    def make_noise_source(self, seed: int) -> NoiseSource:
        """A transform that writes the posterior noise of every step into the env's tensordict
        from its own generator (seeded with ``seed``), for reproducible episodes in batched envs."""
        return NoiseSource("posterior_noise", (self.world_model.core.noise_dim,), seed)

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        wm, keys = self.world_model, self.world_model.keys
        belief, state, prev_action = (tensordict.get(key) for key in self.recurrent_keys)
        is_init = tensordict.get("is_init", None)
        if is_init is not None:
            keep = (~is_init).to(belief.dtype)
            belief, state, prev_action = belief * keep, state * keep, prev_action * keep
        core = wm.core
        batch = tensordict.batch_size
        embedding = core.encode({key: tensordict.get(key) for key in wm.observation_keys}, batch)
        noise = None
        if self.sample_posterior and core.external_noise:
            noise = tensordict.get("posterior_noise", None)
            if noise is None:
                noise = torch.randn(*state.shape[:-1], core.noise_dim, dtype=state.dtype, device=state.device)
        rows = core.observe(embedding.unsqueeze(-2), prev_action.unsqueeze(-2), state=state, belief=belief,
                            noise=None if noise is None else [noise], sample=self.sample_posterior)
        next_belief, next_state = rows["next_belief"].squeeze(-2), rows["next_state"].squeeze(-2)
        acting = self.policy(TensorDict({keys.belief: next_belief, keys.state: next_state}, batch_size=tensordict.batch_size))
        for key in self.policy.out_keys:  # the action the world model reads, and whatever else the policy writes
            tensordict.set(key, acting.get(key))
        action = acting.get(keys.action)
        tensordict.set(keys.next("belief"), next_belief)
        tensordict.set(keys.next("state"), next_state)
        tensordict.set(("next", "prev_action"), action)
        return tensordict
