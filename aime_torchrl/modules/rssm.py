# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The pieces of the recurrent state-space model (RSSM) of AIME.

The latent state of frame t is ``belief`` h_t (deterministic, a GRU state) and ``state`` s_t
(stochastic, a diagonal Gaussian). One filtering step is

    h_t = GRU([s_{t-1}, a_{t-1}], h_{t-1})                     (RSSMTransition)
    p(s_t | h_t)      = N(prior_mean, prior_std)                (GaussianHead on h_t)
    q(s_t | h_t, e_t) = N(posterior_mean, posterior_std)        (GaussianHead on [h_t, e_t])

Only the transition and the posterior are sequential; the prior heads are evaluated after the loop,
batched over the whole window (see :class:`~aime_torchrl.modules.PosteriorRollout`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aime_torchrl.modules.mlp import make_mlp


class RSSMTransition(nn.Module):
    """Deterministic transition ``h_t = GRUCell(x_t, h_{t-1})`` with ``x_t`` built from ``[s_{t-1}, a_{t-1}]``.

    With ``input_hidden=None`` (RSSM, Dreamer-v1 style as in the AIME walker config) the GRU reads
    ``[s, a]`` directly; otherwise (RSSMO) ``x = SiLU(LayerNorm(Linear_{input_hidden}([s, a])))``.

    Args:
        state_dim (int): size of the stochastic state.
        action_dim (int): size of the action.
        belief_dim (int, optional): size of the GRU state. Defaults to ``512``.

    Keyword Args:
        input_hidden (int, optional): width of the RSSMO input layer. Defaults to ``None`` (RSSM).
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    The forward signature ``(state, belief, action) -> belief`` follows
    :class:`torchrl.modules.RSSMPrior`, so the module drops into TorchRL's Dreamer key scheme.

    Examples:
        >>> import torch
        >>> transition = RSSMTransition(128, 6, 512)
        >>> transition(torch.zeros(4, 128), torch.zeros(4, 512), torch.zeros(4, 6)).shape
        torch.Size([4, 512])
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        belief_dim: int = 512,
        *,
        input_hidden: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if input_hidden is None:
            self.input_layer = nn.Identity()
            gru_input = state_dim + action_dim
        else:
            self.input_layer = nn.Sequential(
                nn.Linear(state_dim + action_dim, input_hidden, device=device),
                nn.LayerNorm(input_hidden, device=device),
                nn.SiLU(),
            )
            gru_input = input_hidden
        self.gru = nn.GRUCell(gru_input, belief_dim, device=device)

    def forward(self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.gru(self.input_layer(torch.cat([state, action], -1)), belief)


class GaussianHead(nn.Module):
    """A diagonal Gaussian over the stochastic state, from the concatenation of its inputs.

    Two parameterisations of the reference:

    * ``std_mapping="softplus"`` (RSSM): separate mean and std MLPs, ``std = softplus(x) + min_std``;
    * ``std_mapping="sigmoid"`` (RSSMO): one MLP with ``2 * state_dim`` outputs,
      ``std = 2 * sigmoid(x / 2) + min_std`` (the reference uses ``min_std=0.1``).

    Args:
        in_features (int): total size of the inputs (``belief`` for the prior, ``belief`` plus
            the embedding for the posterior).
        state_dim (int): size of the stochastic state.

    Keyword Args:
        hidden (int, optional): width of the hidden layers. Defaults to ``128``.
        layers (int, optional): number of hidden layers. Defaults to ``2``.
        activation (type[nn.Module], optional): activation class. Defaults to :class:`~torch.nn.ELU`.
        norm (bool, optional): LayerNorm after each hidden layer. Defaults to ``False``.
        std_mapping (str, optional): ``"softplus"`` or ``"sigmoid"``. Defaults to ``"softplus"``.
        min_std (float, optional): lower bound of the std. Defaults to ``1e-6`` (the RSSM walker
            config inherits this global default).
        sample (bool, optional): also return a reparameterised sample ``mean + std * eps`` (used for
            the posterior). Defaults to ``False``.
        device (torch.device, optional): device of the parameters. Defaults to ``None``.

    Examples:
        >>> import torch
        >>> posterior = GaussianHead(512 + 24, 128, sample=True)
        >>> mean, std, state = posterior(torch.zeros(4, 512), torch.zeros(4, 24))
        >>> state.shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        in_features: int,
        state_dim: int,
        *,
        hidden: int = 128,
        layers: int = 2,
        activation: type[nn.Module] = nn.ELU,
        norm: bool = False,
        std_mapping: str = "softplus",
        min_std: float = 1e-6,
        sample: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if std_mapping not in ("softplus", "sigmoid"):
            raise ValueError(f"std_mapping must be 'softplus' or 'sigmoid', got {std_mapping!r}.")
        self.std_mapping = std_mapping
        self.min_std = min_std
        self.sample = sample
        mlp_args = (hidden, layers, activation, norm, device)
        if std_mapping == "softplus":
            self.mean = make_mlp(in_features, state_dim, *mlp_args)
            self.std = make_mlp(in_features, state_dim, *mlp_args)
        else:
            self.net = make_mlp(in_features, 2 * state_dim, *mlp_args)

    def params(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and std of the Gaussian, never sampled (the fast filter step adds its own noise)."""
        x = torch.cat(inputs, -1) if len(inputs) > 1 else inputs[0]
        if self.std_mapping == "softplus":
            return self.mean(x), F.softplus(self.std(x)) + self.min_std
        mean, raw = self.net(x).chunk(2, -1)
        return mean, 2 * torch.sigmoid(raw / 2) + self.min_std

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, std = self.params(*inputs)
        if not self.sample:
            return mean, std
        return mean, std, mean + std * torch.randn_like(std)
