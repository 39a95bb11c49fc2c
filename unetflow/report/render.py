"""The report's page from its templates (`templates/*.html.j2`) and stylesheet (`static/report.css`).

Jinja2 escapes every value the templates show (autoescaping), so names and paths from the run cannot break
the page. The stylesheet is inlined: the page stays one self-contained file.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from unetflow.atomic import atomic_path
from unetflow.report.formatting import format_seconds, format_value, number, slice_ranges
from unetflow.report.sections import Card, Section
from unetflow.report.style import css_variables


@dataclass(frozen=True)
class Page:
    """The page of a run that trained its models: the run in one line, the headline cards, the contents."""

    TEMPLATE: ClassVar[str] = "page.html.j2"
    volume: str
    test: list[int]
    models: list[str]
    main: str
    cards: list[Card]
    sections: Sequence[Section]
    generated: str


@dataclass(frozen=True)
class PredictionPage:
    """The page of a run that only predicted: the model, its volumes, the sections."""

    TEMPLATE: ClassVar[str] = "prediction_page.html.j2"
    model: str
    volumes: list[str]
    sections: Sequence[Section]
    generated: str


@dataclass(frozen=True)
class CellsPage:
    """The page of a cell tracking run (the paper's Table 2): the dataset, the run's mean SEG, the paper's."""

    TEMPLATE: ClassVar[str] = "ctc_page.html.j2"
    dataset: str
    seg: float
    paper: float | None
    sections: Sequence[Section]
    generated: str


def generated_now() -> str:
    """When a page is generated, in the machine's time zone (its header says it)."""
    return dt.datetime.now(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")


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
    """The page's CSS (package data) after its colours (unetflow.report.style), marked safe to inline: it is
    ours, and a <style> is not escaped text."""
    css = resources.files("unetflow.report").joinpath("static").joinpath("report.css")
    return Markup(css_variables() + css.read_text(encoding="utf-8"))


def write_page(output: str | os.PathLike[str], page: Page | PredictionPage | CellsPage) -> None:
    """Render a page with its template (the stylesheet inlined) and write it to `output` atomically."""
    html = environment().get_template(page.TEMPLATE).render(page=page, css=stylesheet())
    with atomic_path(output) as tmp:
        tmp.write_text(html, encoding="utf-8")
