# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports dm_control
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: one thread per worker (and per process it starts)
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from aime_torchrl.modules import RSSMWorldModel  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

#: What ``-m "not slow"`` leaves out (CI runs everything): the examples' and the README's command-line runs,
#: the end-to-end runs, what builds datasets, runs DeepMind Control or kills processes, and compilation.
SLOW = ("tests/examples/", "tests/test_end_to_end.py", "tests/test_latent_action_end_to_end.py", "tests/test_readme.py",
        "tests/test_docs.py",
        "tests/envs/", "tests/experts/", "tests/data/test_builder.py", "tests/evaluation/test_evaluation.py",
        "tests/trainers/test_checkpoint.py", "tests/trainers/test_lock.py",
        "tests/objectives/test_window_elbo.py::test_compiled_equals_eager", "aime_torchrl/envs/",
        "aime_torchrl/experts/", "aime_torchrl/evaluation/rollouts.py", "aime_torchrl/evaluation/video.py",
        "aime_torchrl/data/collect.py", "aime_torchrl/data/builder.py", "aime_torchrl/modules/filter_actor.py",
        "aime_torchrl/modules/latent_action_actor.py", "aime_torchrl/modules/frame_stack.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def make_window(batch: int = 3, time: int = 5, dims: dict | None = None, action_dim: int = 2, device="cpu") -> TensorDict:
    """A random TorchRL window [B, T] with root and next observations and actions in [-1, 1]."""
    dims = dims or {"observation": 4}
    obs = {k: torch.randn(batch, time + 1, d, device=device) for k, d in dims.items()}
    return TensorDict(
        {
            **{k: v[:, :-1] for k, v in obs.items()},
            "action": torch.rand(batch, time, action_dim, device=device) * 2 - 1,
            "next": {k: v[:, 1:] for k, v in obs.items()},
        },
        batch_size=[batch, time],
        device=device,
    )


def small_world_model(dims: dict | None = None, action_dim: int = 2, device="cpu", **kwargs) -> RSSMWorldModel:
    kwargs = {"belief_dim": 16, "state_dim": 6, "hidden": 16, **kwargs}
    return RSSMWorldModel.from_config(
        {"observation": 4} if dims is None else dims, action_dim, device=device, **kwargs
    )


def filter_rows_and_grads(model, observe, observations, actions, *others, extra_loss, **kwargs):
    """``observe(core, embeddings, actions, **kwargs)``'s rows of ``model`` and the parameter gradients
    of ``model`` and ``others`` (by ``"<i>.<name>"``) for a loss on every row: fixed weights on the
    latents plus ``extra_loss(rows)`` (the posterior, the actions, the actor's outputs)."""
    for module in (model, *others):
        module.zero_grad()
    core = model.core
    embeddings = core.encode({"observation": observations}, actions.shape[:-1])
    rows = observe(core, embeddings, actions, **kwargs)
    weights = {key: torch.linspace(-1, 1, rows[key].numel(), dtype=rows[key].dtype).view_as(rows[key])
               for key in ("state", "belief", "next_state", "next_belief")}
    (sum((rows[key] * w).sum() for key, w in weights.items()) + extra_loss(rows)).backward()
    named = [(f"{i}.{name}", p) for i, m in enumerate((model, *others)) for name, p in m.named_parameters()]
    return rows, {name: p.grad.clone() for name, p in named if p.grad is not None}
