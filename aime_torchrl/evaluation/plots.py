# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Bar plots of normalised scores."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_scores(
    scores: Mapping[str, Sequence[float]], path: str | Path, *, title: str = "", ylabel: str = "% of the expert's return"
) -> Path:
    """A bar per entry: the mean of its scores with their standard deviation as an error bar.

    Examples:
        >>> import tempfile
        >>> plot_scores({"random": [10, 12], "AIME": [80, 90]}, f"{tempfile.mkdtemp()}/scores.png").suffix
        '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(scores)
    means = [float(np.mean(scores[n])) for n in names]
    stds = [float(np.std(scores[n])) for n in names]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(bars, labels=[f"{m:.0f}" for m in means], padding=2)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(110, max(m + s for m, s in zip(means, stds)) * 1.1))
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_title(_wrapped(title, fig, 9), fontsize=9)
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, *, xlabel: str, ylabel: str, title: str = ""
) -> Path:
    """A line per entry through its ``(x, y)`` points (e.g. a score against env steps).

    Examples:
        >>> import tempfile
        >>> plot_curves({"online AIME": [(0, 90.1), (240, 96.7)]}, f"{tempfile.mkdtemp()}/curve.png",
        ...             xlabel="env steps", ylabel="score (%)").suffix
        '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, points in curves.items():
        x, y = zip(*points)
        ax.plot(x, y, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.set_title(_wrapped(title, fig, 9), fontsize=9)
    return _save(fig, path)


def plot_grid(
    scores: Mapping[tuple[str, str, str], Sequence[float]],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "% of the expert",
) -> Path:
    """A Figure-2-style grid: one panel per (embodiment dataset, demonstration task) with a bar per
    method (the mean of its scores, error bar: their std), plus a last row and column of averages
    (mean and std of the cells' means).

    Args:
        scores (Mapping[tuple[str, str, str], Sequence[float]]): ``(embodiment, task, method) ->``
            one score per seed (or, with one seed, per evaluation episode).
        path (path): the image file.

    Examples:
        >>> import tempfile
        >>> scores = {(e, t, m): [50.0, 60.0] for e in ("random", "mix") for t in ("stand", "walk") for m in ("AIME", "BC")}
        >>> plot_grid(scores, f"{tempfile.mkdtemp()}/grid.png").suffix
        '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    embodiments = list(dict.fromkeys(k[0] for k in scores))
    tasks = list(dict.fromkeys(k[1] for k in scores))
    methods = list(dict.fromkeys(k[2] for k in scores))

    def cell(es, ts, m):
        values = [np.mean(scores[(e, t, m)]) for e in es for t in ts if (e, t, m) in scores]
        spread = [np.std(scores[(e, t, m)]) for e in es for t in ts if (e, t, m) in scores]
        if not values:
            return np.nan, 0.0
        return float(np.mean(values)), float(np.std(values) if len(values) > 1 else spread[0])

    rows, cols = embodiments + ["average"], tasks + ["average"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.3 * len(cols), 1.8 * len(rows)), sharey=True, squeeze=False)
    for i, e in enumerate(rows):
        for j, t in enumerate(cols):
            ax = axes[i][j]
            es, ts = (embodiments if e == "average" else [e]), (tasks if t == "average" else [t])
            stats = [cell(es, ts, m) for m in methods]
            ax.bar(range(len(methods)), [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3,
                   color=[f"C{k}" for k in range(len(methods))])
            ax.axhline(100, color="grey", lw=0.6, ls="--")
            ax.set_xticks(range(len(methods)), methods if i == len(rows) - 1 else [""] * len(methods), fontsize=7,
                          rotation=30)
            ax.set_title(f"{e} -> {t}", fontsize=8)
            ax.set_ylim(0, 115)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=7)
    fig.suptitle(_wrapped(title, fig, 9), fontsize=9)
    return _save(fig, path)


def _wrapped(title: str, fig, fontsize: float) -> str:
    """``title`` broken into lines that fit the figure's width (a character is about 0.6 em wide)."""
    width = max(10, int(fig.get_figwidth() * 72 * 0.9 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(title, width))


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
