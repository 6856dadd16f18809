# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""ELBO terms against values computed by hand on small tensors."""
from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from aime_torchrl.modules import make_decoder
from aime_torchrl.modules.latent import balanced_terms, CategoricalLatent
from aime_torchrl.objectives import balanced_kl, elbo_terms, free_nats_kl, gaussian_kl
from conftest import make_window


def test_gaussian_kl_hand_value():
    # KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2
    kl = gaussian_kl(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert kl.item() == pytest.approx(math.log(0.5) + 2.5 - 0.5, abs=1e-6)
    mq, sq, mp, sp = torch.randn(4, 3), torch.rand(4, 3) + 0.1, torch.randn(4, 3), torch.rand(4, 3) + 0.1
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq), torch.distributions.Normal(mp, sp))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), ref)


def test_free_nats_straight_through():
    # Total KL 0.5 < 1 free nat: value unchanged, no gradient.
    kl = torch.tensor([[0.2, 0.3], [1.0, 2.0]], requires_grad=True)
    out = free_nats_kl(kl, 1.0)
    torch.testing.assert_close(out.detach(), kl.detach())
    (out * torch.tensor([[1.0, 3.0], [1.0, 3.0]])).sum().backward()
    # Step 0 is below the threshold: zero gradient. Step 1 (total 3 > 1): the gradient of the total,
    # spread equally over the two dims: (1 + 3) / 2 = 2 each.
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    assert free_nats_kl(kl, 0.0) is kl


def test_kl_balance_splits_gradients():
    mq = torch.tensor([0.5], requires_grad=True)
    mp = torch.tensor([0.0], requires_grad=True)
    sq, sp = torch.ones(1), torch.ones(1)
    balanced_kl(mq, sq, mp, sp, balance=0.8).sum().backward()
    # KL = (mq - mp)^2 / 2 = 0.125; d/dmq = 0.5, d/dmp = -0.5 -> scaled by (1 - a) and a.
    assert balanced_kl(mq, sq, mp, sp, 0.8).item() == pytest.approx(0.125)
    assert mq.grad.item() == pytest.approx(0.2 * 0.5)
    assert mp.grad.item() == pytest.approx(0.8 * -0.5)
    with pytest.raises(ValueError, match="kl_balance"):
        balanced_kl(mq, sq, mp, sp, balance=1.5)


@pytest.mark.parametrize("unimix", [0.0, 0.01])
def test_categorical_kl_balance_shares_one_computation_with_the_same_gradients(unimix):
    """CategoricalLatent.balanced_kl (one softmax and log of each side) gives the generic detached
    terms' values and gradients."""
    latent = CategoricalLatent(unimix)
    torch.manual_seed(0)
    q, p = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 4, 5, dtype=torch.float64)
    grads = []
    for terms in (latent.balanced_kl, lambda *a: balanced_terms(latent.kl, *a)):
        q_, p_ = q.clone().requires_grad_(), p.clone().requires_grad_()
        out = terms((q_,), (p_,), 0.8)
        weights = torch.linspace(0.5, 2, 12, dtype=torch.float64).view(3, 4)
        sum(w * (kl * weights).sum() for w, kl in out).backward()
        grads.append((q_.grad, p_.grad, [kl.detach() for _, kl in out]))
    (gq, gp, values), (gq_ref, gp_ref, values_ref) = grads
    torch.testing.assert_close(gq, gq_ref)
    torch.testing.assert_close(gp, gp_ref)
    for a, b in zip(values, values_ref):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(values[0], latent.kl((q,), (p,)))


class _Constant(nn.Module):
    """A decoder returning fixed loc and scale whatever the latent state."""

    def __init__(self, loc: float, scale: float, dims: int) -> None:
        super().__init__()
        self.loc, self.scale, self.dims = loc, scale, dims

    def forward(self, belief, state):
        shape = (*belief.shape[:-1], self.dims)
        return torch.full(shape, self.loc), torch.full(shape, self.scale)


def _frames(post_mean: float, prior_mean: float) -> TensorDict:
    b, t = 2, 3
    return TensorDict(
        {
            "next": {
                "state": torch.zeros(b, t, 1),
                "belief": torch.zeros(b, t, 1),
                "a": torch.ones(b, t, 2),
                "b": torch.zeros(b, t, 1),
                "posterior_mean": torch.full((b, t, 1), post_mean),
                "posterior_std": torch.ones(b, t, 1),
                "prior_mean": torch.full((b, t, 1), prior_mean),
                "prior_std": torch.ones(b, t, 1),
            }
        },
        [b, t],
    )


@pytest.mark.parametrize("nll_reweight", ["none", "dim_wise"])
def test_elbo_and_beta_nll_hand_values(nll_reweight):
    # Sensor a: 2 dims, target 1, N(0, 0.5^2); sensor b: 1 dim, target 0, N(0, 2.5^2).
    decoders = {
        "a": make_decoder(_Constant(0.0, 0.5, 2), "a", event_dim=1, learn_std=True),
        "b": make_decoder(_Constant(0.0, 2.5, 1), "b", event_dim=1, learn_std=True),
    }
    frames = _frames(post_mean=1.0, prior_mean=0.0)
    out = elbo_terms(decoders, frames, nll_reweight=nll_reweight, kl_scale=0.5)

    def log_normal(x, mu, sigma):
        return -0.5 * math.log(2 * math.pi) - math.log(sigma) - (x - mu) ** 2 / (2 * sigma**2)

    t = 3  # frames per window; the batch mean of identical rows is the row value
    rec_a = t * 2 * log_normal(1.0, 0.0, 0.5)
    rec_b = t * log_normal(0.0, 0.0, 2.5)
    kl = t * 0.5  # KL(N(1, 1) || N(0, 1)) = 1/2 per step
    assert out["recon_a"].item() == pytest.approx(rec_a, rel=1e-5)
    assert out["recon_b"].item() == pytest.approx(rec_b, rel=1e-5)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert out["elbo"].item() == pytest.approx(rec_a + rec_b - kl, rel=1e-5)
    if nll_reweight == "none":
        assert out["loss_recon"].item() == pytest.approx(-(rec_a + rec_b), rel=1e-5)
        assert out["loss_kl"].item() == pytest.approx(0.5 * kl, rel=1e-5)
    else:
        # beta-NLL: each log-likelihood dim weighted by its std; the KL of each step by the mean
        # std over all output dims of all sensors: (0.5 + 0.5 + 2.5) / 3.
        assert out["loss_recon"].item() == pytest.approx(-(0.5 * rec_a + 2.5 * rec_b), rel=1e-5)
        assert out["loss_kl"].item() == pytest.approx(0.5 * kl * 3.5 / 3, rel=1e-5)


def test_kl_only_drops_reconstruction():
    decoders = {"a": make_decoder(_Constant(0.0, 1.0, 2), "a", event_dim=1, learn_std=True)}
    out = elbo_terms(decoders, _frames(1.0, 0.0), kl_only=True)
    assert "loss_recon" not in out.keys()
    assert out["loss_kl"].item() == pytest.approx(1.5, rel=1e-5)
    with pytest.raises(ValueError, match="nll_reweight"):
        elbo_terms(decoders, _frames(1.0, 0.0), nll_reweight="per_modality")


class _Varying(nn.Module):
    """A decoder whose mean and std differ per batch row, time step and dim."""

    def __init__(self, dims: int, offset: float) -> None:
        super().__init__()
        self.dims, self.offset = dims, offset

    def forward(self, belief, state):
        b, t = belief.shape[:2]
        grid = torch.arange(b * t * self.dims, dtype=torch.float32).reshape(b, t, self.dims)
        return 0.1 * grid, self.offset + 0.05 * grid


def test_elbo_against_a_reference_computation():
    """Several latent dims, stds that vary with (b, t, d): the reference's ELBO formulas, written out."""
    b, t, d = 2, 4, 3
    gen = torch.Generator().manual_seed(0)
    frames = TensorDict(
        {
            "next": {
                "state": torch.zeros(b, t, 1),
                "belief": torch.zeros(b, t, 1),
                "x": torch.randn(b, t, 2, generator=gen),
                "y": torch.randn(b, t, 3, generator=gen),
                "posterior_mean": torch.randn(b, t, d, generator=gen),
                "posterior_std": torch.rand(b, t, d, generator=gen) + 0.2,
                "prior_mean": torch.randn(b, t, d, generator=gen),
                "prior_std": torch.rand(b, t, d, generator=gen) + 0.2,
            }
        },
        [b, t],
    )
    decoders = {
        "x": make_decoder(_Varying(2, 0.3), "x", event_dim=1, learn_std=True),
        "y": make_decoder(_Varying(3, 0.7), "y", event_dim=1, learn_std=True),
    }
    out = elbo_terms(decoders, frames, nll_reweight="dim_wise", kl_scale=0.7)

    def normal_logp(x, mu, sigma):
        return -0.5 * math.log(2 * math.pi) - sigma.log() - (x - mu) ** 2 / (2 * sigma**2)

    n = frames["next"]
    kl = torch.zeros(b, t)
    for i in range(b):
        for j in range(t):
            for k in range(d):
                mq, sq = n["posterior_mean"][i, j, k], n["posterior_std"][i, j, k]
                mp, sp = n["prior_mean"][i, j, k], n["prior_std"][i, j, k]
                kl[i, j] += torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5
    logp, weighted, std_sum = {}, 0.0, torch.zeros(b, t)
    for key, dims, offset in (("x", 2, 0.3), ("y", 3, 0.7)):
        mu, sigma = _Varying(dims, offset)(torch.zeros(b, t, 1), None)
        lp = normal_logp(n[key], mu, sigma)
        logp[key] = lp.sum((1, 2)).mean()
        weighted = weighted + (sigma * lp).sum((1, 2)).mean()
        std_sum += sigma.sum(-1)
    kl_weight = std_sum / 5  # mean std over all 5 output dims, per (b, t)
    assert out["recon_x"].item() == pytest.approx(logp["x"].item(), rel=1e-5)
    assert out["recon_y"].item() == pytest.approx(logp["y"].item(), rel=1e-5)
    assert out["kl"].item() == pytest.approx(kl.sum(1).mean().item(), rel=1e-5)
    assert out["elbo"].item() == pytest.approx((logp["x"] + logp["y"] - kl.sum(1).mean()).item(), rel=1e-5)
    assert out["loss_recon"].item() == pytest.approx(-weighted.item(), rel=1e-5)
    assert out["loss_kl"].item() == pytest.approx(0.7 * (kl * kl_weight).sum(1).mean().item(), rel=1e-5)


def test_uint8_targets_are_scaled():
    frames = _frames(0.0, 0.0)
    frames["next", "img"] = torch.full((2, 3, 1, 2, 2), 255, dtype=torch.uint8)

    class White(nn.Module):
        def forward(self, belief, state):
            return torch.ones(*belief.shape[:-1], 1, 2, 2)

    decoders = {"img": make_decoder(White(), "img", event_dim=3, learn_std=False)}
    out = elbo_terms(decoders, frames)
    # Target 255 -> 1.0 = the mean: only the normalising constant remains, 3 frames x 4 pixels.
    assert out["recon_img"].item() == pytest.approx(-0.5 * math.log(2 * math.pi) * 12, rel=1e-6)


def test_a_truncated_compiled_artefact_names_the_cache_folder(monkeypatch, tmp_path):
    """What an interrupted compilation leaves (a .so that fails to load) is said clearly: which folder
    to remove, or compile=false."""
    from aime_torchrl import RSSMWorldModel, WorldModelLoss

    wm = RSSMWorldModel.from_config({"observation": 4}, 2, belief_dim=8, state_dim=4, hidden=8)
    loss = WorldModelLoss(wm, compile=True)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))

    def truncated(*args, **kwargs):
        raise ImportError("/tmp/torchinductor_root/xy/cxy.so: file too short")

    monkeypatch.setattr(loss, "_window_elbo", truncated)
    with pytest.raises(RuntimeError, match=f"cannot be loaded .*file too short.*Remove the cache folder {tmp_path}"):
        loss(make_window(dims={"observation": 4}))
