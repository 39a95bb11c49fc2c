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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unetflow import omezarr
from unetflow.errors import InputError
from unetflow.predict.plan import PredictionPlan

log = logging.getLogger(__name__)

SAMPLE_CHUNKS = 64
"""Chunks read to estimate the statistics of a volume read in place (spread evenly over its data)."""
NORMALIZATION_POLICY = "zscore-volume"
"""Each volume is normalised with its own mean and std (the training volume's at training time)."""


class Source(Protocol):
    """What prediction needs of an input volume: its size, its chunks, and reads of (z, y, x) regions."""

    shape: tuple[int, ...]
    dtype: Any

    def __getitem__(self, key: Any) -> np.ndarray: ...


def chunk_shape(source: Any) -> tuple[int, int, int]:
    """The storage chunks of `source` in (z, y, x) (the whole slice where it is not chunked)."""
    chunks = getattr(source, "chunks", None)
    if not chunks or len(chunks) != 3:
        return 1, int(source.shape[1]), int(source.shape[2])
    return tuple(int(c) for c in chunks)  # type: ignore[return-value]


def stored_chunks(source: Any, z_range: range | None = None) -> set[tuple[int, int, int]] | None:
    """Grid coordinates of the chunks `source` holds (None where it cannot tell: then all count)."""
    method = getattr(source, "stored_chunks", None)
    if method is not None:
        return method(z_range)
    return _zarr_stored_chunks(source, z_range)


def _zarr_stored_chunks(array: Any, z_range: range | None) -> set[tuple[int, int, int]] | None:
    """Stored chunks of a local zarr array, by listing its chunk keys (a directory walk, no stat per slot)."""
    store = getattr(array, "store", None)
    root = getattr(store, "root", None)
    if root is None or getattr(array, "ndim", 0) != 3:
        return None
    folder = Path(root) / array.path
    metadata = array.metadata
    if metadata.zarr_format == 3:
        encoding = metadata.chunk_key_encoding
        separator = getattr(encoding, "separator", "/")
        prefix = "c" if getattr(encoding, "name", "default") == "default" else ""
        grid = tuple(array.shards or array.chunks)
    else:
        separator = metadata.dimension_separator or "."
        prefix = ""
        grid = tuple(array.chunks)
    base = folder / prefix if prefix else folder
    found: set[tuple[int, int, int]] = set()
    if separator == "/":
        zs = _numbers(base) if z_range is None else [z for z in z_range if (base / str(z)).is_dir()]
        for z in zs:
            for y in _numbers(base / str(z)):
                for x in _numbers(base / str(z) / str(y), files=True):
                    found.add((z, y, x))
    else:
        with _scandir(base) as entries:
            for entry in entries:
                parts = entry.name.split(separator)
                if len(parts) == 3 and all(p.isdigit() for p in parts):
                    key = tuple(int(p) for p in parts)
                    if z_range is None or key[0] in z_range:
                        found.add(key)  # type: ignore[arg-type]
    if grid != tuple(array.chunks):  # sharded: a stored shard stands for each of its chunks
        ratio = [s // c for s, c in zip(grid, array.chunks, strict=True)]
        found = {
            (z * ratio[0] + dz, y * ratio[1] + dy, x * ratio[2] + dx)
            for z, y, x in found
            for dz in range(ratio[0])
            for dy in range(ratio[1])
            for dx in range(ratio[2])
        }
    return found


def _scandir(folder: Path) -> Any:
    import os

    try:
        return os.scandir(folder)
    except FileNotFoundError:
        return _Empty()


class _Empty:
    def __enter__(self) -> list[Any]:
        return []

    def __exit__(self, *exc: object) -> None:
        return None


def _numbers(folder: Path, *, files: bool = False) -> list[int]:
    with _scandir(folder) as entries:
        return [
            int(entry.name)
            for entry in entries
            if entry.name.isdigit() and (entry.is_file() if files else entry.is_dir())
        ]


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


def normalization_of(source_path: str | Path, source: Any, name: str) -> dict[str, Any]:
    """The statistics a volume is normalised with: an import's whole-volume ones, else a sampled pass."""
    try:
        mean, std = omezarr.normalization(source_path)
    except InputError:
        return volume_statistics(source, name)
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
    z_span = range(
        z_layers[0] // chunks[0],
        (max(grid.region(grid.index(n))[0].stop for n in numbers) - 1) // chunks[0] + 1,
    )
    stored = stored_chunks(source, z_span)
    if stored is None:
        return None
    block_chunk = grid.chunk
    touched: set[tuple[int, int, int]] = set()
    for cz, cy, cx in stored:
        for z in range(cz * chunks[0], min((cz + 1) * chunks[0], plan.shape[0])):
            for by in range(
                cy * chunks[1] // block_chunk[1],
                min((cy + 1) * chunks[1] - 1, plan.shape[1] - 1) // block_chunk[1] + 1,
            ):
                for bx in range(
                    cx * chunks[2] // block_chunk[2],
                    min((cx + 1) * chunks[2] - 1, plan.shape[2] - 1) // block_chunk[2] + 1,
                ):
                    touched.add((z, by * block_chunk[1], bx * block_chunk[2]))
    return {n: [start for start in grid.chunks_of(grid.index(n)) if start in touched] for n in numbers}


def open_source(path: str | Path) -> Any:
    """The (z, y, x) volume at `path`: an OME-Zarr image (its level 0) or a plain Zarr array."""
    from unetflow.predict.tiles import as_stack

    return as_stack(omezarr.open_image(path))
