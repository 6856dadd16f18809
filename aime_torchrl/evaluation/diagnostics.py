# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Why imitation works or fails: how well the world model explains the demonstrations, and how close
the inferred actions are to the true ones (which the demonstrations carry, for measuring only)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDictBase

from aime_torchrl.data.npz import episode_files, load_episode
from aime_torchrl.evaluation.prediction import open_loop_errors
from aime_torchrl.modules.world_model import RSSMWorldModel
from aime_torchrl.objectives import AIMELoss, WorldModelLoss


def world_model_diagnostics(
    loss: WorldModelLoss, windows: Sequence[TensorDictBase], *, context: int = 5
) -> dict[str, float]:
    """How well a world model explains windows it was not trained on (e.g. the demonstrations, before phase 2).

    Returns, averaged over ``windows`` (TorchRL windows with their true actions):

    * ``elbo``: the ELBO per window of ``loss`` (the phase-1 objective), with ``kl`` its KL term;
    * ``open_loop_mse``: the squared error per dimension of the vector sensors (images: per pixel,
      in [0, 1]) predicted open loop from ``context`` filtered frames on, over the predicted frames
      (:func:`~aime_torchrl.evaluation.open_loop_prediction`), and ``open_loop_mse_<sensor>``.
    * how much that ELBO depends on the actions, which is what phase 2 infers them from:
      ``elbo_drop_shuffled``, its drop when each window gets another window's actions (rolled over
      the batch), and ``elbo_drop_halved``, when the actions are halved (a model blind to the
      actions' magnitude drops nothing there); both with the same posterior noise as ``elbo``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 5), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 5)}, [3, 10])
        >>> sorted(world_model_diagnostics(WorldModelLoss(wm), [window]))
        ['elbo', 'elbo_drop_halved', 'elbo_drop_shuffled', 'kl', 'open_loop_mse', 'open_loop_mse_observation']
    """
    world_model: RSSMWorldModel = loss.world_model
    action_key = loss.tensor_keys.action
    totals: dict[str, float] = {}
    with torch.no_grad():
        for window in windows:
            out = _same_noise(loss, window)
            actions = window.get(action_key)
            values = {"elbo": out.get("elbo"), "kl": out.get("kl")}
            for name, changed in (("shuffled", actions.roll(1, 0)), ("halved", actions / 2)):
                changed_window = window.clone(False).set(action_key, changed)
                values[f"elbo_drop_{name}"] = out.get("elbo") - _same_noise(loss, changed_window).get("elbo")
            values.update(open_loop_errors(world_model, window, context=context, action_key=loss.tensor_keys.action))
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value.item() / len(windows)
    return totals


def _same_noise(loss: WorldModelLoss, window: TensorDictBase) -> TensorDictBase:
    """``loss(window)`` with the posterior's noise drawn from a fixed seed (on a forked stream), so
    that windows that differ only in their actions are compared with the same noise."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return loss(window)


def action_inference_diagnostics(loss: AIMELoss, windows: Sequence[TensorDictBase]) -> dict[str, float]:
    """How close the policy's actions inside the posterior rollout are to the demonstrations' true
    actions: ``action_mse`` (per action dimension), with the phase-2 ``elbo`` of the same windows,
    averaged over ``windows``. The true actions only enter the error: :class:`AIMELoss` never
    trains on them.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_policy
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 5), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 5)}, [3, 10])
        >>> sorted(action_inference_diagnostics(AIMELoss(wm, make_policy(4, 16, 2, hidden=16)), [window]))
        ['action_mse', 'elbo']
    """
    totals = {"action_mse": 0.0, "elbo": 0.0}
    with torch.no_grad():
        for window in windows:
            if loss.tensor_keys.action not in window.keys(True):
                raise KeyError(f"action_inference_diagnostics needs windows with their true actions under "
                               f"{loss.tensor_keys.action!r} (for the error only).")
            out = loss(window)
            for key in totals:
                totals[key] += out.get(key).item() / len(windows)
    return totals


class ImitationDiagnostics:
    """Fixed windows of the demonstrations (with their true actions, for measuring only) and of the
    embodiment data, and the measures of :func:`world_model_diagnostics` and
    :func:`action_inference_diagnostics` on them.

    Windows are drawn, and every measure runs, on a forked random stream seeded with ``seed``: the
    diagnostics never change what a run trains (its random state is left as it was).

    Args:
        demos (ReplayBuffer): the demonstrations (``sample()`` gives windows with ``"action"``).
        embodiment_data (ReplayBuffer): the world model's training data.
        batches (int): windows (batches) of each.
        seed (int): seed of the forked stream.
        device (torch.device, optional): where the windows are moved.
        logger (Logger, optional): a TorchRL logger that gets every measure as ``diagnostics/<name>``
            at the ``step`` the measuring methods are given.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from aime_torchrl.modules import make_policy
        >>> wm = RSSMWorldModel.from_config({"observation": 5}, action_dim=2, belief_dim=16, state_dim=4, hidden=16)
        >>> class Data:
        ...     def sample(self):
        ...         return TensorDict({"observation": torch.randn(3, 10, 5), "action": torch.rand(3, 10, 2),
        ...             ("next", "observation"): torch.randn(3, 10, 5)}, [3, 10])
        >>> diagnostics = ImitationDiagnostics(Data(), Data(), batches=2, seed=0)
        >>> sorted(diagnostics.world_model(WorldModelLoss(wm)))[:3]
        ['demos_elbo', 'demos_elbo_drop_halved', 'demos_elbo_drop_shuffled']
        >>> sorted(diagnostics.actions(AIMELoss(wm, make_policy(4, 16, 2, hidden=16))))
        ['demos_action_mse', 'demos_phase2_elbo']
    """

    def __init__(self, demos, embodiment_data, *, batches: int, seed: int, device: torch.device | str | None = None,
                 logger=None) -> None:
        self.seed, self.logger = seed, logger
        self.demos, self.embodiment = self._forked(lambda: (
            [demos.sample().to(device) for _ in range(batches)],
            [embodiment_data.sample().to(device) for _ in range(batches)],
        ))

    def _forked(self, measure):
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return measure()

    def _log(self, measured: dict[str, float], step: int | None) -> dict[str, float]:
        if self.logger is not None and step is not None:
            self.logger.log_metrics({f"diagnostics/{k}": v for k, v in measured.items()}, step=step)
        return measured

    def world_model(self, loss: WorldModelLoss, *, context: int = 5, step: int | None = None) -> dict[str, float]:
        """:func:`world_model_diagnostics` on the demonstrations (``demos_*``) and on the
        embodiment data (``embodiment_*``); logged at ``step`` if given."""
        measured = {f"{name}_{key}": value
                    for name, windows in (("demos", self.demos), ("embodiment", self.embodiment))
                    for key, value in self._forked(lambda: world_model_diagnostics(loss, windows, context=context)).items()}
        return self._log(measured, step)

    def actions(self, loss: AIMELoss, *, step: int | None = None) -> dict[str, float]:
        """:func:`action_inference_diagnostics` on the demonstrations: ``demos_action_mse`` and
        ``demos_phase2_elbo``; logged at ``step`` if given."""
        measured = self._forked(lambda: action_inference_diagnostics(loss, self.demos))
        return self._log({"demos_action_mse": measured["action_mse"], "demos_phase2_elbo": measured["elbo"]}, step)


def state_coverage(
    demos: Sequence[str | Path],
    data: Sequence[str | Path],
    sensors: Sequence[str],
    *,
    demo_episodes: int | None = None,
    samples: int = 2000,
    max_data_frames: int = 60_000,
    seed: int = 0,
) -> dict[str, float]:
    """How far the demonstrations' states are from the embodiment data's: for ``samples`` random
    frames of the demonstrations (the first ``demo_episodes`` episodes of the ``demos`` folders),
    the distance to the nearest frame of the ``data`` folders (at most ``max_data_frames`` random
    ones), over the concatenated vector ``sensors`` standardised by the data's mean and std.

    Returns the median and 90th percentile (``distance_median``, ``distance_p90``): near 0 when the
    data visit the demonstrations' states, large when the world model must extrapolate to them.

    Examples:
        >>> import tempfile
        >>> from aime_torchrl.data import build_dataset
        >>> root = tempfile.mkdtemp()
        >>> folder = build_dataset("walker-random", num_episodes=1, root=root, workers=1, progress=False)
        >>> state_coverage([folder], [folder], ["orientations", "height", "velocity"], samples=50)["distance_median"]
        0.0
    """
    rng = np.random.default_rng(seed)

    def frames(folders: Sequence[str | Path], episodes: int | None) -> np.ndarray:
        files = [f for folder in folders for f in episode_files(folder)[:episodes]]
        return np.concatenate([np.concatenate([load_episode(f)[k] for k in sensors], -1) for f in files])

    demo, reference = frames(demos, demo_episodes), frames(data, None)
    mean, std = reference.mean(0), reference.std(0) + 1e-6
    demo = demo[rng.choice(len(demo), min(samples, len(demo)), replace=False)]
    reference = reference[rng.choice(len(reference), min(max_data_frames, len(reference)), replace=False)]
    a, b = (torch.from_numpy(((x - mean) / std).astype(np.float32)) for x in (demo, reference))
    distance = torch.cat([torch.cdist(chunk, b).min(1).values for chunk in a.split(500)]).numpy()
    return {"distance_median": float(np.median(distance)), "distance_p90": float(np.percentile(distance, 90))}
