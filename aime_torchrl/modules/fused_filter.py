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
* in the loop, the mean and std MLPs run side by side as batched GEMMs (``bmm`` over the pair);
* backward through time carries only the gradients of the activations; every weight gradient is
  then one GEMM over all rows and the batch.

:func:`fused_observe` returns the rows of :meth:`~aime_torchrl.modules.core.WorldModelCore.observe`
(without an actor: phase 1's filter and the filter of the data's own actions);
:class:`~aime_torchrl.modules.core.RSSMCore` uses it where its modules have the shapes it handles
(:func:`fusable`), in eager mode (``torch.compile`` fuses the generic loop itself).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _elu_grad(activation: torch.Tensor) -> torch.Tensor:
    """ELU's derivative from its output: 1 where the input was positive, ``exp(x) = elu(x) + 1`` elsewhere."""
    return activation.clamp(max=0) + 1


class FusedRSSMFilter(torch.autograd.Function):
    """The posterior rollout ``(h_t, s_t, mean_t, std_t)`` of every row of a window, time-major.

    Inputs (``T`` rows, batch ``B``, belief ``H``, state ``S``, the posterior MLPs' width ``K``):
    ``gates_in [T, B, 3H]`` (the GRU input gates' action part plus its bias), ``hidden_in [T, B, 2K]``
    (the mean and std MLPs' first layers on the embedding, plus their biases), ``noise [T, B, S]``,
    ``state [B, S]`` and ``belief [B, H]`` (before row 0), the GRU's state part of the input weight
    ``[3H, S]``, its hidden weight ``[3H, H]`` and bias, the first layers' belief part ``[2K, H]``,
    ``min_std`` and, per further layer of the pair, its stacked weights ``[2, out, in]`` and biases
    ``[2, out]`` (the last one's ``out`` is ``S``). Returns beliefs, states, means and stds ``[T, B, .]``.

    Examples:
        >>> import torch
        >>> T, B, H, S, K = 3, 2, 6, 4, 5
        >>> args = [torch.randn(T, B, 3 * H), torch.randn(T, B, 2 * K), torch.randn(T, B, S),
        ...         torch.zeros(B, S), torch.zeros(B, H), torch.randn(3 * H, S), torch.randn(3 * H, H),
        ...         torch.zeros(3 * H), torch.randn(2 * K, H), 0.1, torch.randn(2, K, K), torch.zeros(2, K),
        ...         torch.randn(2, S, K), torch.zeros(2, S)]
        >>> [out.shape[-1] for out in FusedRSSMFilter.apply(*args)]
        [6, 4, 4, 4]
    """

    @staticmethod
    def forward(ctx, gates_in, hidden_in, noise, state, belief, w_state, w_hh, b_hh, w_first, min_std, *layers):
        weights, biases = layers[0::2], layers[1::2]
        batch = belief.shape[0]
        saved: dict[str, list[torch.Tensor]] = {name: [] for name in ("state", "belief", "r", "z", "n", "hn", "raw")}
        activations: list[list[torch.Tensor]] = [[] for _ in weights]  # the input of each further layer
        beliefs, states, means, stds = [], [], [], []
        for t in range(gates_in.shape[0]):
            saved["state"].append(state)
            saved["belief"].append(belief)
            gi = torch.addmm(gates_in[t], state, w_state.t())
            gh = torch.addmm(b_hh, belief, w_hh.t())
            i_r, i_z, i_n = gi.chunk(3, -1)
            h_r, h_z, h_n = gh.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(torch.addcmul(i_n, r, h_n))
            belief = torch.lerp(n, belief, z)  # (1 - z) n + z h
            x = F.elu(torch.addmm(hidden_in[t], belief, w_first.t())).view(batch, 2, -1).transpose(0, 1)
            for i, (weight, bias) in enumerate(zip(weights, biases)):
                activations[i].append(x)
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
                if i < len(weights) - 1:
                    x = F.elu(x)
            mean, raw = x[0], x[1]
            std = F.softplus(raw) + min_std
            state = torch.addcmul(mean, std, noise[t])
            for name, value in (("r", r), ("z", z), ("n", n), ("hn", h_n), ("raw", raw)):
                saved[name].append(value)
            beliefs.append(belief)
            states.append(state)
            means.append(mean)
            stds.append(std)
        beliefs = torch.stack(beliefs)
        ctx.save_for_backward(
            noise, w_state, w_hh, w_first, beliefs, *(torch.stack(saved[name]) for name in saved),
            *(torch.stack(a) for a in activations), *weights,
        )
        ctx.layers = len(weights)
        return beliefs, torch.stack(states), torch.stack(means), torch.stack(stds)

    @staticmethod
    def backward(ctx, g_belief, g_state, g_mean, g_std):
        noise, w_state, w_hh, w_first, beliefs, states, prev_beliefs, r, z, n, h_n, raw, *rest = ctx.saved_tensors
        activations, weights = rest[: ctx.layers], rest[ctx.layers:]
        steps, batch = noise.shape[:2]
        d_belief = g_belief.new_zeros(g_belief.shape[1:])
        d_state = g_state.new_zeros(g_state.shape[1:])
        std_slope = torch.sigmoid(raw)  # softplus'
        g_gates, g_hidden_gates, g_first = [], [], []
        g_layers: list[list[torch.Tensor]] = [[] for _ in weights]
        for t in reversed(range(steps)):
            g_s = g_state[t] + d_state
            g_x = torch.stack([g_mean[t] + g_s, torch.addcmul(g_std[t], g_s, noise[t]) * std_slope[t]])
            for i in reversed(range(len(weights))):
                g_layers[i].append(g_x)
                g_x = torch.bmm(g_x, weights[i]) * _elu_grad(activations[i][t])
            g_x = g_x.transpose(0, 1).reshape(batch, -1)  # [B, 2K]: the first layers' pre-activations
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
        g_gates, g_hidden_gates, g_first = (torch.stack(g[::-1]) for g in (g_gates, g_hidden_gates, g_first))
        rows = steps * batch
        flat = lambda x: x.reshape(rows, -1)  # noqa: E731
        grads_layers = []
        for i in range(len(weights)):
            g = torch.stack(g_layers[i][::-1])  # [T, 2, B, out]
            pair = lambda x: x.permute(1, 0, 2, 3).reshape(2, rows, -1)  # noqa: E731
            grads_layers += [torch.bmm(pair(g).transpose(1, 2), pair(activations[i])), g.sum((0, 2))]
        return (
            g_gates, g_first, None, d_state, d_belief,
            flat(g_gates).t() @ flat(states),
            flat(g_hidden_gates).t() @ flat(prev_beliefs),
            g_hidden_gates.sum((0, 1)),
            flat(g_first).t() @ flat(beliefs),
            None,
            *grads_layers,
        )


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
    mean, std = _linears(posterior.mean), _linears(posterior.std)
    if mean is None or std is None or len(mean) != len(std) or len(mean) < 2:
        return False
    return all(a.weight.shape == b.weight.shape and a.bias is not None and b.bias is not None
               for a, b in zip(mean, std)) and len({m.out_features for m in mean[:-1]}) == 1


def fused_observe(
    transition: nn.Module,
    posterior: nn.Module,
    embeddings: torch.Tensor,
    actions: torch.Tensor,
    state: torch.Tensor,
    belief: torch.Tensor,
    noise: Sequence[torch.Tensor] | None,
) -> dict:
    """:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`'s rows (no actor, no prior) through
    :class:`FusedRSSMFilter`: ``embeddings [*B, T, E]``, ``actions [*B, T, A]``, ``state``/``belief``
    ``[*B, .]`` before row 0, ``noise`` one ``[*B, S]`` per row (``None``: the posterior's mode).

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
    batch_shape, steps = actions.shape[:-2], actions.shape[-2]
    time_major = lambda x: x.reshape(-1, steps, x.shape[-1]).transpose(0, 1)  # noqa: E731
    gates_in = time_major(F.linear(actions, gru.weight_ih[:, state_dim:], gru.bias_ih))
    mean, std = _linears(posterior.mean), _linears(posterior.std)
    first_weight = torch.cat([mean[0].weight, std[0].weight])  # [2K, H + E]
    hidden_in = time_major(F.linear(embeddings, first_weight[:, belief_dim:], torch.cat([mean[0].bias, std[0].bias])))
    layers = []
    for m, s in zip(mean[1:], std[1:]):
        layers += [torch.stack([m.weight, s.weight]), torch.stack([m.bias, s.bias])]
    state0, belief0 = state.reshape(-1, state_dim), belief.reshape(-1, belief_dim)
    noise = torch.zeros_like(gates_in[..., :state_dim]) if noise is None else time_major(torch.stack(list(noise), -2))
    beliefs, states, means, stds = FusedRSSMFilter.apply(
        gates_in, hidden_in, noise, state0, belief0, gru.weight_ih[:, :state_dim], gru.weight_hh, gru.bias_hh,
        first_weight[:, :belief_dim], posterior.min_std, *layers,
    )
    batch_major = lambda x: x.transpose(0, 1).reshape(*batch_shape, steps, x.shape[-1])  # noqa: E731
    next_belief, next_state = batch_major(beliefs), batch_major(states)
    return {
        "state": torch.cat([state.unsqueeze(-2), next_state[..., :-1, :]], -2),
        "belief": torch.cat([belief.unsqueeze(-2), next_belief[..., :-1, :]], -2),
        "action": actions,
        "next_belief": next_belief,
        "next_state": next_state,
        "posterior": (batch_major(means), batch_major(stds)),
        "prior": None,
        "outputs": {},
    }
