# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The posterior rollout of TorchRL's DreamerV3 RSSM as one autograd node, with its own backward.

:class:`~aime_torchrl.modules.fused_filter.FusedRSSMFilter`'s counterpart for
:class:`~aime_torchrl.modules.core.DreamerV3Core`. A row of the filter is TorchRL's block GRU (the
belief's and state's projections, each ``Linear -> RMS norm -> SiLU``; the first block-linear layer,
its RMS norm and SiLU; the gates' block-linear layer; the gated update), the categorical posterior
(``Linear -> RMS norm -> SiLU -> Linear`` on the belief and the embedding) and its straight-through
one-hot sample (the unimix probabilities backward, each categorical's CDF inverted at external
uniform noise forward); in AIME's phase 2 the tanh-Gaussian policy acts inside it. Through autograd a
row records some 80 operations and replays them backward, each weight gradient a small GEMM per
row. :class:`FusedV3Filter` runs the rows forward keeping what the backward reads, goes back through
time for the activations only, then computes every weight gradient as one GEMM (one batched GEMM
over the blocks for the block-linear layers) over all rows and the batch. The parts that do not
depend on the previous row (the posterior's first layer on the embeddings, the block GRU's first
layer on the data's actions) are computed before the node, for the whole window, by autograd.

:func:`fused_v3_observe` returns the rows of
:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`; :class:`~aime_torchrl.modules.core.DreamerV3Core`
uses it where :func:`fusable_v3` recognises its modules, in eager mode.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from aime_torchrl.modules.fused_filter import (
    _pair_backward,
    _pair_forward,
    _pair_weight_grads,
    filter_rows,
    policy_in_filter,
)

_Norm = tuple[torch.Tensor, float] | None  # an RMS norm's (weight, eps), None for no norm


def _norm_silu(z: torch.Tensor, norm: _Norm) -> tuple[torch.Tensor, ...]:
    """``silu(rms_norm(z))``: returns the output, the SiLU's input and the norm's ``z / rms`` and ``1 / rms``."""
    if norm is None:
        return F.silu(z), z, z, z  # the last two unused
    weight, eps = norm
    inv_rms = torch.rsqrt(z.square().mean(-1, keepdim=True) + eps)
    normed = z * inv_rms
    pre = normed * weight
    return F.silu(pre), pre, normed, inv_rms


def _norm_silu_backward(g_out: torch.Tensor, pre: torch.Tensor, normed: torch.Tensor, inv_rms: torch.Tensor,
                        norm: _Norm) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_norm_silu` backward: the gradients of ``z`` and of the SiLU's input (for the norm's weight)."""
    sig = torch.sigmoid(pre)
    g_pre = g_out * sig * (1 + pre * (1 - sig))
    if norm is None:
        return g_pre, g_pre
    g_normed = g_pre * norm[0]
    return inv_rms * (g_normed - normed * (g_normed * normed).mean(-1, keepdim=True)), g_pre


def _blocks(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A block-linear map without bias: ``x [B, blocks * in]``, ``weight [blocks, in, out]`` -> ``[B, blocks * out]``."""
    blocks, block_in, block_out = weight.shape
    out = torch.bmm(x.reshape(-1, blocks, block_in).transpose(0, 1), weight)
    return out.transpose(0, 1).reshape(x.shape[0], blocks * block_out)


def _blocks_weight_grad(x: torch.Tensor, g: torch.Tensor, blocks: int) -> torch.Tensor:
    """The gradient of a block-linear map's weight over all rows: ``x [T, B, blocks * in]``, ``g [T, B, blocks * out]``."""
    x = x.reshape(-1, blocks, x.shape[-1] // blocks).permute(1, 2, 0)
    return torch.bmm(x, g.reshape(-1, blocks, g.shape[-1] // blocks).transpose(0, 1))


def _norm_weight_grad(g_pre: torch.Tensor, normed: torch.Tensor, norm: _Norm) -> torch.Tensor | None:
    return None if norm is None else (g_pre * normed).sum((0, 1))


class FusedV3Filter(torch.autograd.Function):
    """The posterior rollout ``(h_t, s_t, logits_t)`` of every row of a window, time-major, optionally
    with a tanh-Gaussian policy acting inside it (AIME's phase 2).

    ``spec = (eps, unimix, classes, policy)``: the RMS norms' eps (belief projection, state
    projection, hidden layer, posterior, action projection or ``None`` without its norm), the uniform
    mixture, the categoricals' ``(N, K)``, and ``None`` or the policy's ``(min_std, further layers,
    tanh limit, belief_first)``. Tensors (``T`` rows, batch ``B``, belief ``H`` in ``blocks``, state
    ``S = N K``, projections ``P``, hidden layer ``G``, posterior width ``Q``): ``acted_in [T, B, G]``
    (the first block-linear layer's part on the data's action, plus its bias), ``post_in [T, B, Q]``
    (the posterior's first layer on the embedding, plus its bias), ``uniform [T, B, N]``, ``state [B,
    S]`` and ``belief [B, H]`` (before row 0); the belief's projection (weight ``[P, H]``, bias, norm
    weight), the state's (``[P, S]``, bias, norm weight); the first block-linear layer's part on the
    two projections ``[2P, G]`` and on each block's own belief ``[blocks, H / blocks, G / blocks]``,
    its norm's weight; the gates' weight ``[blocks, G / blocks, 3 H / blocks]`` and bias; the
    posterior's first layer on the belief ``[Q, H]``, its norm's weight, its last layer's weight
    ``[S, Q]`` and bias. With a policy: the action's projection (``[P, A]``, bias, norm weight or
    ``None``), the first block-linear layer's part on it ``[P, G]``, the policy's noise ``[T, B, A]``,
    its first layers ``[2K', H + S]`` and biases and its further layers stacked by pairs; from row 1
    its action replaces the data's (row 0 keeps it: ``acted_in``).

    Returns beliefs, states and logits ``[T, B, .]``, and with a policy its actions, locs and
    scales ``[T, B, A]`` (row 0's action is zero: the data's is used).
    """

    @staticmethod
    def forward(ctx, spec, acted_in, post_in, uniform, state, belief, w_bp, b_bp, g_bp, w_sp, b_sp, g_sp,
                w_lat, own, g_hidden, w_gates, b_gates, w_pb, g_post, w_post, b_post, *rest):
        """The rollout, row by row, keeping what the backward reads (see the class)."""
        eps, unimix, (cats, classes), policy = spec
        n_bp, n_sp, n_hidden, n_post = ((g, e) for g, e in zip((g_bp, g_sp, g_hidden, g_post), eps))
        if policy is not None:
            p_min_std, p_count, limit, belief_first = policy
            w_a, b_a, g_a, w_act, action_noise, p_first, p_bias = rest[:7]
            p_layers = rest[7: 7 + 2 * p_count]
            n_a = None if g_a is None else (g_a, eps[4])
        steps, batch = acted_in.shape[:2]
        saved: dict[str, list[torch.Tensor]] = {}

        def keep(**values: torch.Tensor) -> None:
            for name, value in values.items():
                saved.setdefault(name, []).append(value)

        p_inputs: list[list[torch.Tensor]] = [[] for _ in range(policy[1] if policy else 0)]
        beliefs, states, logits_rows = [], [], []
        w_lat_belief, w_lat_state = w_lat.split(w_bp.shape[0])
        acted_rows, post_rows, uniform_rows = acted_in.unbind(0), post_in.unbind(0), uniform.unbind(0)
        noise_rows = action_noise.unbind(0) if policy is not None else ()
        for t in range(steps):
            keep(state=state, belief=belief)
            pb, pb_pre, pb_normed, pb_inv = _norm_silu(torch.addmm(b_bp, belief, w_bp.t()), n_bp)
            ps, ps_pre, ps_normed, ps_inv = _norm_silu(torch.addmm(b_sp, state, w_sp.t()), n_sp)
            x = torch.addmm(torch.addmm(acted_rows[t], pb, w_lat_belief), ps, w_lat_state) + _blocks(belief, own)
            keep(pb=pb, ps=ps, pb_pre=pb_pre, pb_normed=pb_normed, pb_inv=pb_inv,
                 ps_pre=ps_pre, ps_normed=ps_normed, ps_inv=ps_inv)
            if policy is not None:  # acts from the previous latents
                latents = torch.cat([belief, state] if belief_first else [state, belief], -1)
                out = _pair_forward(torch.addmm(p_bias, latents, p_first.t()), p_layers, p_inputs)
                loc, p_raw = out[0], out[1]
                scale = F.softplus(p_raw) + p_min_std
                action = torch.addcmul(loc, scale, noise_rows[t]).tanh().clamp(-limit, limit)
                if t:
                    pa, pa_pre, pa_normed, pa_inv = _norm_silu(torch.addmm(b_a, action, w_a.t()), n_a)
                    x = torch.addmm(x, pa, w_act)
                    keep(pa=pa, pa_pre=pa_pre, pa_normed=pa_normed, pa_inv=pa_inv)
                else:
                    action = torch.zeros_like(action)
                keep(action=action, loc=loc, scale=scale, p_raw=p_raw, p_in=latents)
            y, h_pre, h_normed, h_inv = _norm_silu(x, n_hidden)
            gates = (_blocks(y, w_gates) + b_gates).view(batch, own.shape[0], 3, -1)
            reset, candidate, update = (g.reshape(batch, -1) for g in gates.unbind(2))
            reset, update = reset.sigmoid(), (update - 1.0).sigmoid()  # the block GRU's update bias
            candidate_out = (reset * candidate).tanh()
            belief = update * candidate_out + (1 - update) * belief
            q, q_pre, q_normed, q_inv = _norm_silu(torch.addmm(post_rows[t], belief, w_pb.t()), n_post)
            logits = torch.addmm(b_post, q, w_post.t())
            probs = logits.view(batch, cats, classes).softmax(-1)
            mixed = (1 - unimix) * probs + unimix / classes if unimix > 0 else probs
            index = (uniform_rows[t].unsqueeze(-1) > mixed.cumsum(-1)).sum(-1, keepdim=True).clamp_max(classes - 1)
            one_hot = torch.zeros_like(mixed).scatter_(-1, index, 1.0)
            state = (mixed + (one_hot - mixed)).flatten(1)
            keep(y=y, h_pre=h_pre, h_normed=h_normed, h_inv=h_inv, reset=reset, candidate=candidate,
                 candidate_out=candidate_out, update=update, q=q, q_pre=q_pre, q_normed=q_normed, q_inv=q_inv,
                 probs=probs)
            beliefs.append(belief)
            states.append(state)
            logits_rows.append(logits)
        beliefs = torch.stack(beliefs)
        names = sorted(saved)
        ctx.spec, ctx.names = spec, names
        ctx.save_for_backward(
            beliefs, w_bp, g_bp, w_sp, g_sp, w_lat, own, g_hidden, w_gates, w_pb, g_post, w_post,
            *(torch.stack(saved[name]) for name in names), *(torch.stack(x) for x in p_inputs),
            *((w_a, g_a, w_act, action_noise, p_first, *p_layers) if policy else ()),
        )
        outputs = (beliefs, torch.stack(states), torch.stack(logits_rows))
        if policy is not None:
            outputs += tuple(torch.stack(saved[name]) for name in ("action", "loc", "scale"))
        return outputs

    @staticmethod
    def backward(ctx, g_belief, g_state, g_logits, *g_policy):
        """Backward through time for the activations, then each weight gradient as one GEMM over all rows."""
        eps, unimix, (cats, classes), policy = ctx.spec
        (beliefs, w_bp, g_bp, w_sp, g_sp, w_lat, own, g_hidden, w_gates, w_pb, g_post, w_post,
         *rest) = ctx.saved_tensors
        s = dict(zip(ctx.names, rest))
        rest = rest[len(ctx.names):]
        n_bp, n_sp, n_hidden, n_post = ((g, e) for g, e in zip((g_bp, g_sp, g_hidden, g_post), eps))
        if policy is not None:
            p_min_std, p_count, limit, belief_first = policy
            p_inputs, (w_a, g_a, w_act, action_noise, p_first, *p_layers) = rest[:p_count], rest[p_count:]
            n_a = None if g_a is None else (g_a, eps[4])
            p_grads: list[list[torch.Tensor]] = [[] for _ in range(p_count)]
            g_action_out, g_loc_out, g_scale_out = g_policy
        steps, batch = beliefs.shape[:2]
        width = w_bp.shape[0]
        d_belief = g_belief.new_zeros(g_belief.shape[1:])
        d_state = g_state.new_zeros(g_state.shape[1:])
        grads: dict[str, list[torch.Tensor]] = {}

        def keep(**values: torch.Tensor) -> None:
            for name, value in values.items():
                grads.setdefault(name, []).append(value)

        r = {name: value.unbind(0) for name, value in s.items()}  # row views, made at once
        g_belief, g_state, g_logits = g_belief.unbind(0), g_state.unbind(0), g_logits.unbind(0)
        if policy is not None:
            g_action_out, g_loc_out, g_scale_out = (x.unbind(0) for x in (g_action_out, g_loc_out, g_scale_out))
            noise_rows, p_input_rows = action_noise.unbind(0), [x.unbind(0) for x in p_inputs]
        for t in reversed(range(steps)):
            probs = r["probs"][t]
            g_probs = (g_state[t] + d_state).view(batch, cats, classes) * (1 - unimix)
            g_logit = g_logits[t] + (probs * (g_probs - (g_probs * probs).sum(-1, keepdim=True))).flatten(1)
            g_q1, g_q_pre = _norm_silu_backward(g_logit @ w_post, r["q_pre"][t], r["q_normed"][t], r["q_inv"][t], n_post)
            g_h = torch.addmm(g_belief[t] + d_belief, g_q1, w_pb)
            # the gated update, backward
            update, c_out, reset, candidate = r["update"][t], r["candidate_out"][t], r["reset"][t], r["candidate"][t]
            prev_belief = r["belief"][t]
            g_update = g_h * (c_out - prev_belief) * update * (1 - update)
            g_c = g_h * update * (1 - c_out * c_out)
            g_candidate = g_c * reset
            g_reset = g_c * candidate * reset * (1 - reset)
            g_gates = torch.stack([g.view(batch, own.shape[0], -1) for g in (g_reset, g_candidate, g_update)], 2)
            g_gates = g_gates.reshape(batch, -1)
            g_x, g_h_pre = _norm_silu_backward(_blocks(g_gates, w_gates.transpose(1, 2)), r["h_pre"][t],
                                               r["h_normed"][t], r["h_inv"][t], n_hidden)
            g_features = g_x @ w_lat.t()
            g_zb, g_pb_pre = _norm_silu_backward(g_features[:, :width], r["pb_pre"][t], r["pb_normed"][t],
                                                 r["pb_inv"][t], n_bp)
            g_zs, g_ps_pre = _norm_silu_backward(g_features[:, width:], r["ps_pre"][t], r["ps_normed"][t],
                                                 r["ps_inv"][t], n_sp)
            d_belief = torch.addmm(g_h * (1 - update) + _blocks(g_x, own.transpose(1, 2)), g_zb, w_bp)
            d_state = g_zs @ w_sp
            keep(logit=g_logit, q1=g_q1, q_pre=g_q_pre, gates=g_gates, x=g_x, h_pre=g_h_pre, zb=g_zb,
                 pb_pre=g_pb_pre, zs=g_zs, ps_pre=g_ps_pre)
            if policy is not None:  # the policy at row t acted from the same previous latents
                a_t = r["action"][t]
                if t:
                    g_za, g_pa_pre = _norm_silu_backward(g_x @ w_act.t(), r["pa_pre"][t - 1], r["pa_normed"][t - 1],
                                                         r["pa_inv"][t - 1], n_a)
                    keep(za=g_za, pa_pre=g_pa_pre)
                    g_pre = (g_action_out[t] + g_za @ w_a) * (1 - a_t * a_t) * (a_t.abs() < limit)
                else:
                    g_pre = torch.zeros_like(a_t)
                g_loc = g_loc_out[t] + g_pre
                g_p_raw = torch.addcmul(g_scale_out[t], g_pre, noise_rows[t]) * torch.sigmoid(r["p_raw"][t])
                g_px = _pair_backward(torch.stack([g_loc, g_p_raw]), p_layers, [x[t] for x in p_input_rows], p_grads)
                keep(p_first=g_px)
                g_latents = g_px @ p_first
                state_dim = d_state.shape[-1]
                g_b, g_s_prev = ((g_latents[:, :-state_dim], g_latents[:, -state_dim:]) if belief_first
                                 else (g_latents[:, state_dim:], g_latents[:, :state_dim]))
                d_belief = d_belief + g_b
                d_state = d_state + g_s_prev
        g = {name: torch.stack(rows[::-1]) for name, rows in grads.items()}
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        blocks = own.shape[0]
        weight_grads = [
            lambda: flat(g["zb"]).t() @ flat(s["belief"]), lambda: g["zb"].sum((0, 1)),
            lambda: _norm_weight_grad(g["pb_pre"], s["pb_normed"], n_bp),
            lambda: flat(g["zs"]).t() @ flat(s["state"]), lambda: g["zs"].sum((0, 1)),
            lambda: _norm_weight_grad(g["ps_pre"], s["ps_normed"], n_sp),
            lambda: flat(torch.cat([s["pb"], s["ps"]], -1)).t() @ flat(g["x"]),
            lambda: _blocks_weight_grad(s["belief"], g["x"], blocks),
            lambda: _norm_weight_grad(g["h_pre"], s["h_normed"], n_hidden),
            lambda: _blocks_weight_grad(s["y"], g["gates"], blocks), lambda: g["gates"].sum((0, 1)),
            lambda: flat(g["q1"]).t() @ flat(beliefs),
            lambda: _norm_weight_grad(g["q_pre"], s["q_normed"], n_post),
            lambda: flat(g["logit"]).t() @ flat(s["q"]), lambda: g["logit"].sum((0, 1)),
        ]
        if policy is not None:
            weight_grads += [
                lambda: flat(g["za"]).t() @ flat(s["action"][1:]), lambda: g["za"].sum((0, 1)),
                lambda: _norm_weight_grad(g["pa_pre"], s["pa_normed"], n_a),
                lambda: flat(s["pa"]).t() @ flat(g["x"][1:]),
                lambda: None,  # the policy's noise
                lambda: flat(g["p_first"]).t() @ flat(s["p_in"]), lambda: g["p_first"].sum((0, 1)),
            ]
        weight_grads = [grad() if need else None for grad, need in zip(weight_grads, ctx.needs_input_grad[6:])]
        if policy is not None:
            weight_grads += _pair_weight_grads(p_grads, p_inputs)
        return (None, g["x"], g["q1"], None, d_state, d_belief, *weight_grads)


def _rms_norm(module: nn.Module) -> bool:
    """Whether ``module`` computes ``F.rms_norm`` over its last dimension with its ``weight`` and ``eps``
    (TorchRL's DreamerV3 norm), checked on a probe: the class is private to TorchRL."""
    weight, eps = getattr(module, "weight", None), getattr(module, "eps", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 1 or not isinstance(eps, float):
        return False
    if len(list(module.parameters())) != 1:
        return False
    with torch.no_grad():
        probe = torch.randn(2, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight)
        return torch.allclose(module(probe), F.rms_norm(probe, (weight.shape[0],), weight, eps), atol=1e-5)


def _norm_linear_silu(mlp: nn.Module, norm_optional: bool = False) -> bool:
    """Whether ``mlp`` is ``Linear -> RMS norm -> SiLU`` (the norm may be ``nn.Identity`` if ``norm_optional``)."""
    modules = list(mlp) if isinstance(mlp, nn.Sequential) else []
    if len(modules) != 3 or type(modules[0]) is not nn.Linear or type(modules[2]) is not nn.SiLU:
        return False
    return (norm_optional and type(modules[1]) is nn.Identity) or _rms_norm(modules[1])


def fusable_v3(transition: nn.Module, posterior: nn.Module) -> bool:
    """Whether :class:`FusedV3Filter` computes this ``RSSMPriorV3``'s block GRU and ``RSSMPosteriorV3``:
    the projections ``Linear -> RMS norm -> SiLU`` (the action's norm optional), one hidden
    block-linear layer with its norm and SiLU, block-linear gates, and the posterior
    ``Linear -> RMS norm -> SiLU -> Linear``."""
    rnn = getattr(transition, "rnn", None)
    head = getattr(posterior, "obs_rnn_to_post_projector", None)
    if rnn is None or not isinstance(head, nn.Sequential) or len(head) != 4:
        return False
    hidden = list(getattr(rnn, "hidden_layers", []))
    return (
        all(_norm_linear_silu(getattr(rnn, name, None)) for name in ("belief_projection", "state_projection"))
        and _norm_linear_silu(getattr(rnn, "action_projection", None), norm_optional=True)
        and len(hidden) == 3 and getattr(hidden[0], "weight", torch.empty(0)).ndim == 3 and _rms_norm(hidden[1])
        and type(hidden[2]) is nn.SiLU and getattr(rnn.gates, "weight", torch.empty(0)).ndim == 3
        and type(head[0]) is nn.Linear and _rms_norm(head[1]) and type(head[2]) is nn.SiLU
        and type(head[3]) is nn.Linear
    )


def fused_v3_observe(
    core: object,
    embeddings: torch.Tensor,
    actions: torch.Tensor,
    state: torch.Tensor,
    belief: torch.Tensor,
    noise: Sequence[torch.Tensor],
    policy: nn.Module | None = None,
    policy_noise: Sequence[torch.Tensor] | None = None,
) -> dict:
    """:meth:`~aime_torchrl.modules.core.WorldModelCore.observe`'s rows of a
    :class:`~aime_torchrl.modules.core.DreamerV3Core` through :class:`FusedV3Filter`: ``embeddings
    [*B, T, E]``, ``actions [*B, T, A]``, ``state``/``belief`` ``[*B, .]`` before row 0, ``noise`` one
    standard normal ``[*B, N]`` per row, and optionally a ``policy``
    (:func:`~aime_torchrl.modules.fused_filter.fusable_policy`) acting from row 1 with
    ``policy_noise`` (one ``[*B, A]`` per row), its loc and scale under ``rows["outputs"]``.

    Examples:
        >>> import torch
        >>> from aime_torchrl.modules import RSSMWorldModel
        >>> core = RSSMWorldModel.from_config({"observation": 3}, 2, variant="dreamerv3", belief_dim=16, hidden=16,
        ...                                   categoricals=4, classes=4, vector_encoder=16).core
        >>> embeddings = core.encode({"observation": torch.randn(5, 7, 3)}, torch.Size([5, 7]))
        >>> actions = torch.zeros(5, 7, 2)
        >>> state, belief = core.initial(actions[:, 0])
        >>> rows = fused_v3_observe(core, embeddings, actions, state, belief, core.draw_noise(actions[:, 0], 7))
        >>> rows["next_state"].shape, rows["posterior"][0].shape
        (torch.Size([5, 7, 16]), torch.Size([5, 7, 4, 4]))
    """
    rnn, head = core.transition.rnn, core.posterior.obs_rnn_to_post_projector
    weights = core.filter_weights()
    state_dim, belief_dim = state.shape[-1], belief.shape[-1]
    batch_shape, steps = actions.shape[:-2], actions.shape[-2]
    time_major = lambda x: x.reshape(-1, steps, x.shape[-1]).transpose(0, 1)  # noqa: E731
    data_actions = actions if policy is None else actions[..., :1, :]
    acted = core.action_features(data_actions) @ weights.action + weights.bias
    if policy is not None:  # from row 1 the policy's action: the bias only, here
        acted = torch.cat([acted, weights.bias.expand(*batch_shape, steps - 1, -1)], -2)
    post_in = F.linear(embeddings, head[0].weight[:, belief_dim:], head[0].bias)
    uniform = torch.special.ndtr(time_major(torch.stack(list(noise), -2)))
    action_norm = rnn.action_projection[1]
    eps = tuple(m.eps for m in (rnn.belief_projection[1], rnn.state_projection[1], rnn.hidden_layers[1], head[1]))
    eps += (getattr(action_norm, "eps", None),)
    policy_spec, extra = None, []
    if policy is not None:
        policy_spec, policy_inputs = policy_in_filter(policy, actions, core.keys.belief, policy_noise, time_major)
        extra = [rnn.action_projection[0].weight, rnn.action_projection[0].bias,
                 action_norm.weight if eps[4] is not None else None, weights.action, *policy_inputs]
    bp, sp = rnn.belief_projection, rnn.state_projection
    outputs = FusedV3Filter.apply(
        (eps, core.latent.unimix, core.classes, policy_spec), time_major(acted), time_major(post_in), uniform,
        state.reshape(-1, state_dim), belief.reshape(-1, belief_dim), bp[0].weight, bp[0].bias, bp[1].weight,
        sp[0].weight, sp[0].bias, sp[1].weight, weights.latents, weights.own_block, rnn.hidden_layers[1].weight,
        rnn.gates.weight, rnn.gates.bias, weights.posterior_belief, head[1].weight, head[3].weight, head[3].bias,
        *extra,
    )
    logits = outputs[2].unflatten(-1, core.classes)
    return filter_rows(outputs[:2], (logits,), outputs[3:], state, belief, actions, policy)
