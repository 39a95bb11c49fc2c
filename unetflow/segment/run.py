"""A whole-volume instance segmentation, block by block, in five resumable steps.

1. `init_segmentation`: check the input, fix the plan, create the empty OME-NGFF 0.5 label image (uint64)
   and the work folder beside it;
2. `run_fragments` (per block group): the fragments of each block (unetflow.segment.fragments), with
   block-local ids, and their count;
3. `run_graph` (per block group): each block's edges to itself and across its upper faces, with global
   fragment ids (a block's ids follow those of every block before it, from the counts of step 2);
4. `run_solve` (once): merge every group's edges into the region graph and agglomerate it once
   (unetflow.segment.agglomerate); objects are numbered by their smallest fragment id, so a run, a resumed
   run and another block shape number the same objects the same way;
5. `run_relabel` (per block group): each block's fragments mapped to their objects, written to the label
   image; `finalize_segmentation` builds the pyramid and the summary.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from unetflow.data import omezarr, zarrmeta
from unetflow.data.planned import planned_output
from unetflow.errors import InputError
from unetflow.logs import progress_bar
from unetflow.memory import return_freed_arrays
from unetflow.segment import hierarchy, store
from unetflow.segment import source as sources
from unetflow.segment.fragments import FragmentOptions, fragments
from unetflow.segment.graph import Edges, block_edges
from unetflow.segment.plan import PLAN_KEY, SegmentPlan, make_plan, read_plan
from unetflow.stores import Location

log = logging.getLogger(__name__)

FRAGMENTS, GRAPH, RELABEL = "fragments", "graph", "relabel"
OUTPUT_COMPRESSION = 1
LABEL_DTYPE = np.uint64


def _source_of(target: store.Target) -> sources.ProbabilitySource:
    meta = omezarr.read_attrs(target)
    return sources.ProbabilitySource(**meta["source"])


def init_segmentation(
    source: sources.ProbabilitySource,
    target: store.Target,
    *,
    block: tuple[int, int, int],
    halo: tuple[int, int, int],
    groups: int = 1,
    mode: str = "auto",
    boundary: bool = False,
    method: str = "mutex",
    threshold: float = 0.5,
    seed_threshold: float = 0.5,
    voxel_size: tuple[float, float, float] | None = None,
    max_edges: int = 10_000_000,
) -> SegmentPlan:
    """Check the input, fix the plan and create the empty label image and the work folder; where a
    segmentation of the same probability with the same plan is there already (a new machine running the
    same config on an object store), it is kept and goes on where it stopped.

    Bad input (a 2-D array, values outside [0, 1] in the sampled chunks, a block smaller than the halo) is
    one InputError, and nothing is written.
    """
    volume = source.open()
    sources.check_volume(volume, source.path)
    spacing = tuple(float(v) for v in (voxel_size or volume.voxel_size or (1.0, 1.0, 1.0)))
    plan = make_plan(
        tuple(int(s) for s in volume.shape),  # type: ignore[arg-type]
        block=block,
        halo=halo,
        groups=groups,
        mode=mode,
        boundary=boundary,
        method=method,
        threshold=threshold,
        seed_threshold=seed_threshold,
        voxel_size=spacing,  # type: ignore[arg-type]
        source=source.path,
        max_edges=max_edges,
    )
    place = Location.of(target)
    attrs = {PLAN_KEY: plan.to_dict(), "source": source.to_dict(), "probability": source.identity()}
    if _resumable(place, attrs):
        log.info("%s: a segmentation of this probability with this plan is there: it is resumed", place)
        return plan
    sources.check_sample(volume, sources.stored_chunks(volume), boundary=boundary)
    _create_outputs(place, plan, attrs)
    log.info(
        "segmentation plan: %d blocks of %s (halo %s), %d group(s), mode %s, %s agglomeration at %.3f",
        plan.blocks,
        "x".join(map(str, plan.block)),
        "x".join(map(str, plan.halo)),
        plan.groups,
        plan.mode,
        plan.method,
        plan.threshold,
    )
    return plan


def _resumable(place: Location, attrs: dict[str, Any]) -> bool:
    """Whether a segmentation with these attributes (plan, source, the probability's identity) is there."""
    found = dict((zarrmeta.group_attrs(place) or {}).get(omezarr.ATTRS_KEY) or {})
    wanted = json.loads(json.dumps(attrs))
    return all(found.get(key) == value for key, value in wanted.items())


def _create_outputs(place: Location, plan: SegmentPlan, attrs: dict[str, Any]) -> None:
    """The empty work folder and label image of a segmentation, whose plan marks them complete
    (unetflow.data.planned), the work folder first: where the output is planned, its work folder is there."""
    chunk = tuple(min(b, n) for b, n in zip(plan.block, plan.shape, strict=True))
    store.work_folder(place).remove()
    store.create_fragments(place, shape=plan.shape, chunks=chunk, level=OUTPUT_COMPRESSION)
    with planned_output(place, attrs, key=PLAN_KEY) as (tmp, now):
        omezarr.create_image(
            tmp,
            shape=plan.shape,
            dtype=LABEL_DTYPE,
            chunks=chunk,  # type: ignore[arg-type]
            voxel_size=plan.voxel_size,
            ngff="0.5",
            attrs=now,
            name=place.stem,
            compression_level=OUTPUT_COMPRESSION,
        )
        omezarr.mark_label_image(tmp)


class StepContext:
    """What a step of one process opens once: the plan, the source, its stored chunks, the arrays."""

    def __init__(self, target: store.Target) -> None:
        return_freed_arrays()  # blocks' arrays come and go: a step's memory is its largest block's
        self.target = Location.of(target)
        self.plan = read_plan(self.target)
        self.source = _source_of(self.target)
        self.volume = self.source.open()
        self.stored = sources.stored_chunks(self.volume)
        self.with_data = sources.blocks_with_data(self.volume, self.stored, self.plan)
        self.fragments = store.open_fragments(self.target)

    def has_data(self, number: int) -> bool:
        return self.with_data is None or number in self.with_data

    def boundary(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        values = np.asarray(self.volume[box])
        where = "z {}-{}, y {}-{}, x {}-{}".format(*(v for s in box for v in (s.start, s.stop - 1)))
        return sources.as_boundary(values, boundary=self.plan.boundary, name=self.source.path, where=where)

    def options(self) -> FragmentOptions:
        return FragmentOptions(
            mode=self.plan.mode, seed_threshold=self.plan.seed_threshold, sampling=self.plan.voxel_size
        )


def pending_blocks(
    target: store.Target, step: str, plan: SegmentPlan, group: int
) -> tuple[list[int], dict[int, int]]:
    """The blocks of `group` that `step`'s journal does not list yet, and the journal's entries."""
    done = store.read_journal(store.journal_path(target, step, group))
    return [n for n in plan.group_blocks(group) if n not in done], done


def run_fragments(target: store.Target, group: int, *, show_progress: bool = False) -> dict[str, float]:
    """Fragments of every block of `group` not yet done; returns blocks done and seconds."""
    context = StepContext(target)
    plan, options = context.plan, context.options()
    pending, _ = pending_blocks(context.target, FRAGMENTS, plan, group)
    started, voxels = time.perf_counter(), 0
    path = store.journal_path(target, FRAGMENTS, group)
    store.record_many(path, [n for n in pending if not context.has_data(n)], 0)
    pending = [n for n in pending if context.has_data(n)]
    with store.journal(path) as record:
        for number in progress_bar(
            pending, desc=f"fragments {group}", unit="block", disable=not show_progress
        ):
            outer, inner = plan.haloed(number)
            mask = sources.data_mask(context.volume, context.stored, outer)
            origin = tuple(piece.start for piece in outer)
            labels, count = fragments(
                context.boundary(outer),
                inner,
                options,
                origin=origin,
                shape=plan.shape,
                mask=mask,  # type: ignore[arg-type]
            )
            if count:
                context.fragments[plan.box(number)] = labels
            record(number, count)
            voxels += labels.size
    return _timing(target, FRAGMENTS, group, voxels, time.perf_counter() - started)


def _timing(target: store.Target, step: str, group: int, voxels: int, seconds: float) -> dict[str, float]:
    """Write and return what one run of a step did (voxels, seconds, peak memory) beside its journal."""
    summary = {
        "voxels": voxels,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    store.write_json(store.work_folder(target) / step / f"{group}.json", summary)
    return summary


def check_fragments(target: store.Target, plan: SegmentPlan) -> dict[int, int]:
    """Every block's fragment count; an InputError naming the groups whose fragments are not complete."""
    counts: dict[int, int] = {}
    missing = []
    for group in range(plan.groups):
        done = store.read_journal(store.journal_path(target, FRAGMENTS, group))
        if any(n not in done for n in plan.group_blocks(group)):
            missing.append(group)
        counts.update(done)
    if missing:
        raise InputError(
            f"segmentation {target}: the fragments of block group(s) {missing} are not complete; run the "
            "fragments step of those groups (the same command finishes them)"
        )
    return counts


def run_graph(target: store.Target, group: int, *, show_progress: bool = False) -> dict[str, float]:
    """The region-graph edges of every block of `group` (to itself and across its upper faces), written
    as one file for the group; done already: nothing to do."""
    path = store.work_folder(target) / GRAPH / f"{group}.npz"
    if path.is_file():
        return {"voxels": 0, "seconds": 0.0}
    context = StepContext(target)
    plan = context.plan
    counts = check_fragments(target, plan)
    started, voxels, parts, nodes = time.perf_counter(), 0, [], []
    for number in progress_bar(
        list(plan.group_blocks(group)), desc=f"graph {group}", unit="block", disable=not show_progress
    ):
        if not counts[number]:
            continue
        own = plan.box(number)
        box = tuple(slice(s.start, min(s.stop + 1, n)) for s, n in zip(own, plan.shape, strict=True))
        labels = np.asarray(context.fragments[box])
        shape = tuple(s.stop - s.start for s in own)
        parts.append(block_edges(labels, context.boundary(box), shape))  # type: ignore[arg-type]
        mine = np.unique(labels[tuple(slice(0, n) for n in shape)])
        nodes.append(mine[mine > 0])
        voxels += math.prod(shape)
    merged = _concatenate(parts)
    fragments_seen = np.unique(np.concatenate(nodes)) if nodes else np.empty(0, np.uint64)
    store.save_arrays(path, uv=merged.uv, count=merged.count, total=merged.total, nodes=fragments_seen)
    return _timing(target, GRAPH, group, voxels, time.perf_counter() - started)


def _concatenate(parts: Iterable[Edges]) -> Edges:
    items = list(parts)
    if not items:
        return Edges.empty()
    return Edges(
        np.concatenate([p.uv for p in items]),
        np.concatenate([p.count for p in items]),
        np.concatenate([p.total for p in items]),
    )


def run_solve(target: store.Target) -> dict[str, Any]:
    """Merge every group's edges into the region graph, agglomerate it (in one pass up to the plan's
    `max_edges` edges, else in two levels: unetflow.segment.hierarchy) and write the assignment of every
    fragment to its object (objects numbered 1.. by their smallest fragment id)."""
    plan = read_plan(target)
    work = store.work_folder(target)
    check_fragments(target, plan)
    missing = [g for g in range(plan.groups) if not (work / GRAPH / f"{g}.npz").is_file()]
    if missing:
        raise InputError(
            f"segmentation {target}: the region graph of block group(s) {missing} is missing; run the graph "
            "step of those groups (the same command finishes them)"
        )
    started = time.perf_counter()
    with store.local_copies([work / GRAPH / f"{g}.npz" for g in range(plan.groups)]) as paths:
        keys, labels, levels, edges = _agglomerate(paths, plan)
    assignment = number_objects(labels)
    store.save_array(work / "keys.npy", keys)
    store.save_array(work / "assignment.npy", assignment)
    summary = {
        "fragments": len(keys),
        "edges": edges,
        **levels,
        "objects": int(assignment.max()),
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    store.write_json(work / "solve.json", summary)  # last: where it is, the assignment is complete
    log.info(
        "agglomerated %d fragments, %d edges into %d objects", len(keys), summary["edges"], summary["objects"]
    )
    return summary


def _agglomerate(
    paths: list[Location], plan: SegmentPlan
) -> tuple[np.ndarray, np.ndarray, dict[str, int], int]:
    """The fragment ids (sorted), their node labels, what the levels held and the edges of the region
    graph whose group edges lie in `paths` (local files: each is read more than once)."""
    keys = np.unique(np.concatenate([store.load_arrays(path)["nodes"] for path in paths]))
    edges = 0
    for path in paths:
        edges += len(store.load_arrays(path)["count"])

    def parts() -> Iterator[Edges]:
        for path in paths:
            part = store.load_arrays(path)
            uv = np.searchsorted(keys, part["uv"]).astype(np.uint64) + np.uint64(1)
            yield Edges(uv, part["count"], part["total"])

    labels, levels = hierarchy.solve(
        parts,
        len(keys) + 1,
        hierarchy.node_groups(keys, plan),
        edges=edges,
        max_edges=plan.max_edges,
        method=plan.method,
        threshold=plan.threshold,
    )
    return keys, labels, levels, edges


def number_objects(labels: np.ndarray) -> np.ndarray:
    """Object ids 1.. for node labels (node 0, no data, keeps 0), numbered by each object's smallest node:
    the same partition gives the same ids whatever order the solver labelled it in."""
    labels = np.asarray(labels)
    first = np.full(int(labels.max()) + 1, len(labels), dtype=np.int64)
    np.minimum.at(first, labels[1:], np.arange(1, len(labels)))
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(order) + 1)
    out = rank[labels].astype(np.uint64)
    out[0] = 0
    return out


def run_relabel(target: store.Target, group: int, *, show_progress: bool = False) -> dict[str, float]:
    """Write the objects of every block of `group` not yet written to the label image."""
    context = StepContext(target)
    plan = context.plan
    work = store.work_folder(target)
    if not (work / "solve.json").is_file():
        raise InputError(f"segmentation {target}: no agglomeration yet; run the solve step first")
    counts = check_fragments(target, plan)
    pending, _ = pending_blocks(context.target, RELABEL, plan, group)
    started, voxels = time.perf_counter(), 0
    path = store.journal_path(target, RELABEL, group)
    store.record_many(path, [n for n in pending if not counts[n]], 1)
    pending = [n for n in pending if counts[n]]
    if pending:
        output = omezarr.open_image(context.target, mode="r+")
        with (
            store.mapped_array(work / "keys.npy") as keys,
            store.mapped_array(work / "assignment.npy") as assignment,
            store.journal(path) as record,
        ):
            for number in progress_bar(
                pending, desc=f"relabel {group}", unit="block", disable=not show_progress
            ):
                box = plan.box(number)
                local = np.asarray(context.fragments[box])
                ids, inverse = np.unique(local, return_inverse=True)
                objects = np.asarray(assignment[np.searchsorted(keys, ids) + 1])
                objects[ids == 0] = 0
                output[box] = objects[inverse.reshape(local.shape)]
                voxels += local.size
                record(number, 1)
    return _timing(target, RELABEL, group, voxels, time.perf_counter() - started)
