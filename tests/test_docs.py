# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""The documentation site builds with warnings as errors and its API reference holds every public name."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ["modules", "objectives", "data", "envs", "evaluation", "trainers", "experts"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_the_api_reference_holds_every_public_name(site, package):
    module = importlib.import_module(f"aime_torchrl.{package}")
    page = (site / "api" / f"{package}.html").read_text()
    missing = [name for name in module.__all__ if f'id="aime_torchrl.{package}.{name}"' not in page]
    assert not missing, f"docs/api/{package}.rst leaves out {missing}"


def test_every_guide_and_results_page_is_on_the_site(site):
    pages = [*(ROOT / "docs" / "guide").glob("*.md"), *(ROOT / "docs").glob("*/README.md")]
    missing = [str(p.relative_to(ROOT)) for p in pages
               if not (site / p.relative_to(ROOT / "docs")).with_suffix(".html").exists()]
    assert not missing, f"not in docs/index.md's toctrees: {missing}"
