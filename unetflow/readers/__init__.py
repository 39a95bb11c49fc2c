"""Readers of the volumes a user brings: one class per format, a registry, and a lazy (z, y, x) `Volume`.

Chunked sources (Zarr v2/v3, OME-Zarr 0.4/0.5, N5, neuroglancer precomputed, HDF5) are read where they lie,
chunk by chunk (Zarr, N5 and precomputed from a URL too: s3://, gs://, https://), and
report which chunks are stored so that never-written regions can be skipped; unchunked ones (TIFF
stacks, slice folders, single images) are read page by page for the importer.

    volume = open_input("data.zarr", level=0)       # or format=..., member=...
    block = volume[0:8, 1024:2048, 1024:2048]         # numpy, only the chunks it touches
    written = volume.stored_chunks(z_range=(0, 8))    # {(z, y, x) chunk grid coordinates} or None
"""

from unetflow.readers.base import Volume
from unetflow.readers.folder import SliceFolderReader, natural_key
from unetflow.readers.hdf5 import Hdf5Reader
from unetflow.readers.image import ImageReader
from unetflow.readers.n5 import N5Reader
from unetflow.readers.precomputed import PrecomputedReader
from unetflow.readers.registry import (
    READERS,
    describe_formats,
    detect_format,
    format_names,
    open_input,
    reader_for,
)
from unetflow.readers.tiff import TiffReader
from unetflow.readers.zarrstore import ZarrReader

__all__ = [
    "READERS",
    "Hdf5Reader",
    "ImageReader",
    "N5Reader",
    "PrecomputedReader",
    "SliceFolderReader",
    "TiffReader",
    "Volume",
    "ZarrReader",
    "describe_formats",
    "detect_format",
    "format_names",
    "natural_key",
    "open_input",
    "reader_for",
]
