"""The probability volume a segmentation reads: opened through the reader registry, checked, turned into
boundary probability, and which of its blocks hold data.

A unetflow prediction holds the foreground (cell interior) probability at level 0: the boundary is 1 - p.
A boundary map brought from elsewhere (ilastik, another net; `--boundary`) is used as it is, 1 = membrane.
Float values must lie in [0, 1]; uint8 and uint16 maps are scaled by their largest value (ilastik exports
both). Regions whose chunks were never written hold no data: their voxels get no object (0), and blocks
without any are never touched.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unetflow.data import zarrmeta
from unetflow.errors import InputError
from unetflow.readers import Volume, open_input
from unetflow.stores import Location, StoreOptions

SAMPLE_CHUNKS = 64
"""Chunks checked for the value range before anything is written (every block is checked again)."""
INTEGER_SCALES = {"uint8": 255.0, "uint16": 65535.0}


@dataclass(frozen=True)
class ProbabilitySource:
    """Where the probability lies: a path, and for a container its format, member and level."""

    path: str
    format: str | None = None
    member: str | None = None
    level: int | str | None = None
    store: dict[str, Any] | None = None
    """How to reach a URL's store (anon, endpoint_url, profile: never credentials), e.g. predict.output's."""

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the attributes."""
        return asdict(self)

    def place(self) -> Location:
        """Where the probability lies, with the options to reach its store."""
        return Location(self.path, None if self.store is None else StoreOptions(**self.store))

    def identity(self) -> str | None:
        """A digest of the probability's own unetflow attributes (a prediction's plan, source, model,
        threshold and normalisation: what fixes its values), None for a volume without them: a segmentation
        started from the same identity and plan may go on where it stopped."""
        try:
            attrs = (zarrmeta.group_attrs(self.place()) or {}).get("unetflow")
        except InputError:  # a place zarr does not open (precomputed://): no attributes of unetflow's
            return None
        if not attrs:
            return None
        return hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()[:16]

    def open(self) -> Volume:
        """The (z, y, x) volume, read in place through its format's reader (a path or a URL)."""
        options = None if self.store is None else StoreOptions(**self.store)
        return open_input(
            self.path, format=self.format, member=self.member, level=self.level, options=options
        )


def check_volume(volume: Volume, name: str) -> None:
    """Refuse what is no probability volume: a 2-D array, a dtype that is no probability."""
    if getattr(volume, "_native_ndim", 3) == 2:
        raise InputError(
            f"segment: {name} is a 2-D array of shape {volume.shape[1:]}; segment takes a (z, y, x) volume "
            "of probability (a stack of one slice is fine: save it with a z axis of size 1). Nothing was "
            "written"
        )
    if volume.dtype.kind != "f" and volume.dtype.name not in INTEGER_SCALES:
        raise InputError(
            f"segment: {name} holds {volume.dtype} values; a probability is float in [0, 1] (or uint8 / "
            "uint16 scaled by its largest value). Nothing was written"
        )


def as_boundary(values: np.ndarray, *, boundary: bool, name: str, where: str) -> np.ndarray:
    """Boundary probability (float32, 1 = membrane) of a block of the source; out of range: InputError."""
    scale = INTEGER_SCALES.get(values.dtype.name)
    data = values.astype(np.float32) / np.float32(scale) if scale else values.astype(np.float32, copy=False)
    if data.size:
        low, high = float(np.min(data)), float(np.max(data))
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 1:
            raise InputError(
                f"segment: {name} holds values from {low:g} to {high:g} at {where}; a probability lies in "
                "[0, 1]. Point to the probability (not logits or a label image), or rescale it"
            )
    return data if boundary else 1.0 - data


def stored_chunks(volume: Volume) -> set[tuple[int, int, int]] | None:
    """Grid coordinates of the chunks the source holds (None where it cannot tell: all hold data)."""
    return volume.stored_chunks()


def data_mask(
    volume: Volume, stored: set[tuple[int, int, int]] | None, box: tuple[slice, slice, slice]
) -> np.ndarray | None:
    """Which voxels of `box` lie in stored chunks (None: all of them)."""
    if stored is None or volume.chunks is None:
        return None
    mask = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    spans = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(box, volume.chunks, strict=True)]
    for index in ((z, y, x) for z in spans[0] for y in spans[1] for x in spans[2]):
        if index in stored:
            region = tuple(
                slice(max(i * c, s.start) - s.start, min((i + 1) * c, s.stop) - s.start)
                for i, c, s in zip(index, volume.chunks, box, strict=True)
            )
            mask[region] = True
    if mask.all():
        return None
    return mask


def blocks_with_data(volume: Volume, stored: set[tuple[int, int, int]] | None, plan: Any) -> set[int] | None:
    """Block numbers of `plan` that overlap a stored chunk (None: all blocks)."""
    if stored is None or volume.chunks is None:
        return None
    found: set[int] = set()
    for index in stored:
        region = tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(index, volume.chunks, plan.shape, strict=True)
        )
        found.update(plan.blocks_in(region))
    return found


def check_sample(volume: Volume, stored: set[tuple[int, int, int]] | None, *, boundary: bool) -> None:
    """Check the value range on an even sample of stored chunks before anything is written."""
    chunks = volume.chunks or (1, volume.shape[1], volume.shape[2])
    grid = [range(-(-n // c)) for n, c in zip(volume.shape, chunks, strict=True)]
    listed = (
        sorted(stored)
        if stored is not None
        else [(z, y, x) for z in grid[0] for y in grid[1] for x in grid[2]]
    )
    if not listed:
        raise InputError(f"segment: {volume.source} holds no data: none of its chunks was ever written")
    step = max(1, len(listed) // SAMPLE_CHUNKS)
    for index in listed[::step][:SAMPLE_CHUNKS]:
        box = tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, volume.shape, strict=True)
        )
        as_boundary(np.asarray(volume[box]), boundary=boundary, name=volume.source, where=f"chunk {index}")
