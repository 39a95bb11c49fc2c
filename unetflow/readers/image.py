"""One 2-D grey-value image (PNG, JPEG, BMP, GIF, or a one-page TIFF) as a one-slice volume."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.readers.base import Box, Volume, colour_error, unreadable_error
from unetflow.readers.tiff import open_tiff

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
SLICE_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES
"""File suffixes that hold one 2-D slice (a TIFF of one page included)."""


def read_slice(path: Path) -> np.ndarray:
    """The 2-D grey values of one image file, refusing colour, more than one plane and truncated files."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        tif = open_tiff(path, "an image")
        try:
            image = tif.series[0].asarray()
        except Exception as exc:
            raise unreadable_error(path, "an image", exc) from exc
        finally:
            tif.close()
    else:
        try:
            import imageio.v3 as iio

            image = iio.imread(path)
        except Exception as exc:
            raise unreadable_error(path, "an image", exc) from exc
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        raise colour_error(path, tuple(image.shape))
    if image.ndim != 2:
        raise InputError(
            f"{path}: a slice of shape {tuple(image.shape)}; each file of a slice folder must be one 2-D "
            "grey-value image. Fix: save one 2-D slice per file (or use a multi-page TIFF)"
        )
    return image


class ImageReader(Volume):
    """A single 2-D image file, read whole on first access (it is one slice)."""

    name: ClassVar[str] = "image"
    label: ClassVar[str] = "image"
    aliases: ClassVar[tuple[str, ...]] = ("png", "jpg", "jpeg")
    suffixes: ClassVar[tuple[str, ...]] = IMAGE_SUFFIXES
    description: ClassVar[str] = "one 2-D image, one slice (.png, .jpg, .jpeg, .bmp, .gif, or a 1-page .tif)"
    chunked: ClassVar[bool] = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        image = read_slice(self.path)
        self._init_geometry(source=self.path, native_shape=image.shape, dtype=image.dtype, native_chunks=None)
        self._handle = image

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A file with an image suffix (TIFF files go to the tiff reader unless named)."""
        return path.is_file() and path.suffix.lower() in cls.suffixes

    def _open_handle(self) -> np.ndarray:
        return read_slice(self.path)

    def _read_box(self, box: Box) -> np.ndarray:
        return self._opened()[box[1], box[2]][None]
