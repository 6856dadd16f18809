# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior latents of a dataset: where offline RL in a world model's imagination starts."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from aime_torchrl.modules.latent_action import LatentActionWorldModel
from aime_torchrl.modules.world_model import RSSMWorldModel


@torch.no_grad()
def posterior_latents(
    world_model: RSSMWorldModel | LatentActionWorldModel,
    episodes: TensorDictBase,
    *,
    chunk: int = 32,
    seed: int = 0,
) -> TensorDict:
    """Filters whole ``episodes`` ``[N, T]`` once and returns their transitions in latent space, ``[N * T]``.

    Transition t of an episode holds the latents after observing o_t at the root (``"belief"``,
    ``"state"``: the world model's key names), those after o_{t+1} and the reward r_t under
    ``"next"``, and the behaviour's action from o_t under ``"behaviour_action"``: the episode's
    action a_t for an action-conditioned world model (which reads the episodes' ``"action"``), the
    mean action of the inverse model q(a_t | h_t, s_t, e_{t+1}) for a
    :class:`~aime_torchrl.modules.LatentActionWorldModel` (which never reads actions here). Every
    posterior state is a sample, drawn from a generator seeded with ``seed`` (the same latents for
    the same model and data); ``chunk`` episodes are filtered at a time.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> model = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> episodes = TensorDict({"observation": torch.randn(2, 6, 3), "action": torch.rand(2, 6, 2),
        ...     ("next", "observation"): torch.randn(2, 6, 3), ("next", "reward"): torch.rand(2, 6, 1)}, [2, 6])
        >>> latents = posterior_latents(model, episodes)
        >>> latents.batch_size, latents["next", "state"].shape, latents["behaviour_action"].shape
        (torch.Size([12]), torch.Size([12, 4]), torch.Size([12, 2]))
    """
    if ("next", "reward") not in episodes.keys(include_nested=True):
        raise KeyError("posterior_latents needs the episodes' rewards under ('next', 'reward') (the reward model's "
                       f"targets); the episodes hold {', '.join(sorted(map(str, episodes.keys(True, True))))}.")
    latent = isinstance(world_model, LatentActionWorldModel)
    keys = world_model.keys
    device = next(world_model.parameters()).device
    out = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(episodes), chunk):
            window = episodes[start:start + chunk].to(device)
            frames = world_model(world_model.to_frames(window))  # row k: the latents after o_k; row k + 1: a_k / u_k
            after = frames.get(keys.next("belief")), frames.get(keys.next("state"))
            behaviour = frames.get(keys.loc)[:, 1:].tanh() if latent else window.get("action")  # q's mean action
            out.append(TensorDict({
                keys.belief: after[0][:, :-1], keys.state: after[1][:, :-1],
                keys.next("belief"): after[0][:, 1:], keys.next("state"): after[1][:, 1:],
                ("next", "reward"): window.get(("next", "reward")),
                "behaviour_action": behaviour,
            }, window.batch_size).cpu())
    return torch.cat(out).reshape(-1)
