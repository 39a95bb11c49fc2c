"""The overlap-tile scheme of the paper's Fig. 2 for one block: read its context, run the net tile by tile.

Each output block reads its valid-convolution context from the source (mirrored at the volume's border) and
runs the net on tiles whose offsets keep the pooling grid of a whole-slice pass, so every pixel is predicted
once and the result equals one pass over the whole slice. `predict_array` applies it to an in-memory volume
(validation, tests); `unetflow.predict.run` applies it to volumes of any size, shard by shard.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unetflow.data import alignment
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.geometry import TilePlan, largest_tile_for_memory, plan_tiles, reflect_indices
from unetflow.model.unet import UNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    """One output chunk: slice `z`, output rows/columns starting at (`y`, `x`)."""

    z: int
    y: int
    x: int


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
        self.label_offset = tuple(model.label_offset)
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
        context = self.read(source, block.z, rows, cols)
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

    def read(self, source: Any, z: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The context window as float32, moved by the model's label offset (read with a halo for that)."""
        if not alignment.moves(self.label_offset):
            return read_context(source, z, rows, cols).astype(np.float32)
        halo = alignment.HALO
        wider = read_context(source, z, (rows[0] - halo, rows[1] + halo), (cols[0] - halo, cols[1] + halo))
        return np.ascontiguousarray(alignment.move(wider, self.label_offset)[halo:-halo, halo:-halo])

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
    """Reference: one forward pass over the whole mirror-padded 2-D slice, moved by the model's label offset
    (what tiling must reproduce)."""
    geometry = model.config.geometry
    height, width = image.shape
    out_size = geometry.valid_output(max(height, width))
    pad = geometry.margin + alignment.HALO
    rows = reflect_indices(-pad, out_size + pad, height)
    cols = reflect_indices(-pad, out_size + pad, width)
    halo = slice(alignment.HALO, -alignment.HALO)
    padded = (alignment.move(image[np.ix_(rows, cols)], model.label_offset)[halo, halo] - mean) / std
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(padded)[None, None])
    return torch.softmax(logits, dim=1)[0, 1, :height, :width].numpy()
