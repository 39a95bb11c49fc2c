"""The overlap-tile scheme of the paper's Fig. 2 for one block: read its context, run the net tile by tile.

Each output block reads its valid-convolution context from the source (mirrored at the volume's border) and
runs the net on tiles whose offsets keep the pooling grid of a whole-slice pass, so every pixel is predicted
once and the result equals one pass over the whole slice. A block is a region of one slice for a 2-D net
(read with its `context_slices` neighbours on each side, which become input channels) and a box of several
slices for a 3-D net, whose tiles keep the pooling grid along z too. `predict_array` applies it to an
in-memory volume (validation, tests); `unetflow.predict.run` applies it to volumes of any size, shard by
shard.
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
from unetflow.geometry import (
    TilePlan,
    largest_volume_tile,
    plan_volume_tiles,
    reflect_indices,
)
from unetflow.model.unet import UNet
from unetflow.predict.plan import check_depth

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
    return read_window(source, (z, z + 1), rows, cols)[0]


def read_window(
    source: Any, slices: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Read source[slices, rows, cols] (z, y, x) where any range may pass the volume's border: mirrored
    ('reflect') indices, so the context of a block at the volume's end is its mirror image."""
    windows = [
        _axis_window(*span, length) for span, length in zip((slices, rows, cols), source.shape, strict=True)
    ]
    ranges = tuple(window for window, _ in windows)
    region = np.asarray(source[ranges])
    for axis, (_, index) in enumerate(windows):
        if index is not None:
            region = np.take(region, index, axis=axis)
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

    def __call__(self, source: Any, block: Block, *, depth: int | None = None) -> np.ndarray:
        """Foreground probability (z, y, x) of `block` (float32, cropped at the volume's end); `depth`
        slices from block.z where given, else the plan's block depth (one slice for a 2-D net)."""
        plan = self.plan
        along_z = plan.slices
        height, width = plan.block_extent(block.y, block.x)
        depth = depth or (along_z.extent(block.z) if along_z is not None else 1)
        slices = along_z.window(block.z, depth) if along_z is not None else (block.z, block.z + 1)
        context = self.read(
            source, slices, plan.context_window(block.y, height), plan.context_window(block.x, width)
        )
        np.subtract(context, self.mean, out=context)
        np.divide(context, self.std, out=context)
        z_step, z_input = (along_z.stride, along_z.input) if along_z is not None else (1, 1)
        offsets = [
            (tz, ty, tx)
            for tz in range(0, depth, z_step)
            for ty in range(0, height, plan.stride)
            for tx in range(0, width, plan.stride)
        ]
        out = np.empty((depth, height, width), dtype=np.float32)
        for first in range(0, len(offsets), self.batch_size):
            chunk = offsets[first : first + self.batch_size]
            views = [
                context[tz : tz + z_input, ty : ty + plan.input, tx : tx + plan.input] for tz, ty, tx in chunk
            ]
            tiles = views[0][None] if len(views) == 1 else np.stack(views)  # one tile: a view, no copy
            probs = self.forward(torch.from_numpy(tiles))
            for (tz, ty, tx), prob in zip(chunk, probs, strict=True):
                keep = (min(z_step, depth - tz), min(plan.stride, height - ty), min(plan.stride, width - tx))
                out[tz : tz + keep[0], ty : ty + keep[1], tx : tx + keep[2]] = prob[
                    : keep[0], : keep[1], : keep[2]
                ]
        return out

    def read(
        self, source: Any, slices: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
    ) -> np.ndarray:
        """The context window (z, y, x) as float32, each slice moved by the model's label offset (read with a
        halo for that)."""
        if not alignment.moves(self.label_offset):
            return read_window(source, slices, rows, cols).astype(np.float32)
        halo = alignment.HALO
        wider = read_window(
            source, slices, (rows[0] - halo, rows[1] + halo), (cols[0] - halo, cols[1] + halo)
        )
        return np.ascontiguousarray(alignment.move(wider, self.label_offset)[:, halo:-halo, halo:-halo])

    def forward(self, tiles: torch.Tensor) -> np.ndarray:
        """Foreground probabilities (N, Z, H, W) of a batch of input tiles (N, Z', H', W'): a 3-D net's
        (one channel, Z' slices), or a 2-D net's (Z' = 2k + 1 channels, Z = 1)."""
        three_d = self.model.config.dims == 3
        with self.lock, torch.inference_mode():
            tiles = tiles.to(self.device, non_blocking=True)
            if three_d:
                tiles = tiles[:, None]
            transforms = range(8) if self.tta else range(1)
            total = None
            for k in transforms:
                with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                    logits = self.model(dihedral(tiles, k))
                prob = dihedral(torch.softmax(logits.float(), dim=1)[:, 1], k, inverse=True)
                total = prob if total is None else total.add_(prob)
            if len(transforms) > 1:
                total.div_(len(transforms))
            return total.cpu().numpy() if three_d else total.cpu().numpy()[:, None]


def inference_model(model: UNet, device: torch.device) -> UNet:
    """The net to predict with on `device`, in eval mode.

    On the CPU, a channels-last copy: oneDNN runs the convolutions about 1.5x faster in that layout (same
    values up to float rounding), and the caller's model (e.g. one still training) keeps its layout and mode.
    """
    if device.type == "cpu":
        return copy.deepcopy(model).to(device, memory_format=channels_last(model)).eval()
    return model.to(device).eval()


def channels_last(model: UNet) -> torch.memory_format:
    """The channels-last memory format of the net's tensors (4-D for a 2-D net, 5-D for a 3-D one)."""
    return torch.channels_last_3d if model.config.dims == 3 else torch.channels_last


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


def choose_strides(
    model: UNet, memory_gb: float, *, shape: tuple[int, ...], batch_size: int = 1, workers: int = 1
) -> tuple[int, int]:
    """The largest (z, in-plane) tile strides whose activations fit `memory_gb` shared by `workers`
    concurrent blocks, for a volume of `shape` (z, y, x); a 2-D net's z stride is 1."""
    if memory_gb <= 0:
        raise InputError(f"predict.memory_gb must be positive, got {memory_gb}")
    budget = memory_gb * 2**30 / max(1, workers)
    try:
        return largest_volume_tile(
            model.config.net_geometry,
            budget,
            model.config.base_channels,
            shape=shape,
            batch=batch_size,
            cap=4096,
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
    stride_z: int | None = None,
    batch_size: int = 1,
    tta: bool = False,
    z_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Foreground probability of an in-memory (z, y, x) or (y, x) array (validation, tests), float32.

    `z_range` predicts only those slices [start, stop), with the rest of the array as their context (a
    3-D net's blocks then start on its z alignment at or before `start`, as a whole-volume pass's do).
    """
    stack = as_stack(np.asarray(volume))
    net = model.config.net_geometry
    first, last = z_range or (0, stack.shape[0])
    check_depth(net, stack.shape[0], name="the volume")
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    if stride is None or (stride_z is None and net.dims == 3):
        chosen = choose_strides(
            model, memory_gb, shape=(last - first, *stack.shape[1:]), batch_size=batch_size
        )
        stride, stride_z = stride or chosen[1], stride_z or chosen[0]
    plan = plan_volume_tiles(net, stack.shape, stride=stride, stride_z=stride_z or 1)
    predictor = BlockPredictor(
        model,
        plan,
        mean=float(stack.mean()) if mean is None else mean,
        std=float(stack.std()) if std is None else std,
        device=torch_device,
        batch_size=batch_size,
        tta=tta,
    )
    out = np.empty((last - first, *stack.shape[1:]), dtype=np.float32)
    step = plan.slices.block if net.dims == 3 and plan.slices is not None else 1
    for z in range(first // step * step, last, step):
        for y, x in plan.block_starts():
            block = predictor(stack, Block(z, y, x), depth=min(step, stack.shape[0] - z))
            low, high = max(z, first), min(z + block.shape[0], last)
            out[low - first : high - first, y : y + block.shape[1], x : x + block.shape[2]] = block[
                low - z : high - z
            ]
    return out if z_range is not None or np.ndim(volume) == 3 else out[0]


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
