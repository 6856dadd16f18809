# Copyright (c) aime-torchrl contributors.
#
# This source code is licensed under the MIT license found in the
# LICENSE file in the root directory of this source tree.
"""Sphinx site: the guides, the results pages and the API reference from the docstrings.

    pip install -e ".[docs]" && sphinx-build -W docs docs/_build    # then open docs/_build/index.html
"""
import importlib
import pkgutil

from sphinx.pycode import ModuleAnalyzer

import aime_torchrl

project = "aime-torchrl"
copyright = "aime-torchrl contributors"
release = aime_torchrl.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# The site's pages: the guides, the API reference and each study's results page (not its tables and cells).
include_patterns = ["index.md", "guide/*.md", "api/*.rst", "*/README.md", "lawm/policy_design.md"]
exclude_patterns = ["_build"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]  # results pages link their raw files (json, csv, yaml), not pages

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True, "imported-members": True}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"


def _constant_doc(app, what, name, obj, options, lines):
    """A re-exported constant gets the ``#:`` comment of the module that defines it."""
    if what != "data":
        return
    attr = name.rsplit(".", 1)[1]
    for info in pkgutil.walk_packages(aime_torchrl.__path__, "aime_torchrl."):
        module = importlib.import_module(info.name)
        docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
        if ("", attr) in docs and getattr(module, attr, None) is obj:
            lines[:] = list(docs["", attr])
            return


def setup(app):
    app.connect("autodoc-process-docstring", _constant_doc)
