"""Import a raw EM volume (and its labels) into the dataset store: one OME-Zarr image per dataset.

Everything is validated before anything is written (label shape, foreground, constant or non-finite raw,
pixel types), and the store is written to a temporary name and renamed when complete. The raw is stored
as is; its mean and std over the whole volume (float64, block by block) go into the attributes, so every
tile is normalised identically at train and predict time. Binary labels (such as ISBI's 0/255) are stored
as uint8 0/1 with 1 = cell interior, 0 = membrane/background; instance labels as uint32 ids. Sparse labels
name the value of their unannotated pixels (`labels_ignore`); those are stored as 255 (binary) or
2**32 - 1 (instance), recorded in the attributes (unetflow.data.labels, `omezarr.label_ignore`).

Instance labels whose cells touch: with `labels_separate` (a width in pixels) the background is forced
between touching cells (unetflow.data.instances, the paper's Fig. 3) and these separated labels are the
volume's labels (`labels/cells`: what the weights, the class balance, training and the pixel metrics
read), the ids as given are kept beside them (`labels/ids`, for object metrics). Without it, touching
cells are named in a warning and dense ids (almost no background) are refused.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from unetflow.atomic import atomic_path
from unetflow.data import formats, omezarr
from unetflow.data.instances import Contacts, check_contacts, contacts, separate_touching
from unetflow.data.labels import IGNORE_STORED
from unetflow.errors import InputError

LOG = logging.getLogger(__name__)
LABEL_KINDS = ("instance", "binary", "auto")


def _load(source: Any, fmt: str | None, member: str | None, what: str) -> tuple[Any, str]:
    """The (z, y, x) volume of a file (lazily) or an in-memory array, with a name for messages."""
    if isinstance(source, np.ndarray | da.Array):
        return formats.as_zyx(source, f"the {what} array"), f"the {what} array"
    return formats.open_volume(source, format=fmt, member=member), str(source)


def _check_options(voxel_size: Sequence[float], chunks: Sequence[int] | None, labels_kind: str) -> None:
    sizes = list(voxel_size)
    if len(sizes) != 3 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in sizes
    ):
        raise InputError(
            f"voxel_size is {voxel_size!r}; give three positive numbers (z, y, x), e.g. [50, 4, 4] nanometer"
        )
    if chunks is not None and (
        len(chunks) != 3
        or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and c > 0 for c in chunks)
    ):
        raise InputError(f"chunks is {chunks!r}; give three positive integers (z, y, x), or leave it unset")
    if labels_kind not in LABEL_KINDS:
        raise InputError(f"labels_kind is {labels_kind!r}; use one of {', '.join(LABEL_KINDS)}")


def _check_raw(raw: Any, name: str, chunks: tuple[int, ...] | None) -> omezarr.RunningStats:
    if np.dtype(raw.dtype).kind not in "iuf":
        raise InputError(
            f"{name}: pixel type {raw.dtype} is not supported; convert the raw volume to an integer or "
            "floating-point type"
        )
    stats = omezarr.volume_stats(raw, chunks=chunks)
    if stats.nonfinite:
        raise InputError(
            f"{name}: the raw volume holds {stats.nonfinite} non-finite values (NaN or infinity); replace "
            "them (e.g. with the background grey value) and import again"
        )
    if stats.std == 0:
        raise InputError(
            f"{name}: the raw volume is constant (every voxel is {stats.mean:g}), there is nothing to learn "
            "or segment; check that the path/member points at the EM data"
        )
    return stats


def _label_kind(
    labels: Any,
    name: str,
    kind: str,
    chunks: tuple[int, ...] | None,
    *,
    ignore: int | None = None,
    per_slice: bool = True,
) -> tuple[str, Contacts]:
    """Scan the labels block by block: whole non-negative numbers, some annotated foreground; resolve kind
    'auto'; count how the ids touch (within each block). Pixels equal to `ignore` (unannotated) count as
    neither foreground nor a label value."""
    if np.dtype(labels.dtype).kind not in "biuf":
        raise InputError(f"{name}: label type {labels.dtype} is not supported; store labels as integers")
    shape = tuple(int(s) for s in labels.shape)
    values: set[float] = set()
    foreground = 0
    largest = 0.0
    touching = Contacts(0, 0, 0)
    for block in omezarr.iter_blocks(shape, chunks or omezarr.default_chunks(shape)):
        part = np.asarray(labels[block])
        if part.dtype.kind == "f" and not (np.isfinite(part).all() and np.array_equal(part, np.round(part))):
            raise InputError(
                f"{name}: labels hold fractional or non-finite values (a probability map?); labels must be "
                "whole numbers: 0/1 or 0/255 for binary, 0 and ids for instances"
            )
        if part.size and part.min() < 0:
            raise InputError(f"{name}: labels hold negative values; use 0 for background and positive ids")
        touching = touching + contacts(_as_ids(part), ignore=ignore, per_slice=per_slice)
        nonzero = part[(part != 0) & (part != ignore)] if ignore is not None else part[part != 0]
        foreground += int(nonzero.size)
        if nonzero.size:
            largest = max(largest, float(nonzero.max()))
            if len(values) < 2:
                values.update(np.unique(nonzero).tolist())
    if foreground == 0:
        what = "every voxel is 0" if ignore is None else f"every voxel is 0 or the ignore value {ignore}"
        raise InputError(
            f"{name}: the labels hold no foreground ({what}); point to the right label volume, "
            "or import without labels"
        )
    if kind == "auto":
        kind = "binary" if len(values) == 1 else "instance"
    if kind == "binary" and len(values) > 1:
        raise InputError(
            f"{name}: labels_kind is binary but the labels hold several non-zero values "
            f"({', '.join(f'{v:g}' for v in sorted(values))}, ...); use labels_kind instance (or auto)"
        )
    limit = IGNORE_STORED["instance"] - (ignore is not None)  # 2**32 - 1 then marks unannotated pixels
    if kind == "instance" and largest > limit:
        raise InputError(f"{name}: label id {largest:g} does not fit uint32; relabel the ids consecutively")
    return kind, touching


def _as_ids(block: np.ndarray) -> np.ndarray:
    """Whole-number labels of any numeric type as integers (bool as 0/1)."""
    if block.dtype.kind in "iu":
        return block
    return block.astype(np.int64)


def _separated(labels: Any, *, width: int, ignore: int | None, per_slice: bool) -> da.Array:
    """The labels with the background forced `width` pixels wide between touching ids, lazily (each block
    read with the halo the derivation needs)."""
    volume = da.asarray(labels)
    if volume.dtype.kind not in "iu":
        volume = volume.astype(np.int64)
    reach = width // 2 + 1
    return volume.map_overlap(
        separate_touching,
        depth={0: 0 if per_slice else reach, 1: reach, 2: reach},
        boundary="nearest",
        dtype=volume.dtype,
        width=width,
        ignore=ignore,
        per_slice=per_slice,
    )


def import_volume(
    raw: str | os.PathLike[str] | np.ndarray,
    target: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | np.ndarray | None = None,
    raw_format: str | None = None,
    raw_member: str | None = None,
    labels_format: str | None = None,
    labels_member: str | None = None,
    labels_kind: str = "auto",
    labels_ignore: int | None = None,
    labels_separate: int | None = None,
    labels_separate_in: str = "slice",
    separate_key: str = "labels_separate",
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str = "nanometer",
    chunks: tuple[int, int, int] | None = None,
    attrs: dict[str, Any] | None = None,
    normalization: str = "zscore",
    percentiles: tuple[float, float] = (1.0, 99.8),
) -> Path:
    """Validate raw (and labels) and write them as an OME-Zarr store at `target` (raw at 0, labels/cells).

    `labels_kind` "auto" takes labels with one non-zero value (0/255, 0/1) as binary, else as instances.
    `labels_ignore` is the label value of unannotated pixels (sparse labels): they are stored as
    `unetflow.data.labels.IGNORE_STORED[kind]` and recorded, and the loss and the metrics leave them out.
    `labels_separate` forces the background that many pixels wide between touching instance ids, in each
    slice or in 3-D (`labels_separate_in` "slice" / "volume"), keeping the ids as given at `labels/ids`;
    `separate_key` is the name of that setting in messages (the config key). `attrs` are added to the
    image's unetflow attributes. `normalization` "zscore" records the raw's mean and std, "percentile"
    its `percentiles` (low, high) as offset and scale (they become 0 and 1: light microscopy, whose
    saturated or dead pixels would pull a mean and std).
    """
    if labels_ignore is not None and (isinstance(labels_ignore, bool) or labels_ignore < 1):
        raise InputError(
            f"labels_ignore is {labels_ignore!r}; give the label value (>= 1: 0 is membrane) that marks "
            "unannotated pixels"
        )
    _check_options(voxel_size, chunks, labels_kind)
    destination = Path(target)
    raw_data, raw_name = _load(raw, raw_format, raw_member, "raw")
    stats = _check_raw(raw_data, raw_name, chunks)
    label_data = None
    kind = None
    sources: dict[str, Any] = {"raw": raw_name, "raw_member": raw_member}
    if labels is not None:
        label_data, label_name = _load(labels, labels_format, labels_member, "labels")
        if tuple(label_data.shape) != tuple(raw_data.shape):
            raise InputError(
                f"{label_name}: labels of shape {tuple(label_data.shape)} (z, y, x) do not match the raw "
                f"volume {raw_name} of shape {tuple(raw_data.shape)}; use the labels made for this raw volume"
            )
        kind, found = _label_kind(
            label_data,
            label_name,
            labels_kind,
            chunks,
            ignore=labels_ignore,
            per_slice=_per_slice(labels_separate_in),
        )
        if kind == "instance":
            check_contacts(found, name=label_name, separate=labels_separate, key=separate_key)
        elif labels_separate:
            raise InputError(
                f"{label_name}: {separate_key} {labels_separate} separates touching instance ids, but these "
                "labels are binary (one cell value: their cells are connected components, which never "
                f"touch); drop {separate_key}"
            )
        sources.update(labels=label_name, labels_member=labels_member)
    meta: dict[str, Any] = {
        **dict(attrs or {}),
        "normalization": _normalization(raw_data, raw_name, normalization, percentiles, stats),
        "source": sources,
    }
    separate = bool(label_data is not None and kind == "instance" and labels_separate)
    if separate:
        meta["separate"] = {
            "width": int(labels_separate or 0),
            "in": labels_separate_in,
            "ids": omezarr.INSTANCE_IDS,
        }
    with atomic_path(destination) as tmp:
        omezarr.write_image(
            tmp,
            raw_data,
            voxel_size=voxel_size,
            unit=unit,
            chunks=chunks,
            name=destination.stem,
            attrs=meta,
        )
        if label_data is not None and kind is not None:
            cells = label_data
            if separate:
                cells = _separated(
                    label_data,
                    width=int(labels_separate or 0),
                    ignore=labels_ignore,
                    per_slice=_per_slice(labels_separate_in),
                )
                omezarr.write_labels(
                    tmp, omezarr.INSTANCE_IDS, label_data, kind="instance", ignore=labels_ignore
                )
            omezarr.write_labels(tmp, omezarr.DEFAULT_LABELS, cells, kind=kind, ignore=labels_ignore)
    LOG.info(
        "imported %s (%s, %s) into %s (mean %.4g, std %.4g)",
        raw_name,
        tuple(raw_data.shape),
        raw_data.dtype,
        destination,
        stats.mean,
        stats.std,
    )
    return destination


def _normalization(
    raw: Any, name: str, policy: str, percentiles: tuple[float, float], stats: omezarr.RunningStats
) -> dict[str, Any]:
    """The normalisation recorded at import: mean and std, or the percentiles as offset and scale (from
    every voxel of a volume up to 2**27 voxels, else from evenly spaced slices)."""
    if policy == "zscore":
        return {"mean": stats.mean, "std": stats.std}
    if policy != "percentile":
        raise InputError(f"normalization is {policy!r}; use zscore or percentile")
    step = max(1, math.ceil(math.prod(raw.shape) / 2**27))
    values = np.asarray(raw[::step], dtype=np.float64)
    low, high = (float(v) for v in np.percentile(values, list(percentiles)))
    if not high > low:
        raise InputError(
            f"{name}: its {percentiles[0]}th and {percentiles[1]}th percentiles are both {low:g}: widen the "
            "percentiles (ctc.percentiles) or normalise with zscore"
        )
    return {"policy": "percentile", "mean": low, "std": high - low, "percentiles": list(percentiles)}


def _per_slice(where: str) -> bool:
    """Whether `labels_separate_in` ("slice" or "volume") means each 2-D slice on its own."""
    if where not in ("slice", "volume"):
        raise InputError(f"labels_separate_in is {where!r}; use slice (each 2-D slice) or volume (3-D)")
    return where == "slice"


def invert_binary_labels(
    path: str | Path, *, fmt: str | None, member: str | None, ignore: int | None = None
) -> da.Array:
    """Binary labels whose foreground is the membrane, inverted (lazily): 1 = cell interior, 0 = membrane;
    pixels equal to `ignore` (unannotated) keep that value."""
    volume = formats.open_volume(path, format=fmt, member=member)
    values = np.unique(da.unique(volume).compute())
    if ignore is not None:
        values = values[values != ignore]
    if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
        raise InputError(
            f"{path}: labels hold negative or fractional values; invert applies to binary 0/1 or 0/255 labels"
        )
    nonzero = values[values != 0]
    if nonzero.size > 1:
        raise InputError(
            f"{path}: invert applies to binary labels, these hold {nonzero.size} non-zero values (instance "
            "ids?); drop invert from the labels source"
        )
    if nonzero.size == 0 or nonzero.size == values.size:
        kind = "no foreground (every voxel is 0)" if nonzero.size == 0 else "no 0 voxels"
        raise InputError(
            f"{path}: the labels hold {kind}, so inverted they would be a single class; point to the right "
            "label volume (member) or drop invert"
        )
    inverted = (volume == 0).astype(np.uint8)
    if ignore is None:
        return inverted
    return da.where(volume == ignore, volume, inverted)
