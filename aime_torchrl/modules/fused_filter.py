# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior rollout of this package's RSSM as one autograd node, with its own backward.

The filter is sequential: each row runs the GRU transition and the posterior's two MLPs (mean and
std) on a small batch. Through autograd every row records some 40 operations and replays them
backward, each weight gradient a small GEMM per row. :class:`FusedRSSMFilter` does the same
arithmetic with fewer, larger operations, the way cuDNN runs an RNN:

* before the loop, the parts of the GRU's input gates that read the actions and the parts of the
  posterior's first layers that read the embeddings are two GEMMs over the whole window (autograd
  differentiates them, outside the node);
* in the loop, the mean and std MLPs run side by side as batched GEMMs (``bmm`` over the pair),
  the posterior's and, in AIME's phase 2, those of the policy acting inside the filter;
* backward through time carries only the gradients of the activations; every weight gradient is
  then one GEMM over all rows and the batch (none for a frozen world model).

:func:`fused_observe` returns the rows of :meth:`~aime_torchrl.modules.core.WorldModelCore.observe`
with no actor (phase 1) or a :func:`~aime_torchrl.modules.make_policy` actor (phase 2);
:class:`~aime_torchrl.modules.core.RSSMCore` uses it where its modules have the shapes it handles
(:func:`fusable`, :func:`fusable_policy`), in eager mode (``torch.compile`` fuses the generic loop
itself).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tensordict.utils import unravel_key
from torch.nn import functional as F

from aime_torchrl.modules.policy import TanhGaussianActor


def _elu_grad(activation: torch.Tensor) -> torch.Tensor:
    """ELU's derivative from its output: 1 where the input was positive, ``exp(x) = elu(x) + 1`` elsewhere."""
    return activation.clamp(max=0) + 1


def _pair_forward(first: torch.Tensor, layers: Sequence[torch.Tensor], inputs: list[list[torch.Tensor]]) -> torch.Tensor:
    """Two ELU MLPs side by side from their first layers' pre-activations ``first [B, 2K]``: each
    further layer one ``bmm`` over the pair (``layers``: stacked weights and biases); every layer's
    input is appended to ``inputs``. Returns the last layer's output ``[2, B, out]``."""
    x = F.elu(first).view(first.shape[0], 2, -1).transpose(0, 1)
    weights, biases = layers[0::2], layers[1::2]
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        inputs[i].append(x)
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        if i < len(weights) - 1:
            x = F.elu(x)
    return x


def _pair_backward(
    g_out: torch.Tensor, layers: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], grads: list[list[torch.Tensor]]
) -> torch.Tensor:
    """:func:`_pair_forward` backward at one row: from the gradient of its output ``[2, B, out]``
    (each layer's output gradient appended to ``grads``) to that of the first layers' pre-activations ``[B, 2K]``."""
    weights = layers[0::2]
    for i in reversed(range(len(weights))):
        grads[i].append(g_out)
        g_out = torch.bmm(g_out, weights[i]) * _elu_grad(inputs[i])
    return g_out.transpose(0, 1).reshape(g_out.shape[1], -1)


def _pair_weight_grads(grads: list[list[torch.Tensor]], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every further layer's weight and bias gradients, one batched GEMM over all rows each
    (``grads``: per layer, the rows' output gradients in reverse order; ``inputs``: ``[T, 2, B, in]``)."""
    out = []
    for g_rows, x in zip(grads, inputs):
        g = torch.stack(g_rows[::-1])  # [T, 2, B, out]
        pair = lambda y: y.permute(1, 0, 2, 3).reshape(2, -1, y.shape[-1])  # noqa: E731
        out += [torch.bmm(pair(g).transpose(1, 2), pair(x)), g.sum((0, 2))]
    return out


class FusedRSSMFilter(torch.autograd.Function):
    """The posterior rollout ``(h_t, s_t, mean_t, std_t)`` of every row of a window, time-major,
    optionally with a tanh-Gaussian policy acting inside it (AIME's phase 2).

    ``spec = (min_std, posterior_layers, policy)``: the posterior's std floor, its number of further
    layers, and ``None`` or the policy's ``(min_std, further layers, tanh limit, belief_first)``.
    Tensors (``T`` rows, batch ``B``, belief ``H``, state ``S``, action ``A``, the posterior MLPs'
    width ``K``): ``gates_in [T, B, 3H]`` (the GRU input gates' part from the data's actions plus
    their bias), ``hidden_in [T, B, 2K]`` (the mean and std MLPs' first layers on the embedding plus
    their biases), ``noise [T, B, S]``, ``state [B, S]`` and ``belief [B, H]`` (before row 0), the GRU's
    state part of the input weight ``[3H, S]``, its hidden weight ``[3H, H]`` and bias, the first
    layers' belief part ``[2K, H]``, then per further posterior layer its stacked weights
    ``[2, out, in]`` and biases ``[2, out]`` (the last ``out`` is ``S``). With a policy: the GRU's
    action part of the input weight ``[3H, A]``, the policy's noise ``[T, B, A]``, its first layers
    ``[2K', H + S]`` and biases ``[2K']`` and its further layers as the posterior's; from row 1 its
    action replaces the data's (row 0 keeps it: ``gates_in``).

    Returns beliefs, states, means and stds ``[T, B, .]``, and with a policy its actions, locs and
    scales ``[T, B, A]`` (row 0's action is zero: the data's is used).

    Examples:
        >>> import torch
        >>> T, B, H, S, K = 3, 2, 6, 4, 5
        >>> args = [torch.randn(T, B, 3 * H), torch.randn(T, B, 2 * K), torch.randn(T, B, S),
        ...         torch.zeros(B, S), torch.zeros(B, H), torch.randn(3 * H, S), torch.randn(3 * H, H),
        ...         torch.zeros(3 * H), torch.randn(2 * K, H), torch.randn(2, K, K), torch.zeros(2, K),
        ...         torch.randn(2, S, K), torch.zeros(2, S)]
        >>> [out.shape[-1] for out in FusedRSSMFilter.apply((0.1, 2, None), *args)]
        [6, 4, 4, 4]
    """

    @staticmethod
    def forward(ctx, spec, gates_in, hidden_in, noise, state, belief, w_state, w_hh, b_hh, w_first, *rest):
        """The rollout, row by row, keeping what the backward reads (see the class)."""
        min_std, count, policy = spec
        layers, rest = rest[: 2 * count], rest[2 * count:]
        if policy is not None:
            p_min_std, p_count, limit, belief_first = policy
            w_action, action_noise, p_first, p_bias = rest[:4]
            p_layers = rest[4: 4 + 2 * p_count]
        steps, batch = gates_in.shape[:2]
        names = ("state", "belief", "r", "z", "n", "hn", "raw", "action", "loc", "scale", "p_raw", "p_in")
        saved: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        inputs: list[list[torch.Tensor]] = [[] for _ in range(count)]
        p_inputs: list[list[torch.Tensor]] = [[] for _ in range(policy[1] if policy else 0)]
        beliefs, states, means, stds = [], [], [], []
        for t in range(steps):
            saved["state"].append(state)
            saved["belief"].append(belief)
            gi = torch.addmm(gates_in[t], state, w_state.t())
            if policy is not None:  # acts from the previous latents
                features = torch.cat([belief, state] if belief_first else [state, belief], -1)
                out = _pair_forward(torch.addmm(p_bias, features, p_first.t()), p_layers, p_inputs)
                loc, p_raw = out[0], out[1]
                scale = F.softplus(p_raw) + p_min_std
                action = torch.addcmul(loc, scale, action_noise[t]).tanh().clamp(-limit, limit)
                if t:
                    gi = torch.addmm(gi, action, w_action.t())
                else:
                    action = torch.zeros_like(action)
                for name, value in (("action", action), ("loc", loc), ("scale", scale), ("p_raw", p_raw),
                                    ("p_in", features)):
                    saved[name].append(value)
            gh = torch.addmm(b_hh, belief, w_hh.t())
            i_r, i_z, i_n = gi.chunk(3, -1)
            h_r, h_z, h_n = gh.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(torch.addcmul(i_n, r, h_n))
            belief = torch.lerp(n, belief, z)  # (1 - z) n + z h
            out = _pair_forward(torch.addmm(hidden_in[t], belief, w_first.t()), layers, inputs)
            mean, raw = out[0], out[1]
            std = F.softplus(raw) + min_std
            state = torch.addcmul(mean, std, noise[t])
            for name, value in (("r", r), ("z", z), ("n", n), ("hn", h_n), ("raw", raw)):
                saved[name].append(value)
            beliefs.append(belief)
            states.append(state)
            means.append(mean)
            stds.append(std)
        beliefs = torch.stack(beliefs)
        stacked = [torch.stack(saved[name]) for name in names if saved[name]]
        ctx.spec = spec
        ctx.save_for_backward(
            noise, w_state, w_hh, w_first, beliefs, *stacked, *(torch.stack(x) for x in inputs), *layers,
            *((w_action, action_noise, p_first, *(torch.stack(x) for x in p_inputs), *p_layers) if policy else ()),
        )
        outputs = (beliefs, torch.stack(states), torch.stack(means), torch.stack(stds))
        if policy is not None:
            outputs += tuple(stacked[7:10])  # actions, locs, scales
        return outputs

    @staticmethod
    def backward(ctx, g_belief, g_state, g_mean, g_std, *g_policy):
        """Backward through time for the activations, then each weight gradient as one GEMM over all rows."""
        min_std, count, policy = ctx.spec
        noise, w_state, w_hh, w_first, beliefs, states, prev_beliefs, r, z, n, h_n, raw, *rest = ctx.saved_tensors
        if policy is not None:
            p_min_std, p_count, limit, belief_first = policy
            actions, locs, scales, p_raws, p_features, *rest = rest
            g_action_out, g_loc_out, g_scale_out = g_policy
        inputs, layers, rest = rest[:count], rest[count: 3 * count], rest[3 * count:]
        if policy is not None:
            w_action, action_noise, p_first = rest[:3]
            p_inputs, p_layers = rest[3: 3 + p_count], rest[3 + p_count:]
            p_grads: list[list[torch.Tensor]] = [[] for _ in range(p_count)]
            g_p_first = []
        steps, batch = noise.shape[:2]
        state_dim = states.shape[-1]
        d_belief = g_belief.new_zeros(g_belief.shape[1:])
        d_state = g_state.new_zeros(g_state.shape[1:])
        std_slope = torch.sigmoid(raw)  # softplus'
        g_gates, g_hidden_gates, g_first = [], [], []
        grads: list[list[torch.Tensor]] = [[] for _ in range(count)]
        for t in reversed(range(steps)):
            g_s = g_state[t] + d_state
            g_out = torch.stack([g_mean[t] + g_s, torch.addcmul(g_std[t], g_s, noise[t]) * std_slope[t]])
            g_x = _pair_backward(g_out, layers, [x[t] for x in inputs], grads)  # the first layers' pre-activations
            g_first.append(g_x)
            g_h = torch.addmm(g_belief[t] + d_belief, g_x, w_first)
            # the GRU cell, backward
            z_t, n_t, r_t = z[t], n[t], r[t]
            g_n = g_h * (1 - z_t) * (1 - n_t * n_t)
            g_r = g_n * h_n[t] * r_t * (1 - r_t)
            g_z = g_h * (prev_beliefs[t] - n_t) * z_t * (1 - z_t)
            g_gi = torch.cat([g_r, g_z, g_n], -1)
            g_gh = torch.cat([g_r, g_z, g_n * r_t], -1)
            g_gates.append(g_gi)
            g_hidden_gates.append(g_gh)
            d_belief = torch.addmm(g_h * z_t, g_gh, w_hh)
            d_state = g_gi @ w_state
            if policy is not None:  # the policy at row t acted from the same previous latents
                a_t = actions[t]
                g_pre = g_action_out[t] + g_gi @ w_action if t else torch.zeros_like(a_t)
                g_pre = g_pre * (1 - a_t * a_t) * (a_t.abs() < limit)
                g_loc = g_loc_out[t] + g_pre
                g_p_raw = torch.addcmul(g_scale_out[t], g_pre, action_noise[t]) * torch.sigmoid(p_raws[t])
                g_px = _pair_backward(torch.stack([g_loc, g_p_raw]), p_layers, [x[t] for x in p_inputs], p_grads)
                g_p_first.append(g_px)
                g_features = g_px @ p_first
                g_b, g_s_prev = ((g_features[:, :-state_dim], g_features[:, -state_dim:]) if belief_first
                                 else (g_features[:, state_dim:], g_features[:, :state_dim]))
                d_belief = d_belief + g_b
                d_state = d_state + g_s_prev
        g_gates, g_hidden_gates, g_first = (torch.stack(g[::-1]) for g in (g_gates, g_hidden_gates, g_first))
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        needs = ctx.needs_input_grad
        weight_grads = [
            flat(g_gates).t() @ flat(states) if needs[6] else None,
            flat(g_hidden_gates).t() @ flat(prev_beliefs) if needs[7] else None,
            g_hidden_gates.sum((0, 1)) if needs[8] else None,
            flat(g_first).t() @ flat(beliefs) if needs[9] else None,
        ]
        layer_grads = _pair_weight_grads(grads, inputs) if any(needs[10: 10 + 2 * count]) else [None] * 2 * count
        policy_grads = []
        if policy is not None:
            g_p_first = torch.stack(g_p_first[::-1])
            policy_grads = [
                flat(g_gates[1:]).t() @ flat(actions[1:]) if needs[10 + 2 * count] else None,
                None,
                flat(g_p_first).t() @ flat(p_features),
                g_p_first.sum((0, 1)),
                *_pair_weight_grads(p_grads, p_inputs),
            ]
        return (None, g_gates, g_first, None, d_state, d_belief, *weight_grads, *layer_grads, *policy_grads)


def _linears(mlp: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of an ``[Linear, ELU] * k + [Linear]`` MLP (``None`` for any other)."""
    modules = list(mlp)
    kinds = [(nn.Linear if i % 2 == 0 else nn.ELU) for i in range(len(modules))]
    if len(modules) % 2 == 0 or any(type(m) is not kind for m, kind in zip(modules, kinds)):
        return None
    if any(type(m) is nn.ELU and m.alpha != 1.0 for m in modules):
        return None
    return modules[0::2]


def fusable(transition: nn.Module, posterior: nn.Module) -> bool:
    """Whether :class:`FusedRSSMFilter` computes this transition and posterior: a GRU on ``[s, a]``
    (the RSSM, not the RSSMO's input layer) and the softplus posterior of two ELU MLPs of one width,
    no LayerNorm."""
    if not isinstance(transition.input_layer, nn.Identity) or getattr(posterior, "std_mapping", None) != "softplus":
        return False
    return _pair_of_mlps(_linears(posterior.mean), _linears(posterior.std))


def fusable_policy(policy: object, belief_key: object, state_key: object) -> bool:
    """Whether :class:`FusedRSSMFilter` runs ``policy`` inside the filter: :func:`~aime_torchrl.modules.make_policy`'s
    tanh-Gaussian actor in ``[-1, 1]`` on ``[belief, state]`` (either order), ELU MLPs of one width."""
    if not isinstance(policy, TanhGaussianActor) or policy.bounds is not None:
        return False
    if sorted(map(str, policy.feature_keys)) != sorted(str(unravel_key(k)) for k in (belief_key, state_key)):
        return False
    net = policy.module[0].module
    mean, std = _linears(net.mean), _linears(net.std)
    return _pair_of_mlps(mean, std)


def _pair_of_mlps(mean: list[nn.Linear] | None, std: list[nn.Linear] | None) -> bool:
    if mean is None or std is None or len(mean) != len(std) or len(mean) < 2:
        return False
    return all(a.weight.shape == b.weight.shape and a.bias is not None and b.bias is not None
               for a, b in zip(mean, std)) and len({m.out_features for m in mean[:-1]}) == 1


def _stacked(mean: list[nn.Linear], std: list[nn.Linear]) -> list[torch.Tensor]:
    """The further layers of a pair of MLPs as stacked weights ``[2, out, in]`` and biases ``[2, out]``."""
    layers = []
    for m, s in zip(mean[1:], std[1:]):
        layers += [torch.stack([m.weight, s.weight]), torch.stack([m.bias, s.bias])]
    return layers


def fused_observe(
    transition: nn.Module,
    posterior: nn.Module,
    embeddings: torch.Tensor,
    actions: torch.Tensor,
    state: torch.Tensor,
    belief: torch.Tensor,
    noise: Sequence[torch.Tensor] | None,
    policy: nn.Module | None = None,
    policy_noise: Sequence[torch.Tensor] | None = None,
    belief_key: object = "belief",
) -> dict:
    """:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`'s rows through
    :class:`FusedRSSMFilter`: ``embeddings [*B, T, E]``, ``actions [*B, T, A]``, ``state``/``belief``
    ``[*B, .]`` before row 0, ``noise`` one ``[*B, S]`` per row (``None``: the posterior's mode), and
    optionally a ``policy`` (:func:`fusable_policy`) acting from row 1 with ``policy_noise`` (one
    ``[*B, A]`` per row), its loc and scale under ``rows["outputs"]`` (``belief_key``: the feature
    key of the belief, to order its features).

    Examples:
        >>> import torch
        >>> from aime_torchrl.modules import RSSMWorldModel
        >>> core = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16).core
        >>> embeddings, actions = core.encode({"observation": torch.randn(5, 7, 3)}, torch.Size([5, 7])), torch.zeros(5, 7, 2)
        >>> state, belief = core.initial(actions[:, 0])
        >>> rows = fused_observe(core.transition, core.posterior, embeddings, actions, state, belief, None)
        >>> rows["next_state"].shape, rows["posterior"][1].shape
        (torch.Size([5, 7, 4]), torch.Size([5, 7, 4]))
    """
    gru = transition.gru
    state_dim, belief_dim = state.shape[-1], belief.shape[-1]
    steps = actions.shape[-2]
    time_major = lambda x: x.reshape(-1, steps, x.shape[-1]).transpose(0, 1)  # noqa: E731
    w_action = gru.weight_ih[:, state_dim:]
    data_actions = actions if policy is None else torch.cat([actions[..., :1, :], torch.zeros_like(actions[..., 1:, :])], -2)
    gates_in = time_major(F.linear(data_actions, w_action, gru.bias_ih))
    mean, std = _linears(posterior.mean), _linears(posterior.std)
    first_weight = torch.cat([mean[0].weight, std[0].weight])  # [2K, H + E]
    hidden_in = time_major(F.linear(embeddings, first_weight[:, belief_dim:], torch.cat([mean[0].bias, std[0].bias])))
    state0, belief0 = state.reshape(-1, state_dim), belief.reshape(-1, belief_dim)
    noise = torch.zeros_like(gates_in[..., :state_dim]) if noise is None else time_major(torch.stack(list(noise), -2))
    policy_spec, extra = None, []
    if policy is not None:
        policy_spec, policy_inputs = policy_in_filter(policy, actions, belief_key, policy_noise, time_major)
        extra = [w_action, *policy_inputs]
    outputs = FusedRSSMFilter.apply(
        (posterior.min_std, len(mean) - 1, policy_spec), gates_in, hidden_in, noise, state0, belief0,
        gru.weight_ih[:, :state_dim], gru.weight_hh, gru.bias_hh, first_weight[:, :belief_dim], *_stacked(mean, std),
        *extra,
    )
    return filter_rows(outputs[:2], outputs[2:4], outputs[4:], state, belief, actions, policy)


def policy_in_filter(policy: nn.Module, actions: torch.Tensor, belief_key: object,
                     policy_noise: Sequence[torch.Tensor] | None, time_major) -> tuple[tuple, list[torch.Tensor]]:
    """A :func:`fusable_policy`'s part of a fused filter's inputs: its spec ``(min_std, further layers,
    tanh limit, belief_first)`` and its tensors (its noise time-major, drawn if ``None``; its mean and std
    MLPs' first layers and biases side by side; their further layers stacked by pairs)."""
    net = policy.module[0].module
    p_mean, p_std = _linears(net.mean), _linears(net.std)
    limit = 1.0 - torch.finfo(actions.dtype).resolution
    belief_first = unravel_key(policy.feature_keys[0]) == unravel_key(belief_key)
    if policy_noise is None:
        policy_noise = [torch.randn_like(actions[..., 0, :]) for _ in range(actions.shape[-2])]
    tensors = [time_major(torch.stack(list(policy_noise), -2)), torch.cat([p_mean[0].weight, p_std[0].weight]),
               torch.cat([p_mean[0].bias, p_std[0].bias]), *_stacked(p_mean, p_std)]
    return (net.min_std, len(p_mean) - 1, limit, belief_first), tensors


def filter_rows(latents: Sequence[torch.Tensor], posterior: Sequence[torch.Tensor], acting: Sequence[torch.Tensor],
                state: torch.Tensor, belief: torch.Tensor, actions: torch.Tensor, policy: nn.Module | None) -> dict:
    """:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`'s rows from a fused filter's time-major
    outputs: ``latents`` (beliefs, states), the ``posterior``'s parameters and, with a ``policy``,
    ``acting`` (its actions, locs and scales; row 0 keeps the data's action)."""
    batch_shape, steps = actions.shape[:-2], actions.shape[-2]
    batch_major = lambda x: x.transpose(0, 1).reshape(*batch_shape, steps, *x.shape[2:])  # noqa: E731
    next_belief, next_state = (batch_major(x) for x in latents)
    rows = {
        "state": torch.cat([state.unsqueeze(-2), next_state[..., :-1, :]], -2),
        "belief": torch.cat([belief.unsqueeze(-2), next_belief[..., :-1, :]], -2),
        "action": actions,
        "next_belief": next_belief,
        "next_state": next_state,
        "posterior": tuple(batch_major(x) for x in posterior),
        "prior": None,
        "outputs": {},
    }
    if policy is not None:
        acted, loc, scale = (batch_major(x) for x in acting)
        rows["action"] = torch.cat([actions[..., :1, :], acted[..., 1:, :]], -2)
        rows["outputs"] = dict(zip(policy.written[1:], (loc, scale)))
    return rows
