# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torchrl.envs.utils import exploration_type, ExplorationType

from aime_torchrl import AIMELoss, make_policy, WorldModelLoss
from aime_torchrl.trainers import total_loss
from conftest import DEVICES, make_window, small_world_model


class ReplayActions(TensorDictModuleBase):
    """A "policy" that feeds given actions, in order, in place of sampled ones.

    The rollout calls the policy once per frame; the first call (the initial frame, whose action
    is not the policy's) is discarded, so call k >= 1 must return a_{k-1}.
    """

    in_keys = ["state", "belief"]
    out_keys = ["action"]

    def __init__(self, actions: torch.Tensor) -> None:
        super().__init__()
        self.actions = actions
        self.calls = 0

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        td.set("action", self.actions[:, max(self.calls - 1, 0)])
        self.calls += 1
        return td


class Spy(TensorDictModuleBase):
    """Wraps a policy and calls ``record(td)`` on its inputs and outputs at every step of the rollout."""

    def __init__(self, policy: TensorDictModuleBase, record) -> None:
        super().__init__()
        self.policy, self.record = policy, record
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        td = self.policy(td)
        self.record(td)
        return td


@pytest.mark.parametrize("nll_reweight", ["none", "dim_wise"])
@pytest.mark.parametrize("kl_balance", [None, 0.8])
def test_true_actions_give_the_phase1_elbo(nll_reweight, kl_balance):
    dims = {"a": 3, "b": 2}
    wm = small_world_model(dims)
    window = make_window(dims=dims, time=6)
    options = dict(nll_reweight=nll_reweight, kl_balance=kl_balance)

    torch.manual_seed(1)
    phase1 = WorldModelLoss(wm, **options)(window)
    torch.manual_seed(1)  # same posterior noise
    phase2 = AIMELoss(wm, ReplayActions(window["action"]), **options)(window)
    for key in ("elbo", "kl", "recon_a", "recon_b", "loss_recon", "loss_kl"):
        torch.testing.assert_close(phase2[key], phase1[key], msg=key)
    assert phase2["action_mse"].item() == pytest.approx(0.0, abs=1e-12)

    # The match is not trivial: the policy's own actions give another ELBO.
    torch.manual_seed(1)
    other = AIMELoss(wm, make_policy(wm.state_dim, wm.belief_dim, 2, hidden=8), **options)(window)
    assert not torch.allclose(other["elbo"], phase1["elbo"])


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_the_policy_only(device):
    wm = small_world_model(device=device)
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16, device=device)
    loss = AIMELoss(wm, policy)
    assert {id(p) for p in loss.parameters()} == {id(p) for p in policy.parameters()}
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    # An optimiser that (wrongly) holds the world model too must still leave it untouched.
    optim = torch.optim.Adam([*policy.parameters(), *wm.parameters()], lr=1e-2)
    demos = make_window(device=device).exclude("action")
    out = loss(demos)
    assert "action_mse" not in out.keys()
    total_loss(out).backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in wm.named_parameters():
        assert p.grad is None, name
        assert p.requires_grad, f"{name}: the world model must be handed back trainable"
    optim.step()
    for k, v in wm.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_actions_are_sampled_inside_the_loss():
    wm = small_world_model()
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    seen = []

    def record(td):
        seen.append(exploration_type())
        seen.append(bool((td["action"] - td["loc"].tanh()).abs().max() > 1e-4))

    AIMELoss(wm, Spy(policy, record))(make_window())
    assert set(seen[0::2]) == {ExplorationType.RANDOM}
    assert all(seen[1::2]), "actions must be reparameterised samples, not tanh(loc)"


def test_ablations():
    wm = small_world_model()
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    demos = make_window()
    kl_only = AIMELoss(wm, policy, kl_only=True)(demos)
    assert "loss_recon" not in kl_only.keys() and kl_only["loss_kl"] > 0
    recon_only = AIMELoss(wm, policy, kl_scale=0.0)(demos)
    assert recon_only["loss_kl"].item() == 0.0 and recon_only["kl"] > 0


def test_partly_frozen_world_model_stays_as_the_user_left_it():
    wm = small_world_model()
    wm.prior.requires_grad_(False)  # the first parameters frozen, the rest trainable
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    total_loss(AIMELoss(wm, policy)(make_window())).backward()
    assert all(p.grad is None for p in wm.parameters())
    assert not any(p.requires_grad for p in wm.prior.parameters())
    assert all(p.requires_grad for p in wm.posterior.parameters())


def test_gradient_flows_through_the_policy_inputs():
    """Spec: the policy inputs are not detached; d loss / d s_{t-1} reaches every action's input."""
    wm = small_world_model()
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    inputs = []

    def record(td):
        if td["state"].requires_grad:
            td["state"].retain_grad()
        inputs.append(td["state"])

    total_loss(AIMELoss(wm, Spy(policy, record))(make_window(time=5))).backward()
    # Rows 0..5. Row 0 reads the zero initial state and row 1 the state of frame 0, which no
    # policy action produced; from row 2 on each input depends on earlier actions.
    assert len(inputs) == 6
    for t, state in enumerate(inputs[2:], start=2):
        assert state.requires_grad and state.grad is not None and state.grad.abs().sum() > 0, t


def test_policy_must_write_the_action():
    wm = small_world_model()
    wrong = TensorDictModule(torch.nn.Linear(wm.feature_dim, 2), in_keys=["belief", "state"], out_keys=["act"])
    with pytest.raises(ValueError, match="must write 'action'"):
        AIMELoss(wm, wrong)


def test_phase_two_computes_no_world_model_weight_gradient():
    """The world model is frozen once: a view whose weights alias the model's and need no gradient,
    following in-place updates of the model (load_state_dict)."""
    wm = small_world_model()
    policy = make_policy(wm.state_dim, wm.belief_dim, 2, hidden=16)
    loss = AIMELoss(wm, policy)
    frozen = loss._frozen()
    assert loss._frozen() is frozen  # built once
    for p, q in zip(wm.parameters(), frozen.parameters()):
        assert not q.requires_grad and p.requires_grad and q.data_ptr() == p.data_ptr()
    other = small_world_model()
    wm.load_state_dict(other.state_dict())
    for p, q in zip(other.parameters(), loss._frozen().parameters()):
        assert torch.equal(p, q)
    out = loss(make_window())
    policy_params = {id(p) for p in policy.parameters()}
    fn_stack, seen, leaves = [total_loss(out).grad_fn], set(), set()
    while fn_stack:  # walk the autograd graph: its only leaves are the policy's weights
        fn = fn_stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            leaves.add(id(fn.variable))
        fn_stack.extend(f for f, _ in fn.next_functions)
    assert leaves == policy_params


def test_bad_inputs_are_refused_with_errors_naming_them():
    wm = small_world_model()
    loss = WorldModelLoss(wm)
    window = make_window()
    wrong_width = r"observation has shape \(5,\) per frame, but the world model reads observation as \(4,\)"
    with pytest.raises(ValueError, match=wrong_width):
        loss(make_window(dims={"observation": 5}))
    with pytest.raises(TypeError, match="observation is torch.float64 but the world model computes in torch.float32"):
        loss(window.double())
    with pytest.raises(ValueError, match="no step"):
        loss(window[:, :0])
    with pytest.raises(ValueError, match=r"action has shape \(3,\) per frame, but the world model reads action as \(2,\)"):
        loss(make_window(action_dim=3))
    broken = window.clone()
    broken["next", "observation"][0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in next\.observation"):
        WorldModelLoss(wm)(broken)
    with pytest.raises(ValueError, match="maps 22 features to 3 actions, but the world model has 22 .* and 2 actions"):
        AIMELoss(wm, make_policy(6, 16, 3, hidden=16))
    loss(window)  # a good window passes
