"""Sphinx configuration of unetflow's documentation (`make docs`; `make test` builds it with warnings as
errors, so a broken link or reference fails)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent / "_ext")]

project = "unetflow"
author = "the unetflow developers"
copyright = "unetflow's developers; MIT licence"
extensions = ["myst_parser", "unetflow_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "CONTRIBUTING.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nitpicky = True
html_theme = "pydata_sphinx_theme"
html_title = "unetflow"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": []}
