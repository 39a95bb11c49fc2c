"""Readers for the volumes a user brings: multi-page TIFF, a folder of slices, HDF5, Zarr / OME-Zarr.

Every reader returns a (z, y, x) volume: a 2-D image becomes a one-slice stack, leading axes of size one
(OME-Zarr's t and c) are dropped, and colour or true 4-D data is refused with an InputError that says
what to do. `open_volume` is lazy (dask) where the format allows it; `read_volume` loads into memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import h5py
import imageio.v3 as iio
import numpy as np
import tifffile
import zarr

from unetflow.errors import InputError
from unetflow.omezarr import default_chunks, ome_multiscales

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
HDF5_SUFFIXES = frozenset({".h5", ".hdf5", ".hdf", ".he5"})
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
FORMATS = ("tiff", "image", "slices", "hdf5", "zarr")
"""Formats: multi-page TIFF, one 2-D image file, a folder of 2-D slices, an HDF5 dataset, a Zarr array."""
ALIASES = {
    "tif": "tiff",
    "png": "image",
    "jpg": "image",
    "folder": "slices",
    "directory": "slices",
    "h5": "hdf5",
    "hdf": "hdf5",
    "ome-zarr": "zarr",
    "omezarr": "zarr",
    "ome.zarr": "zarr",
}
SUPPORTED = (
    "a multi-page TIFF (.tif/.tiff), a PNG/TIFF image or a folder of them (one slice each), "
    "an HDF5 file (.h5/.hdf5, with member=dataset) or a Zarr/OME-Zarr store (.zarr)"
)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders 'slice2' before 'slice10' (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _is_zarr_dir(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or any((path / marker).exists() for marker in ZARR_MARKERS)


def _slice_files(folder: Path) -> list[Path]:
    files = [
        f
        for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in TIFF_SUFFIXES | IMAGE_SUFFIXES
    ]
    return sorted(files, key=lambda f: natural_key(f.name))


def infer_format(path: str | os.PathLike[str]) -> str:
    """The format of `path` from its suffix or, for a folder, its content (one of FORMATS)."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"{target}: no such file or folder; check the path in the config")
    if target.is_dir():
        return "zarr" if _is_zarr_dir(target) else "slices"
    suffix = target.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    raise InputError(
        f"{target}: unknown format (suffix {suffix or 'none'!r}); supported: {SUPPORTED}. "
        "Convert the file or name its format explicitly (format: tiff | image | slices | hdf5 | zarr)"
    )


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        return infer_format(path)
    name = ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise InputError(
            f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)} (or leave it unset)"
        )
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path in the config")
    return name


def as_zyx(data: Any, source: str | os.PathLike[str]) -> Any:
    """`data` (numpy or dask) as (z, y, x): 2-D gets one slice, leading size-1 axes go, else InputError."""
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3:
        return data
    raise InputError(
        f"{source}: a {data.ndim}-D array of shape {tuple(data.shape)}; unetflow needs one grey-value "
        "channel as a (z, y, x) volume. Fix: save a single channel / time point (e.g. as a multi-page "
        "TIFF), or point member to a 3-D dataset"
    )


def _rgb_error(source: Path | str, shape: tuple[int, ...]) -> InputError:
    return InputError(
        f"{source}: a colour (RGB/RGBA) image of shape {shape}; unetflow needs single-channel grey values. "
        "Fix: convert it to greyscale (e.g. keep one channel) and save it again"
    )


def _unreadable(source: Path | str, what: str, exc: Exception) -> InputError:
    return InputError(
        f"{source}: cannot be read as {what} ({type(exc).__name__}: {exc}); the file is empty, corrupt or "
        "of another format. Fix: download or export it again, or name its real format"
    )


def _tiff(path: Path, *, lazy: bool) -> Any:
    """A TIFF's first series; memory-mapped for lazy reading where the pixels lie uncompressed."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages or not tif.series:
                raise InputError(f"{path}: the TIFF has no images. Fix: export the stack again")
            series = tif.series[0]
            if "S" in series.axes:
                raise _rgb_error(path, tuple(series.shape))
            if not lazy:
                return series.asarray()
        try:
            mapped = tifffile.memmap(path, mode="r")
        except ValueError:
            return tifffile.imread(path)
        return mapped
    except InputError:
        raise
    except Exception as exc:
        raise _unreadable(path, "a TIFF", exc) from exc


def _read_slice(path: Path) -> np.ndarray:
    """One 2-D slice (TIFF or PNG/JPEG...), refusing colour images."""
    try:
        image = tifffile.imread(path) if path.suffix.lower() in TIFF_SUFFIXES else iio.imread(path)
    except Exception as exc:
        raise _unreadable(path, "an image", exc) from exc
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        raise _rgb_error(path, tuple(image.shape))
    if image.ndim != 2:
        raise InputError(
            f"{path}: a slice of shape {tuple(image.shape)}; each file of a slice folder must be one 2-D "
            "grey-value image. Fix: save one 2-D slice per file (or use a multi-page TIFF)"
        )
    return image


def _checked_slice(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    image = _read_slice(path)
    if image.shape != shape:
        raise InputError(
            f"{path}: slice of shape {image.shape} differs from the first slice's {shape}; "
            "all slices of a folder must have the same size. Fix: crop/pad them alike or remove the odd one"
        )
    return image.astype(dtype, copy=False)


def _slices(folder: Path, *, lazy: bool) -> Any:
    files = _slice_files(folder)
    if not files:
        raise InputError(
            f"{folder}: the folder holds no image slices (.png/.tif/.tiff/.jpg); "
            "Fix: point to the folder that holds them, or to the volume file itself"
        )
    first = _read_slice(files[0])
    if not lazy:
        return np.stack([first] + [_checked_slice(f, first.shape, first.dtype) for f in files[1:]])
    parts = [da.from_array(first[None], chunks=(1, *first.shape))]
    parts += [
        da.from_delayed(
            dask.delayed(_checked_slice)(f, first.shape, first.dtype)[None], (1, *first.shape), first.dtype
        )
        for f in files[1:]
    ]
    return da.concatenate(parts, axis=0)


def _hdf5_datasets(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _hdf5(path: Path, member: str | None, *, lazy: bool) -> Any:
    try:
        h5 = h5py.File(path, "r")
    except Exception as exc:
        raise _unreadable(path, "an HDF5 file", exc) from exc
    try:
        datasets = _hdf5_datasets(h5)
        listing = ", ".join(datasets) if datasets else "none"
        if member is None:
            if len(datasets) != 1:
                raise InputError(
                    f"{path}: holds {len(datasets)} datasets ({listing}); name the one to read with member"
                )
            member = datasets[0]
        node = h5.get(member)
        if not isinstance(node, h5py.Dataset):
            raise InputError(
                f"{path}: no HDF5 dataset {member!r}; the datasets in this file are: {listing}. "
                "Fix: set member to one of them"
            )
        if not lazy:
            data = node[()]
            h5.close()
            return data
        chunks = default_chunks(node.shape) if node.ndim in (2, 3) else "auto"
        return da.from_array(node, chunks=chunks)
    except BaseException:
        h5.close()
        raise


def _zarr_arrays(group: zarr.Group) -> list[str]:
    return [name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)]


def _zarr(path: Path, member: str | None) -> zarr.Array:
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise _unreadable(path, "a Zarr store", exc) from exc
    if isinstance(node, zarr.Array):
        if member not in (None, ""):
            raise InputError(
                f"{path}: is a single Zarr array; member {member!r} does not apply. Fix: drop it"
            )
        return node
    arrays = _zarr_arrays(node)
    if member is None:
        multiscales = ome_multiscales(node)
        member = str(multiscales[0]["datasets"][0]["path"]) if multiscales else "0"
        if member not in arrays and len(arrays) == 1:
            member = arrays[0]
    found = node.get(member) if member in arrays else None
    if not isinstance(found, zarr.Array):
        raise InputError(
            f"{path}: no Zarr array {member!r}; the arrays in this store are: {', '.join(arrays) or 'none'}. "
            "Fix: set member to one of them"
        )
    return found


def _load(path: str | os.PathLike[str], fmt: str | None, member: str | None, *, lazy: bool) -> Any:
    """The volume at `path` as (z, y, x): dask where lazy and the format allows, else numpy."""
    target = Path(path)
    name = _resolve_format(target, fmt)
    if member is not None and name not in ("hdf5", "zarr"):
        raise InputError(
            f"{target}: member {member!r} only applies to HDF5 and Zarr inputs, this is {name}. "
            "Fix: drop member"
        )
    if name == "tiff":
        data = _tiff(target, lazy=lazy)
    elif name == "image":
        data = _read_slice(target)
    elif name == "slices":
        data = _slices(target, lazy=lazy)
    elif name == "hdf5":
        data = _hdf5(target, member, lazy=lazy)
    else:
        array = _zarr(target, member)
        data = da.from_array(array, chunks=array.chunks) if lazy else array[...]
    return as_zyx(data, target)


def open_volume(
    path: str | os.PathLike[str], *, format: str | None = None, member: str | None = None
) -> da.Array:
    """A (z, y, x) dask array over the volume at `path`; lazy for Zarr, HDF5, slice folders, plain TIFFs."""
    data = _load(path, format, member, lazy=True)
    if isinstance(data, da.Array):
        return data
    return da.from_array(data, chunks=default_chunks(data.shape))


def read_volume(
    path: str | os.PathLike[str], *, format: str | None = None, member: str | None = None
) -> np.ndarray:
    """The whole (z, y, x) volume at `path` in memory (format inferred from the suffix unless given)."""
    return np.asarray(_load(path, format, member, lazy=False))
