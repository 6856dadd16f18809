# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Frame-stacking networks of the baselines (BC, BCO(0), IIDM), their data layout and env transform."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import CatFrames, Compose, UnsqueezeTransform

from aime_torchrl.modules.encoders import ObservationEncoder
from aime_torchrl.modules.mlp import make_mlp


class FrameStackMLP(nn.Module):
    """Encodes each of ``frames`` observations, concatenates the embeddings (and any extra
    inputs) and maps them with an MLP (128x2 ELU by default), squashed by ``tanh`` if ``squash``.
    These are the deterministic heads of the reference's baselines (argmax-ai/aime).

    Args:
        encoder (ObservationEncoder): the per-frame encoder (identity for vectors, ``cnn_ha`` for
            images), shared in style with the world model's.
        frames (int): number of stacked frames.
        out_dim (int): output size.

    Keyword Args:
        extra_dim (int, optional): size of extra inputs (e.g. an action). Defaults to ``0``.
        hidden (int, optional): MLP width. Defaults to ``128``.
        layers (int, optional): MLP hidden layers. Defaults to ``2``.
        squash (bool, optional): ``tanh`` on the output. Defaults to ``True``.

    The forward takes the sensors, each ``[*B, frames, ...]`` in the encoder's order, then the
    extra inputs ``[*B, e]``.

    Examples:
        >>> import torch
        >>> net = FrameStackMLP(ObservationEncoder({"velocity": 9}), frames=2, out_dim=6)
        >>> net(torch.zeros(4, 2, 9)).shape
        torch.Size([4, 6])
    """

    def __init__(
        self,
        encoder: ObservationEncoder,
        frames: int,
        out_dim: int,
        *,
        extra_dim: int = 0,
        hidden: int = 128,
        layers: int = 2,
        squash: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.frames = frames
        self.num_sensors = len(encoder.vector_keys) + len(encoder.pixel_keys)
        self.head = make_mlp(frames * encoder.embedding_dim + extra_dim, out_dim, hidden, layers, device=device)
        self.squash = squash

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sensors, extras = inputs[: self.num_sensors], inputs[self.num_sensors:]
        embedding = self.encoder(*sensors)  # [*B, frames, E]
        x = torch.cat([embedding.flatten(-2), *extras], -1)
        out = self.head(x)
        return torch.tanh(out) if self.squash else out


def stack_window(window: TensorDictBase, keys: Sequence[str]) -> TensorDict:
    """Turns ``[*B, k]`` TorchRL windows into the baselines' samples ``[*B]`` at the window's last step t:

    - ``("stack", key)``: o_{t-k+1}, ..., o_t (``[*B, k, ...]``: the policy's input);
    - ``("transition", key)``: o_{t-k+1}, ..., o_{t+1} (``[*B, k + 1, ...]``: the IDM's input);
    - ``("next", key)``: o_{t+1} (the forward model's target);
    - ``"action"``: a_t, when the window has actions.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> window = TensorDict({"velocity": torch.randn(8, 3, 9), ("next", "velocity"): torch.randn(8, 3, 9),
        ...     "action": torch.rand(8, 3, 6)}, [8, 3])
        >>> sample = stack_window(window, ["velocity"])
        >>> sample["stack", "velocity"].shape, sample["transition", "velocity"].shape
        (torch.Size([8, 3, 9]), torch.Size([8, 4, 9]))
    """
    batch = window.batch_size[:-1]
    out = TensorDict(batch_size=batch, device=window.device)
    time = window.batch_dims - 1
    for key in keys:
        stack = window.get(key)
        following = window.get(("next", key)).narrow(time, stack.shape[time] - 1, 1)
        out.set(("stack", key), stack)
        out.set(("transition", key), torch.cat([stack, following], time))
        out.set(("next", key), following.squeeze(time))
    if "action" in window.keys():
        out.set("action", window.get("action")[..., -1, :])
    return out


def frame_stack_transform(observation_shapes: Mapping[str, Sequence[int]], frames: int) -> Compose:
    """The env-side counterpart of :func:`stack_window`: ``("stack", key)`` holds the last ``frames``
    observations, with copies of the first one after a reset (as the reference's actor).

    Examples:
        >>> from aime_torchrl.envs import make_env
        >>> env = make_env("walker", "stand").append_transform(frame_stack_transform({"height": (1,)}, 3))
        >>> env.rollout(4)["stack", "height"].shape
        torch.Size([4, 3, 1])
    """
    transforms = []
    for key, shape in observation_shapes.items():
        dim = -len(shape) - 1
        transforms.append(UnsqueezeTransform(dim, in_keys=[key], out_keys=[("stack", key)]))
        transforms.append(CatFrames(frames, dim=dim, in_keys=[("stack", key)], out_keys=[("stack", key)]))
    return Compose(*transforms)


def make_stack_module(
    vector_dims: Mapping[str, int],
    pixel_keys: Sequence[str],
    out_dim: int,
    *,
    frames: int,
    in_group: str = "stack",
    extra_keys: Sequence[str] = (),
    extra_dim: int = 0,
    out_key: str = "action",
    squash: bool = True,
    hidden: int = 128,
    layers: int = 2,
    device: torch.device | str | None = None,
) -> TensorDictModule:
    """A :class:`FrameStackMLP` reading ``(in_group, key)`` for every sensor (plus ``extra_keys``)
    and writing ``out_key``: the BC/BCO policy (``in_group="stack"``), the IDM (``"transition"``,
    ``frames + 1``) or the IIDM forward model (``extra_keys=["action"]``, ``squash=False``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> policy = make_stack_module({"velocity": 9}, [], 6, frames=1)
        >>> policy(TensorDict({("stack", "velocity"): torch.zeros(4, 1, 9)}, [4]))["action"].shape
        torch.Size([4, 6])
    """
    encoder = ObservationEncoder(vector_dims, pixel_keys, device=device)
    net = FrameStackMLP(
        encoder, frames, out_dim, extra_dim=extra_dim, hidden=hidden, layers=layers, squash=squash, device=device
    )
    keys = [*vector_dims, *pixel_keys]
    return TensorDictModule(net, in_keys=[*((in_group, k) for k in keys), *extra_keys], out_keys=[out_key])
