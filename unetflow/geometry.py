"""Tile geometry of the valid-convolution U-Net: the one place that knows sizes, margins and tile grids.

Pure functions of integers (and NumPy index arrays); imports nothing else of the package. For the paper's
net (depth 4, two 3x3 valid convolutions per level) an input of 16 b + 124 gives an output of 16 b - 60,
so the context margin is 92 whatever the tile; tiles whose offsets are multiples of 2**depth reproduce a
whole-image pass exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONVS_PER_LEVEL = 2
KERNEL_SIZE = 3


@dataclass(frozen=True)
class UNetGeometry:
    """Sizes of a U-Net with `depth` 2x2 poolings and two 3x3 valid convolutions per level."""

    depth: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"U-Net depth must be an integer >= 1, got {self.depth!r}")

    @property
    def shrink_per_level(self) -> int:
        """Pixels lost by one level's valid convolutions (4 for two 3x3 convolutions)."""
        return CONVS_PER_LEVEL * (KERNEL_SIZE - 1)

    @property
    def alignment(self) -> int:
        """The net is shift-equivariant only for shifts that are multiples of this (2**depth)."""
        return 2**self.depth

    @property
    def margin(self) -> int:
        """Context lost on each side between input and output (92 for the paper's depth-4 net)."""
        return (self.input_for_bottleneck(1) - self.output_for_bottleneck(1)) // 2

    def input_for_bottleneck(self, bottleneck: int) -> int:
        """Input size whose contracting path ends in `bottleneck` pixels after the lowest convolutions."""
        size = bottleneck + self.shrink_per_level
        for _ in range(self.depth):
            size = 2 * size + self.shrink_per_level
        return size

    def output_for_bottleneck(self, bottleneck: int) -> int:
        """Output size of the expansive path that starts from `bottleneck` pixels."""
        size = bottleneck
        for _ in range(self.depth):
            size = 2 * size - self.shrink_per_level
        return size

    @property
    def min_bottleneck(self) -> int:
        """The smallest bottleneck size whose expansive path still yields at least one output pixel."""
        lost = -self.output_for_bottleneck(0)
        return max(1, -(-(lost + 1) // self.alignment))

    def output_size(self, input_size: int) -> int:
        """Output size for `input_size`; raises when some 2x2 pooling would see an odd size."""
        size = input_size
        for level in range(self.depth):
            size -= self.shrink_per_level
            if size <= 0 or size % 2:
                raise ValueError(
                    f"input size {input_size} is not valid for a depth-{self.depth} U-Net: level {level} "
                    f"pools an odd or empty size {size}; use UNetGeometry.valid_input(n) to round up"
                )
            size //= 2
        bottleneck = size - self.shrink_per_level
        if bottleneck < self.min_bottleneck:
            raise ValueError(f"input size {input_size} is too small for a depth-{self.depth} U-Net")
        return self.output_for_bottleneck(bottleneck)

    def is_valid_input(self, input_size: int) -> bool:
        """Whether `input_size` passes every pooling with an even size."""
        try:
            self.output_size(input_size)
        except ValueError:
            return False
        return True

    def smallest_bottleneck_for_output(self, output_size: int) -> int:
        """The smallest bottleneck whose output covers at least `output_size` pixels."""
        lost = self.output_for_bottleneck(0)
        return max(self.min_bottleneck, math.ceil((output_size - lost) / self.alignment))

    def valid_output(self, at_least: int) -> int:
        """The smallest valid output size >= `at_least`."""
        return self.output_for_bottleneck(self.smallest_bottleneck_for_output(at_least))

    def valid_input(self, at_least: int) -> int:
        """The smallest valid input size >= `at_least`."""
        bottleneck = max(
            self.min_bottleneck, math.ceil((at_least - self.input_for_bottleneck(0)) / self.alignment)
        )
        return self.input_for_bottleneck(bottleneck)

    def input_for_output(self, output_size: int) -> int:
        """Input size that produces exactly `output_size`; raises for sizes the net cannot produce."""
        if self.valid_output(output_size) != output_size:
            raise ValueError(
                f"{output_size} is not a valid output size for a depth-{self.depth} U-Net; the nearest "
                f"larger one is {self.valid_output(output_size)}"
            )
        return output_size + 2 * self.margin

    def output_for_stride(self, stride: int) -> int:
        """The smallest valid output covering a tile stride (a multiple of the alignment)."""
        if stride <= 0 or stride % self.alignment:
            raise ValueError(f"tile stride {stride} must be a positive multiple of {self.alignment}")
        return self.valid_output(stride)


def activation_bytes(geometry: UNetGeometry, input_size: int, base_channels: int, *, batch: int = 1) -> int:
    """Estimated peak inference memory of a square tile: kept skip maps plus the working maps of a level."""
    total = 0
    size = input_size
    peak_level = 0
    for level in range(geometry.depth + 1):
        channels = base_channels * 2**level
        maps = channels * size * size
        total += maps
        peak_level = max(peak_level, 4 * maps)
        size = (size - geometry.shrink_per_level) // 2
    return int((total + peak_level) * 4 * batch)


def largest_tile_for_memory(
    geometry: UNetGeometry,
    memory_bytes: float,
    base_channels: int,
    *,
    batch: int = 1,
    cap: int | None = None,
) -> int:
    """The largest tile stride (a multiple of the alignment) whose input fits `memory_bytes` per batch."""
    stride = geometry.alignment
    best = None
    while cap is None or stride <= cap:
        input_size = geometry.input_for_output(geometry.output_for_stride(stride))
        if activation_bytes(geometry, input_size, base_channels, batch=batch) > memory_bytes:
            break
        best = stride
        stride += geometry.alignment
    if best is None:
        raise ValueError(
            f"a memory budget of {memory_bytes / 2**30:.3f} GiB does not fit the smallest tile of a "
            f"{base_channels}-channel depth-{geometry.depth} U-Net; raise predict.memory_gb"
        )
    return best


def tile_starts(length: int, stride: int) -> list[int]:
    """Output offsets of tiles of `stride` that cover `length` pixels (the last tile is cropped)."""
    if length <= 0:
        raise ValueError(f"cannot tile an axis of length {length}")
    return list(range(0, length, stride))


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices of positions start..stop-1 of an axis of `length` mirrored at its ends (numpy 'reflect')."""
    if length == 1:
        return np.zeros(stop - start, dtype=np.int64)
    positions = np.arange(start, stop, dtype=np.int64)
    period = 2 * (length - 1)
    positions = np.mod(positions, period)
    return np.where(positions < length, positions, period - positions)


@dataclass(frozen=True)
class TilePlan:
    """How a 2-D slice is cut into overlap tiles: every output pixel is predicted once, from full context.

    Tiles step by `stride` (a multiple of the alignment, so each tile sees the pooling grid of a whole-slice
    pass); each tile's net output is `output` >= `stride` pixels, of which the first `stride` are kept.
    Blocks (the unit of I/O and of resume) are `block` x `block` output pixels, a multiple of `stride`.
    """

    geometry: UNetGeometry
    height: int
    width: int
    stride: int
    block: int

    @property
    def output(self) -> int:
        """Valid output size of one tile (>= stride)."""
        return self.geometry.output_for_stride(self.stride)

    @property
    def input(self) -> int:
        """Input size of one tile."""
        return self.geometry.input_for_output(self.output)

    @property
    def margin(self) -> int:
        """Context on each side of the kept output."""
        return self.geometry.margin

    def block_starts(self) -> list[tuple[int, int]]:
        """(y, x) output offsets of the blocks of one slice, row-major."""
        return [
            (y, x) for y in tile_starts(self.height, self.block) for x in tile_starts(self.width, self.block)
        ]

    def block_extent(self, start_y: int, start_x: int) -> tuple[int, int]:
        """Height and width of the block at (start_y, start_x), cropped at the slice's end."""
        return min(self.block, self.height - start_y), min(self.block, self.width - start_x)

    def context_window(self, start: int, extent: int) -> tuple[int, int]:
        """Input coordinates [begin, end) that the tiles covering output [start, start + extent) read."""
        tiles = -(-extent // self.stride)
        return start - self.margin, start + (tiles - 1) * self.stride + self.input - self.margin


# Output blocks (= Zarr chunks, the unit of I/O and of resume) of about this many pixels a side: each Zarr
# chunk read or write costs a few ms besides its codec, which 1024 x 1024 blocks (4 MB of float32)
# amortise over four 512 px tiles; 512 px blocks cost ~10% of the prediction's throughput on 2 CPU cores
# (benchmarks/predict.py --block 512).
BLOCK_TARGET = 1024


def plan_tiles(
    geometry: UNetGeometry,
    height: int,
    width: int,
    *,
    stride: int,
    block: int | None = None,
) -> TilePlan:
    """A tile plan for a height x width slice; the stride is cut down to what the slice needs."""
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot tile an empty slice of {height} x {width}")
    align = geometry.alignment
    needed = -(-max(height, width) // align) * align
    stride = min(stride, needed)
    if stride <= 0 or stride % align:
        raise ValueError(f"tile stride {stride} must be a positive multiple of {align}")
    if block is None:
        block = stride * max(1, -(-BLOCK_TARGET // stride))
    if block % stride:
        raise ValueError(f"block size {block} must be a multiple of the tile stride {stride}")
    return TilePlan(geometry=geometry, height=height, width=width, stride=stride, block=block)
