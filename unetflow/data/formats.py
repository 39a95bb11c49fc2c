"""The volume readers as the importer uses them: a (z, y, x) dask array or numpy array of any input.

A thin facade over `unetflow.readers` (one reader class per format and the registry of formats): the
names, aliases and messages all come from there.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np

from unetflow.data.omezarr import default_chunks
from unetflow.readers import detect_format, open_input
from unetflow.readers.base import zyx_shape


def infer_format(path: str | os.PathLike[str]) -> str:
    """The format of `path` from its suffix or, for a folder, its content (a name of the reader registry)."""
    return detect_format(path)


def as_zyx(data: Any, source: str | os.PathLike[str]) -> Any:
    """`data` (numpy or dask) as (z, y, x): 2-D gets one slice, leading size-1 axes go, else InputError."""
    shape = zyx_shape(data.shape, source)
    return data.reshape(shape)


def open_volume(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    member: str | None = None,
    level: int | str | None = None,
) -> da.Array:
    """A lazy (z, y, x) dask array over the volume at `path`: one task per storage chunk (or slice)."""
    volume = open_input(path, format=format, member=member, level=level)
    chunks = volume.chunks or (default_chunks(volume.shape) if volume.chunked else None)
    return volume.to_dask(chunks=chunks)


def read_volume(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    member: str | None = None,
    level: int | str | None = None,
) -> np.ndarray:
    """The whole (z, y, x) volume at `path` in memory (format inferred from the suffix unless given)."""
    with open_input(path, format=format, member=member, level=level) as volume:
        return volume.read()
