"""Zarr arrays read in place: v2 ('.' or '/' keys), v3 (default 'c/' or v2 key encoding, sharded or not),
and OME-Zarr images (NGFF 0.4: top-level `multiscales`; 0.5: `ome.multiscales`) at a chosen level.

A URL (s3://, gs://, https://) is read in place the same way, through fsspec: zarr-python fetches the
chunks a read touches concurrently, each request retried with backoff (`unetflow.stores`).

Stored chunks are listed from the chunk keys on disk: a flat layout is one scandir of the array folder,
a nested one walks only the folders that exist (see `chunkscan`); on a store, one listing of the array's
prefix (or of each z row's, for a z range). For a sharded array the storage unit is the shard: `chunks` is
the shard shape and `stored_chunks` lists written shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, ChunkSet, Volume, read_failure, zyx_of
from unetflow.readers.chunkscan import parse_keys, scan_flat, scan_nested
from unetflow.stores import Location, StoreOptions

if TYPE_CHECKING:
    import zarr

MARKERS = (".zarray", ".zgroup", "zarr.json")
"""Files that make a folder a Zarr node (v2 array, v2 group, v3 node)."""
ROW_LISTINGS = 64
"""Up to this many z rows, a store's chunk keys are listed row by row (else the whole array at once)."""


def ome_multiscales(group: zarr.Group) -> list[dict[str, Any]]:
    """The OME "multiscales" list of a group (NGFF 0.4 top level, or 0.5 under "ome"); [] if none."""
    attrs = group.attrs.asdict()
    return list(attrs.get("multiscales") or dict(attrs.get("ome") or {}).get("multiscales") or [])


def _scale(transforms: Any) -> list[float] | None:
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == "scale" and transform.get("scale"):
            return [float(v) for v in transform["scale"]]
    return None


def ome_voxel_size(multiscale: dict[str, Any], index: int) -> list[float] | None:
    """Per-axis scale of level `index`: the dataset's scale times the multiscale's own scale (if any)."""
    scale = _scale(multiscale["datasets"][index].get("coordinateTransformations"))
    overall = _scale(multiscale.get("coordinateTransformations"))
    if scale is not None and overall is not None and len(overall) == len(scale):
        scale = [a * b for a, b in zip(scale, overall, strict=True)]
    return scale


def _level_index(multiscale: dict[str, Any], level: int | str | None, source: str) -> int:
    """The index of the multiscale level named by position or by dataset path (default: 0, the finest)."""
    paths = [str(d["path"]) for d in multiscale["datasets"]]
    if level is None:
        return 0
    if isinstance(level, str) and level in paths:
        return paths.index(level)
    if not isinstance(level, bool) and str(level).isdigit() and int(level) < len(paths):
        return int(level)
    listing = ", ".join(f"{i}: {p}" for i, p in enumerate(paths))
    raise InputError(
        f"{source}: no multiscale level {level!r}; the levels are {listing}. "
        "Fix: set level to one of these indices or paths (0 is full resolution)"
    )


def array_names(group: zarr.Group) -> list[str]:
    """Paths of every array below a group."""
    import zarr

    return sorted(name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array))


class ZarrReader(Volume):
    """A Zarr array or an OME-Zarr image's level (`member`: path inside the store; `level`: index/path)."""

    name: ClassVar[str] = "zarr"
    label: ClassVar[str] = "Zarr"
    aliases: ClassVar[tuple[str, ...]] = ("ome-zarr", "omezarr", "ome.zarr")
    suffixes: ClassVar[tuple[str, ...]] = (".zarr",)
    description: ClassVar[str] = (
        "a Zarr v2/v3 array or OME-Zarr 0.4/0.5 image (.zarr; member = path inside, level = scale)"
    )
    chunked: ClassVar[bool] = True
    remote: ClassVar[bool] = True
    takes_member: ClassVar[bool] = True
    takes_level: ClassVar[bool] = True

    def __init__(
        self,
        path: Path | Location,
        *,
        member: str | None = None,
        level: int | str | None = None,
        options: StoreOptions | None = None,
    ) -> None:
        import zarr

        self.location = Location.of(path, options)
        self.path: Path | Location = self.location.path if self.location.is_local else self.location
        try:
            node = zarr.open(store=self.location.zarr_store(read_only=True, keep=True), mode="r")
        except Exception as exc:
            if not self.location.is_local and type(exc).__name__.endswith("NotFoundError"):
                raise self.location.missing_error("Zarr array or group") from exc
            raise read_failure(self.location, "a Zarr store", exc) from exc
        array, voxel_size = self._resolve(node, member, level)
        self.array_path = array.path
        storage = array.shards or array.chunks
        self._init_geometry(
            source=self.path / array.path if array.path else self.path,
            native_shape=array.shape,
            dtype=array.dtype,
            native_chunks=storage,
            fill_value=array.fill_value,
            voxel_size=voxel_size,
        )
        self._handle = array

    def _resolve(
        self, node: zarr.Array | zarr.Group, member: str | None, level: int | str | None
    ) -> tuple[zarr.Array, list[float] | None]:
        """The array to read and its voxel size: member, then OME level, then the store's only array."""
        import zarr

        if isinstance(node, zarr.Array):
            if member not in (None, ""):
                raise InputError(
                    f"{self.path}: is a single Zarr array; member {member!r} does not apply. Fix: drop it"
                )
            if level is not None:
                raise InputError(
                    f"{self.path}: is a single Zarr array, not an OME-Zarr multiscale image; level "
                    f"{level!r} does not apply. Fix: drop level"
                )
            return node, None
        root = node
        if member not in (None, ""):
            found = node.get(str(member).strip("/"))
            if found is None:
                self._missing(root, str(member))
            node = found
            if isinstance(node, zarr.Array):
                if level is not None:
                    raise InputError(
                        f"{self.path}/{member}: is a Zarr array, not an OME-Zarr multiscale image; level "
                        f"{level!r} does not apply. Fix: drop level, or set member to the image group"
                    )
                return node, self._voxel_size_of(root, str(member))
        multiscales = ome_multiscales(node)
        if multiscales:
            index = _level_index(multiscales[0], level, f"{self.path}")
            path = str(multiscales[0]["datasets"][index]["path"])
            found = node.get(path)
            if not isinstance(found, zarr.Array):
                raise InputError(
                    f"{self.path}: the OME-Zarr image lists level {path!r} but the store has no such array. "
                    "Fix: write the image again, or point member to an array that exists"
                )
            return found, ome_voxel_size(multiscales[0], index)
        if level is not None:
            raise InputError(
                f"{self.path}: has no OME-Zarr multiscales metadata; level {level!r} does not apply. "
                "Fix: drop level and set member to the array to read"
            )
        found = node.get("0")
        if isinstance(found, zarr.Array):
            return found, None
        arrays = array_names(node)
        if len(arrays) == 1:
            return node[arrays[0]], None
        return self._missing(root, "0" if member in (None, "") else str(member))

    def _missing(self, root: zarr.Group, member: str) -> Any:
        arrays = array_names(root)
        raise InputError(
            f"{self.path}: no Zarr array {member!r}; the arrays in this store are: "
            f"{', '.join(arrays) or 'none'}. Fix: set member to one of them"
        )

    @staticmethod
    def _voxel_size_of(root: zarr.Group, member: str) -> list[float] | None:
        """Voxel size of an array named by path when its parent group is an OME image listing it."""
        import zarr

        parent, _, name = member.strip("/").rpartition("/")
        group = root.get(parent) if parent else root
        if not isinstance(group, zarr.Group):
            return None
        for multiscale in ome_multiscales(group):
            paths = [str(d["path"]) for d in multiscale["datasets"]]
            if name in paths:
                return ome_voxel_size(multiscale, paths.index(name))
        return None

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder named *.zarr or holding Zarr metadata."""
        return path.is_dir() and (
            path.suffix.lower() in cls.suffixes or any((path / marker).exists() for marker in MARKERS)
        )

    def _open_handle(self) -> zarr.Array:
        import zarr

        store = self.location.zarr_store(read_only=True, keep=True)
        if self.array_path:
            return zarr.open_group(store=store, mode="r")[self.array_path]
        return zarr.open_array(store=store, mode="r")

    def _read_box(self, box: Box) -> np.ndarray:
        try:
            return self._opened()[self.native_key(box)]
        except Exception as exc:
            raise read_failure(self.location, "a Zarr array", exc) from exc

    def _keys(self, z_rows: range | None) -> Iterator[tuple[int, ...]] | None:
        """Grid coordinates of the chunk (or shard) keys on disk, in native axis order."""
        from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding, V2ChunkKeyEncoding
        from zarr.core.metadata import ArrayV2Metadata

        metadata = self._opened().metadata
        ndim = self._native_ndim
        if isinstance(metadata, ArrayV2Metadata):
            prefix, separator = "", metadata.dimension_separator or "."
        else:
            encoding = metadata.chunk_key_encoding
            if isinstance(encoding, DefaultChunkKeyEncoding):
                prefix, separator = "c" + encoding.separator, encoding.separator
            elif isinstance(encoding, V2ChunkKeyEncoding):
                prefix, separator = "", encoding.separator
            else:
                return None
        folder = self.location / self.array_path
        if not folder.is_local:
            return self._listed_keys(folder, z_rows, prefix=prefix, separator=separator)
        if separator == "/":
            allowed = {ndim - 3: z_rows} if z_rows is not None and ndim >= 3 else None
            return scan_nested(folder.path / prefix.rstrip("/"), ndim, allowed=allowed)
        return scan_flat(folder.path, ndim, prefix=prefix, separator=separator)

    def _listed_keys(
        self, folder: Location, z_rows: range | None, *, prefix: str, separator: str
    ) -> Iterator[tuple[int, ...]]:
        """Chunk keys of an array on a store: one listing of its prefix, or one per z row of a short range
        (a nested 3-D layout), never a request per chunk slot."""
        ndim = self._native_ndim
        if separator == "/" and ndim == 3 and z_rows is not None and len(z_rows) <= ROW_LISTINGS:
            base = prefix.rstrip("/")
            names = [f"{prefix}{z}/{key}" for z in z_rows for key in (folder / base / str(z)).sizes()]
        else:
            names = list(folder.sizes())
        return parse_keys(names, ndim, prefix=prefix, separator=separator)

    def stored_chunks(self, z_range: tuple[int, int] | None = None) -> ChunkSet | None:
        """Chunks (shards, for a sharded array) written to the store, from a walk of its key folders."""
        rows = self._z_chunk_range(z_range)
        keys = self._keys(rows)
        if keys is None:
            return None
        if self._native_ndim == 3 and rows is None:
            return set(keys)  # type: ignore[arg-type]
        found: ChunkSet = set()
        for key in keys:
            z, y, x = zyx_of(key, self._native_ndim, pad=0)
            if rows is None or z in rows:
                found.add((z, y, x))
        return found
