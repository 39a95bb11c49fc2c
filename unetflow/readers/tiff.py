"""Multi-page TIFF stacks (one page per z slice), read page by page, and the check that a TIFF is whole.

A TIFF cut short (an interrupted download or copy) still parses: tifffile stops at the first page whose
directory lies past the end and returns the pages before it, or falls back to a one-page series. So a
reader checks, before it reads any pixel, that the chain of page directories ends inside the file (by
the TIFF layout itself, whatever tifffile makes of it), that every page's data lies inside the file and
that the number of slices is the one the file declares.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, Volume, colour_error, truncated_error, unreadable_error

if TYPE_CHECKING:
    import tifffile


def _declared_planes(tif: tifffile.TiffFile) -> int | None:
    """The number of 2-D planes the file's own metadata declares (tifffile's shaped JSON, ImageJ)."""
    if tif.is_shaped and tif.shaped_metadata:
        shape = tif.shaped_metadata[0].get("shape")
        if shape:
            return math.prod(int(s) for s in shape) // max(1, math.prod(tif.series[0].keyframe.shape))
    if tif.is_imagej and tif.imagej_metadata:
        images = tif.imagej_metadata.get("images")
        if images:
            return int(images)
    return None


def chain_problem(path: Path) -> str | None:
    """Walk the file's chain of page directories by the TIFF layout alone: where one (or its 'next'
    pointer) lies past the end of the file, say so; None when the chain ends properly (or is no TIFF)."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        header = handle.read(16)
        order = {b"II": "<", b"MM": ">"}.get(header[:2])
        if order is None or len(header) < 8:
            return None
        (version,) = struct.unpack(order + "H", header[2:4])
        if version == 42:
            count_format, tag_size, pointer_format = order + "H", 12, order + "I"
            (offset,) = struct.unpack(order + "I", header[4:8])
        elif version == 43 and len(header) == 16:
            count_format, tag_size, pointer_format = order + "Q", 20, order + "Q"
            (offset,) = struct.unpack(order + "Q", header[8:16])
        else:
            return None
        count_size, pointer_size = struct.calcsize(count_format), struct.calcsize(pointer_format)
        pages = 0
        seen: set[int] = set()
        while offset and offset not in seen:
            seen.add(offset)
            if offset + count_size > size:
                return (
                    f"{pages} page(s) read, the directory of the next one starts past the end ({size} bytes)"
                )
            handle.seek(offset)
            (count,) = struct.unpack(count_format, handle.read(count_size))
            pointer = offset + count_size + count * tag_size
            if pointer + pointer_size > size:
                return f"{pages} page(s) read, the directory of page {pages} runs past the end ({size} bytes)"
            handle.seek(pointer)
            (offset,) = struct.unpack(pointer_format, handle.read(pointer_size))
            pages += 1
    return None


def check_complete(tif: tifffile.TiffFile, path: Path) -> None:
    """Refuse a TIFF whose pages' pixel data run past the end of the file, or that holds fewer slices than
    its own metadata declares (InputError naming the file)."""
    size = tif.filehandle.size
    for page in tif.pages:
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset + count > size:
                raise truncated_error(
                    path, f"page {page.index}'s pixel data ends at byte {offset + count}, the file has {size}"
                )
    series = tif.series[0]
    if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
        raise truncated_error(
            path,
            f"the stack's pixel data ends at byte {series.dataoffset + series.nbytes}, the file has {size}",
        )
    declared = _declared_planes(tif)
    planes = math.prod(series.shape) // max(1, math.prod(series.keyframe.shape))
    if declared is not None and planes < declared:
        raise truncated_error(path, f"it declares {declared} slices but holds {planes}")


def open_tiff(path: Path, what: str = "a TIFF") -> tifffile.TiffFile:
    """An open TiffFile whose pages and data are complete, or an InputError naming the file."""
    try:
        problem = chain_problem(path)
    except OSError as exc:
        raise unreadable_error(path, what, exc) from exc
    if problem is not None:
        raise truncated_error(path, problem)
    try:
        import tifffile

        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise unreadable_error(path, what, exc) from exc
    try:
        if not tif.pages or not tif.series:
            raise InputError(f"{path}: the TIFF has no images. Fix: export the stack again")
        check_complete(tif, path)
    except InputError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise unreadable_error(path, what, exc) from exc
    return tif


class TiffReader(Volume):
    """A multi-page TIFF: its first series, one page per z slice (memory-mapped where uncompressed)."""

    name: ClassVar[str] = "tiff"
    label: ClassVar[str] = "TIFF"
    aliases: ClassVar[tuple[str, ...]] = ("tif", "multipage-tiff")
    suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff")
    description: ClassVar[str] = "multi-page TIFF stack, one page per slice (.tif, .tiff)"
    chunked: ClassVar[bool] = False
    _transient: ClassVar[tuple[str, ...]] = (*Volume._transient, "_memmap", "_whole")
    _memmap: np.ndarray | None = None
    _whole: np.ndarray | None = None

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        tif = open_tiff(self.path)
        try:
            series = tif.series[0]
            if "S" in series.axes:
                raise colour_error(self.path, tuple(series.shape))
            self._series_shape = tuple(int(s) for s in series.shape)
            self._page_shape = tuple(int(s) for s in series.keyframe.shape)
            self._contiguous = series.dataoffset is not None
            native_dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            self._init_geometry(
                source=self.path, native_shape=self._series_shape, dtype=native_dtype, native_chunks=None
            )
        except BaseException:
            tif.close()
            raise
        self._handle = tif

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A file with a TIFF suffix."""
        return path.is_file() and path.suffix.lower() in cls.suffixes

    def _open_handle(self) -> tifffile.TiffFile:
        return open_tiff(self.path)

    def _native(self, tif: tifffile.TiffFile) -> np.ndarray | None:
        """The stack as a memory map (uncompressed, contiguous), the whole stack (pages that are not 2-D),
        or None: read page by page."""
        if self._contiguous:
            if self._memmap is None:
                import tifffile

                self._memmap = tifffile.memmap(self.path, mode="r")
            return self._memmap.reshape(self._series_shape)
        if len(self._page_shape) != 2:
            if self._whole is None:
                self._whole = tif.series[0].asarray()
            return self._whole
        return None

    def _read_box(self, box: Box) -> np.ndarray:
        with self._lock:
            tif = self._opened()
            try:
                native = self._native(tif)
                if native is not None:
                    return np.array(native[self.native_key(box)])
                pages = tif.series[0].pages
                return np.stack(
                    [pages[z].asarray()[box[1], box[2]] for z in range(box[0].start, box[0].stop)]
                )
            except Exception as exc:
                raise unreadable_error(self.path, "a TIFF", exc) from exc

    def _release(self) -> None:
        super()._release()
        self._memmap = None
        self._whole = None
