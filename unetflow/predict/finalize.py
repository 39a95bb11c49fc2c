"""Finish a prediction: check every shard, build the multiscale pyramid, add instance labels, summarise.

The pyramid (levels 1..N-1, each 2x coarser in y and x) lets napari and other OME-Zarr viewers browse a
whole dataset: the probability is averaged over 2x2 pixels, the segmentation subsampled (labels keep their
values). It is built level by level, shard by shard, from the chunks of the level below, skipping shards
with no data below them, and journalled like the prediction itself, so an interrupted finalisation resumes.
Reading level 0 decodes every chunk: one that does not decode is removed and named, and the next run of
the workflow redoes its shard.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr
from scipy import ndimage

from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.logs import progress_bar
from unetflow.predict import progress
from unetflow.predict.plan import PredictionPlan, read_plan
from unetflow.predict.progress import INSTANCES, SEGMENTATION, check_complete
from unetflow.predict.store import OUTPUT_COMPRESSION, Pieces, write_pieces
from unetflow.stores import Location

log = logging.getLogger(__name__)

PYRAMID = "pyramid"
"""Name of the finalisation's journal (the pyramid's shards)."""
READS_IN_FLIGHT = 16
"""Chunks of the level below read at once while a level is built."""
WHOLE_SHARD_BYTES = 256 * 2**20
"""A shard of the level below on a store up to this size is fetched in one request and its chunks decoded
from memory (one shard held at a time); a larger one is read chunk by chunk, in ranges."""


def pyramid_levels(shape: tuple[int, ...], wanted: int) -> int:
    """The levels to build: `wanted`, fewer where a level would be smaller than one pixel in y or x."""
    largest = max(shape[1], shape[2])
    return max(1, min(wanted, 1 + int(math.log2(largest))))


def _digest(target: str | Path | Location, plan: PredictionPlan) -> str:
    """A digest of every group's journal: the pyramid journal belongs to exactly this level-0 data."""
    entries = progress.group_entries(target, plan.groups)
    text = "".join(entry.line() for _, entry in sorted(entries.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _coarsen(values: np.ndarray, *, labels: bool) -> np.ndarray:
    """2x downsampling in y and x: the mean of 2x2 pixels (an odd edge repeats its last pixel), or for
    labels the top-left one of each."""
    if labels:
        return values[:, ::2, ::2]
    y, x = values.shape[1:]
    if y % 2 or x % 2:
        values = np.pad(values, ((0, 0), (0, y % 2), (0, x % 2)), mode="edge")
    total = values[:, 0::2, 0::2].astype(np.float32)
    total += values[:, 1::2, 0::2]
    total += values[:, 0::2, 1::2]
    total += values[:, 1::2, 1::2]
    total *= np.float32(0.25)
    return total


def _open_level(place: Location, mode: str, zarr_format: int) -> Any:
    """The array of one pyramid level; read only (the level below, complete, read through), a shard on a
    store is fetched whole in one request and its chunks decoded from memory, not fetched one by one, and
    the array is opened as the plan's `zarr_format` (no request for the other format's metadata)."""
    if mode != "r":
        return omezarr.open_image(place, mode=mode)
    store = place.zarr_store(read_only=True, keep=True, whole=WHOLE_SHARD_BYTES)
    return zarr.open_array(store=store, mode="r", zarr_format=zarr_format)


class _Level:
    """The probability and segmentation arrays of one pyramid level, with their grid and shard files."""

    def __init__(self, target: Location, plan: PredictionPlan, level: int, mode: str = "r") -> None:
        self.target, self.grid, self.level = target, plan.level_grid(level), level
        zarr_format = 3 if plan.ngff == "0.5" else 2
        self.arrays = [
            (_open_level(target / str(level), mode, zarr_format), False),
            (_open_level(target / omezarr.LABELS_GROUP / SEGMENTATION / str(level), mode, zarr_format), True),
        ]
        self.files = progress.ShardFiles(target, level)


def build_pyramid(target: str | Path | Location, levels: int, *, show_progress: bool = True) -> int:
    """Levels 1..`levels`-1 of the probability and segmentation; returns how many levels there are."""
    folder = Location.of(target)
    plan = read_plan(target)
    levels = pyramid_levels(plan.shape, levels)
    if levels == 1:
        return 1
    grids = [plan.level_grid(level) for level in range(levels)]
    journals = progress.journal_folder(target)
    journal_file = journals / f"{PYRAMID}-{_digest(target, plan)}.tsv"
    for name in journals.listdir():
        if name.startswith(f"{PYRAMID}-") and name.endswith(".tsv") and name != journal_file.name:
            (journals / name).remove()
    if not journal_file.exists():
        layout = [(g.shape, g.chunk, g.shard if plan.sharded else None) for g in grids[1:]]
        for image in (folder, folder / omezarr.LABELS_GROUP / SEGMENTATION):
            omezarr.add_levels(image, layout, compression_level=OUTPUT_COMPRESSION)
    entries = {**progress.group_entries(target, plan.groups), **progress.read_journal(journal_file)}
    with progress.journal(journal_file) as record:
        for level in range(1, levels):
            grid = grids[level]
            lower, upper = _Level(folder, plan, level - 1), _Level(folder, plan, level, mode="r+")
            finished = progress.complete(target, range(len(grid)), grid.index, entries=entries, level=level)
            todo = [n for n in range(len(grid)) if n not in finished]
            for number in progress_bar(
                todo, desc=f"pyramid level {level}", unit="shard", disable=not show_progress
            ):
                entry = _level_shard(number, lower, upper, entries)
                record(entry)
                entries[(level, number)] = entry
    return levels


def _level_shard(
    number: int, lower: _Level, upper: _Level, entries: dict[tuple[int, int], progress.Entry]
) -> progress.Entry:
    """Compute and write one shard of a level from the chunks below it (no data below: it stays empty)."""
    index = upper.grid.index(number)
    region = upper.grid.region(index)
    below = (
        region[0],
        slice(2 * region[1].start, min(2 * region[1].stop, lower.grid.shape[1])),
        slice(2 * region[2].start, min(2 * region[2].stop, lower.grid.shape[2])),
    )
    empty = progress.Entry(shard=-1, sizes=(0, 0))
    if not any(any(entries.get((lower.level, n), empty).sizes) for n in lower.grid.shards_in(below)):
        return progress.Entry(shard=number, sizes=(0, 0), level=upper.level)
    upper.files.clear(index)
    chunks = [  # shard by shard: a shard fetched whole is done with before the next is fetched
        start
        for n in lower.grid.shards_in(below)
        for start in lower.grid.chunks_in(_overlap(below, lower.grid.region(lower.grid.index(n))))
    ]
    for (source, labels), (destination, _) in zip(lower.arrays, upper.arrays, strict=True):
        pieces: Pieces = {}
        for (z, y, x), values in _read_chunks(source, chunks, lower):
            if values.any():  # no data (or all 0): nothing to write, the level reads 0 there
                pieces[(z, y // 2, x // 2)] = _coarsen(values, labels=labels)
        write_pieces(destination, region, pieces)
    return progress.Entry(shard=number, sizes=upper.files.sizes(index), level=upper.level)


def _overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, slice, slice]:
    """The voxels two (z, y, x) regions share."""
    z, y, x = (slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b, strict=True))
    return z, y, x


def _read_chunks(
    array: Any, starts: list[tuple[int, int, int]], level: _Level
) -> Iterator[tuple[tuple[int, int, int], np.ndarray]]:
    """The chunks of a level at `starts`, in order, READS_IN_FLIGHT read at once: on an object store each
    read waits a round trip (zarr-python reads a shard's chunks one after another), so a whole volume's
    chunks read one by one would take hours; memory holds at most that many chunks."""
    grid = level.grid

    def read(start: tuple[int, int, int]) -> tuple[tuple[int, int, int], np.ndarray]:
        region = tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, grid.chunk, grid.shape, strict=True))
        return start, _read_checked(array, region, level)  # type: ignore[arg-type]

    with ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="unetflow-pyramid") as pool:
        window: collections.deque[Future[tuple[tuple[int, int, int], np.ndarray]]] = collections.deque()
        for start in starts:
            window.append(pool.submit(read, start))
            if len(window) >= READS_IN_FLIGHT:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _read_checked(array: Any, region: tuple[slice, slice, slice], level: _Level) -> np.ndarray:
    """Read a chunk; one that does not decode has its shard removed and named (the fix: run again)."""
    try:
        return np.asarray(array[region])
    except Exception as error:
        [number] = level.grid.shards_in(region)
        index = level.grid.index(number)
        paths = [level.files.path(which, index) for which in range(len(level.files.arrays))]
        for path in paths:
            Location.of(path).unlink()
        raise InputError(
            f"prediction {level.target}: {paths[0]} or {paths[1]} does not decode ({type(error).__name__}: "
            f"{error}); removed both: run the same command again and the shard is predicted again"
        ) from error


def instance_labels(segmentation: Any, *, connectivity: int = 1) -> tuple[Any, int]:
    """Connected components of the interior class of each (z) slice, ids unique across the volume.

    Returns a lazy uint32 (z, y, x) array (one task per slice) and the number of instances. A first pass
    counts each slice's components so that slice z's ids start after those of slices 0..z-1.
    """
    import dask.array as da

    from unetflow.predict.tiles import as_stack  # (torch: a finalisation without instances needs none)

    if connectivity not in (1, 2):
        raise InputError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity!r}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    stack = as_stack(segmentation)
    counts = [ndimage.label(np.asarray(stack[z]) > 0, structure=structure)[1] for z in range(stack.shape[0])]
    total = int(sum(counts))
    if total > np.iinfo(np.uint32).max:
        raise InputError(f"{total} instances do not fit uint32 labels; predict a smaller volume")
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]])

    def label_slice(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        z = block_info[0]["chunk-location"][0] if block_info else 0
        labels = ndimage.label(block[0] > 0, structure=structure)[0].astype(np.uint32)
        np.add(labels, np.uint32(offsets[z]), out=labels, where=labels > 0)
        return labels[None]

    slices = da.from_array(stack, chunks=(1, *stack.shape[1:]), asarray=True)
    return slices.map_blocks(label_slice, dtype=np.uint32, meta=np.empty((0, 0, 0), np.uint32)), total


def group_summaries(target: str | Path | Location, groups: int) -> list[dict[str, Any]]:
    """What each block group's last run did (blocks, seconds, voxels per second)."""
    found = []
    for group in range(groups):
        try:
            found.append(json.loads(progress.group_summary_path(target, group).read_text()))
        except FileNotFoundError:
            continue
    return found


def finalize_prediction(
    target: str | Path | Location,
    *,
    pyramid: int = 1,
    instances: bool = False,
    connectivity: int = 1,
    workers: int = 2,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Check that every shard is complete, build `pyramid` levels, add instance labels if asked; a summary.

    The instance labels (``labels/instances``, uint32, chunked like the probability, OME image-label
    metadata) are the connected components of the segmentation's interior class, slice by slice
    (`connectivity` 1: 4-neighbour, 2: 8-neighbour), numbered uniquely across the volume.
    """
    target = Location.of(target)
    summary: dict[str, Any] = check_complete(target)
    plan = read_plan(target)
    summary["levels"] = build_pyramid(target, pyramid, show_progress=show_progress)
    runs = group_summaries(target, plan.groups)
    computed = sum(run["computed"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    sizes = target.sizes()
    summary.update(
        {
            "files": len(sizes),
            "bytes": sum(sizes.values()),
            "ngff": plan.ngff,
            "groups": plan.groups,
            "blocks_computed": computed,
            "blocks_empty": sum(run["empty"] for run in runs),
            "predict_seconds": seconds,
            "voxels_per_second": sum(run["voxels_computed"] for run in runs) / seconds if seconds else 0.0,
        }
    )
    if instances:
        segmentation = omezarr.open_labels(target, SEGMENTATION)
        if segmentation is None:
            raise InputError(f"prediction {target} has no labels/{SEGMENTATION}; re-run the predict jobs")
        labels, total = instance_labels(segmentation, connectivity=connectivity)
        with dask.config.set(scheduler="threads", num_workers=workers):
            omezarr.write_labels(
                target,
                INSTANCES,
                labels,
                kind="instance",
                chunks=plan.chunk,
                shards=plan.shard if plan.sharded else None,
            )
        summary["instances"] = total
        log.info("wrote %d instances to %s/labels/%s", total, target, INSTANCES)
    return summary
