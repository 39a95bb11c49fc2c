"""Prediction of a volume of any size: shard by shard, resumable, on threads or a dask cluster.

A prediction is a pipeline of small named steps:

1. `init_prediction` fixes the plan (tile stride, blocks, shards, groups), creates the empty OME-Zarr
   arrays, and records the normalisation statistics and the model's provenance;
2. `pending_shards` lists the shards of a block group that are not complete (journal checked against the
   files on disk);
3. `nonempty_blocks` (skip-empty) keeps only the blocks whose region holds data;
4. `ShardWriter` predicts the blocks of a shard and writes the whole shard at once (Zarr rewrites a shard
   file on every partial write, so a shard is never written piecemeal), then the journal records it.

Memory stays flat: at most two shards' blocks are in flight. On a GPU one block's reading overlaps
another's net; on the CPU each block computes on its share of the cores.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetflow.atomic import DISK_FULL, atomic_path
from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.data.planned import planned_output
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.logs import progress_bar
from unetflow.model.loss import EVEN_ODDS
from unetflow.model.unet import UNet
from unetflow.predict import progress, sources
from unetflow.predict.plan import PLAN_KEY, PredictionPlan, make_plan, planned_groups, read_plan
from unetflow.predict.progress import SEGMENTATION
from unetflow.predict.store import OUTPUT_COMPRESSION, write_pieces
from unetflow.predict.tiles import Block, BlockPredictor, check_depth, choose_strides, cpu_threads
from unetflow.stores import Location

log = logging.getLogger(__name__)

SCHEDULERS = ("threads", "sync", "distributed")
SHARDS_IN_FLIGHT = 2


def init_prediction(
    source: str | Path | sources.SourceSpec,
    target: str | Path,
    *,
    model: UNet,
    options: PredictConfig | None = None,
    groups: int = 1,
    threshold: float = EVEN_ODDS,
    stride: int | None = None,
    block: int | None = None,
    stride_z: int | None = None,
    provenance: dict[str, Any] | None = None,
    stats: str | Path | None = None,
    voxel_size: Sequence[float] | None = None,
) -> PredictionPlan:
    """Create the empty probability and segmentation arrays of a prediction, with its plan in the attributes.

    The tile stride is the largest that fits `options.memory_gb` (unless `stride` sets it, a multiple of
    2**depth, and `stride_z` a 3-D net's along z); blocks are about BLOCK_TARGET px (unless `block` sets
    them). A 3-D net on a volume thinner than its smallest input is an InputError. The normalisation
    statistics of the source go into the attributes and, when `stats` names a file, into that JSON too.
    `voxel_size` (z, y, x) overrides what the source's metadata says.
    """
    options = options or PredictConfig()
    spec = sources.SourceSpec.of(source)
    volume = sources.open_source(spec)
    shape = tuple(int(s) for s in volume.shape)
    check_depth(model.config.net_geometry, shape[0], name=spec.path)
    plan = _plan(model, shape, options, groups=groups, stride=stride, block=block, stride_z=stride_z)
    place = Location.of(target)
    attrs = {
        PLAN_KEY: plan.to_dict(),
        "source": spec.to_dict(),
        "threshold": float(threshold),
        "model": dict(provenance or {}),
        "computed": _computed_with(options),
    }
    existing = _resumable(place, attrs)
    if existing is not None:
        normalization = existing
    else:
        normalization = sources.normalization_of(spec, volume)
        attrs["normalization"] = normalization
        spacing = tuple(voxel_size) if voxel_size is not None else _voxel_size(spec, volume)
        progress.journal_folder(place).remove()  # journals of an earlier prediction at this place
        _create_outputs(place, plan, attrs, spacing)  # type: ignore[arg-type]
    if stats is not None:
        with atomic_path(stats) as tmp:
            tmp.write_text(json.dumps({"source": spec.to_dict(), **normalization}, indent=2) + "\n")
    log.info(
        "prediction plan: stride %d, blocks of %d px, shards of %s voxels (%d), %d block group(s), NGFF %s",
        plan.stride,
        plan.block,
        "x".join(map(str, plan.shard)),
        len(plan.grid),
        plan.groups,
        plan.ngff,
    )
    return plan


def _plan(
    model: UNet,
    shape: tuple[int, ...],
    options: PredictConfig,
    *,
    groups: int,
    stride: int | None,
    block: int | None,
    stride_z: int | None,
) -> PredictionPlan:
    """The plan of a prediction of a volume of `shape`: the given tile strides, else the largest that fit
    the memory budget; blocks, shards and groups as asked."""
    chosen = choose_strides(
        model, options.memory_gb, shape=shape, batch_size=options.batch_size, workers=options.workers
    )
    return make_plan(
        shape,  # type: ignore[arg-type]
        depth=model.config.depth,
        stride=stride or chosen[1],
        groups=groups,
        ngff=options.ngff,
        dtype=options.dtype,
        block=block,
        shard_bytes=int(options.shard_gb * 2**30),
        net=model.config.net_geometry,
        stride_z=stride_z or chosen[0],
    )


def _computed_with(options: PredictConfig) -> dict[str, Any]:
    """The options that change what a prediction holds beyond its plan (a changed one on an object store
    starts the prediction afresh instead of resuming it)."""
    keys = ("tta", "precision", "instances", "skip_empty", "pyramid")
    return {key: getattr(options, key) for key in keys}


def _resumable(place: Location, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """On an object store, the normalisation of a prediction already there with this plan, source, threshold,
    model and options (a new machine running the same config goes on with it); None where a new one is
    needed."""
    if place.is_local:
        return None  # the workflow removes a local output before it is made again
    try:
        found = omezarr.read_attrs(place)
    except InputError:
        return None
    if "normalization" not in found or any(found.get(key) != value for key, value in attrs.items()):
        return None
    log.info("%s: a prediction with this plan, source, model and options is there: it is resumed", place)
    return dict(found["normalization"])


def _create_outputs(
    place: Location, plan: PredictionPlan, attrs: dict[str, Any], voxel_size: tuple[float, float, float]
) -> None:
    """The empty probability image and segmentation labels of a prediction, whose plan marks them complete
    (unetflow.data.planned: a killed start leaves nothing that looks planned)."""
    with planned_output(place, attrs, key=PLAN_KEY) as (tmp, now):
        omezarr.create_image(
            tmp,
            shape=plan.shape,
            dtype=plan.dtype,
            chunks=plan.chunk,
            shards=plan.shard if plan.sharded else None,
            ngff=plan.ngff,
            voxel_size=voxel_size,
            attrs=now,
            name=place.stem,
            compression_level=OUTPUT_COMPRESSION,
        )
        omezarr.create_labels(
            tmp,
            SEGMENTATION,
            dtype="uint8",
            chunks=plan.chunk,
            shards=plan.shard if plan.sharded else None,
            kind="binary",
            compression_level=OUTPUT_COMPRESSION,
        )


def is_planned(target: str | Path | Location) -> bool:
    """Whether a prediction was started at `target` (its plan is stored, the last thing a start writes)."""
    return planned_groups(target) is not None


def _voxel_size(spec: sources.SourceSpec, volume: Any) -> tuple[float, float, float]:
    """The source's voxel size: its reader's (OME scale, N5 resolution, HDF5 attributes), unetflow's
    import attributes, else 1 x 1 x 1."""
    found = getattr(volume, "voxel_size", None)
    if found:
        z, y, x = (float(v) for v in found)
        return z, y, x
    try:
        return omezarr.voxel_size(spec.location)
    except InputError:
        return (1.0, 1.0, 1.0)


class ShardWriter:
    """Predicts the blocks of a shard and writes the shard's probability and segmentation at once.

    Picklable: it crosses to dask distributed workers as the net's weights plus paths and options, and each
    worker builds its own net and Zarr handles on first use (`threads` sets that worker's torch threads).
    """

    def __init__(
        self,
        model: UNet,
        source: sources.SourceSpec,
        target: str | Location,
        plan: PredictionPlan,
        *,
        normalization: dict[str, Any],
        threshold: float,
        options: PredictConfig,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.model, self.source, self.target, self.plan = (
            model,
            sources.SourceSpec.of(source),
            Location.of(target),
            plan,
        )
        self.mean, self.std = float(normalization["mean"]), float(normalization["std"])
        self.threshold, self.options = float(threshold), options
        self.device = device or options.device
        self.threads = threads
        self._opened: tuple[BlockPredictor, Any, Any, Any, progress.ShardFiles] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_opened"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def open(self) -> tuple[BlockPredictor, Any, Any, Any, progress.ShardFiles]:
        """The net on its device, the source and output arrays and their shard files (once per process)."""
        with self._lock:
            if self._opened is None:
                if self.threads is not None:
                    torch.set_num_threads(self.threads)
                predictor = BlockPredictor(
                    self.model,
                    self.plan.tiles,
                    mean=self.mean,
                    std=self.std,
                    device=resolve_device(self.device),
                    batch_size=self.options.batch_size,
                    tta=self.options.tta,
                    precision=self.options.precision,
                )
                self._opened = (
                    predictor,
                    sources.open_source(self.source),
                    omezarr.open_image(self.target, mode="r+"),
                    omezarr.open_labels(self.target, SEGMENTATION, mode="r+"),
                    progress.ShardFiles(self.target),
                )
            return self._opened

    def predict_block(self, start: tuple[int, int, int]) -> np.ndarray:
        """The foreground probability (z, y, x) of the block starting at `start` (float32, cropped at the
        end)."""
        predictor, source, *_ = self.open()
        return predictor(source, Block(*start))

    def write_shard(self, number: int, blocks: dict[tuple[int, int, int], np.ndarray]) -> progress.Entry:
        """Write shard `number` from its predicted blocks (the rest stays fill value); its journal entry."""
        _, _, probability, segmentation, files = self.open()
        index = self.plan.grid.index(number)
        region = self.plan.grid.region(index)
        files.clear(index)  # an incomplete earlier attempt: Zarr would read and merge it
        write_pieces(probability, region, blocks)
        cut = {start: np.greater(values, self.threshold).view(np.uint8) for start, values in blocks.items()}
        write_pieces(segmentation, region, cut)
        return progress.Entry(shard=number, sizes=files.sizes(index))

    def __call__(self, number: int, starts: Sequence[tuple[int, int, int]]) -> progress.Entry:
        """Predict and write one shard (the unit of work of a distributed worker)."""
        return self.write_shard(number, {start: self.predict_block(start) for start in starts})


def write_shard_task(
    writer: ShardWriter, number: int, starts: Sequence[tuple[int, int, int]]
) -> progress.Entry:
    """Module-level task for distributed workers: `writer(number, starts)` (the writer arrives once)."""
    return writer(number, starts)


def predict_volume(
    model: UNet,
    source: str | sources.SourceSpec,
    target: str | Location,
    *,
    options: PredictConfig | None = None,
    threshold: float = EVEN_ODDS,
    group: int | None = None,
    groups: int = 1,
    client: Any = None,
    worker_threads: int | None = None,
    scheduler: str | None = None,
    show_progress: bool = True,
    stride: int | None = None,
    block: int | None = None,
    stride_z: int | None = None,
) -> dict[str, int]:
    """Predict the volume at `source` into `target` (created when missing, else resumed): the block group
    `group` of `groups`, or every group; only shards not yet complete are computed.

    Returns counts of blocks: `computed`, `done` (complete before), `empty` (no data: skipped), `total`.
    `scheduler` (default options.scheduler): "threads" (`options.workers` blocks in flight), "sync" or
    "distributed" (the dask.distributed `client`, by default the current one).
    """
    options = options or PredictConfig()
    engine = _scheduler(scheduler or options.scheduler)
    device = None if engine == "distributed" else resolve_device(options.device)  # before any write
    if not is_planned(target):
        _check_group(group, groups)
        init_prediction(
            source,
            target,
            model=model,
            options=options,
            groups=groups,
            threshold=threshold,
            stride=stride,
            block=block,
            stride_z=stride_z,
        )
    plan = read_plan(target)
    volume = _open_matching(source, target, plan)
    normalization = omezarr.read_attrs(target)["normalization"]
    writer = ShardWriter(
        model, source, target, plan, normalization=normalization, threshold=threshold, options=options
    )
    totals = collections.Counter()
    for index in range(plan.groups) if group is None else [group]:
        started = time.perf_counter()
        pending, done_before = progress.pending_shards(target, plan, index)
        work = _work(volume, plan, pending, skip_empty=options.skip_empty)
        counts = _group_counts(plan, index, pending, work)
        _log_group(plan, index, pending, counts, engine=engine)
        _write_group(
            writer,
            target,
            index,
            work,
            engine=engine,
            device=device,
            client=client,
            worker_threads=worker_threads,
            shown=show_progress,
        )
        _write_group_summary(
            target, index, counts, plan, time.perf_counter() - started, done_shards=done_before
        )
        totals.update(counts)
    return dict(totals)


def _scheduler(engine: str) -> str:
    """The scheduler's name, checked: one of SCHEDULERS, else an InputError listing them."""
    if engine not in SCHEDULERS:
        raise InputError(f"predict scheduler {engine!r} is not one of {', '.join(SCHEDULERS)}")
    return engine


def _check_group(group: int | None, groups: int) -> None:
    """A block group outside 0 <= group < groups is an InputError before a new prediction writes anything."""
    if group is not None and not 0 <= group < groups:
        raise InputError(
            f"block group {group} of {groups} is out of range: use 0 <= group < {groups} (or no --group "
            "for every group); nothing was written"
        )


def _open_matching(source: str | sources.SourceSpec, target: str | Location, plan: PredictionPlan) -> Any:
    """The source volume, which must have the shape the prediction at `target` was planned for."""
    spec = sources.SourceSpec.of(source)
    volume = sources.open_source(spec)
    if tuple(volume.shape) != plan.shape:
        raise InputError(
            f"prediction {target} has shape {plan.shape} but {source} has {tuple(volume.shape)}; delete "
            f"{target} and run again"
        )
    return volume


def _group_counts(
    plan: PredictionPlan, index: int, pending: list[int], work: list[tuple[int, list[tuple[int, int, int]]]]
) -> dict[str, int]:
    """Blocks of a group: to compute, complete before, skipped as empty (no data), and in all."""
    counts = {
        "computed": sum(len(starts) for _, starts in work),
        "done": sum(plan.grid.chunk_count(plan.grid.index(n)) for n in plan.group_shards(index))
        - sum(plan.grid.chunk_count(plan.grid.index(n)) for n in pending),
        "empty": sum(plan.grid.chunk_count(plan.grid.index(n)) for n in pending)
        - sum(len(starts) for _, starts in work),
    }
    counts["total"] = counts["computed"] + counts["done"] + counts["empty"]
    return counts


def _log_group(
    plan: PredictionPlan, index: int, pending: list[int], counts: dict[str, int], *, engine: str
) -> None:
    """One log line on what a run of a block group is about to do, and with which tiles and scheduler."""
    log.info(
        "group %d/%d: %d of %d shards to write, %d blocks to predict, %d without data, %d done before "
        "(tile stride %d, tile input %d, blocks of %d, %s scheduler)",
        index + 1,
        plan.groups,
        len(pending),
        len(plan.group_shards(index)),
        counts["computed"],
        counts["empty"],
        counts["done"],
        plan.stride,
        plan.tiles.input,
        plan.block,
        engine,
    )


def _write_group(
    writer: ShardWriter,
    target: str | Location,
    index: int,
    work: list[tuple[int, list[tuple[int, int, int]]]],
    *,
    engine: str,
    device: torch.device | None,
    client: Any,
    worker_threads: int | None,
    shown: bool,
) -> None:
    """Predict and write the work of block group `index` on the scheduler, each shard recorded in the group's
    journal; a full disk is an InputError saying that the same command goes on where it stopped."""
    try:
        with progress.journal(progress.journal_path(target, index)) as record:
            if engine == "distributed":
                writer.threads = worker_threads
                _run_distributed(writer, work, client=client, record=record, shown=shown)
            else:
                writer.device = str(device)
                writer.open()
                workers = writer.options.workers if engine == "threads" else 1
                with cpu_threads(device, workers):
                    _run_threads(writer, work, workers=workers, record=record, shown=shown)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise InputError(
            f"no space left on the device while writing the prediction {target} ({error.strerror}); the "
            "shards written so far are complete and kept. Free space there (or predict elsewhere) and "
            "run the same command again: it goes on where it stopped"
        ) from error


def _work(
    volume: Any, plan: PredictionPlan, pending: list[int], *, skip_empty: bool
) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Each pending shard with the blocks to predict in it (all, or those holding data)."""
    found = sources.nonempty_blocks(volume, plan, pending) if skip_empty else None
    grid = plan.grid
    return [(n, found[n] if found is not None else grid.chunks_of(grid.index(n))) for n in pending]


def _run_threads(
    writer: ShardWriter,
    work: Iterable[tuple[int, list[tuple[int, int, int]]]],
    *,
    workers: int,
    record: progress.Recorder,
    shown: bool,
) -> None:
    """Blocks on a thread pool, shards written in order as their blocks finish (two shards in flight)."""
    work = list(work)
    bar = progress_bar(total=sum(len(s) for _, s in work), desc="predict", unit="block", disable=not shown)
    window: collections.deque[tuple[int, dict[tuple[int, int, int], Future[np.ndarray]]]] = (
        collections.deque()
    )
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unetflow-predict")

    def finish_oldest() -> None:
        number, futures = window.popleft()
        blocks = {start: future.result() for start, future in futures.items()}
        record(writer.write_shard(number, blocks))
        bar.update(len(blocks))

    try:
        for number, starts in work:
            window.append((number, {start: pool.submit(writer.predict_block, start) for start in starts}))
            while len(window) >= SHARDS_IN_FLIGHT:
                finish_oldest()
        while window:
            finish_oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _run_distributed(
    writer: ShardWriter,
    work: Sequence[tuple[int, list[tuple[int, int, int]]]],
    *,
    client: Any,
    record: progress.Recorder,
    shown: bool,
) -> None:
    """One task per shard on a dask.distributed cluster; the writer (net weights) goes to each worker once."""
    if not work:
        return
    from distributed import as_completed, get_client

    client = client if client is not None else get_client()
    writer.model = copy.deepcopy(writer.model).cpu()
    [remote] = client.scatter([writer], broadcast=True, hash=False)
    futures = client.map(
        write_shard_task, [remote] * len(work), [n for n, _ in work], [s for _, s in work], pure=False
    )
    sizes = {number: len(starts) for number, starts in work}
    bar = progress_bar(total=sum(sizes.values()), desc="predict", unit="block", disable=not shown)
    try:
        for future in as_completed(futures):
            entry = future.result()
            record(entry)
            bar.update(sizes[entry.shard])
    finally:
        client.cancel(futures)
        bar.close()


def _write_group_summary(
    target: str | Path | Location,
    group: int,
    counts: dict[str, int],
    plan: PredictionPlan,
    seconds: float,
    *,
    done_shards: int,
) -> None:
    """What one run of a block group did and how fast (the report's throughput), beside its journal."""
    voxels = counts["computed"] * plan.chunk[0] * plan.chunk[1] * plan.chunk[2]
    summary = {
        "group": group,
        **counts,
        "shards_done_before": done_shards,
        "seconds": seconds,
        "voxels_computed": voxels,
        "voxels_per_second": voxels / seconds if seconds > 0 and voxels else 0.0,
    }
    progress.group_summary_path(target, group).write_text(json.dumps(summary, indent=2) + "\n")


def prediction_threshold(target: str | Path | Location) -> float:
    """The threshold the segmentation of a prediction was made with (0.5 when none is recorded)."""
    return float(omezarr.read_attrs(target).get("threshold", EVEN_ODDS))
