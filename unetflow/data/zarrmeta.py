"""Zarr metadata read as plain JSON, without importing zarr: the workflow reads plans, shapes and attributes
while parsing the Snakefile, once per job, where a second of imports is a second per job. A path or a
`unetflow.stores.Location` (a URL on an object store: one GET per metadata document)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unetflow.stores import Location


def _json(path: Location) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ):
        return None


def group_attrs(path: str | Path | Location) -> dict[str, Any] | None:
    """The attributes of a Zarr v3 or v2 group (or array) at `path`; None where there is none."""
    folder = Location.of(path)
    v3 = _json(folder / "zarr.json")
    if v3 is not None:
        return dict(v3.get("attributes") or {})
    v2 = _json(folder / ".zattrs")
    if v2 is not None or (folder / ".zgroup").is_file() or (folder / ".zarray").is_file():
        return dict(v2 or {})
    return None


def array_shape(path: str | Path | Location) -> tuple[int, ...] | None:
    """The shape of the Zarr array at `path` (v3 or v2); None where there is none."""
    folder = Location.of(path)
    meta = _json(folder / "zarr.json")
    if meta is not None and meta.get("node_type") == "array":
        return tuple(int(s) for s in meta["shape"])
    meta = _json(folder / ".zarray")
    if meta is not None:
        return tuple(int(s) for s in meta["shape"])
    return None


def image_shape(path: str | Path | Location) -> tuple[int, ...] | None:
    """The shape of an OME-Zarr image's first multiscale level, or of a plain array; None if neither."""
    folder = Location.of(path)
    shape = array_shape(folder)
    if shape is not None:
        return shape
    attrs = group_attrs(folder)
    if attrs is None:
        return None
    multiscales = attrs.get("multiscales") or dict(attrs.get("ome") or {}).get("multiscales") or []
    level = str(multiscales[0]["datasets"][0]["path"]) if multiscales else "0"
    return array_shape(folder / level)
