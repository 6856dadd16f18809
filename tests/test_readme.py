# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The README's and the guides' code blocks run as written.

Python blocks run each alone in a fresh process and folder. Shell blocks are too long to run here (the
main job takes minutes), so each of their commands is checked as far as it can be without running it:
the test command is CI's, every Hydra override composes against the example's config, and every flag of
an argparse example is one it accepts.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]


def _blocks(language: str) -> list[tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), block) for page in PAGES
            for block in re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)]


SNIPPETS = _blocks("python")


def _commands() -> list[tuple[str, list[str]]]:
    """Every ``python examples/<x>.py ...`` command of the shell blocks, comments and placeholders removed."""
    commands = []
    for page, block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"<[^>]+>", "x", line.split(" #")[0]).strip()
            words = shlex.split(line) if line else []
            scripts = [i for i, word in enumerate(words) if re.fullmatch(r"examples/\w+\.py", word)]
            if scripts and not {"&&", "$C", "$WM"} & set(words) and not any("$" in word for word in words):
                commands.append((page, words[scripts[0]:]))
    return commands


COMMANDS = _commands()


def test_the_pages_have_code():
    readme = [snippet for page, snippet in SNIPPETS if page == "README.md"]
    assert len(readme) >= 2 and len(COMMANDS) >= 20


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_python_block_runs(index, tmp_path):
    page, snippet = SNIPPETS[index]
    env = {**os.environ, "AIME_TORCHRL_DATA": str(tmp_path / "cache")}  # datasets are built here, not in ~/.cache
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{page}:\n{snippet}\n{done.stderr[-3000:]}"


def test_the_test_command_is_ci_s():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme


def test_hydra_commands_compose():
    from hydra import compose, initialize_config_dir

    hydra_commands = [(page, words) for page, words in COMMANDS
                      if "hydra.main" in (ROOT / words[0]).read_text()]
    assert len(hydra_commands) >= 15
    errors = []
    for page, (script, *overrides) in hydra_commands:
        name = re.search(r'config_name="(\w+)"', (ROOT / script).read_text()).group(1)
        with initialize_config_dir(str(ROOT / "configs"), version_base=None):
            try:
                compose(name, overrides=[o for o in overrides if not o.startswith("-")])
            except Exception as error:  # noqa: BLE001 (the command and the page are the message)
                errors.append(f"{page}: python {script} {' '.join(overrides)}: {str(error).splitlines()[0]}")
    assert not errors, "\n".join(errors)


def test_argparse_commands_take_their_flags():
    commands = [(page, words) for page, words in COMMANDS if "argparse" in (ROOT / words[0]).read_text()]
    assert commands
    helps = {}
    for page, (script, *args) in commands:
        if script not in helps:
            helps[script] = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                                           text=True, timeout=300, check=True).stdout
        unknown = [a.split("=")[0] for a in args if a.startswith("--") and a.split("=")[0] not in helps[script]]
        assert not unknown, f"{page}: python {script} {' '.join(args)}: {script} has no {unknown}"
