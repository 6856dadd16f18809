# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Every key the losses, the world model, its rollout, the policy and the IDM read or write can be
renamed: both losses run on renamed keys, the frames hold only the new names, and the fast path
still computes the same ELBO."""
from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from tensordict.utils import unravel_key

from aime_torchrl import AIMELoss, make_policy, RSSMWorldModel, WorldModelLoss
from aime_torchrl.modules import FilteringActor, LatentKeys, RSSMCore, TanhGaussianActor
from aime_torchrl.trainers import total_loss
from conftest import make_window

DIMS = {"a": 3, "b": 2}
SIZES = {
    "rssm": dict(belief_dim=16, state_dim=6, hidden=16, idm=True),
    "dreamerv3": dict(belief_dim=16, hidden=16, categoricals=3, classes=4, blocks=2, vector_encoder=16),
}


def renamed() -> dict:
    """Every latent key under a new name, nested ones under another root."""
    names = {}
    for name, key in LatentKeys().as_dict().items():
        names[name] = ("latents", f"my_{name}") if isinstance(key, tuple) else f"my_{name}"
    return names


def read_by(loss, names: dict) -> dict:
    """The ``names`` of the keys ``loss`` reads (its ``_AcceptedKeys``)."""
    return {f.name: names[f.name] for f in fields(loss.tensor_keys)}


@pytest.mark.parametrize("variant", ["rssm", "dreamerv3"])
def test_every_key_renamed_both_losses_run(variant):
    names = renamed()
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config(DIMS, 2, variant=variant, keys=names, **SIZES[variant])
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16, keys=wm.keys)
    window = make_window(dims=DIMS).rename_key_("action", names["action"])

    phase1 = WorldModelLoss(wm)
    phase1.set_keys(**read_by(phase1, names))
    out = phase1(window)
    assert set(out.keys()) == set(phase1.out_keys)
    total_loss(out).backward()
    assert all(p.grad is not None for p in wm.parameters())

    phase2 = AIMELoss(wm, policy)
    phase2.set_keys(**read_by(phase2, names))
    demos = window.exclude(names["action"])
    out = phase2(demos)
    assert set(out.keys()) == set(phase2.out_keys)
    total_loss(out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())

    # The frames hold the new names only: nothing is written under a default name.
    frames = wm(wm.to_frames(window), policy=policy)
    written = {unravel_key(k) for k in frames.keys(True, True)}
    defaults = {unravel_key(k) for k in LatentKeys().as_dict().values()}
    defaults |= {("next", "state"), ("next", "belief")}
    assert not written & defaults
    assert {("next", "my_state"), ("next", "my_belief"), "my_state", "my_belief", "my_action"} <= written

    assert RSSMWorldModel.from_config(**wm.config).keys == wm.keys  # the saved config rebuilds the names too
    actor = FilteringActor(wm, policy)  # the test-time filter carries the renamed state in the env
    assert {"my_state", "my_belief"} <= set(actor.make_tensordict_primer().primers.keys())
    if variant == "rssm":
        idm = AIMELoss(wm, policy, use_idm=True)
        idm.set_keys(**read_by(idm, names))
        out = idm(demos)
        assert set(out.keys()) == set(idm.out_keys) == {"loss_action_kl", "action_kl", "elbo", "kl", "recon_a",
                                                        "recon_b"}


def test_renamed_keys_keep_the_fast_path_and_its_values():
    """Our RSSM on renamed keys runs on the tensor path and gives the default-keyed model's ELBO."""
    torch.manual_seed(0)
    wm = RSSMWorldModel.from_config(DIMS, 2, belief_dim=16, state_dim=6, hidden=16, keys=renamed())
    default = RSSMWorldModel.from_config(DIMS, 2, belief_dim=16, state_dim=6, hidden=16)
    default.load_state_dict(wm.state_dict())
    policy = make_policy(6, 16, 2, hidden=16, keys=wm.keys)
    assert isinstance(wm.core, RSSMCore) and isinstance(policy, TanhGaussianActor)
    default_policy = make_policy(6, 16, 2, hidden=16)
    default_policy.load_state_dict(policy.state_dict())
    window = make_window(dims=DIMS)
    for ours, theirs, data in [(WorldModelLoss(wm), WorldModelLoss(default), window.rename_key_("action", "my_action")),
                               (AIMELoss(wm, policy), AIMELoss(default, default_policy), window.exclude("my_action"))]:
        torch.manual_seed(1)
        value = ours(data)["elbo"]
        torch.manual_seed(1)
        expected = theirs(data.rename_key_("my_action", "action") if "my_action" in data.keys() else data)["elbo"]
        torch.testing.assert_close(value, expected)


def test_set_keys_the_world_model_does_not_write_is_refused_naming_the_fix():
    wm = RSSMWorldModel.from_config(DIMS, 2, belief_dim=16, state_dim=6, hidden=16)
    loss = AIMELoss(wm, make_policy(6, 16, 2, hidden=16))
    with pytest.raises(ValueError, match=r"set_keys\(state='z'\).*state='state'.*keys=LatentKeys\(state='z'\)"):
        loss.set_keys(state="z")
    assert loss.tensor_keys.state == "state"  # the loss still reads what the world model writes
    assert torch.isfinite(loss(make_window(dims=DIMS).exclude("action"))["elbo"])
    with pytest.raises(ValueError, match="must write 'my_action'.*keys=world_model.keys"):
        AIMELoss(RSSMWorldModel.from_config(DIMS, 2, belief_dim=16, state_dim=6, hidden=16, keys={"action": "my_action"}),
                 make_policy(6, 16, 2, hidden=16))
    with pytest.raises(ValueError, match="Unknown latent keys"):
        LatentKeys.of({"stat": "z"})


def test_each_loss_accepts_only_the_keys_it_reads():
    """set_keys takes the names a loss reads and refuses the others (e.g. the prior's parameters,
    which only the world model's own modules read)."""
    wm = RSSMWorldModel.from_config(DIMS, 2, belief_dim=16, state_dim=6, hidden=16, idm=True)
    policy = make_policy(6, 16, 2, hidden=16)
    expected = {
        WorldModelLoss(wm): {"action", "belief", "state", "encoded_latents"},
        AIMELoss(wm, policy): {"action", "belief", "state", "encoded_latents", "loc", "scale", "idm_loc", "idm_scale"},
    }
    for loss, names in expected.items():
        assert {f.name for f in fields(loss.tensor_keys)} == names
        with pytest.raises(ValueError):
            loss.set_keys(prior_mean=("next", "p"))
