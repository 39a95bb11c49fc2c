"""The report's page from its templates (`templates/*.html.j2`) and stylesheet (`static/report.css`).

Jinja2 escapes every value the templates show (autoescaping), so names and paths from the run cannot break
the page. The stylesheet is inlined: the page stays one self-contained file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from unetflow.report.formatting import format_seconds, format_value, number, slice_ranges
from unetflow.report.sections import Card, Section


@dataclass(frozen=True)
class Page:
    """The page around its sections: the run in one line, the headline cards, the contents, the time."""

    volume: str
    test: list[int]
    models: list[str]
    main: str
    cards: list[Card]
    sections: Sequence[Section]
    generated: str


def _fmt(value: Any, spec: str) -> str:
    """`format(value, spec)`: the templates' numbers in a given format, e.g. `x | fmt(".3g")`."""
    return format(value, spec)


def _finite(value: Any) -> bool:
    """The templates' test `is finite`: a number that is neither NaN nor infinite."""
    return math.isfinite(number(value))


@cache
def environment() -> Environment:
    """The Jinja2 environment of the report's templates: autoescaping, strict about undefined names."""
    env = Environment(
        loader=PackageLoader("unetflow.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(value=format_value, seconds=format_seconds, ranges=slice_ranges, fmt=_fmt)
    env.tests["finite"] = _finite
    return env


def stylesheet() -> Markup:
    """The page's CSS (package data), marked safe to inline: it is ours, and a <style> is not escaped text."""
    css = resources.files("unetflow.report").joinpath("static").joinpath("report.css")
    return Markup(css.read_text(encoding="utf-8"))


def render(content: Page) -> str:
    """The HTML page."""
    return environment().get_template("page.html.j2").render(page=content, css=stylesheet())
