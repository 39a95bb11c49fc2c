"""Overlap-tile prediction (the paper's Fig. 2) over volumes of any size, block by block, resumable.

Each output block reads its valid-convolution context from the neighbouring chunks of the source (mirrored
at the volume's border), runs the net on tiles whose offsets keep the pooling grid of a whole-slice pass,
and writes a disjoint chunk of the target: every pixel is predicted once, memory stays flat, and a killed
run redoes only the blocks without a completion marker. Blocks run as a dask graph (threads locally, or a
distributed cluster): on a GPU one block's reading and writing overlap another's net; on the CPU each block
computes on its share of the cores. `finalize_prediction` checks completeness and can add instance labels.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
from dask.callbacks import Callback
from scipy import ndimage

from unetflow import omezarr
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.geometry import TilePlan, largest_tile_for_memory, plan_tiles, reflect_indices
from unetflow.logs import progress_bar
from unetflow.model import UNet

log = logging.getLogger(__name__)

PROBABILITY_DTYPES = ("float32", "float16")
SEGMENTATION = "segmentation"
INSTANCES = "instances"
MARKERS = ".blocks"
# zstd level of the outputs, written in the hot loop: level 1 costs ~2 ms per 512^2 chunk against ~11 ms at
# the default 5, for files ~4% larger (measured by benchmarks/predict.py).
OUTPUT_COMPRESSION = 1


@dataclass(frozen=True)
class Block:
    """One output chunk: slice `z`, output rows/columns starting at (`y`, `x`)."""

    z: int
    y: int
    x: int

    @property
    def key(self) -> str:
        """File name of the block's completion marker."""
        return f"{self.z}.{self.y}.{self.x}"


def as_stack(array: Any) -> Any:
    """View a (y, x) array as a one-slice (1, y, x) stack; (z, y, x) arrays pass through."""
    if array.ndim == 2:
        return array[None] if isinstance(array, np.ndarray) else _Slice2D(array)
    if array.ndim != 3:
        raise InputError(f"expected a (z, y, x) or (y, x) volume, got shape {tuple(array.shape)}")
    return array


class _Slice2D:
    """A (y, x) zarr array seen as (1, y, x) without reading it."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = (1, *array.shape)
        self.ndim = 3
        self.dtype = array.dtype

    def __getitem__(self, key: tuple[int | slice, ...]) -> np.ndarray:
        return self.array[key[1:]][None] if isinstance(key[0], slice) else self.array[key[1:]]


def _axis_window(start: int, stop: int, length: int) -> tuple[slice, np.ndarray | None]:
    """The stored range that positions start..stop-1 of an axis need, and their mirrored index into it.

    The index is None where the window lies inside the axis (a plain slice, no copy for mirroring).
    """
    if start >= 0 and stop <= length:
        return slice(start, stop), None
    index = reflect_indices(start, stop, length)
    low = int(index.min())
    return slice(low, int(index.max()) + 1), index - low


def read_context(source: Any, z: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Read source[z, rows, cols] where rows/cols may pass the border: mirrored ('reflect') indices."""
    height, width = source.shape[1:]
    row_range, row_index = _axis_window(*rows, height)
    col_range, col_index = _axis_window(*cols, width)
    region = np.asarray(source[z, row_range, col_range])
    if row_index is not None:
        region = np.take(region, row_index, axis=0)
    if col_index is not None:
        region = np.take(region, col_index, axis=1)
    return region


def dihedral(tiles: torch.Tensor, k: int, *, inverse: bool = False) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of square tiles (..., H, W), or its inverse (k = 0: the tiles)."""
    if k == 0:
        return tiles
    if inverse:
        if k >= 4:
            tiles = tiles.transpose(-1, -2)
        return torch.rot90(tiles, -(k % 4), dims=(-2, -1))
    tiles = torch.rot90(tiles, k % 4, dims=(-2, -1))
    return tiles.transpose(-1, -2) if k >= 4 else tiles


class BlockPredictor:
    """Runs the net over the tiles of one block; shared by the in-memory and the Zarr paths.

    On an accelerator, net calls are serialised across threads (one block's I/O overlaps another's net);
    on the CPU, concurrent blocks run their own net calls on their share of torch's threads
    (`cpu_threads`), which keeps every core busy without intra-op synchronisation between blocks.
    """

    def __init__(
        self,
        model: UNet,
        plan: TilePlan,
        *,
        mean: float,
        std: float,
        device: torch.device,
        batch_size: int = 1,
        tta: bool = False,
        precision: str = "float32",
    ) -> None:
        self.model = inference_model(model, device)
        self.plan = plan
        self.mean = float(mean)
        self.std = float(std) if std > 0 else 1.0
        self.device = device
        self.batch_size = batch_size
        self.tta = tta
        self.autocast = _autocast_dtype(precision, device)
        self.lock: threading.Lock | contextlib.nullcontext[None] = (
            contextlib.nullcontext() if device.type == "cpu" else threading.Lock()
        )

    def __call__(self, source: Any, block: Block) -> np.ndarray:
        """Foreground probability of `block` (float32, cropped at the volume's end)."""
        plan = self.plan
        height, width = plan.block_extent(block.y, block.x)
        rows = plan.context_window(block.y, height)
        cols = plan.context_window(block.x, width)
        context = read_context(source, block.z, rows, cols).astype(np.float32)
        np.subtract(context, self.mean, out=context)
        np.divide(context, self.std, out=context)
        offsets = [(ty, tx) for ty in range(0, height, plan.stride) for tx in range(0, width, plan.stride)]
        out = np.empty((height, width), dtype=np.float32)
        for first in range(0, len(offsets), self.batch_size):
            chunk = offsets[first : first + self.batch_size]
            views = [context[ty : ty + plan.input, tx : tx + plan.input] for ty, tx in chunk]
            tiles = views[0][None] if len(views) == 1 else np.stack(views)  # one tile: a view, no copy
            probs = self.forward(torch.from_numpy(tiles[:, None]))
            for (ty, tx), prob in zip(chunk, probs, strict=True):
                keep_y, keep_x = min(plan.stride, height - ty), min(plan.stride, width - tx)
                out[ty : ty + keep_y, tx : tx + keep_x] = prob[:keep_y, :keep_x]
        return out

    def forward(self, tiles: torch.Tensor) -> np.ndarray:
        """Foreground probabilities (N, H, W) of a batch of input tiles (N, 1, H, W)."""
        with self.lock, torch.inference_mode():
            tiles = tiles.to(self.device, non_blocking=True)
            transforms = range(8) if self.tta else range(1)
            total = None
            for k in transforms:
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    logits = self.model(dihedral(tiles, k))
                prob = dihedral(torch.softmax(logits.float(), dim=1)[:, 1], k, inverse=True)
                total = prob if total is None else total.add_(prob)
            if len(transforms) > 1:
                total.div_(len(transforms))
            return total.cpu().numpy()


def inference_model(model: UNet, device: torch.device) -> UNet:
    """The net to predict with on `device`, in eval mode.

    On the CPU, a channels-last copy: oneDNN runs the convolutions about 1.5x faster in that layout (same
    values up to float rounding), and the caller's model (e.g. one still training) keeps its layout and mode.
    """
    if device.type == "cpu":
        return copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval()
    return model.to(device).eval()


@contextlib.contextmanager
def cpu_threads(device: torch.device, workers: int) -> Iterator[None]:
    """On the CPU, give each of `workers` concurrent blocks an equal share of torch's intra-op threads.

    Two blocks each computing with one thread keep two cores busy without the barrier waits of one net call
    spread over both cores (which collapse when other processes share the cores); restored on exit.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or workers <= 1:
        yield
        return
    torch.set_num_threads(max(1, previous // workers))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for the net on `device` (None = full fp32)."""
    choices = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if precision not in choices:
        raise InputError(f"precision {precision!r} is not one of {sorted(choices)}")
    if device.type != "cuda":
        return None
    return choices[precision]


def choose_stride(model: UNet, memory_gb: float, *, batch_size: int = 1, workers: int = 1) -> int:
    """The largest tile stride whose activations fit `memory_gb` shared by `workers` concurrent blocks."""
    if memory_gb <= 0:
        raise InputError(f"predict.memory_gb must be positive, got {memory_gb}")
    budget = memory_gb * 2**30 / max(1, workers)
    try:
        return largest_tile_for_memory(
            model.config.geometry, budget, model.config.base_channels, batch=batch_size, cap=4096
        )
    except ValueError as error:
        raise InputError(str(error)) from error


def predict_array(
    model: UNet,
    volume: np.ndarray,
    *,
    mean: float | None = None,
    std: float | None = None,
    memory_gb: float = 1.0,
    device: str | torch.device | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    tta: bool = False,
) -> np.ndarray:
    """Foreground probability of an in-memory (z, y, x) or (y, x) array (validation, tests), float32."""
    stack = as_stack(np.asarray(volume))
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    stride = stride or choose_stride(model, memory_gb, batch_size=batch_size)
    plan = plan_tiles(model.config.geometry, stack.shape[1], stack.shape[2], stride=stride)
    predictor = BlockPredictor(
        model,
        plan,
        mean=float(stack.mean()) if mean is None else mean,
        std=float(stack.std()) if std is None else std,
        device=torch_device,
        batch_size=batch_size,
        tta=tta,
    )
    out = np.empty(stack.shape, dtype=np.float32)
    for z in range(stack.shape[0]):
        for y, x in plan.block_starts():
            block = predictor(stack, Block(z, y, x))
            out[z, y : y + block.shape[0], x : x + block.shape[1]] = block
    return out.reshape(np.shape(volume))


def predict_whole_slice(model: UNet, image: np.ndarray, *, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """Reference: one forward pass over the whole mirror-padded 2-D slice (what tiling must reproduce)."""
    geometry = model.config.geometry
    height, width = image.shape
    out_size = geometry.valid_output(max(height, width))
    pad = geometry.margin
    rows = reflect_indices(-pad, out_size + pad, height)
    cols = reflect_indices(-pad, out_size + pad, width)
    padded = (image[np.ix_(rows, cols)].astype(np.float32) - mean) / std
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(padded)[None, None])
    return torch.softmax(logits, dim=1)[0, 1, :height, :width].numpy()


@dataclass(frozen=True)
class PredictionLayout:
    """Where a prediction lives: probability at `<target>/0`, segmentation as a labels image."""

    target: Path

    @property
    def markers(self) -> Path:
        """Folder of per-block completion markers."""
        return self.target / MARKERS

    def done(self, block: Block) -> bool:
        """Whether `block` was written completely by an earlier run."""
        return (self.markers / block.key).exists()

    def mark(self, block: Block) -> None:
        """Record that `block` is complete (after both of its chunks are written)."""
        (self.markers / block.key).touch()


def blocks_of(shape: Sequence[int], plan: TilePlan) -> list[Block]:
    """Every block of a (z, y, x) volume, in a fixed order."""
    return [Block(z, y, x) for z in range(shape[0]) for y, x in plan.block_starts()]


def select_group(blocks: list[Block], group: int, groups: int) -> list[Block]:
    """The blocks of group `group` of `groups` (round-robin, so groups get even work)."""
    if groups < 1 or not 0 <= group < groups:
        raise InputError(f"block group {group} of {groups} is out of range: use 0 <= group < groups")
    return blocks[group::groups]


def init_prediction(
    source: str | Path,
    target: str | Path,
    *,
    model: UNet,
    memory_gb: float = 4.0,
    batch_size: int = 1,
    workers: int = 2,
    dtype: str = "float32",
    stride: int | None = None,
    block: int | None = None,
    threshold: float = 0.5,
) -> TilePlan:
    """Create the empty probability and segmentation arrays (chunks = blocks) and record the tile plan.

    The tile stride is the largest that fits `memory_gb`, unless `stride` sets it (a multiple of 2**depth);
    blocks (chunks, the unit of resume) are about BLOCK_TARGET (1024) px unless `block` (a multiple of the
    stride) sets them.
    `threshold` (of the segmentation) is recorded in the attributes, where evaluation reads it.
    """
    if dtype not in PROBABILITY_DTYPES:
        raise InputError(f"predict.dtype {dtype!r} is not one of {PROBABILITY_DTYPES}")
    raw = as_stack(omezarr.open_image(source))
    stride = stride or choose_stride(model, memory_gb, batch_size=batch_size, workers=workers)
    plan = plan_tiles(model.config.geometry, raw.shape[1], raw.shape[2], stride=stride, block=block)
    chunks = (1, min(plan.block, raw.shape[1]), min(plan.block, raw.shape[2]))
    attrs = {"tile_plan": {"stride": plan.stride, "block": plan.block, "depth": plan.geometry.depth}}
    omezarr.create_image(
        target,
        shape=raw.shape,
        dtype=dtype,
        chunks=chunks,
        voxel_size=omezarr.voxel_size(source),
        attrs={**attrs, "source": str(source), "threshold": float(threshold)},
        overwrite=True,
        compression_level=OUTPUT_COMPRESSION,
    )
    omezarr.create_labels(
        target,
        SEGMENTATION,
        dtype="uint8",
        chunks=chunks,
        kind="binary",
        compression_level=OUTPUT_COMPRESSION,
    )
    PredictionLayout(Path(target)).markers.mkdir(parents=True, exist_ok=True)
    return plan


SCHEDULERS = ("threads", "sync", "distributed")


class BlockWriter:
    """Predicts one block and writes its probability, segmentation and completion marker.

    Picklable: it crosses to dask distributed workers as the net's weights plus paths and options, and each
    worker builds its own net and Zarr handles on first use (`threads` sets that worker's torch threads).
    """

    def __init__(
        self,
        model: UNet,
        source: str | Path,
        target: str | Path,
        plan: TilePlan,
        *,
        mean: float,
        std: float,
        device: str | None,
        batch_size: int,
        tta: bool,
        precision: str,
        threshold: float,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.source, self.target, self.plan = str(source), str(target), plan
        self.options = dict(mean=mean, std=std, batch_size=batch_size, tta=tta, precision=precision)
        self.device, self.threshold, self.threads = device, float(threshold), threads
        self._opened: tuple[BlockPredictor, Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_opened"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def open(self) -> tuple[BlockPredictor, Any, Any, Any]:
        """The net on its device and the source/probability/segmentation arrays (once per process)."""
        with self._lock:
            if self._opened is None:
                if self.threads is not None:
                    torch.set_num_threads(self.threads)
                predictor = BlockPredictor(
                    self.model, self.plan, device=resolve_device(self.device), **self.options
                )
                self._opened = (
                    predictor,
                    as_stack(omezarr.open_image(self.source)),
                    omezarr.open_image(self.target, mode="r+"),
                    omezarr.open_labels(self.target, SEGMENTATION, mode="r+"),
                )
            return self._opened

    def __call__(self, block: Block) -> str:
        """Compute and write `block`; returns its key once its marker is on disk."""
        predictor, raw, probability, segmentation = self.open()
        prob = predictor(raw, block)
        region = (block.z, slice(block.y, block.y + prob.shape[0]), slice(block.x, block.x + prob.shape[1]))
        probability[region] = prob.astype(probability.dtype, copy=False)
        segmentation[region] = np.greater(prob, self.threshold).view(np.uint8)
        PredictionLayout(Path(self.target)).mark(block)
        return block.key


def write_block(writer: BlockWriter, block: Block) -> str:
    """Module-level task for distributed workers: `writer(block)` (the writer arrives once per worker)."""
    return writer(block)


def predict_volume(
    model: UNet,
    source: str,
    target: str,
    *,
    memory_gb: float = 4.0,
    device: str | None = None,
    batch_size: int = 1,
    tta: bool = False,
    dtype: str = "float32",
    precision: str = "float32",
    threshold: float = 0.5,
    group: int = 0,
    groups: int = 1,
    workers: int = 2,
    scheduler: str = "threads",
    client: Any = None,
    worker_threads: int | None = None,
    progress: bool = True,
    stride: int | None = None,
    block: int | None = None,
) -> dict[str, int]:
    """Predict the Zarr/OME-Zarr volume at `source` into `target`; returns block counts (done, skipped).

    Creates `target` when it does not exist yet; otherwise resumes it, computing only the blocks of this
    group that have no completion marker. `scheduler`: "threads" (dask's thread pool, `workers` blocks in
    flight), "sync" (one at a time) or "distributed" (the dask.distributed `client`, by default the current
    one: each worker process loads the net once, with `worker_threads` torch threads, and writes its blocks
    straight into `target`).
    """
    if scheduler not in SCHEDULERS:
        raise InputError(f"predict scheduler {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    target_path = Path(target)
    if not (target_path / "0").exists():
        init_prediction(
            source,
            target,
            model=model,
            memory_gb=memory_gb,
            batch_size=batch_size,
            workers=workers,
            dtype=dtype,
            stride=stride,
            block=block,
            threshold=threshold,
        )
    raw = as_stack(omezarr.open_image(source))
    probability = omezarr.open_image(target)
    if tuple(probability.shape) != tuple(raw.shape):
        raise InputError(
            f"prediction {target} has shape {probability.shape} but {source} has {raw.shape}; delete "
            f"{target} and run again"
        )
    tile_attrs = omezarr.read_attrs(target)["tile_plan"]
    plan = plan_tiles(
        model.config.geometry,
        raw.shape[1],
        raw.shape[2],
        stride=tile_attrs["stride"],
        block=tile_attrs["block"],
    )
    mean, std = omezarr.normalization(source)
    options = {"batch_size": batch_size, "tta": tta, "precision": precision, "threshold": threshold}
    writer = BlockWriter(model, source, target, plan, mean=mean, std=std, device=device, **options)
    layout = PredictionLayout(target_path)
    mine = select_group(blocks_of(raw.shape, plan), group, groups)
    todo = [block for block in mine if not layout.done(block)]
    log.info(
        "predicting %d of %d blocks (group %d/%d, tile stride %d, tile input %d, block %d, %s scheduler)",
        len(todo),
        len(mine),
        group + 1,
        groups,
        plan.stride,
        plan.input,
        plan.block,
        scheduler,
    )
    if scheduler == "distributed":
        writer.threads = worker_threads
        _run_distributed(writer, todo, client=client, progress=progress)
    else:
        torch_device = resolve_device(device)
        writer.device = str(torch_device)
        writer.open()
        with cpu_threads(torch_device, workers if scheduler == "threads" else 1):
            _run_blocks(writer, todo, scheduler=scheduler, workers=workers, progress=progress)
    return {"computed": len(todo), "skipped": len(mine) - len(todo), "total": len(mine)}


def _run_blocks(run: Any, blocks: Iterable[Block], *, scheduler: str, workers: int, progress: bool) -> None:
    """Execute one dask task per block (reading/writing of one block overlaps the net of another)."""
    tasks = [dask.delayed(run, pure=False)(block) for block in blocks]
    if not tasks:
        return
    bar = progress_bar(total=len(tasks), desc="predict", unit="block", disable=not progress)
    with _ProgressCallback(bar):
        dask.compute(*tasks, scheduler=scheduler, num_workers=workers)
    bar.close()


def _run_distributed(writer: BlockWriter, blocks: Sequence[Block], *, client: Any, progress: bool) -> None:
    """One task per block on a dask.distributed cluster; the writer (net weights) goes to each worker once."""
    if not blocks:
        return
    from distributed import as_completed, get_client

    client = client if client is not None else get_client()
    writer.model = copy.deepcopy(writer.model).cpu()
    [remote] = client.scatter([writer], broadcast=True, hash=False)
    futures = client.map(write_block, [remote] * len(blocks), blocks, pure=False)
    bar = progress_bar(total=len(futures), desc="predict", unit="block", disable=not progress)
    try:
        for future in as_completed(futures):
            future.result()
            bar.update(1)
    finally:
        client.cancel(futures)
        bar.close()


class _ProgressCallback(Callback):
    """Advance a tqdm bar as each block task finishes."""

    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self.bar.update(1)


def prediction_threshold(target: str | Path) -> float:
    """The threshold the segmentation of a prediction was made with (0.5 when none is recorded)."""
    return float(omezarr.read_attrs(target).get("threshold", 0.5))


def check_complete(target: str | Path, *, model: UNet) -> dict[str, int]:
    """Verify every block of a (possibly group-split) prediction is done; the error names what is missing."""
    probability = omezarr.open_image(target)
    tile_attrs = omezarr.read_attrs(target)["tile_plan"]
    plan = plan_tiles(
        model.config.geometry,
        probability.shape[1],
        probability.shape[2],
        stride=tile_attrs["stride"],
        block=tile_attrs["block"],
    )
    layout = PredictionLayout(Path(target))
    blocks = blocks_of(probability.shape, plan)
    missing = [block.key for block in blocks if not layout.done(block)]
    if missing:
        raise InputError(
            f"prediction {target} is incomplete: {len(missing)} of {len(blocks)} blocks missing "
            f"(first: {missing[:3]}); re-run the predict jobs"
        )
    return {"blocks": len(blocks), "voxels": int(math.prod(probability.shape))}


def instance_labels(segmentation: Any, *, connectivity: int = 1) -> tuple[da.Array, int]:
    """Connected components of the interior class of each (z) slice, ids unique across the volume.

    Returns a lazy uint32 (z, y, x) array (one task per slice) and the number of instances. A first pass
    counts each slice's components so that slice z's ids start after those of slices 0..z-1.
    """
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


def finalize_prediction(
    target: str | Path, *, model: UNet, instances: bool = False, connectivity: int = 1
) -> dict[str, int]:
    """Check that every block is complete; with `instances`, add instance labels to the prediction.

    The instance labels (``labels/instances``, uint32, chunked like the probability, OME image-label
    metadata) are the connected components of the segmentation's interior class, slice by slice
    (`connectivity` 1: 4-neighbour, 2: 8-neighbour), numbered uniquely across the volume.
    """
    summary = check_complete(target, model=model)
    if instances:
        segmentation = omezarr.open_labels(target, SEGMENTATION)
        if segmentation is None:
            raise InputError(f"prediction {target} has no labels/{SEGMENTATION}; re-run the predict jobs")
        labels, total = instance_labels(segmentation, connectivity=connectivity)
        with dask.config.set(scheduler="threads"):
            omezarr.write_labels(
                target, INSTANCES, labels, kind="instance", chunks=omezarr.open_image(target).chunks
            )
        summary["instances"] = total
        log.info("wrote %d instances to %s/labels/%s", total, target, INSTANCES)
    return summary
