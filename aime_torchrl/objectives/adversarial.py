# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The discriminator of an adversarial imitation reward: demonstrations' latents against the agent's."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from aime_torchrl.modules.discriminator import EXPERT_LOGIT


class AdversarialRewardLoss(LossModule):
    """Binary cross-entropy of a discriminator (:func:`~aime_torchrl.modules.make_discriminator`)
    telling the demonstrations' latents (``expert`` true) from the agent's (``expert`` false), each
    class weighted equally, plus an optional R1 gradient penalty on the demonstrations' latents
    (Mescheder et al. 2018) that keeps the reward smooth where the policy is pulled.

    The latents are the world model's posterior ones (``belief``, ``state``): the demonstrations
    filtered with the policy inferring their actions (as :class:`~aime_torchrl.AIMELoss` does), the
    agent's from its own online episodes; give them detached.

    Args:
        discriminator (TensorDictModuleBase): reads ``belief`` and ``state``, writes ``expert_logit``.

    Keyword Args:
        gradient_penalty (float, optional): weight of the R1 penalty. Defaults to ``0.0``.

    Keys (``set_keys``): ``belief``, ``state``, ``expert`` (``[N]`` booleans), ``expert_logit``.

    Returns ``loss_discriminator`` (and ``loss_gradient_penalty`` with a penalty), and, detached,
    ``expert_accuracy`` and ``agent_accuracy`` (the share of each class told right).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import RSSMWorldModel, make_discriminator
        >>> wm = RSSMWorldModel.from_config({"observation": 3}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> loss = AdversarialRewardLoss(make_discriminator(wm, hidden=16), gradient_penalty=1.0)
        >>> batch = TensorDict({"belief": torch.randn(8, 16), "state": torch.randn(8, 4),
        ...     "expert": torch.arange(8) < 4}, [8])
        >>> sorted(loss(batch).keys())
        ['agent_accuracy', 'expert_accuracy', 'loss_discriminator', 'loss_gradient_penalty']
    """

    @dataclass
    class _AcceptedKeys:
        belief: NestedKey = "belief"
        state: NestedKey = "state"
        expert: NestedKey = "expert"
        expert_logit: NestedKey = EXPERT_LOGIT

    default_keys = _AcceptedKeys

    def __init__(self, discriminator: TensorDictModuleBase, *, gradient_penalty: float = 0.0) -> None:
        super().__init__()
        if gradient_penalty < 0:
            raise ValueError(f"gradient_penalty must be >= 0, got {gradient_penalty}.")
        self.discriminator = discriminator
        self.gradient_penalty = gradient_penalty

    @property
    def in_keys(self) -> list:
        keys = self.tensor_keys
        return [keys.belief, keys.state, keys.expert]

    @property
    def out_keys(self) -> list:
        penalty = ["loss_gradient_penalty"] if self.gradient_penalty > 0 else []
        return ["loss_discriminator", *penalty, "expert_accuracy", "agent_accuracy"]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys = self.tensor_keys
        inputs = tensordict.select(keys.belief, keys.state)
        expert = tensordict.get(keys.expert).reshape(tensordict.batch_size).bool()
        if self.gradient_penalty > 0:
            inputs = inputs.apply(lambda x: x.detach().requires_grad_(True))
        logit = self.discriminator(inputs).get(keys.expert_logit).squeeze(-1)
        target = expert.to(logit.dtype)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
        weights = torch.where(expert, 0.5 / expert.sum().clamp_min(1), 0.5 / (~expert).sum().clamp_min(1))
        right = (logit > 0) == expert
        out = TensorDict({
            "loss_discriminator": (bce * weights).sum(),
            "expert_accuracy": (right & expert).sum().float().div(expert.sum().clamp_min(1)).detach(),
            "agent_accuracy": (right & ~expert).sum().float().div((~expert).sum().clamp_min(1)).detach(),
        })
        if self.gradient_penalty > 0:
            latents = [inputs.get(keys.belief), inputs.get(keys.state)]
            grads = torch.autograd.grad(logit[expert].sum(), latents, create_graph=True)
            norm = sum(g.pow(2).sum(-1) for g in grads)[expert]
            out.set("loss_gradient_penalty", self.gradient_penalty / 2 * norm.mean())
        return out
