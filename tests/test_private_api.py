# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The package reads no private attribute of another object (TorchRL's, tensordict's): a new release
cannot break it there. The one exception is named, with its reason, where it is read."""
from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "aime_torchrl"
#: file -> the private reads it may make (each justified in a comment there).
ALLOWED = {"envs/dmc.py": {"env._env"}}


def test_no_private_attribute_of_another_object_is_read():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            for match in re.finditer(r"([\w\]\)]+)\.(_[a-z]\w*)", code):
                owner, name = match.groups()
                if owner in ("self", "cls") or code.strip().startswith((">>>", '"', "'")):
                    continue
                relative = str(path.relative_to(PACKAGE))
                if f"{owner}.{name}" not in ALLOWED.get(relative, set()):
                    found[f"{relative}:{number}"] = match.group(0)
    assert not found, found
