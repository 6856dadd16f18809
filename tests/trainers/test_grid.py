# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The grid runner: one job (resumed from its checkpoint, its failure naming its log) and the store of finished cells."""
from __future__ import annotations

import json
import sys

import pytest

from aime_torchrl.trainers.grid import GridStore, run_job

WRITE = "import json, sys; open(sys.argv[1] + '/results.json', 'w').write(json.dumps({'args': sys.argv[2:]}))"


def test_a_job_runs_resumes_and_is_stored(tmp_path):
    out, store = tmp_path / "out", GridStore(tmp_path / "store", tmp_path / "out", {"num_demos": 3})
    cell = out / "seed_0" / "aime"
    wall = run_job([sys.executable, "-c", WRITE, str(cell)], cell, "results.json", store)
    assert wall is not None and wall > 0
    assert json.loads((cell / "results.json").read_text()) == {"args": []}
    assert store.walls() == {"seed_0/aime": wall}
    (cell / "checkpoint.pt").write_bytes(b"")  # a job stopped before: resumed, its wall unknown
    assert run_job([sys.executable, "-c", WRITE, str(cell)], cell, "results.json") is None
    assert json.loads((cell / "results.json").read_text()) == {"args": ["resume=true"]}

    moved = tmp_path / "elsewhere"  # the run folder gone: the store gives the cell back
    again = GridStore(tmp_path / "store", moved, {"num_demos": 3})
    assert again.restore(moved / "seed_0" / "aime") and not again.restore(moved / "seed_1" / "aime")
    assert json.loads((moved / "seed_0" / "aime" / "results.json").read_text()) == {"args": []}


def test_a_world_model_keeps_its_wall_only_and_other_settings_are_refused(tmp_path):
    store = GridStore(tmp_path / "store", tmp_path, {"num_demos": 3, "eval_episodes": 10})
    store.keep(tmp_path / "wm", 5.0, results=False)
    assert not (tmp_path / "store" / "wm" / "results.json").exists() and store.walls() == {"wm": 5.0}
    with pytest.raises(ValueError, match="other settings.*num_demos: 3 there, 20 here"):
        GridStore(tmp_path / "store", tmp_path, {"num_demos": 20, "eval_episodes": 10})


def test_a_failed_job_names_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"failed \(exit 3\); see .*stdout.log"):
        run_job([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "cell", "results.json")
    assert "boom" in (tmp_path / "cell" / "stdout.log").read_text()
