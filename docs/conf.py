"""Sphinx configuration: MyST pages, and references made from the code at build time (the CLI
from the typer app's own help, the Python API from docstrings, the profile keys from the schema
that validates them) into docs/_generated/, never written by hand."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

project = "dasklaunch"
author = "the dasklaunch developers"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.md"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path: list[str] = []
autodoc_member_order = "bysource"
nitpicky = False


def _generate(app) -> None:
    from generate import write_all

    write_all(HERE / "_generated")


def setup(app):
    app.connect("builder-inited", _generate)
