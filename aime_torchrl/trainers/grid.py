# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Grids of runs: one job (a command line writing its results into a run folder, resumed from its
checkpoint) and a store of finished cells that outlives the run folder, so a long grid can be
finished over several sessions (``examples/compare.py``, ``examples/imitation_study.py``)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path


class GridStore:
    """Copies of finished cells outside the run folder ``out``: a cell ``out/<path>`` is kept as
    ``root/<path>/results.json`` and its wall time as ``root/<path>/wall.json``, each written whole
    and then renamed (several grids may share a store: a cell's files are its own). A world model
    keeps its wall time only (its weights are large, and a world model whose cells are all stored is
    not needed again).

    ``settings`` (the grid's options that change a cell's result) are kept in ``root/grid.json``;
    a grid with other settings is refused, naming them, so that no cell of another grid counts as done.

    Examples:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> out, root = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "store"
        >>> store = GridStore(root, out, {"num_demos": 20})
        >>> cell = out / "seed_0" / "aime"
        >>> cell.mkdir(parents=True)
        >>> _ = (cell / "results.json").write_text(json.dumps({"score": 40.0}))
        >>> store.keep(cell, 12.5)
        >>> moved = Path(tempfile.mkdtemp())   # the run folder gone: the store gives the cell back
        >>> store.walls(), GridStore(root, moved, {"num_demos": 20}).restore(moved / "seed_0" / "aime")
        ({'seed_0/aime': 12.5}, True)
    """

    def __init__(self, root: Path, out: Path, settings: dict) -> None:
        self.root, self.out = root, out
        kept = root / "grid.json"
        if kept.exists():
            before = json.loads(kept.read_text())
            differ = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            if differ:
                raise ValueError(f"store={root} holds the cells of a grid with other settings "
                                 f"({', '.join(f'{k}: {a} there, {b} here' for k, (a, b) in differ.items())}): "
                                 "pass another store, or the same settings.")
        else:
            root.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps(settings, indent=1))

    def restore(self, folder: Path) -> bool:
        """Whether the cell is in the store; if so, its results are copied back into ``folder``."""
        stored = self.root / folder.relative_to(self.out) / "results.json"
        if not stored.exists():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, folder / "results.json")
        return True

    def keep(self, folder: Path, wall: float | None, results: bool = True) -> None:
        """Stores a finished job's results (a cell's; ``results=False`` for a world model) and wall time
        (``None``: unknown, not stored)."""
        target = self.root / folder.relative_to(self.out)
        files = {"results.json": (folder / "results.json").read_text()} if results else {}
        if wall is not None:
            files["wall.json"] = json.dumps(wall)
        for name, text in files.items():
            target.mkdir(parents=True, exist_ok=True)
            partial = target / f"{name}.tmp"
            partial.write_text(text)
            partial.replace(target / name)

    def walls(self) -> dict[str, float]:
        """The stored jobs' wall times (in seconds), by their path in the grid."""
        return {f.parent.relative_to(self.root).as_posix(): json.loads(f.read_text()) for f in self.root.rglob("wall.json")}


def run_job(command: list[str], folder: Path, done_file: str, store: GridStore | None = None) -> float | None:
    """Runs one job, ``command`` (resumed with ``resume=true`` if ``folder`` holds its checkpoint), its
    output in ``folder/stdout.log``; a failed job raises, naming its log. Returns its wall time, or
    ``None`` when it resumed (the time of its earlier runs is unknown); a ``store`` keeps the finished
    job (its ``results.json`` when ``done_file`` is that file, and its wall time)."""
    resumed = (folder / "checkpoint.pt").exists()
    if resumed:
        command = command + ["resume=true"]
    folder.mkdir(parents=True, exist_ok=True)
    tic = time.time()
    with open(folder / "stdout.log", "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode:
        raise RuntimeError(f"cell {folder} failed (exit {finished.returncode}); see {folder / 'stdout.log'}")
    wall = None if resumed else time.time() - tic
    if store is not None:
        store.keep(folder, wall, results=done_file == "results.json")
    return wall
