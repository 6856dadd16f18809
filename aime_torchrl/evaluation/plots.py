# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Bar plots of normalised scores."""
from __future__ import annotations

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
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
