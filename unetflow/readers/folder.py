"""A folder of 2-D slices (PNG, TIFF, JPEG...), one file per z in natural name order ('s2' before 's10')."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, Volume
from unetflow.readers.image import SLICE_SUFFIXES, read_slice


def natural_key(name: str) -> list[Any]:
    """Sort key that orders 'slice2' before 'slice10' (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def slice_files(folder: Path) -> list[Path]:
    """The image files of `folder` (hidden files and other suffixes skipped) in natural order."""
    files = [
        f
        for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SLICE_SUFFIXES
    ]
    return sorted(files, key=lambda f: natural_key(f.name))


class SliceFolderReader(Volume):
    """A folder of equally sized 2-D slices; each read decodes only the slices it covers."""

    name: ClassVar[str] = "slices"
    label: ClassVar[str] = "slice folder"
    aliases: ClassVar[tuple[str, ...]] = ("folder", "directory")
    description: ClassVar[str] = "a folder of 2-D slices, one file each, in natural name order"
    chunked: ClassVar[bool] = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.files = slice_files(self.path)
        if not self.files:
            raise InputError(
                f"{self.path}: the folder holds no image slices (.png/.tif/.tiff/.jpg); "
                "Fix: point to the folder that holds them, or to the volume file itself"
            )
        first = read_slice(self.files[0])
        self._init_geometry(
            source=self.path,
            native_shape=(len(self.files), *first.shape),
            dtype=first.dtype,
            native_chunks=None,
        )

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Any folder that no chunked format claimed."""
        return path.is_dir()

    def read_file(self, index: int) -> np.ndarray:
        """Slice `index`, checked to have the first slice's shape and pixel type."""
        path = self.files[index]
        image = read_slice(path)
        if image.shape != self.shape[1:]:
            raise InputError(
                f"{path}: slice of shape {image.shape} differs from the first slice's {self.shape[1:]}; "
                "all slices of a folder must have the same size. Fix: crop/pad them alike or remove the odd "
                "one"
            )
        if image.dtype.newbyteorder("=") != self.dtype:
            raise InputError(
                f"{path}: pixel type {image.dtype} differs from the first slice's {self.dtype}; all slices "
                "of a folder must have the same type. Fix: export them alike (e.g. all 8-bit)"
            )
        return image

    def _read_box(self, box: Box) -> np.ndarray:
        return np.stack([self.read_file(z)[box[1], box[2]] for z in range(box[0].start, box[0].stop)])
