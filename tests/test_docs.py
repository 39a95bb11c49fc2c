"""The documentation says what is true: every file it names exists, and the configuration reference lists
every key of the config model."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from unetflow.config.model import Config
from unetflow.config.schema import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
NAMED = re.compile(r"`((?:unetflow|tests|workflow|benchmarks|configs|profiles|envs|docs)/[A-Za-z0-9_./-]+)`")
LINKED = re.compile(r"\]\(((?!https?:|#)[^)#\s]+)")


def pages() -> list[Path]:
    """The README and every page of the documentation."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_pages_name_and_link_only_files_that_exist() -> None:
    missing = []
    for page in pages():
        text = page.read_text()
        for name in NAMED.findall(text):
            if not (ROOT / name.rstrip("/")).exists():
                missing.append(f"{page.name}: {name}")
        for link in LINKED.findall(text):
            if not (page.parent / link).exists():
                missing.append(f"{page.name}: link {link}")
    assert missing == []


def test_contributing_names_the_files_it_tells_to_change() -> None:
    assert len(NAMED.findall((ROOT / "docs" / "CONTRIBUTING.md").read_text())) >= 15


def fields(model: type[BaseModel], key: str = "") -> set[str]:
    """Every config key (dotted) of a section model and of the sections inside it."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        dotted = f"{key}.{name}" if key else name
        found.add(dotted)
        for candidate in _models(info.annotation):
            found |= fields(candidate, f"{dotted}.<name>" if name == "volumes" else dotted)
    return found


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in getattr(annotation, "__args__", ()) for model in _models(arg)]


def test_configuration_reference_lists_every_key_of_the_model() -> None:
    text = reference_markdown()
    headings = set(re.findall(r"^## `([^`]+)`", text, re.M))
    rows = re.findall(r"^## (?:`([^`]+)`|Top level)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    listed = {
        f"{section}.{key}" if section else key
        for section, body in rows
        for key in re.findall(r"^\| `([a-z_0-9]+)` \|", body, re.M)
    }
    keys = fields(Config)
    # a section used in two places (a model source: pretrained, train.init_from) is described once
    described = {key for key in keys if any(key == k or key.startswith(f"{k}.") for k in listed)}
    assert keys - described <= {key for key in keys if key.startswith("pretrained.")}
    assert {"train.augment", "predict.cluster", "volumes.<name>.labels"} <= headings
    assert "| `elastic_std` | number (>= 0) | `10.0` |" in text
