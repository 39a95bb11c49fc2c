"""The dataset store: OME-NGFF 0.4 images with labels in Zarr format 2, plus unetflow's own attributes.

Layout of an image at ``X.zarr``::

    X.zarr/0                 the image, axes (z, y, x), one multiscale level, scale = voxel size
    X.zarr/labels/<name>/0   labels (uint32 instance ids or uint8 binary 0/1), same axes and scale
    X.zarr .zattrs           multiscales (OME-NGFF 0.4) and "unetflow": {voxel_size, unit, normalization,
                             labels: {name: kind}, label_ignore: {name: value}, ...}

Unannotated pixels of sparse labels are stored as the label type's largest value (unetflow.data.labels) and
that value is recorded under "label_ignore".

Format 2 with OME-NGFF 0.4 has the widest reader support (napari, Fiji). Metadata is written with
ome-zarr-py's writers, arrays by zarr itself, compressed with Blosc zstd.

Images are opened and created at a path or at a `unetflow.stores.Location` (a URL on an object store, with
the options to reach it): the prediction's outputs are written in place there.

Volumes are streamed through memory block by block with unetflow.data.blocks (blocks, running statistics,
normalisation).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numcodecs
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from unetflow.atomic import atomic_path

# streaming block by block lives in unetflow.data.blocks; its names stay importable from here
from unetflow.data.blocks import BLOCK_ELEMENTS as BLOCK_ELEMENTS
from unetflow.data.blocks import RunningStats, iter_blocks
from unetflow.data.blocks import normalize as normalize
from unetflow.data.labels import IGNORE_STORED
from unetflow.errors import InputError
from unetflow.stores import Location

if TYPE_CHECKING:  # dask and ome-zarr-py (with pandas and xarray) are imported where used: every job of the
    # workflow imports this module, and importing them cost each 0.8 s of CPU
    import dask.array as da
    from ome_zarr.format import FormatV04

    ArrayLike = np.ndarray | da.Array

LEVEL = "0"
"""Path of the (only) multiscale level inside an image or label group."""
LABELS_GROUP = "labels"
"""Sub-group holding the label images (OME-NGFF)."""
DEFAULT_LABELS = "cells"
"""Name of the label image the importer writes."""
INSTANCE_IDS = "ids"
"""Name of the instance ids as given, which the importer keeps beside `cells` where it separated touching
cells (unetflow.data.instances): the truth of object metrics."""
ATTRS_KEY = "unetflow"
"""Group attribute holding unetflow's metadata (voxel size, unit, normalization, label kinds)."""
AXES = ("z", "y", "x")
LABEL_DTYPES: dict[str, np.dtype] = {"instance": np.dtype(np.uint32), "binary": np.dtype(np.uint8)}
"""Storage dtype of each kind of label image."""
MAX_CHUNK_XY = 512

LabelKind = Literal["instance", "binary"]
Place = str | os.PathLike[str] | Location
"""A path or a Location (a URL with the options to reach it)."""


_REMOTE_FORMATS: dict[str, int] = {}
"""The Zarr format of each node at a URL this process opened: zarr-python finds an unstated format by asking
for the metadata of both (zarr.json, .zgroup, .zarray, .zattrs, .zmetadata), 4-5 requests per open on a
store; a node opened again is asked for its own format's metadata only."""


def _zarr_open(place: Place, mode: str, **kwargs: Any) -> Any:
    """zarr.open_group / zarr.open at a path or a Location (`kwargs["group"]` False: any node)."""
    location = Location.of(place)
    store = location.zarr_store(read_only=mode == "r")
    remote = not location.is_local
    if remote and mode != "w" and "zarr_format" not in kwargs and str(location) in _REMOTE_FORMATS:
        kwargs["zarr_format"] = _REMOTE_FORMATS[str(location)]
    if kwargs.pop("group", True):
        node = zarr.open_group(store=store, mode=mode, **kwargs)
    else:
        node = zarr.open(store=store, mode=mode, **kwargs)
    if remote:
        _REMOTE_FORMATS[str(location)] = node.metadata.zarr_format
    return node


NGFF_VERSIONS = ("0.4", "0.5")
"""OME-NGFF versions unetflow writes: 0.4 on Zarr v2 (the widest reader support), 0.5 on Zarr v3 (shards)."""


def _format(ngff: str = "0.4") -> FormatV04:
    """ome-zarr-py's writer format of an OME-NGFF version."""
    from ome_zarr.format import FormatV04, FormatV05

    if ngff not in NGFF_VERSIONS:
        raise ValueError(f"OME-NGFF version {ngff!r} is not one of {NGFF_VERSIONS}")
    return FormatV05() if ngff == "0.5" else FormatV04()


def _ome_writer() -> Any:
    """ome-zarr-py's writer module, imported on first use."""
    with warnings.catch_warnings():
        # it builds a deprecated Scaler as a default argument when imported
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr import writer
    return writer


def ngff_version(path: Place) -> str:
    """The OME-NGFF version of an image written by unetflow: 0.5 for a Zarr v3 group, else 0.4."""
    return "0.5" if (Location.of(path) / "zarr.json").is_file() else "0.4"


DEFAULT_COMPRESSION_LEVEL = 5


def _compressor(level: int = DEFAULT_COMPRESSION_LEVEL) -> numcodecs.Blosc:
    if not 0 <= level <= 9:
        raise ValueError(f"compression level must be 0 (none) to 9, got {level}")
    return numcodecs.Blosc(cname="zstd", clevel=level, shuffle=numcodecs.Blosc.SHUFFLE)


def default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks for a (z, y, x) volume: one slice deep, up to 512 x 512 in-plane (never single rows)."""
    if len(shape) < 2:
        raise ValueError(f"default_chunks needs a shape of 2 or 3 axes (z, y, x), got {tuple(shape)}")
    plane = (max(1, min(int(shape[-2]), MAX_CHUNK_XY)), max(1, min(int(shape[-1]), MAX_CHUNK_XY)))
    return ((1,) * (len(shape) - 2)) + plane


def _check_voxel_size(voxel_size: tuple[float, float, float]) -> list[float]:
    values = [float(v) for v in voxel_size]
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x), got {tuple(voxel_size)}")
    return values


def _check_chunks(chunks: tuple[int, ...] | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    if chunks is None:
        return default_chunks(shape)
    values = tuple(int(c) for c in chunks)
    if len(values) != len(shape) or any(c < 1 for c in values):
        raise ValueError(f"chunks must be {len(shape)} positive integers (z, y, x), got {tuple(chunks)}")
    return tuple(min(c, max(1, s)) for c, s in zip(values, shape, strict=True))


def _as_zyx(data: ArrayLike) -> ArrayLike:
    """A 2-D image as a one-slice stack; a 3-D volume as is; anything else is refused."""
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"expected a 2-D image or a 3-D (z, y, x) volume, got shape {tuple(data.shape)}")
    if 0 in data.shape:
        raise ValueError(f"cannot store an empty volume of shape {tuple(data.shape)}")
    if np.dtype(data.dtype).kind not in "biuf":
        raise ValueError(f"expected a numeric volume (integer, float or bool), got dtype {data.dtype}")
    return data


def _native(dtype: np.dtype | type | str) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def volume_stats(data: ArrayLike, *, chunks: tuple[int, ...] | None = None) -> RunningStats:
    """Mean, std and non-finite count of a whole volume, streamed block by block (numpy or dask)."""
    volume = _as_zyx(data)
    stats = RunningStats()
    for block in iter_blocks(tuple(volume.shape), _check_chunks(chunks, tuple(volume.shape))):
        stats.add(np.asarray(volume[block]))
    return stats


def level_scale(voxel_size: list[float], level: int) -> list[float]:
    """The voxel size of pyramid level `level`: 2**level times coarser in y and x, z unchanged."""
    z, y, x = voxel_size
    return [z, y * 2**level, x * 2**level]


def _multiscales(
    group: zarr.Group,
    voxel_size: list[float],
    unit: str,
    name: str | None,
    *,
    fmt: FormatV04,
    levels: int = 1,
) -> None:
    _ome_writer().write_multiscales_metadata(
        group,
        datasets=[
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": level_scale(voxel_size, level)}],
            }
            for level in range(levels)
        ],
        fmt=fmt,
        axes=list(AXES),
        axes_units=dict.fromkeys(AXES, unit),
        name=name,
    )


def _create_level(
    group: zarr.Group,
    path: str,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    fill_value: Any,
    compression_level: int,
) -> zarr.Array:
    """One array of an image group: Zarr v2 ("/"-separated, Blosc zstd) or v3 (zstd, optionally sharded)."""
    if group.metadata.zarr_format == 2:
        if shards is not None:
            raise ValueError("shards need OME-NGFF 0.5 (Zarr v3); Zarr v2 has no sharding")
        return group.create_array(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            compressors=_compressor(compression_level),
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=fill_value,
        )
    return group.create_array(
        path,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        compressors=ZstdCodec(level=compression_level),
        fill_value=fill_value,
        dimension_names=AXES,
    )


def _new_image_group(
    path: Place,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    voxel_size: list[float],
    unit: str,
    name: str | None,
    fill_value: Any = 0,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    ngff: str = "0.4",
    shards: tuple[int, ...] | None = None,
) -> tuple[zarr.Group, zarr.Array]:
    """A fresh OME-NGFF image group at `path` with an empty level-0 array and multiscales metadata."""
    fmt = _format(ngff)
    group = _zarr_open(path, "w", zarr_format=fmt.zarr_format)
    array = _create_level(
        group,
        LEVEL,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        fill_value=fill_value,
        compression_level=compression_level,
    )
    _multiscales(group, voxel_size, unit, name, fmt=fmt)
    return group, array


def add_levels(
    path: Place,
    grids: Sequence[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]],
    *,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
) -> list[zarr.Array]:
    """Create (empty) pyramid levels 1, 2, ... of an image group beside level 0, each 2x coarser in y and x,
    as `grids` gives them (shape, chunks, shards or None), and list every level in the multiscales."""
    target = Location.of(path)
    group = _zarr_open(target, "r+")
    base = group[LEVEL]
    multiscale = ome_multiscales(group)[0]
    spacing = [float(v) for v in multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]]
    unit = str(multiscale["axes"][-1].get("unit", "nanometer"))
    created = []
    for level, (shape, chunks, shards) in enumerate(grids, start=1):
        if str(level) in group:
            del group[str(level)]
        created.append(
            _create_level(
                group,
                str(level),
                shape=tuple(shape),
                dtype=base.dtype,
                chunks=tuple(chunks),
                shards=None if shards is None else tuple(shards),
                fill_value=base.fill_value,
                compression_level=compression_level,
            )
        )
    fmt = _format(ngff_version(target))
    _multiscales(group, spacing, unit, multiscale.get("name"), fmt=fmt, levels=len(grids) + 1)
    return created


def _unetflow_attrs(spacing: list[float], unit: str, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The "unetflow" group attributes: voxel size and unit (always these), labels {} and the extra keys."""
    return {"labels": {}, **dict(extra or {}), "voxel_size": spacing, "unit": unit}


def _copy_into(
    target: zarr.Array,
    data: ArrayLike,
    *,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
    stats: RunningStats | None = None,
) -> None:
    """Write `data` into `target` block by block (never all of a dask volume at once), folding in `stats`."""
    for block in iter_blocks(tuple(target.shape), tuple(target.chunks)):
        values = np.asarray(data[block])
        if stats is not None:
            stats.add(values)
        target[block] = convert(values) if convert is not None else values


def write_image(
    path: str | os.PathLike[str],
    data: ArrayLike,
    *,
    voxel_size: tuple[float, float, float],
    unit: str = "nanometer",
    chunks: tuple[int, int, int] | None = None,
    name: str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> zarr.Group:
    """Write a (z, y, x) volume (2-D becomes one slice) as an OME-Zarr image at `path`, atomically.

    `attrs` go into the group's "unetflow" attributes beside voxel_size, unit and labels; when they carry no
    "normalization", the mean/std of the whole volume are computed while writing and stored.
    """
    volume = _as_zyx(data)
    shape = tuple(int(s) for s in volume.shape)
    spacing = _check_voxel_size(voxel_size)
    chunking = _check_chunks(chunks, shape)
    target = Path(path)
    with atomic_path(target) as tmp:
        group, array = _new_image_group(
            tmp,
            shape=shape,
            dtype=_native(volume.dtype),
            chunks=chunking,
            voxel_size=spacing,
            unit=unit,
            name=name or target.stem,
        )
        meta = _unetflow_attrs(spacing, unit, attrs)
        stats = None if "normalization" in meta else RunningStats()
        _copy_into(array, volume, stats=stats)
        if stats is not None:
            meta["normalization"] = {"mean": stats.mean, "std": stats.std}
        group.attrs[ATTRS_KEY] = meta
    return zarr.open_group(str(target), mode="r+", zarr_format=2)


def create_image(
    path: Place,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype | type | str,
    chunks: tuple[int, int, int] | None,
    voxel_size: tuple[float, float, float],
    unit: str = "nanometer",
    fill_value: Any = 0,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    name: str | None = None,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    ngff: str = "0.4",
    shards: tuple[int, int, int] | None = None,
) -> zarr.Array:
    """An empty OME-Zarr image (level 0 filled with `fill_value`) with metadata, to be written block by block.

    Not atomic: the caller tracks completion itself. Refuses to replace an existing path unless `overwrite`.
    `compression_level` (zstd, 0-9) trades file size for write speed on outputs written in a hot loop.
    `ngff` "0.5" writes Zarr v3, where `shards` (whole chunks) group chunks into one file each.
    """
    target = Location.of(path)
    full_shape = tuple(int(s) for s in shape)
    if len(full_shape) == 2:
        full_shape = (1, *full_shape)
    if len(full_shape) != 3 or any(s < 1 for s in full_shape):
        raise ValueError(f"shape must be (z, y, x) with positive sizes, got {tuple(shape)}")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} already exists; delete it or pass overwrite=True")
        target.remove()
    spacing = _check_voxel_size(voxel_size)
    group, array = _new_image_group(
        target,
        shape=full_shape,
        dtype=_native(dtype),
        chunks=_check_chunks(chunks, full_shape),
        voxel_size=spacing,
        unit=unit,
        name=name or target.stem,
        fill_value=fill_value,
        compression_level=compression_level,
        ngff=ngff,
        shards=shards,
    )
    group.attrs[ATTRS_KEY] = _unetflow_attrs(spacing, unit, attrs)
    return array


def _check_kind(kind: str) -> str:
    if kind not in LABEL_DTYPES:
        raise ValueError(f"label kind must be one of {sorted(LABEL_DTYPES)}, got {kind!r}")
    return kind


def _label_converter(kind: str, ignore: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Block converter to the stored label dtype: binary -> uint8 0/1 (non-zero is 1), instance -> uint32;
    pixels equal to `ignore` become the kind's stored ignore value."""

    def binary(block: np.ndarray) -> np.ndarray:
        return (block != 0).astype(np.uint8)

    def instance(block: np.ndarray) -> np.ndarray:
        if block.dtype.kind == "f" and not np.array_equal(block, np.round(block)):
            raise ValueError("instance labels must be whole numbers, found fractional values")
        largest = IGNORE_STORED["instance"] - (ignore is not None)
        if block.size and (block.min() < 0 or block.max() > largest):
            raise ValueError(f"instance labels must lie in 0..{largest}")
        return block.astype(np.uint32)

    convert = binary if kind == "binary" else instance
    if ignore is None:
        return convert
    stored = IGNORE_STORED[kind]

    def with_ignore(block: np.ndarray) -> np.ndarray:
        unannotated = block == ignore
        converted = convert(np.where(unannotated, 0, block))
        converted[unannotated] = stored
        return converted

    return with_ignore


def _open_node(path: Place, mode: str = "r") -> zarr.Group | zarr.Array:
    """The Zarr group or array at `path`; InputError naming it when missing or not Zarr."""
    target = Location.of(path)
    if target.is_local and not target.path.exists():
        raise InputError(f"{target}: no such Zarr image; check the path or import the dataset first")
    try:
        return _zarr_open(target, mode, group=False)
    except InputError:
        raise
    except Exception as exc:
        if not target.is_local and type(exc).__name__.endswith("NotFoundError"):
            raise target.missing_error("Zarr image") from exc
        raise InputError(f"{target}: cannot open as Zarr ({exc}); point to an OME-Zarr image folder") from exc


def _image_group(image_path: Place, mode: str = "r") -> zarr.Group:
    path = Location.of(image_path)
    node = _open_node(path, mode)
    if not isinstance(node, zarr.Group):
        raise InputError(f"{path}: is a plain Zarr array, not an OME-Zarr image group; labels need the group")
    return node


def _register_labels(image_path: Place, name: str, kind: str, *, ignore: int | None = None) -> None:
    """List label `name` in the image's labels group (OME-NGFF) and record its kind (and stored ignore
    value) in the unetflow attrs."""
    fmt = _format(ngff_version(image_path))
    group = _zarr_open(image_path, "r+", zarr_format=fmt.zarr_format)
    labels_group = group.require_group(LABELS_GROUP)
    listed = labels_group.attrs.get("labels", []) if fmt.zarr_format == 2 else []
    labels_group.attrs["labels"] = [n for n in listed if n != name]
    _ome_writer().write_label_metadata(labels_group, name, fmt=fmt, source={"image": "../../"})
    meta = dict(group.attrs.get(ATTRS_KEY, {}))
    meta["labels"] = {**dict(meta.get("labels", {})), name: kind}
    ignored = {key: value for key, value in dict(meta.get("label_ignore", {})).items() if key != name}
    if ignore is not None:
        ignored[name] = int(ignore)
    if ignored or "label_ignore" in meta:
        meta["label_ignore"] = ignored
    group.attrs[ATTRS_KEY] = meta


def _label_geometry(image_path: Place) -> tuple[tuple[int, ...], tuple[int, ...], list[float], str]:
    image = open_image(image_path)
    return tuple(image.shape), tuple(image.chunks), list(voxel_size(image_path)), _unit(image_path)


def write_labels(
    image_path: Place,
    name: str,
    data: ArrayLike,
    *,
    kind: LabelKind,
    chunks: tuple[int, int, int] | None = None,
    shards: tuple[int, int, int] | None = None,
    ignore: int | None = None,
) -> zarr.Array:
    """Write a label volume beside an image as ``labels/<name>`` (atomically on a file system; on an object
    store its metadata is listed last), with image-label metadata.

    `kind` "binary" stores uint8 0/1 (any non-zero value becomes 1), "instance" stores uint32 ids.
    `ignore`: the value of `data` that marks unannotated pixels; they are stored as the kind's
    `IGNORE_STORED` value, which `label_ignore` then returns.
    """
    _check_kind(kind)
    path = Location.of(image_path)
    _image_group(path)
    shape, image_chunks, spacing, unit = _label_geometry(path)
    volume = _as_zyx(data)
    if tuple(volume.shape) != shape:
        raise ValueError(f"labels of shape {tuple(volume.shape)} do not match the image {path} of {shape}")
    label_dir = path / LABELS_GROUP / name
    if not label_dir.is_local:
        label_dir.remove()
    written = atomic_path(label_dir.path) if label_dir.is_local else contextlib.nullcontext(label_dir)
    with written as tmp:
        _, array = _new_image_group(
            tmp,
            shape=shape,
            dtype=LABEL_DTYPES[kind],
            chunks=_check_chunks(chunks or image_chunks, shape),
            voxel_size=spacing,
            unit=unit,
            name=name,
            ngff=ngff_version(path),
            shards=shards,
        )
        _copy_into(array, volume, convert=_label_converter(kind, ignore))
    _register_labels(path, name, kind, ignore=None if ignore is None else IGNORE_STORED[kind])
    return zarr.open_array(store=(label_dir / LEVEL).zarr_store(read_only=False), mode="r+")


def create_labels(
    image_path: Place,
    name: str,
    *,
    dtype: np.dtype | type | str | None = None,
    chunks: tuple[int, int, int] | None = None,
    kind: LabelKind = "instance",
    fill_value: int = 0,
    overwrite: bool = False,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    shards: tuple[int, int, int] | None = None,
) -> zarr.Array:
    """An empty label array ``labels/<name>`` beside an image (same shape and scale), filled block by block.

    `dtype` defaults to the kind's (uint32 instance, uint8 binary) and must be an integer type. The labels
    take the image's OME-NGFF version; `shards` apply to 0.5 (Zarr v3).
    """
    _check_kind(kind)
    label_dtype = _native(dtype if dtype is not None else LABEL_DTYPES[kind])
    if label_dtype.kind not in "iu":
        raise ValueError(f"label dtype must be an integer type (OME-NGFF labels), got {label_dtype}")
    path = Location.of(image_path)
    _image_group(path)
    label_dir = path / LABELS_GROUP / name
    if label_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{label_dir} already exists; delete it or pass overwrite=True")
        label_dir.remove()
    shape, image_chunks, spacing, unit = _label_geometry(path)
    _zarr_open(path, "r+").require_group(LABELS_GROUP)
    _, array = _new_image_group(
        label_dir,
        shape=shape,
        dtype=label_dtype,
        chunks=_check_chunks(chunks or image_chunks, shape),
        voxel_size=spacing,
        unit=unit,
        name=name,
        fill_value=fill_value,
        compression_level=compression_level,
        ngff=ngff_version(path),
        shards=shards,
    )
    _register_labels(path, name, kind)
    return array


def ome_multiscales(group: zarr.Group) -> list[dict[str, Any]]:
    """The OME "multiscales" list of a group (NGFF 0.4 top level, or 0.5 under "ome"); [] if none."""
    attrs = group.attrs.asdict()
    return list(attrs.get("multiscales") or dict(attrs.get("ome") or {}).get("multiscales") or [])


def _level_path(group: zarr.Group) -> str:
    multiscales = ome_multiscales(group)
    return str(multiscales[0]["datasets"][0]["path"]) if multiscales else LEVEL


def open_image(path: Place, *, mode: str = "r") -> zarr.Array:
    """The level-0 array of an OME-Zarr image group, or a plain Zarr array at `path`."""
    target = Location.of(path)
    node = _open_node(target, mode)
    if isinstance(node, zarr.Array):
        return node
    level = _level_path(node)
    if level not in node:
        raise InputError(f"{target}: the Zarr group has no array {level!r}; it is not an OME-Zarr image")
    array = node[level]
    if not isinstance(array, zarr.Array):
        raise InputError(f"{target}/{level} is a group, not an array; point to an OME-Zarr image")
    return array


def open_labels(path: Place, name: str = DEFAULT_LABELS, *, mode: str = "r") -> zarr.Array | None:
    """The level-0 array of label image `name` of an OME-Zarr image, or None where it has no such labels."""
    label_dir = Location.of(path) / LABELS_GROUP / name
    if not label_dir.exists():
        return None
    return open_image(label_dir, mode=mode)


def open_instances(path: str | os.PathLike[str]) -> zarr.Array | None:
    """The instance ids of an imported volume as given (`labels/ids` where touching cells were separated,
    else `labels/cells`); None without labels."""
    found = open_labels(path, INSTANCE_IDS)
    return found if found is not None else open_labels(path)


def label_ignore(path: str | os.PathLike[str], name: str = DEFAULT_LABELS) -> int | None:
    """The stored value of the unannotated pixels of label image `name` (None: every pixel is annotated)."""
    value = read_attrs(path).get("label_ignore", {}).get(name)
    return None if value is None else int(value)


def read_attrs(path: Place) -> dict[str, Any]:
    """The "unetflow" attributes of an image group ({} for a plain array or a foreign OME-Zarr)."""
    node = _open_node(path)
    if isinstance(node, zarr.Array):
        return {}
    return dict(node.attrs.get(ATTRS_KEY, {}))


def voxel_size(path: Place) -> tuple[float, float, float]:
    """Voxel size (z, y, x) of an image: unetflow attrs, else the OME scale transform, else 1 x 1 x 1."""
    meta = read_attrs(path)
    if "voxel_size" in meta:
        z, y, x = (float(v) for v in meta["voxel_size"])
        return (z, y, x)
    node = _open_node(path)
    multiscales = ome_multiscales(node) if isinstance(node, zarr.Group) else []
    if multiscales:
        for transform in multiscales[0]["datasets"][0].get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                z, y, x = (float(v) for v in transform["scale"][-3:])
                return (z, y, x)
    return (1.0, 1.0, 1.0)


def _unit(path: Place) -> str:
    return str(read_attrs(path).get("unit", "nanometer"))


def normalization(path: Place) -> tuple[float, float]:
    """The (mean, std) of the raw volume stored at import; every block is normalised with these."""
    meta = read_attrs(path)
    stats = meta.get("normalization")
    if not stats or "mean" not in stats or "std" not in stats:
        raise InputError(
            f"{path}: no normalization statistics in the '{ATTRS_KEY}' attributes; "
            "re-import the dataset with unetflow's importer"
        )
    return float(stats["mean"]), float(stats["std"])


def normalization_policy(path: Place, default: str) -> str:
    """How the import normalised a volume: its recorded policy ("percentile": percentiles as offset and
    scale), else `default` (the mean and std of the whole volume)."""
    return str(dict(read_attrs(path).get("normalization") or {}).get("policy", default))


def update_attrs(path: Place, values: Mapping[str, Any]) -> None:
    """Add `values` to the "unetflow" attributes of an image group (one metadata write)."""
    group = _zarr_open(path, "r+")
    group.attrs[ATTRS_KEY] = {**dict(group.attrs.get(ATTRS_KEY, {})), **dict(values)}


def mark_label_image(path: Place) -> None:
    """Mark an image group as a label image (OME-NGFF "image-label"): viewers show it as labels, each id in
    its own colour (napari's labels layer, neuroglancer's segmentation layer)."""
    group = _zarr_open(path, "r+")
    attrs = group.attrs.asdict()
    if "ome" in attrs:
        ome = dict(attrs["ome"])
        ome["image-label"] = {"version": ome.get("version", "0.5")}
        group.attrs["ome"] = ome
    else:
        group.attrs["image-label"] = {"version": "0.4"}
