# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Returns -> normalised scores, a results dict (``results.json``) and a markdown table."""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def score_report(returns: Mapping[str, Sequence[float]], expert_return: float, *, title: str = "") -> tuple[dict, str]:
    """Scores every policy's episode returns as % of ``expert_return`` (the demonstrations' mean
    return, as the paper normalises by its expert's).

    Returns ``(results, table)``: per policy the returns, their mean and std, and the scores' mean and
    std; and a markdown table of them.

    Examples:
        >>> results, table = score_report({"random policy": [100, 140], "AIME": [700, 900]}, 1000.0)
        >>> results["AIME"]["score_mean"]
        80.0
        >>> print(table.splitlines()[-1])
        | AIME | 2 | 800.0 +- 100.0 | 80.0 +- 10.0 |
    """
    if not (math.isfinite(expert_return) and expert_return > 0):
        raise ValueError(f"The demonstrations' mean return is {expert_return}: scores as % of it need a finite, "
                         "positive return (check the demonstrations' rewards).")
    results = {"expert_return": expert_return}
    for name, values in returns.items():
        values = [float(v) for v in values]
        scores = [100 * v / expert_return for v in values]
        results[name] = {
            "returns": values, "mean": statistics.mean(values), "std": statistics.pstdev(values),
            "score_mean": statistics.mean(scores), "score_std": statistics.pstdev(scores),
        }
    rows = [
        f"| {name} | {len(results[name]['returns'])} | {results[name]['mean']:.1f} +- {results[name]['std']:.1f} | "
        f"{results[name]['score_mean']:.1f} +- {results[name]['score_std']:.1f} |"
        for name in returns
    ]
    header = ["| policy | episodes | return | % of the demonstrations |", "|---|---|---|---|"]
    return results, "\n".join(([title] if title else []) + header + rows)


def save_results(
    folder: str | Path,
    returns: Mapping[str, Sequence[float]],
    expert_return: float,
    *,
    title: str = "",
    plot: bool = False,
    logger: Any = None,
    step: int = 0,
    **info: Any,
) -> tuple[dict, str]:
    """Writes ``results.json`` (and ``results.md``, the table) of an evaluation: :func:`score_report`
    of ``returns`` with the entries of ``info``; with ``plot``, ``scores.png`` too
    (:func:`~aime_torchrl.evaluation.plot_scores`), and a TorchRL ``logger`` gets every policy's
    mean score as ``final/<name>_score`` at ``step``.

    The raw returns are written first, so that they are kept even if scoring fails (the error
    then says where they are).

    Examples:
        >>> import json, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> results, table = save_results(folder, {"AIME": [700, 900]}, 1000.0, seed=0)
        >>> json.loads(open(f"{folder}/results.json").read())["AIME"]["score_mean"]
        80.0
        >>> save_results(folder, {"AIME": [700, 900]}, 0.0)
        Traceback (most recent call last):
        ...
        ValueError: ...mean return is 0.0...; the returns are saved in .../results.json.
    """
    path = Path(folder) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"expert_return": expert_return, **{name: {"returns": [float(v) for v in values]} for name, values in returns.items()}}
    path.write_text(json.dumps({**raw, **info}, indent=1))
    try:
        results, table = score_report(returns, expert_return, title=title)
    except (ValueError, ArithmeticError) as err:
        raise type(err)(f"{err}; the returns are saved in {path}.") from err
    results.update(info)
    path.write_text(json.dumps(results, indent=1))
    path.with_suffix(".md").write_text(table + "\n")
    if logger is not None:
        logger.log_metrics({f"final/{name.split()[0]}_score": results[name]["score_mean"] for name in returns}, step=step)
    if plot:
        from aime_torchrl.evaluation.plots import plot_scores

        plot_scores({name: [100 * v / expert_return for v in values] for name, values in returns.items()},
                    path.with_name("scores.png"), title=title.strip())
    return results, table
