# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""How well a latent-action world model ties its latent actions to real ones."""
from __future__ import annotations

import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from aime_torchrl.evaluation.prediction import open_loop_errors
from aime_torchrl.modules.latent_action import LatentActionWorldModel


def latent_action_diagnostics(
    model: LatentActionWorldModel, windows: Sequence[TensorDictBase], *, context: int = 5, action_key: NestedKey = "action"
) -> dict[str, float]:
    """Measures a latent-action world model on labelled windows it was not trained on (their actions
    are only compared with, never trained on), averaged over ``windows``:

    * ``open_loop_mse``: the open-loop prediction error (:func:`~aime_torchrl.evaluation.open_loop_errors`)
      of the model driven by the windows' real actions through the action encoder g, the number to set
      against an action-conditioned world model's;
    * ``open_loop_mse_inferred``: the same, driven by g of the actions the inverse model infers from the
      windows' observations (q's mean action): an optimistic bound, since each a_t is inferred from the
      very frame o_{t+1} it then predicts;
    * ``inferred_action_r2`` and ``inferred_action_mse``: q's mean actions, inferred from the
      observations alone, against the real actions (R^2 over all steps and dimensions).

    The real actions are read from ``action_key``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> model = LatentActionWorldModel.from_config({"observation": 4}, 2, belief_dim=16, state_dim=4, hidden=16)
        >>> window = TensorDict({"observation": torch.randn(3, 10, 4), "action": torch.rand(3, 10, 2),
        ...     ("next", "observation"): torch.randn(3, 10, 4)}, [3, 10])
        >>> sorted(latent_action_diagnostics(model, [window]))
        ['inferred_action_mse', 'inferred_action_r2', 'open_loop_mse', 'open_loop_mse_inferred']
    """
    if not windows:
        raise ValueError("latent_action_diagnostics needs at least one window.")
    keys = model.keys
    squared, count, driven, inferred = 0.0, 0, 0.0, 0.0
    actions = []
    with torch.no_grad():
        for window in windows:
            driven += open_loop_errors(model.world_model, model.with_encoded_actions(window, action_key),
                                       context=context)["open_loop_mse"].item()
            inferred_actions = model(model.to_frames(window))[..., 1:].get(keys.loc).tanh()  # q's mean action
            with_inferred = window.clone(False).set(action_key, inferred_actions)
            inferred += open_loop_errors(model.world_model, model.with_encoded_actions(with_inferred, action_key),
                                         context=context)["open_loop_mse"].item()
            true = window.get(action_key).clamp(-1, 1)
            squared += (inferred_actions - true).pow(2).sum().item()
            count += true.numel()
            actions.append(true.reshape(-1, true.shape[-1]))
    actions = torch.cat(actions)
    total = (actions - actions.mean(0)).pow(2).sum().item()  # > 0 unless every action is the same
    return {
        "open_loop_mse": driven / len(windows),
        "open_loop_mse_inferred": inferred / len(windows),
        "inferred_action_r2": 1 - squared / total,
        "inferred_action_mse": squared / count,
    }


#: The world models of a label-efficiency study and how its table and plot name them.
LABEL_EFFICIENCY_MODELS = {"latent": "latent-action model", "labelled_only": "RSSM, labelled episodes only",
                           "idm_labels": "RSSM, IDM pseudo-labels"}


def label_efficiency_report(runs: Sequence[Mapping[str, Mapping]], folder: str | Path, *, title: str = "") -> str:
    """Writes ``table.md`` and ``figure.png`` of a label-efficiency study into ``folder`` and returns the table.

    Args:
        runs: one mapping per seed, ``"<model>@<fraction>" -> {"model", "fraction", "labelled_episodes",
            "open_loop_mse", ...}`` (``inferred_action_r2`` for the latent model), as
            ``examples/lawm_walker.py`` writes to ``models.json``. The action-conditioned model on every
            label (``labelled_only`` at fraction 1) is the reference of the ratios.

    Examples:
        >>> import tempfile
        >>> run = {f"{m}@{f}": dict(model=m, fraction=f, labelled_episodes=int(100 * f), open_loop_mse=e)
        ...        for m, e in (("latent", 1.0), ("labelled_only", 2.0)) for f in (0.1, 1.0)}
        >>> print(label_efficiency_report([run], tempfile.mkdtemp()).splitlines()[4])
        | 10 % (10) | 1.0000 | 2.0000 | - | 0.50 | 0.50 | - |
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({entry["fraction"] for run in runs for entry in run.values()})
    episodes = {entry["fraction"]: entry["labelled_episodes"] for run in runs for entry in run.values()}

    def values(model: str, fraction: float, key: str = "open_loop_mse") -> list[float]:
        return [run[f"{model}@{fraction}"][key] for run in runs if key in run.get(f"{model}@{fraction}", {})]

    def cell(numbers: list[float], digits: int = 4) -> str:
        if not numbers:
            return "-"
        spread = f" +- {statistics.pstdev(numbers):.{digits}f}" if len(numbers) > 1 else ""
        return f"{statistics.mean(numbers):.{digits}f}{spread}"

    def ratios(fraction: float, baseline: str, baseline_fraction: float | None = None) -> list[float]:
        pairs = [(run.get(f"latent@{fraction}"), run.get(f"{baseline}@{baseline_fraction or fraction}")) for run in runs]
        return [a["open_loop_mse"] / b["open_loop_mse"] for a, b in pairs if a and b]

    lines = [f"Held-out open-loop MSE driven by the true actions (mean +- std over {len(runs)} seed(s)); the latent "
             "model's inferred actions (from the observations alone) against the true actions (R^2).", "",
             "| labelled (episodes) | latent-action model | RSSM, labelled only | RSSM, IDM pseudo-labels | latent / labelled "
             "only | latent / all labels | inferred-action R^2 |", "|---|---|---|---|---|---|---|"]
    for f in fractions:
        lines.append(f"| {100 * f:g} % ({episodes[f]}) | {cell(values('latent', f))} | {cell(values('labelled_only', f))} | "
                     f"{cell(values('idm_labels', f))} | {cell(ratios(f, 'labelled_only'), 2)} | "
                     f"{cell(ratios(f, 'labelled_only', 1.0), 2)} | {cell(values('latent', f, 'inferred_action_r2'), 3)} |")
    table = "\n".join(lines) + "\n"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text(table)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (model, label) in enumerate(LABEL_EFFICIENCY_MODELS.items()):
        points = [(episodes[f], numbers) for f in fractions if (numbers := values(model, f))]
        if points:
            axes[0].errorbar([p[0] for p in points], [statistics.mean(p[1]) for p in points], marker="o", capsize=3,
                             yerr=[statistics.pstdev(p[1]) for p in points], label=label, color=f"C{i}")
    full = values("labelled_only", 1.0)
    if full:
        axes[0].axhline(statistics.mean(full), color="grey", ls="--", lw=0.8, label="RSSM, every label")
    axes[0].set(xscale="log", yscale="log", xlabel="labelled episodes", ylabel="held-out open-loop MSE")
    axes[0].legend(fontsize=7)
    r2 = [(episodes[f], numbers) for f in fractions if (numbers := values("latent", f, "inferred_action_r2"))]
    if r2:
        axes[1].errorbar([p[0] for p in r2], [statistics.mean(p[1]) for p in r2], marker="o", capsize=3, color="C0",
                         yerr=[statistics.pstdev(p[1]) for p in r2])
    lowest = min((min(p[1]) for p in r2), default=0.0)  # R^2 may be negative
    axes[1].set(xscale="log", xlabel="labelled episodes", ylabel="inferred actions R^2", ylim=(min(0.0, lowest), 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "figure.png", dpi=120)
    plt.close(fig)
    return table


def policy_efficiency_report(
    runs: Sequence[Mapping[str, Mapping]],
    folder: str | Path,
    *,
    expert_return: float,
    data_return: float | None = None,
    title: str = "",
) -> str:
    """Writes ``table.md`` and ``figure.png`` of the policies of a label-efficiency study into ``folder``
    and returns the table: each world model's policy return (and % of ``expert_return``) against the
    number of labelled episodes.

    Args:
        runs: one mapping per seed, ``"<model>@<fraction>" -> {"model", "fraction", "labelled_episodes",
            "returns"}``, as ``examples/lawm_dmc.py`` writes to ``policies.json``; ``labelled_only`` at
            fraction 1 is the policy of the world model with every label.

    Keyword Args:
        expert_return (float): the expert's return (100 %).
        data_return (float, optional): the dataset's mean episode return, drawn for reference.

    Examples:
        >>> import tempfile
        >>> run = {f"{m}@{f}": dict(model=m, fraction=f, labelled_episodes=int(100 * f), returns=[r, r + 100])
        ...        for m, r in (("latent", 400.0), ("labelled_only", 200.0)) for f in (0.1, 1.0)}
        >>> print(policy_efficiency_report([run], tempfile.mkdtemp(), expert_return=900.0).splitlines()[4])
        | 10 % (10) | 450 +- 50 (50 %) | 250 +- 50 (28 %) | - |
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({entry["fraction"] for run in runs for entry in run.values()})
    episodes = {entry["fraction"]: entry["labelled_episodes"] for run in runs for entry in run.values()}

    def means(model: str, fraction: float) -> list[float]:  # one per seed
        return [statistics.mean(run[f"{model}@{fraction}"]["returns"]) for run in runs if f"{model}@{fraction}" in run]

    def cell(model: str, fraction: float) -> str:
        seeds = means(model, fraction)
        if not seeds:
            return "-"
        name, mean = f"{model}@{fraction}", statistics.mean(seeds)
        if len(seeds) > 1:  # over seeds
            spread, count = statistics.pstdev(seeds), f"; {len(seeds)} seeds"
        else:  # over the one seed's evaluation episodes
            spread, count = next(statistics.pstdev(run[name]["returns"]) for run in runs if name in run), ""
        return f"{mean:.0f} +- {spread:.0f} ({100 * mean / expert_return:.0f} %{count})"

    lines = ["Return of the offline-RL policy of each world model (mean +- std over the seeds where there are several, "
             "else over the evaluation episodes); "
             f"in brackets % of the expert's {expert_return:.0f}"
             + (f"; the data's mean episode return: {data_return:.0f}." if data_return is not None else "."), "",
             "| labelled (episodes) | " + " | ".join(LABEL_EFFICIENCY_MODELS.values()) + " |",
             "|---|" + "---|" * len(LABEL_EFFICIENCY_MODELS)]
    for f in fractions:
        lines.append(f"| {100 * f:g} % ({episodes[f]}) | " + " | ".join(cell(m, f) for m in LABEL_EFFICIENCY_MODELS) + " |")
    table = "\n".join(lines) + "\n"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.md").write_text(table)

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (model, label) in enumerate(LABEL_EFFICIENCY_MODELS.items()):
        points = [(episodes[f], numbers) for f in fractions if (numbers := means(model, f))]
        if points:
            ax.errorbar([p[0] for p in points], [statistics.mean(p[1]) for p in points], marker="o", capsize=3,
                        yerr=[statistics.pstdev(p[1]) for p in points], label=label, color=f"C{i}")
    full = means("labelled_only", 1.0)
    if full:
        ax.axhline(statistics.mean(full), color="grey", ls="--", lw=0.8, label="RSSM, every label")
    if data_return is not None:
        ax.axhline(data_return, color="black", ls=":", lw=0.8, label="data (mean episode)")
    ax.set(xscale="log", xlabel="labelled episodes", ylabel="return")
    ax.legend(fontsize=7)
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "figure.png", dpi=120)
    plt.close(fig)
    return table
