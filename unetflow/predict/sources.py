"""The volume a prediction reads, where it lies: its statistics and which of its regions hold data.

Normalisation: the net was trained on volumes z-scored with their own mean and std (the policy a
checkpoint records); a new volume is z-scored with its own statistics too, which for a volume imported by
unetflow are the whole volume's (computed at import) and for a volume read in place come from a chunked
pass over an even sample of its stored chunks. Regions whose chunks were never written (all fill value)
hold no data: with skip-empty their blocks are not predicted.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.predict.plan import PredictionPlan
from unetflow.readers import Volume, open_input
from unetflow.stores import Location, StoreOptions

log = logging.getLogger(__name__)

SAMPLE_CHUNKS = 64
"""Chunks read to estimate the statistics of a volume read in place (spread evenly over its data)."""
NORMALIZATION_POLICY = "zscore-volume"
"""Each volume is normalised with its own mean and std (the training volume's at training time)."""


@dataclass(frozen=True)
class SourceSpec:
    """Where a prediction reads its volume: a path or URL, for a container its format, member and level, and
    for a URL how to reach its store (never a credential: this is stored in the prediction's attributes)."""

    path: str
    format: str | None = None
    member: str | None = None
    level: int | str | None = None
    anon: bool = False
    endpoint_url: str | None = None
    profile: str | None = None

    @property
    def options(self) -> StoreOptions:
        """How to reach the source's store."""
        return StoreOptions(anon=self.anon, endpoint_url=self.endpoint_url, profile=self.profile)

    @property
    def location(self) -> Location:
        """The source as a Location."""
        return Location(self.path, self.options)

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the prediction's attributes."""
        return asdict(self)

    @classmethod
    def of(cls, value: SourceSpec | str | os.PathLike[str] | dict[str, Any]) -> SourceSpec:
        """A spec from itself, a bare path, or its dict form."""
        if isinstance(value, SourceSpec):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(path=str(value))


def open_source(spec: SourceSpec | str | os.PathLike[str] | dict[str, Any]) -> Volume:
    """The (z, y, x) volume a prediction reads, through the reader of its format (read in place)."""
    source = SourceSpec.of(spec)
    return open_input(
        source.path, format=source.format, member=source.member, level=source.level, options=source.options
    )


def chunk_shape(source: Any) -> tuple[int, int, int]:
    """The storage chunks of `source` in (z, y, x) (the whole slice where it is not chunked)."""
    chunks = getattr(source, "chunks", None)
    if not chunks or len(chunks) != 3:
        return 1, int(source.shape[1]), int(source.shape[2])
    return tuple(int(c) for c in chunks)  # type: ignore[return-value]


def stored_chunks(source: Any, z_range: tuple[int, int] | None = None) -> set[tuple[int, int, int]] | None:
    """Grid coordinates of the chunks `source` holds (None where it cannot tell: then all count)."""
    method = getattr(source, "stored_chunks", None)
    return None if method is None else method(z_range)


def volume_statistics(source: Any, name: str, *, sample: int = SAMPLE_CHUNKS) -> dict[str, Any]:
    """Mean and std of a volume from an even sample of its stored chunks (all of them where few).

    A volume without stored data or with one grey value is an InputError naming it.
    """
    chunks = chunk_shape(source)
    stored = stored_chunks(source)
    if stored is None:
        grid = [math.ceil(n / c) for n, c in zip(source.shape, chunks, strict=True)]
        stored = {(z, y, x) for z in range(grid[0]) for y in range(grid[1]) for x in range(grid[2])}
    if not stored:
        raise InputError(
            f"{name} holds no data: none of its chunks was ever written; check the path, member or level"
        )
    ordered = sorted(stored)
    step = max(1, len(ordered) // sample)
    picked = ordered[::step][:sample]
    stats = omezarr.RunningStats()
    for z, y, x in picked:
        region = tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip((z, y, x), chunks, source.shape, strict=True)
        )
        stats.add(np.asarray(source[region]))
    if stats.nonfinite:
        raise InputError(f"{name} holds non-finite values (NaN or infinity); replace them and run again")
    if not stats.std > 0:
        raise InputError(
            f"{name} is constant in the {len(picked)} chunks sampled (every voxel {stats.mean:g}): there is "
            "nothing to segment; check the path, member or level"
        )
    return {
        "policy": NORMALIZATION_POLICY,
        "mean": stats.mean,
        "std": stats.std,
        "chunks_sampled": len(picked),
        "chunks_stored": len(ordered),
    }


def normalization_of(spec: SourceSpec, source: Any) -> dict[str, Any]:
    """The statistics a volume is normalised with: an import's whole-volume ones, else a sampled pass."""
    try:
        if spec.member is not None or spec.level is not None or getattr(source, "name", None) != "zarr":
            raise InputError("a member or level of a store: not a unetflow import")
        mean, std = omezarr.normalization(spec.location)
    except InputError:
        return volume_statistics(source, spec.path)
    return {"policy": NORMALIZATION_POLICY, "mean": mean, "std": std, "chunks_sampled": "all (at import)"}


def nonempty_blocks(
    source: Any, plan: PredictionPlan, shards: Iterable[int]
) -> dict[int, list[tuple[int, int, int]]] | None:
    """For each shard, the blocks whose own region overlaps a stored source chunk (None: all hold data)."""
    grid = plan.grid
    numbers = list(shards)
    z_layers = sorted({grid.region(grid.index(n))[0].start for n in numbers})
    chunks = chunk_shape(source)
    if not z_layers:
        return {}
    z_span = (z_layers[0], max(grid.region(grid.index(n))[0].stop for n in numbers))
    stored = stored_chunks(source, z_span)
    if stored is None:
        return None
    block_chunk = grid.chunk
    touched: set[tuple[int, int, int]] = set()
    for cz, cy, cx in stored:
        first = cz * chunks[0] // block_chunk[0] * block_chunk[0]  # the block holding the chunk's first slice
        for z in range(first, min((cz + 1) * chunks[0], plan.shape[0]), block_chunk[0]):
            for by in range(
                cy * chunks[1] // block_chunk[1],
                min((cy + 1) * chunks[1] - 1, plan.shape[1] - 1) // block_chunk[1] + 1,
            ):
                for bx in range(
                    cx * chunks[2] // block_chunk[2],
                    min((cx + 1) * chunks[2] - 1, plan.shape[2] - 1) // block_chunk[2] + 1,
                ):
                    touched.add(
                        (z // block_chunk[0] * block_chunk[0], by * block_chunk[1], bx * block_chunk[2])
                    )
    return {n: [start for start in grid.chunks_of(grid.index(n)) if start in touched] for n in numbers}
