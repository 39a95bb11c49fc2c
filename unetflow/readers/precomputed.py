"""Neuroglancer precomputed volumes (H01, MICrONS, FAFB, the hemibrain) read in place with tensorstore.

A precomputed volume is a folder (or URL prefix) with an `info` JSON listing its scales, finest first; each
scale has a `key` (its folder), `size`, `resolution` (nm) and `voxel_offset` in (x, y, z), chunk sizes and
an encoding (raw, jpeg, compressed_segmentation, ...; tensorstore decodes them all). `level` picks a scale
like an OME-Zarr level: its index (0: finest) or its key ("8_8_40"). The volume's origin is moved to 0 so
that a prediction's voxel (z, y, x) is (z, y, x) - voxel_offset of the source.

Stored chunks of an unsharded scale are listed from its chunk files `<x0>-<x1>_<y0>-<y1>_<z0>-<z1>` (one
listing of the scale's folder); a sharded scale cannot tell cheaply, so every region counts as data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, ChunkSet, Volume, open_tensorstore, read_failure
from unetflow.stores import Location, StoreOptions

INFO = "info"
"""The file (object) that makes a folder a precomputed volume."""


def read_info(location: Location) -> dict[str, Any] | None:
    """The `info` JSON of a precomputed volume, or None where there is none (or it is not one)."""
    try:
        value = json.loads((location / INFO).read_text())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise read_failure(location / INFO, "a neuroglancer precomputed info (JSON)", exc) from exc
    return value if isinstance(value, dict) and isinstance(value.get("scales"), list) else None


def _scale_index(scales: list[dict[str, Any]], level: int | str | None, source: str) -> int:
    """The scale `level` names by index or key (default 0, the finest)."""
    keys = [str(scale.get("key")) for scale in scales]
    if level is None:
        return 0
    if isinstance(level, str) and level in keys:
        return keys.index(level)
    if not isinstance(level, bool) and str(level).isdigit() and int(level) < len(keys):
        return int(level)
    listing = ", ".join(f"{i}: {key}" for i, key in enumerate(keys))
    raise InputError(
        f"{source}: no scale {level!r}; the scales are {listing}. Fix: set level to one of these indices or "
        "keys (0 is the finest)"
    )


def _chunk_origin(name: str) -> tuple[int, int, int] | None:
    """The (x, y, z) start of a chunk file `<x0>-<x1>_<y0>-<y1>_<z0>-<z1>` (None for other names)."""
    parts = name.split("_")
    if len(parts) != 3:
        return None
    starts = []
    for part in parts:
        low, sep, high = part.partition("-")
        if not sep or not low.isdigit() or not high.isdigit():
            return None
        starts.append(int(low))
    return starts[0], starts[1], starts[2]


class PrecomputedReader(Volume):
    """A neuroglancer precomputed image volume (`level`: the scale's index or key; one channel)."""

    name: ClassVar[str] = "precomputed"
    label: ClassVar[str] = "neuroglancer precomputed"
    aliases: ClassVar[tuple[str, ...]] = ("neuroglancer-precomputed", "neuroglancer_precomputed")
    suffixes: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = (
        "a neuroglancer precomputed volume (a folder or URL with an `info` file; level = scale index or key)"
    )
    chunked: ClassVar[bool] = True
    remote: ClassVar[bool] = True
    takes_level: ClassVar[bool] = True

    def __init__(
        self, path: Path | Location, *, level: int | str | None = None, options: StoreOptions | None = None
    ) -> None:
        self.location = Location.of(path, options)
        self.path: Path | Location = self.location.path if self.location.is_local else self.location
        info = read_info(self.location)
        if info is None:
            if not self.location.is_local and not self.location.listdir():
                raise self.location.missing_error("precomputed volume")
            raise InputError(
                f"{self.location}: no neuroglancer precomputed `info` with scales there. Fix: point to the "
                "volume's folder (the one holding `info`), or name its real format"
            )
        if int(info.get("num_channels", 1)) != 1:
            raise InputError(
                f"{self.location}: {info.get('num_channels')} channels; unetflow needs one grey-value "
                "channel. "
                "Fix: point to a single-channel image volume"
            )
        scales = info["scales"]
        self.scale_index = _scale_index(scales, level, str(self.location))
        scale = scales[self.scale_index]
        self.scale_key = str(scale.get("key"))
        self.sharded = bool(scale.get("sharding"))
        self.offset = tuple(int(v) for v in scale.get("voxel_offset", (0, 0, 0)))
        self._xyz_chunk = tuple(int(v) for v in scale["chunk_sizes"][0])
        store = self._open_handle()
        self._init_geometry(
            source=self.location / self.scale_key,
            native_shape=store.shape,
            dtype=store.dtype.numpy_dtype,
            native_chunks=(1, *self._xyz_chunk[::-1]),
            fill_value=0,
            voxel_size=[float(v) for v in scale.get("resolution", ())][::-1] or None,
        )
        self._handle = store

    def _open_handle(self) -> Any:
        """The tensorstore view of the scale as (channel, z, y, x), its origin moved to 0."""
        import tensorstore as ts

        store = open_tensorstore(
            {"driver": "neuroglancer_precomputed", "scale_index": self.scale_index},
            self.location,
            "a neuroglancer precomputed volume",
        )
        return store[ts.d[:].translate_to[0]].T

    def _read_box(self, box: Box) -> np.ndarray:
        try:
            return self._opened()[self.native_key(box)].read().result()
        except Exception as exc:
            raise read_failure(self.location, "a neuroglancer precomputed volume", exc) from exc

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder holding a precomputed `info` file with scales."""
        return path.is_dir() and (path / INFO).is_file() and read_info(Location(path)) is not None

    def stored_chunks(self, z_range: tuple[int, int] | None = None) -> ChunkSet | None:
        """Chunks written to an unsharded scale, from one listing of its folder (None when sharded)."""
        if self.sharded:
            return None
        rows = self._z_chunk_range(z_range)
        cx, cy, cz = self._xyz_chunk
        ox, oy, oz = self.offset
        found: ChunkSet = set()
        for name in (self.location / self.scale_key).listdir():
            origin = _chunk_origin(name)
            if origin is None:
                continue
            grid = ((origin[2] - oz) // cz, (origin[1] - oy) // cy, (origin[0] - ox) // cx)
            if rows is None or grid[0] in rows:
                found.add(grid)
        return found
