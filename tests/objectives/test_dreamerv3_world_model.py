# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Both AIME losses over TorchRL's DreamerV3 RSSM (categorical latents): the ELBO's categorical KL,
gradients, and phase 2 replaying the true actions giving the phase-1 ELBO."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, kl_divergence
from torchrl.envs.utils import ExplorationType, set_exploration_type

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.modules import DreamerV3Core
from aime_torchrl.objectives import categorical_kl, latent_kl
from aime_torchrl.trainers import total_loss
from conftest import make_window
from test_aime_loss import ReplayActions

DIMS = {"a": 3, "b": 2}


def v3_world_model(**kwargs) -> RSSMWorldModel:
    sizes = {**dict(belief_dim=32, hidden=32, categoricals=4, classes=5, blocks=4, vector_encoder=16), **kwargs}
    return RSSMWorldModel.from_config(DIMS, 2, variant="dreamerv3", **sizes)


def test_categorical_kl_is_torch_s_and_balancing_and_free_nats_shape_only_the_gradient():
    q, p = torch.randn(3, 7, 4, 5), torch.randn(3, 7, 4, 5)
    expected = kl_divergence(Categorical(logits=q), Categorical(logits=p))
    torch.testing.assert_close(categorical_kl(q, p), expected)
    mixed = lambda logits: (0.99 * logits.softmax(-1) + 0.01 / 5).log()  # noqa: E731
    torch.testing.assert_close(categorical_kl(q, p, unimix=0.01),
                               kl_divergence(Categorical(logits=mixed(q)), Categorical(logits=mixed(p))))

    q.requires_grad_(True), p.requires_grad_(True)
    value, optimised = latent_kl((q,), (p,), latent="categorical", balance=0.8)
    torch.testing.assert_close(value, expected.sum(-1))  # the true KL per step, summed over the categoricals
    torch.testing.assert_close(optimised, expected.sum(-1))  # balancing moves the gradient, not the value
    optimised.sum().backward()
    grad_q, grad_p = q.grad.clone(), p.grad.clone()
    q.grad, p.grad = None, None
    categorical_kl(q, p).sum().backward()
    torch.testing.assert_close(grad_p, 0.8 * p.grad)  # the prior learns 80 % of the KL's pull
    torch.testing.assert_close(grad_q, 0.2 * q.grad)

    q.grad, p.grad = None, None
    _, optimised = latent_kl((q,), (p,), latent="categorical", free_nats=1e6)  # every step below the free nats
    optimised.sum().backward()
    assert q.grad.abs().sum() == 0 and p.grad.abs().sum() == 0


def test_both_losses_train_their_own_parameters_only():
    wm = v3_world_model()
    assert wm.latent == "categorical" and wm.state_dim == 20 and isinstance(wm.core, DreamerV3Core)
    window = make_window(dims=DIMS, time=6)
    out = WorldModelLoss(wm, free_nats=1.0, kl_balance=0.8)(window)
    assert out["kl"] > 0 and torch.isfinite(out["elbo"])
    total_loss(out).backward()
    for name, p in wm.named_parameters():  # the block GRU, both heads, encoder and decoders
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    wm.zero_grad(set_to_none=True)
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    loss = AIMELoss(wm, policy)
    assert {id(p) for p in loss.parameters()} == {id(p) for p in policy.parameters()}
    total_loss(loss(window.exclude("action"))).backward()  # through straight-through categorical samples
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in wm.parameters())


@pytest.mark.parametrize("kl_balance", [None, 0.8])
def test_true_actions_give_the_phase1_elbo(kl_balance):
    wm = v3_world_model()
    window = make_window(dims=DIMS, time=6)
    torch.manual_seed(1)
    phase1 = WorldModelLoss(wm, kl_balance=kl_balance, free_nats=1.0)(window)
    torch.manual_seed(1)  # the same categorical samples
    phase2 = AIMELoss(wm, ReplayActions(window["action"]), kl_balance=kl_balance, free_nats=1.0)(window)
    for key in ("elbo", "kl", "recon_a", "recon_b", "loss_recon", "loss_kl"):
        torch.testing.assert_close(phase2[key], phase1[key], msg=key)
    assert phase2["action_mse"].item() == pytest.approx(0.0, abs=1e-12)


def test_the_filtering_actor_acts_from_the_posterior_s_likeliest_classes():
    from tensordict import TensorDict

    from aime_torchrl.modules import FilteringActor

    wm = v3_world_model()
    actor = FilteringActor(wm, make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16), sample_posterior=False)
    step = TensorDict({"a": torch.randn(5, 3), "b": torch.randn(5, 2), "belief": torch.zeros(5, wm.belief_dim),
                       "state": torch.zeros(5, wm.state_dim), "prev_action": torch.zeros(5, 2)}, [5])
    with set_exploration_type(ExplorationType.DETERMINISTIC):  # as evaluations run
        first, second = actor(step.clone()), actor(step.clone())
    state = first["next", "state"].view(5, 4, 5)  # 4 categoricals of 5 classes, one-hot each
    assert torch.equal(state.sum(-1), torch.ones(5, 4))
    assert torch.equal(first["next", "state"], second["next", "state"]) and torch.equal(first["action"], second["action"])


def test_a_belief_the_block_gru_cannot_split_is_refused_naming_the_config_keys():
    with pytest.raises(ValueError, match=r"belief_dim 30 is not a multiple of blocks 4.*world_model.blocks"):
        v3_world_model(belief_dim=30)


def test_the_tensor_core_is_torchrl_s_modules_step_by_step():
    """Rows, prior/posterior logits and every gradient equal those of RSSMPriorV3/RSSMPosteriorV3's own
    forward, given the same draws (the posterior's uniforms are Phi of the core's standard normal noise)."""
    wm = v3_world_model(unimix=0.01).double()  # float64 (TorchRL's RMS norm computes in float32: 1e-5)
    core = wm.core
    core.fused = False  # the loop of filter_step; the fused node equals it (tests/modules/test_fused_v3_filter.py)
    batch, time = 3, 6
    embeddings = torch.randn(batch, time, core.encoder.embedding_dim, dtype=torch.float64)
    actions = torch.rand(batch, time, 2, dtype=torch.float64) * 2 - 1
    noise = core.draw_noise(actions[:, 0], time)
    rows = core.observe(embeddings, actions, noise=noise)
    prior = core.prior_params(rows)[0]
    ours = (rows["next_belief"], rows["next_state"], rows["posterior"][0], prior)

    state, belief = core.initial(actions[:, 0])
    steps = []
    for t in range(time):  # the modules' public forward; their sampling uniforms by the test-only keyword
        prior_logits, _, belief = core.transition(state, belief, actions[:, t])
        logits, state = core.posterior(belief, embeddings[:, t], _uniform=torch.special.ndtr(noise[t]))
        steps.append((belief, state, logits, prior_logits))
    theirs = tuple(torch.stack(seq, 1) for seq in zip(*steps))
    for name, a, b in zip(("next_belief", "next_state", "posterior", "prior"), ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)

    weights = [torch.randn_like(x) for x in ours]
    params = list(core.transition.parameters()) + list(core.posterior.parameters())
    grads_ours = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, ours)), params)
    grads_theirs = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, theirs)), params)
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_categorical_samples_follow_the_mixed_probabilities():
    from aime_torchrl.modules.latent import CategoricalLatent

    logits = torch.tensor([[1.0, -2.0, 0.5, 0.0]]).expand(200_000, 1, 4)
    torch.manual_seed(0)
    samples = CategoricalLatent(unimix=0.1).sample((logits,), torch.randn(200_000, 1))
    expected = 0.9 * logits[0, 0].softmax(-1) + 0.1 / 4
    torch.testing.assert_close(samples.mean(0), expected, atol=5e-3, rtol=0)
    assert torch.equal(samples.sum(-1), torch.ones(200_000))


def test_the_filtering_actor_samples_the_posterior_with_its_noise_source():
    from tensordict import TensorDict

    from aime_torchrl.modules import FilteringActor

    wm = v3_world_model()
    actor = FilteringActor(wm, make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16))
    step = TensorDict({"a": torch.randn(5, 3), "b": torch.randn(5, 2), "belief": torch.zeros(5, wm.belief_dim),
                       "state": torch.zeros(5, wm.state_dim), "prev_action": torch.zeros(5, 2),
                       "posterior_noise": torch.randn(5, wm.core.noise_dim)}, [5])
    assert actor.make_noise_source(0).shape == (4,)  # one normal per categorical
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first, second = actor(step.clone()), actor(step.clone())
    assert torch.equal(first["next", "state"], second["next", "state"])  # the same noise, the same sample
    assert torch.equal(first["next", "state"].view(5, 4, 5).sum(-1), torch.ones(5, 4))


def test_without_the_action_norm_the_belief_sees_the_action_s_magnitude():
    state, belief = torch.zeros(4, 20), torch.randn(4, 32)
    action = torch.rand(4, 2) * 2 - 1
    change = {}
    for action_norm in (True, False):
        torch.manual_seed(0)  # the same weights (the norm is dropped after they are drawn)
        rnn = v3_world_model(action_norm=action_norm).core.transition.rnn
        change[action_norm] = (rnn(state, belief, action / 2) - rnn(state, belief, action)).abs().max()
    # DreamerV3's RMS norm after the action's projection (bias zero at init) keeps little but its direction
    assert change[True] < 0.1 * change[False]
