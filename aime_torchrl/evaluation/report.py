# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Returns -> normalised scores, a results dict (``results.json``) and a markdown table."""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


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
