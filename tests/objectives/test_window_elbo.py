# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The window ELBO on a world model's core: the same on every core and on filtered frames, eager or compiled."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl import AIMELoss, make_policy, WorldModelLoss
from aime_torchrl.modules import KeyedCore, RSSMCore, RSSMWorldModel
from aime_torchrl.objectives import elbo_terms
from aime_torchrl.trainers import total_loss

from conftest import make_window, small_world_model

KEYS = ("elbo", "kl", "recon_observation", "loss_recon", "loss_kl")


def _keyed_twin(wm: RSSMWorldModel) -> RSSMWorldModel:
    """The same modules assembled without a core: they run through their keys (KeyedCore)."""
    twin = RSSMWorldModel(wm.encoder, wm.transition, wm.posterior, dict(wm.decoders), wm.prior, None,
                          observation_keys=wm.observation_keys, state_dim=wm.state_dim, belief_dim=wm.belief_dim,
                          action_dim=wm.action_dim)
    assert isinstance(twin.core, KeyedCore) and isinstance(wm.core, RSSMCore)
    return twin


def test_tensor_path_equals_the_keyed_path():
    """Same seed, same noise: the ELBO on our RSSM's core equals the one through the TensorDict modules'
    keys (phase 1) and, on both cores, the one of the filtered frames (elbo_terms), both phases."""
    wm = small_world_model()
    twin = _keyed_twin(wm)
    window = make_window(batch=4, time=6)
    torch.manual_seed(1)
    fast = WorldModelLoss(wm)(window)
    torch.manual_seed(1)
    keyed = WorldModelLoss(twin)(window)
    torch.manual_seed(1)
    framed = elbo_terms(wm.decoders, wm(wm.to_frames(window)), nll_reweight="dim_wise")
    for key in KEYS:
        torch.testing.assert_close(fast[key], keyed[key], msg=key)
        torch.testing.assert_close(fast[key], framed[key], msg=key)

    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    for model in (wm, twin):  # the keyed core samples inside its modules, in another order: each against its frames
        torch.manual_seed(2)
        fast = AIMELoss(model, policy)(window)
        torch.manual_seed(2)
        with set_exploration_type(ExplorationType.RANDOM):
            frames = model(model.to_frames(window, with_actions=False), policy=policy)
        framed = elbo_terms(model.decoders, frames, nll_reweight="dim_wise")
        for key in KEYS:
            torch.testing.assert_close(fast[key], framed[key], msg=key)
        torch.testing.assert_close(fast["action_mse"], (frames["action"][:, 1:] - window["action"]).pow(2).mean())


def test_policy_step_is_the_tanh_normal_sample():
    policy = make_policy(4, 8, 3, hidden=16)
    td = TensorDict({"belief": torch.randn(5, 8), "state": torch.randn(5, 4)}, [5])
    torch.manual_seed(3)
    with set_exploration_type(ExplorationType.RANDOM):
        sampled = policy(td.clone())["action"]
    torch.manual_seed(3)
    torch.testing.assert_close(policy.act(td.to_dict(), torch.randn(5, 3))["action"], sampled)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.testing.assert_close(policy.act(td.to_dict(), torch.zeros(5, 3))["action"], policy(td.clone())["action"])


def _losses_and_grads(loss_module, params, window, seed):
    torch.manual_seed(seed)
    out = loss_module(window)
    for p in params:
        p.grad = None
    total_loss(out).backward()
    return out, [p.grad.clone() for p in params]


COMPILE_MODES = [
    pytest.param("cpu", True, id="cpu-compile"),
    pytest.param("cuda", "reduce-overhead", id="cuda-cudagraph",
                 marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
]


@pytest.mark.parametrize("device,mode", COMPILE_MODES)
def test_compiled_equals_eager(device, mode):
    """Both phases: compiled losses and gradients equal the eager ones (same noise)."""
    wm = small_world_model(device=device)
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16, device=device)
    window = make_window(batch=4, time=3, device=device)
    wm_params, policy_params = list(wm.parameters()), list(policy.parameters())
    cases = [
        (WorldModelLoss(wm), WorldModelLoss(wm, compile=mode), wm_params, window),
        (AIMELoss(wm, policy), AIMELoss(wm, policy, compile=mode), policy_params, window.exclude("action")),
    ]
    for eager, compiled, params, batch in cases:
        for p in wm_params:
            p.grad = None
        for seed in (0, 1):  # a second call reuses the compiled code
            want, want_grads = _losses_and_grads(eager, params, batch, seed)
            got, got_grads = _losses_and_grads(compiled, params, batch, seed)
            for key in want.keys():
                torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-4, msg=key)
            for g, w in zip(got_grads, want_grads):
                torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-4)
    assert all(p.grad is None for p in wm_params)  # phase 2, compiled too: nothing reaches the world model
    assert all(p.requires_grad for p in wm_params)


def test_unknown_compile_mode_names_the_option():
    with pytest.raises(ValueError, match="compile must be a bool or one of torch.compile's modes"):
        WorldModelLoss(small_world_model(), compile="fastest")
