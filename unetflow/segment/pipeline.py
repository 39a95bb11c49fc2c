"""The whole segmentation in one call (`unetflow segment`), and its finalisation: pyramid and summary.

`segment_volume` runs the five steps of unetflow.segment.run for every block group in turn, or resumes
them: a new output is planned, an existing one goes on where it stopped (every step skips what its journal
lists), so the same command after a kill finishes the segmentation with the same ids.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import numpy as np

from unetflow.data import omezarr, zarrmeta
from unetflow.errors import InputError
from unetflow.segment import store
from unetflow.segment.plan import planned_segment_groups, read_plan
from unetflow.segment.run import (
    FRAGMENTS,
    GRAPH,
    OUTPUT_COMPRESSION,
    RELABEL,
    init_segmentation,
    run_fragments,
    run_graph,
    run_relabel,
    run_solve,
)
from unetflow.segment.source import ProbabilitySource
from unetflow.stores import Location

log = logging.getLogger(__name__)

PYRAMID_LEVELS = 4
PYRAMID = "pyramid"
"""The work folder's journals of the label image's pyramid (one per level) and what they were built from."""


def segment_volume(
    source: ProbabilitySource,
    target: store.Target,
    *,
    group: int | None = None,
    show_progress: bool = False,
    pyramid: int = PYRAMID_LEVELS,
    **options: Any,
) -> dict[str, Any]:
    """Segment (or finish segmenting) `source` into `target`; `options` as `init_segmentation` takes them.

    With `group`, only that block group's fragments and graph are computed (the agglomeration needs every
    group's graph, so it and the relabel follow only once every group is there).
    """
    target = Location.of(target)
    if planned_segment_groups(target) is None:
        _check_free(target)
        init_segmentation(source, target, **options)
    plan = read_plan(target)
    groups = range(plan.groups) if group is None else [group]
    for index in groups:
        run_fragments(target, index, show_progress=show_progress)
    for index in groups:
        run_graph(target, index, show_progress=show_progress)
    if group is not None:
        return {"group": group}
    if not (store.work_folder(target) / "solve.json").is_file():
        run_solve(target)
    for index in groups:
        run_relabel(target, index, show_progress=show_progress)
    return finalize_segmentation(target, pyramid=pyramid)


def _check_free(target: Location) -> None:
    """Refuse a target that holds something else than a segmentation this module started: an OME-Zarr of
    another kind or any other data is never overwritten. On an object store a label image whose start was
    killed before its plan was stored (the plan is its last write) is started again."""
    if not target.exists():
        return
    meta = dict((zarrmeta.group_attrs(target) or {}).get(omezarr.ATTRS_KEY) or {})
    if not target.is_local and "source" in meta and "probability" in meta:
        return
    raise InputError(
        f"segment: {target} exists and is not a unetflow segmentation; delete it or choose another path"
    )


def check_complete(target: store.Target) -> None:
    """Every block of every group relabelled; an InputError naming the groups that are not."""
    plan = read_plan(target)
    missing = []
    for group in range(plan.groups):
        done = store.read_journal(store.journal_path(target, RELABEL, group))
        if any(n not in done for n in plan.group_blocks(group)):
            missing.append(group)
    if missing:
        raise InputError(
            f"segmentation {target}: block group(s) {missing} are not relabelled yet; run the same command "
            "again to finish them"
        )


def build_pyramid(target: store.Target, levels: int, with_data: set[int] | None = None) -> int:
    """Levels 1..`levels`-1 of the label image, each 2x coarser in y and x (the top-left voxel of each
    2x2, so labels keep their ids), written block by block over the level-0 blocks `with_data` (default:
    every block); returns how many levels there are.

    Journalled like the steps: each level's blocks are recorded as they are written, so a killed
    finalisation goes on where it stopped; a pyramid of other relabelled blocks (or another number of
    levels) is started afresh."""
    plan = read_plan(target)
    with_data = set(range(plan.blocks)) if with_data is None else with_data
    levels = max(1, min(levels, 1 + int(math.log2(max(plan.shape[1], plan.shape[2])))))
    if levels == 1:
        return 1
    chunk = tuple(min(b, n) for b, n in zip(plan.block, plan.shape, strict=True))
    shapes = [
        (plan.shape[0], max(1, -(-plan.shape[1] // 2**level)), max(1, -(-plan.shape[2] // 2**level)))
        for level in range(levels)
    ]
    folder = store.work_folder(target) / PYRAMID
    key = {"relabelled": _relabel_digest(target, plan.groups), "levels": levels}
    marker = folder / "levels.json"
    if not marker.exists() or store.read_json(marker) != key:
        folder.remove()
        grids = [
            (shape, tuple(min(c, n) for c, n in zip(chunk, shape, strict=True)), None) for shape in shapes[1:]
        ]
        omezarr.add_levels(target, grids, compression_level=OUTPUT_COMPRESSION)
        store.write_json(marker, key)
    base = omezarr.open_image(target)
    for level in range(1, levels):
        below = base if level == 1 else omezarr.open_image(Location.of(target) / str(level - 1))
        above = omezarr.open_image(Location.of(target) / str(level), mode="r+")
        path = store.journal_path(target, PYRAMID, level)
        done = store.read_journal(path)
        with store.journal(path) as record:
            for index, (z, y, x) in enumerate(_level_blocks(plan, with_data, level, shapes[level])):
                if index in done:
                    continue
                region = (
                    slice(z, min(z + plan.block[0], shapes[level][0])),
                    slice(2 * y, min(2 * (y + plan.block[1]), shapes[level - 1][1])),
                    slice(2 * x, min(2 * (x + plan.block[2]), shapes[level - 1][2])),
                )
                values = np.asarray(below[region])[:, ::2, ::2]
                if values.any():
                    above[region[0], y : y + values.shape[1], x : x + values.shape[2]] = values
                record(index, 1)
    return levels


def _relabel_digest(target: store.Target, groups: int) -> str:
    """A digest of every group's relabel journal: the pyramid journal belongs to exactly these blocks."""
    entries = [
        sorted(store.read_journal(store.journal_path(target, RELABEL, group)).items())
        for group in range(groups)
    ]
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def _level_blocks(
    plan: Any, with_data: set[int], level: int, shape: tuple[int, int, int]
) -> list[tuple[int, int, int]]:
    """Start voxels of the blocks of pyramid level `level` (blocks of the plan's shape) that lie over a
    level-0 block with data: the pyramid of a sparse volume touches only where it has objects."""
    starts = set()
    for number in with_data:
        z, y, x = (piece.start for piece in plan.box(number))
        factor = 2**level
        starts.add(
            (
                z // plan.block[0] * plan.block[0],
                y // factor // plan.block[1] * plan.block[1],
                x // factor // plan.block[2] * plan.block[2],
            )
        )
    return sorted(s for s in starts if all(v < n for v, n in zip(s, shape, strict=True)))


def finalize_segmentation(target: store.Target, *, pyramid: int = PYRAMID_LEVELS) -> dict[str, Any]:
    """Check every block is written, build the pyramid, and summarise (objects, blocks, time per step)."""
    check_complete(target)
    plan = read_plan(target)
    counts: dict[int, int] = {}
    for group in range(plan.groups):
        counts.update(store.read_journal(store.journal_path(target, FRAGMENTS, group)))
    levels = build_pyramid(target, pyramid, {n for n, count in counts.items() if count})
    work = store.work_folder(target)
    solve = store.read_json(work / "solve.json")
    steps = {}
    for step in (FRAGMENTS, GRAPH, RELABEL):
        names = [name for name in (work / step).listdir() if name.endswith(".json")]
        runs = [store.read_json(work / step / name) for name in names]
        seconds = sum(r["seconds"] for r in runs)
        voxels = sum(r["voxels"] for r in runs)
        steps[step] = {"seconds": seconds, "voxels_per_second": voxels / seconds if seconds else 0.0}
    steps["solve"] = {"seconds": solve["seconds"]}
    touched = sum(1 for count in counts.values() if count)
    return {
        "target": str(target),
        "shape": list(plan.shape),
        "blocks": plan.blocks,
        "blocks_with_data": touched,
        "groups": plan.groups,
        "mode": plan.mode,
        "method": plan.method,
        "threshold": plan.threshold,
        "levels": levels,
        "fragments": solve["fragments"],
        "edges": solve["edges"],
        "objects": solve["objects"],
        "steps": steps,
    }
