# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The examples read top to bottom like CleanRL's: every line within 100 columns."""
from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_example_lines_fit_in_100_columns():
    long = [f"{path.name}:{number}" for path in sorted(EXAMPLES.glob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > 100]
    assert sorted(EXAMPLES.glob("*.py")) and not long, long
