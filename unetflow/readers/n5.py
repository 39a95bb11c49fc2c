"""N5 datasets read in place with tensorstore's N5 driver, and their stored blocks listed from disk.

N5 states its axes fastest-first (x, y, z): `dimensions`, `blockSize` and the block paths `<x>/<y>/<z>`
are reversed against (z, y, x); each block file is a big-endian header (mode, rank, its own size) then
big-endian data, compressed (raw, gzip, bzip2, xz, blosc, zstd). Edge blocks may be stored cropped.
tensorstore decodes all of that (its view is transposed here to (z, y, x)); zarr-python 3 reads no N5.

A path may name the container (`member`: the dataset inside it), a dataset, or a multiscale group whose
datasets are s0, s1, ... (n5-viewer / BigDataViewer layout; `level` picks one, default s0). The voxel
size comes from `resolution` or `pixelResolution` (a list, or {"dimensions": [...], "unit": ...}) of the
dataset, else of its group times the dataset's `downsamplingFactors`.

A URL (s3://, gs://, https://) is read in place by tensorstore's key-value store of that scheme, its
requests retried with backoff; attributes and folders are read and listed through `unetflow.stores`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, ChunkSet, Volume, open_tensorstore, read_failure, zyx_of
from unetflow.readers.chunkscan import parse_keys, scan_nested
from unetflow.stores import Location, StoreOptions

ATTRIBUTES = "attributes.json"


def read_attributes(folder: Path | Location) -> dict[str, Any]:
    """The attributes.json of an N5 group or dataset ({} where there is none)."""
    path = Location.of(folder) / ATTRIBUTES
    if path.is_local and not path.path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {}
    except (OSError, ValueError) as exc:
        raise read_failure(path, "N5 attributes (JSON)", exc) from exc
    return value if isinstance(value, dict) else {}


def is_dataset(folder: Path | Location) -> bool:
    """Whether `folder` is an N5 dataset (its attributes give `dimensions`)."""
    return "dimensions" in read_attributes(folder)


def dataset_paths(root: Path | Location) -> list[str]:
    """Paths of the datasets below an N5 group; the walk never enters a dataset (its blocks)."""
    found: list[str] = []

    def walk(folder: Location, prefix: str) -> None:
        for name in folder.listdir():
            if name.isdigit() or name == ATTRIBUTES:
                continue
            child = folder / name
            if is_dataset(child):
                found.append(f"{prefix}{name}")
            elif child.listdir():
                walk(child, f"{prefix}{name}/")

    walk(Location.of(root), "")
    return found


def _resolution(attributes: dict[str, Any]) -> list[float] | None:
    """Voxel size in N5 order (x, y, z) from `resolution` or `pixelResolution`, if stated."""
    value = attributes.get("resolution", attributes.get("pixelResolution"))
    if isinstance(value, dict):
        value = value.get("dimensions")
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


def _voxel_size(dataset: Location, group: Location | None) -> list[float] | None:
    """The dataset's voxel size in (…, z, y, x) order (its own, else the group's times its factors)."""
    attributes = read_attributes(dataset)
    size = _resolution(attributes)
    if size is None and group is not None:
        size = _resolution(read_attributes(group))
        factors = attributes.get("downsamplingFactors")
        if size is not None and isinstance(factors, list) and len(factors) == len(size):
            size = [s * float(f) for s, f in zip(size, factors, strict=True)]
    return None if size is None else size[::-1]


def _levels(group: Location) -> list[str]:
    """The s0, s1, ... datasets of a multiscale group, in order."""
    names = [name for name in group.listdir() if name[:1] == "s" and name[1:].isdigit()]
    return [n for n in sorted(names, key=lambda n: int(n[1:])) if is_dataset(group / n)]


class N5Reader(Volume):
    """An N5 dataset (`member`: its path in the container; `level`: s<N> of a multiscale group)."""

    name: ClassVar[str] = "n5"
    label: ClassVar[str] = "N5"
    aliases: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = (".n5",)
    description: ClassVar[str] = "an N5 dataset (.n5 folder; member = dataset path, level = s<N>)"
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
        self.location = Location.of(path, options)
        self.path: Path | Location = self.location.path if self.location.is_local else self.location
        self.dataset = self._resolve(member, level)
        attributes = read_attributes(self.dataset)
        block = attributes.get("blockSize")
        store = self._open_handle()
        self._init_geometry(
            source=self.dataset,
            native_shape=store.shape,
            dtype=store.dtype.numpy_dtype,
            native_chunks=None if block is None else [int(b) for b in block][::-1],
            fill_value=0,
            voxel_size=_voxel_size(self.dataset, self._group),
        )
        self._handle = store
        self._n5_ndim = len(store.shape)

    def _resolve(self, member: str | None, level: int | str | None) -> Location:
        """The dataset folder: path/member, or the level of a multiscale group, or the only dataset."""
        target = self.location / member.strip("/") if member else self.location
        self._group: Location | None = None
        if target.is_local and not target.path.is_dir():
            self._missing(member or "", "no such dataset")
        if not target.is_local and not target.listdir():
            if not member:
                raise target.missing_error("N5 container")
            self._missing(member, "no such dataset")
        if is_dataset(target):
            if level is not None:
                raise InputError(
                    f"{target}: is a single N5 dataset, not a multiscale group; level {level!r} does not "
                    "apply. Fix: drop level, or point member to the group of s0, s1, ..."
                )
            return target
        levels = _levels(target)
        if levels:
            self._group = target
            return target / self._level(levels, level, target)
        if level is not None:
            raise InputError(
                f"{target}: is not a multiscale N5 group (no s0, s1, ... datasets); level {level!r} does not "
                "apply. Fix: drop level and set member to the dataset"
            )
        datasets = dataset_paths(target)
        if len(datasets) == 1:
            return target / datasets[0]
        return self._missing(member or "", f"the group holds {len(datasets)} datasets; name one with member")

    @staticmethod
    def _level(levels: list[str], level: int | str | None, group: Location) -> str:
        if level is None:
            return levels[0]
        name = level if isinstance(level, str) and not level.isdigit() else f"s{int(level)}"
        if name in levels:
            return name
        raise InputError(
            f"{group}: no multiscale level {level!r}; the levels are {', '.join(levels)}. "
            "Fix: set level to one of them (or its index; 0 is full resolution)"
        )

    def _missing(self, member: str, problem: str) -> Any:
        listing = ", ".join(dataset_paths(self.path)) or "none"
        what = f"member {member!r}: {problem}" if member else problem
        raise InputError(
            f"{self.path}: {what}; the N5 datasets in this container are: {listing}. "
            "Fix: set member to one of them"
        )

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder named *.n5 or whose attributes.json is an N5 root or dataset."""
        if not path.is_dir():
            return False
        if path.suffix.lower() in cls.suffixes:
            return True
        attributes = read_attributes(path)
        return "n5" in attributes or "dimensions" in attributes

    def _open_handle(self) -> Any:
        """The tensorstore view of the dataset with axes reversed to (…, z, y, x)."""
        return open_tensorstore({"driver": "n5"}, self.dataset, "an N5 dataset").T

    def _read_box(self, box: Box) -> np.ndarray:
        try:
            return self._opened()[self.native_key(box)].read().result()
        except Exception as exc:
            raise read_failure(self.dataset, "an N5 dataset", exc) from exc

    def stored_chunks(self, z_range: tuple[int, int] | None = None) -> ChunkSet | None:
        """Blocks written to the dataset, from a walk of its <x>/<y>/<z>... folders (one listing of its
        prefix on a store)."""
        rows = self._z_chunk_range(z_range)
        ndim = self._n5_ndim
        allowed = {2: rows} if rows is not None and ndim >= 3 else None
        if self.dataset.is_local:
            keys = scan_nested(self.dataset.path, ndim, allowed=allowed)
        else:
            keys = parse_keys(self.dataset.sizes(), ndim, separator="/")
        if ndim == 3:
            return {(z, y, x) for x, y, z in keys}
        found: ChunkSet = set()
        for key in keys:
            z, y, x = zyx_of(key[::-1], ndim, pad=0)
            if rows is None or z in rows:
                found.add((z, y, x))
        return found
