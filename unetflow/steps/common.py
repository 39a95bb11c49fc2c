"""What several steps share: writing a JSON result atomically, and where predict.output's files lie."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unetflow.atomic import atomic_path
from unetflow.config.model import OutputConfig
from unetflow.stores import Location


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (indented, for people and diff tools)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def output_place(target: str, output: OutputConfig | None) -> Location:
    """Where `target` lies: under predict.output (a prediction, a segmentation), with the options to reach
    its store (endpoint_url, profile: never a credential); else a plain path or URL."""
    root = None if output is None else output.url.rstrip("/")
    if root is not None and (target == root or target.startswith(root + "/")):
        return Location(target, output.options)
    return Location(target)


def write_record(record: str, what: str, place: Location) -> None:
    """The local record that names where an output on predict.output was written (`{what: url}` and how to
    reach its store): what the workflow tracks of it, an object store being no place Snakemake checks."""
    write_json(record, {what: place.url, **place.options.to_dict()})
