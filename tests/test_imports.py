# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The package's structure: the graph of its imports (modules and packages) has no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import aime_torchrl

ROOT = Path(aime_torchrl.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """Each module of the package (a package by its name) -> the package's modules it imports."""
    files = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("aime_torchrl"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    imported.add(child if child in files else node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("aime_torchrl")}
        graph[name] = {module for module in imported if module in files and module != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the modules along it, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_imports_form_no_cycle():
    graph = import_graph()
    assert {"aime_torchrl.modules.core", "aime_torchrl.objectives.window_elbo"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
