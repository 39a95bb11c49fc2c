"""An HDF5 dataset read in place: hyperslab reads touch only the chunks (or rows) they need.

The voxel size comes from the dataset's `element_size_um` (ilastik, Fiji) or `resolution` (CREMI)
attribute, both in (z, y, x) order. Stored chunks are listed from HDF5's own index of allocated chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, ChunkSet, Volume, unreadable_error, zyx_of

if TYPE_CHECKING:
    import h5py

VOXEL_ATTRIBUTES = ("element_size_um", "resolution")
"""Dataset attributes that give the voxel size, in (z, y, x) order."""


def dataset_names(h5: h5py.File) -> list[str]:
    """Paths of every dataset in the file."""
    import h5py

    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _voxel_size(dataset: h5py.Dataset) -> list[float] | None:
    for key in VOXEL_ATTRIBUTES:
        value = dataset.attrs.get(key)
        if value is not None and np.ndim(value) == 1 and np.asarray(value).dtype.kind in "iuf":
            return [float(v) for v in np.asarray(value)]
    return None


class Hdf5Reader(Volume):
    """One dataset of an HDF5 file (`member`: its path; optional when the file holds one dataset)."""

    name: ClassVar[str] = "hdf5"
    label: ClassVar[str] = "HDF5"
    aliases: ClassVar[tuple[str, ...]] = ("h5", "hdf")
    suffixes: ClassVar[tuple[str, ...]] = (".h5", ".hdf5", ".hdf", ".he5")
    description: ClassVar[str] = "an HDF5 dataset, chunked or contiguous (.h5, .hdf5; member = its path)"
    chunked: ClassVar[bool] = True
    takes_member: ClassVar[bool] = True

    def __init__(self, path: Path, *, member: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        try:
            h5 = h5py.File(self.path, "r")
        except Exception as exc:
            raise unreadable_error(self.path, "an HDF5 file", exc) from exc
        try:
            datasets = dataset_names(h5)
            listing = ", ".join(datasets) if datasets else "none"
            if member is None:
                if len(datasets) != 1:
                    raise InputError(
                        f"{self.path}: holds {len(datasets)} datasets ({listing}); name the one to read with "
                        "member"
                    )
                member = datasets[0]
            node = h5.get(member)
            if not isinstance(node, h5py.Dataset):
                raise InputError(
                    f"{self.path}: no HDF5 dataset {member!r}; the datasets in this file are: {listing}. "
                    "Fix: set member to one of them"
                )
            self.member = node.name
            self._init_geometry(
                source=f"{self.path}/{member.strip('/')}",
                native_shape=node.shape,
                dtype=node.dtype,
                native_chunks=node.chunks,
                fill_value=node.fillvalue,
                voxel_size=_voxel_size(node),
            )
        except BaseException:
            h5.close()
            raise
        self._handle = h5

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A file with an HDF5 suffix."""
        return path.is_file() and path.suffix.lower() in cls.suffixes

    def _open_handle(self) -> h5py.File:
        import h5py

        return h5py.File(self.path, "r")

    def _dataset(self) -> h5py.Dataset:
        return self._opened()[self.member]

    def _read_box(self, box: Box) -> np.ndarray:
        return self._dataset()[self.native_key(box)]

    def stored_chunks(self, z_range: tuple[int, int] | None = None) -> ChunkSet | None:
        """Chunks HDF5 has allocated (written), from its chunk index; None for a contiguous dataset."""
        if self.chunks is None:
            return None
        dataset = self._dataset()
        native_chunks = dataset.chunks
        rows = self._z_chunk_range(z_range)
        found: ChunkSet = set()

        def add(info: Any) -> None:
            grid = [int(o) // int(c) for o, c in zip(info.chunk_offset, native_chunks, strict=True)]
            z, y, x = zyx_of(grid, len(native_chunks), pad=0)
            if rows is None or z in rows:
                found.add((z, y, x))

        dsid = dataset.id
        if hasattr(dsid, "chunk_iter"):
            dsid.chunk_iter(add)
        else:
            for i in range(dsid.get_num_chunks()):
                add(dsid.get_chunk_info(i))
        return found
