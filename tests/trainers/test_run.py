# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""RunCheckpoint: exact resume, no non-finite checkpoint, the run's own config, a moved folder; check_config."""
from __future__ import annotations

import re

import pytest
import torch

from aime_torchrl.trainers import check_config, RunCheckpoint
from aime_torchrl.trainers import flat, unflat


def test_a_non_finite_state_is_refused_and_the_last_finite_checkpoint_kept(tmp_path):
    run = RunCheckpoint(tmp_path)
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    run.save({"lr": 1.0}, "phase1", 2, modules={"net": net, "absent": None}, optimizers={"adam": optimizer})
    finite = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.bias[1] = float("inf")
    with pytest.raises(FloatingPointError, match=r"step 4 in net\.bias .*still holds the last finite state"):
        run.save({"lr": 1.0}, "phase1", 4, modules={"net": net}, optimizers={"adam": optimizer})
    optimizer.state[net.weight]["exp_avg"][0, 0] = float("nan")  # in an optimiser state too
    with pytest.raises(FloatingPointError, match=r"adam\.state\.0\.exp_avg"):
        run.save({"lr": 1.0}, "phase1", 4, modules={}, optimizers={"adam": optimizer})
    state = run.load()
    assert state["step"] == 2 and state["modules"]["absent"] is None
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    torch.manual_seed(123)
    run.restore(state, modules={"net": fresh, "absent": torch.nn.Linear(1, 1)}, optimizers={"adam": fresh_optimizer})
    for key, value in finite.items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1


def test_the_random_state_is_restored(tmp_path):
    run = RunCheckpoint(tmp_path)
    run.save({}, "s", 0, modules={})
    expected = torch.rand(3)
    run.restore(run.load(), modules={})
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_resume_config_keeps_the_run_s_config_and_refuses_changes():
    saved = {"lr": 0.1, "steps": 10, "eval": {"episodes": 5}, "out_dir": "a", "resume": False}
    defaults = {"lr": 1.0, "steps": 10, "eval": {"episodes": 10}, "out_dir": "x", "resume": False, "new_key": 3}
    resumable = ["resume", "out_dir", "eval."]
    # only resume and out_dir given: everything else is the run's own, keys added since take their default
    now = {**defaults, "resume": True, "out_dir": "b"}
    assert RunCheckpoint.resume_config(saved, now, defaults, resumable) == {
        "lr": 0.1, "steps": 10, "eval": {"episodes": 5}, "out_dir": "b", "resume": True, "new_key": 3}
    # a resumable key set on the command line wins; repeating the run's own value is fine
    now = {**defaults, "resume": True, "lr": 0.1, "eval": {"episodes": 7}}
    assert RunCheckpoint.resume_config(saved, now, defaults, resumable)["eval"] == {"episodes": 7}
    with pytest.raises(ValueError, match=r"changes steps=20 \(the run has 10\); drop these overrides"):
        RunCheckpoint.resume_config(saved, {**defaults, "steps": 20}, defaults, resumable)
    # with the command line's keys known, a value equal to the default is an override too
    now = {**defaults, "resume": True, "eval": {"episodes": 10}}
    assert RunCheckpoint.resume_config(saved, now, defaults, resumable, explicit=["resume", "eval.episodes"])["eval"] == {
        "episodes": 10}
    with pytest.raises(ValueError, match="changes lr=1.0"):
        RunCheckpoint.resume_config(saved, {**defaults, "resume": True}, defaults, resumable, explicit=["resume", "lr"])


def test_the_logger_writes_where_the_run_now_lives(tmp_path):
    from torchrl.record.loggers import get_logger

    old, new = tmp_path / "old", tmp_path / "new"
    logger = get_logger("csv", logger_name=str(old / "logs"), experiment_name="run")
    logger.log_scalar("loss", 1.0, step=1)
    run = RunCheckpoint(old)
    run.save({}, "s", 1, modules={}, logger=logger)
    old.rename(new)
    moved = RunCheckpoint(new)
    state = moved.logger_state(moved.load(), new / "logs")
    logger = get_logger("csv", logger_name=str(new / "logs"), experiment_name="run", state_dict=state)
    logger.log_scalar("loss", 2.0, step=2)
    assert (new / "logs" / "run" / "scalars" / "loss.csv").read_text().splitlines() == ["1,1.0", "2,2.0"]
    assert not old.exists()


def test_check_config_refuses_empty_lists():
    config = {"seeds": [0], "data": {"demos": "walker-stand-expert", "embodiment": ["walker-random"]}, "name": ""}
    check_config(config, non_empty=["seeds", "data.demos", "data.embodiment"])  # a string or a list of one item or more
    for key, value in (("seeds", []), ("seeds", None), ("data.demos", "")):
        with pytest.raises(ValueError, match=re.escape(f"{key}={value!r}: must list at least one value.")):
            check_config(unflat({**flat(config), key: value}), non_empty=[key])
    with pytest.raises(ValueError, match=re.escape("missing=None: must list at least one value.")):
        check_config(config, non_empty=["missing"])
