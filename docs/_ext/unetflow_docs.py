"""Sphinx extension of unetflow's documentation: pages generated from the code, so they cannot drift.

``{config-reference}`` renders every config key (type, default, description) from the config model's schema
(unetflow.config.schema.reference_markdown).
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from unetflow.config.schema import reference_markdown


class ConfigReference(SphinxDirective):
    """The configuration reference: one table per config section."""

    def run(self) -> list[nodes.Node]:
        return self.parse_text_to_nodes(reference_markdown(level=2), allow_section_headings=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
