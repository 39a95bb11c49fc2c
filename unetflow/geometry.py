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


# Output shards (Zarr v3) hold about this many bytes of the probability array: with the uint8 segmentation
# beside it, about 1.25 GB of output per two files, under the 2 files per GB that a file system of a big
# cluster wants (and one shard's buffer is the prediction's memory beyond the net's).
SHARD_TARGET_BYTES = 2**30


def shard_shape(
    shape: tuple[int, int, int],
    chunk: tuple[int, int, int],
    *,
    itemsize: int,
    target_bytes: int,
    min_shards: int = 1,
) -> tuple[int, int, int]:
    """A shard of whole chunks holding at most about `target_bytes`: in-plane first, then deeper in z.

    In-plane, the fewest shards per axis whose side fits the target, of balanced sizes (a 20-chunk axis
    splits 10 + 10, not 16 + 4), then as many slices as still fit. Never larger than the volume (rounded up
    to whole chunks), one chunk at least, and small enough that the volume has `min_shards` shards where
    its chunks allow (each block group needs shards of its own).
    """
    counts = tuple(-(-n // c) for n, c in zip(shape, chunk, strict=True))
    per_chunk = chunk[0] * chunk[1] * chunk[2] * itemsize
    widest = max(1, math.isqrt(max(1, target_bytes // per_chunk)))
    sy, sx = (-(-n // -(-n // widest)) for n in counts[1:])
    depth = max(1, min(counts[0], target_bytes // (sy * sx * per_chunk)))
    wanted = min(min_shards, counts[0] * counts[1] * counts[2])

    def total(d: int, y: int, x: int) -> int:
        return -(-counts[0] // d) * -(-counts[1] // y) * -(-counts[2] // x)

    while total(depth, sy, sx) < wanted and depth > 1:
        depth = max(1, depth // 2)
    while total(depth, sy, sx) < wanted and max(sy, sx) > 1:
        sy, sx = max(1, sy // 2), max(1, sx // 2)
    return depth * chunk[0], sy * chunk[1], sx * chunk[2]


@dataclass(frozen=True)
class ShardGrid:
    """The chunk and shard grid of a (z, y, x) output: chunks are blocks, shards are written whole.

    Shards are numbered z-major (z, then y, then x); a block group is a contiguous range of that order, so
    no two jobs ever write one shard. With Zarr v2 (no sharding) a shard is one chunk.
    """

    shape: tuple[int, int, int]
    chunk: tuple[int, int, int]
    shard: tuple[int, int, int]

    def __post_init__(self) -> None:
        for axis, (c, s) in enumerate(zip(self.chunk, self.shard, strict=True)):
            if c < 1 or s < c or s % c:
                raise ValueError(f"shard {self.shard} is not a multiple of chunk {self.chunk} (axis {axis})")

    @property
    def counts(self) -> tuple[int, int, int]:
        """Shards along z, y and x."""
        z, y, x = (-(-n // s) for n, s in zip(self.shape, self.shard, strict=True))
        return z, y, x

    def __len__(self) -> int:
        z, y, x = self.counts
        return z * y * x

    def index(self, number: int) -> tuple[int, int, int]:
        """Grid coordinates (z, y, x) of shard `number` in z-major order."""
        _, ny, nx = self.counts
        return number // (ny * nx), (number // nx) % ny, number % nx

    def number(self, index: tuple[int, int, int]) -> int:
        """The z-major number of the shard at grid coordinates `index`."""
        _, ny, nx = self.counts
        return (index[0] * ny + index[1]) * nx + index[2]

    def region(self, index: tuple[int, int, int]) -> tuple[slice, slice, slice]:
        """The voxels of shard `index`, cropped at the volume's end."""
        z, y, x = (
            slice(i * s, min((i + 1) * s, n)) for i, s, n in zip(index, self.shard, self.shape, strict=True)
        )
        return z, y, x

    def chunks_of(self, index: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        """Start voxels (z, y, x) of the chunks (blocks) inside shard `index`, in order."""
        region = self.region(index)
        return [
            (z, y, x)
            for z in range(region[0].start, region[0].stop, self.chunk[0])
            for y in range(region[1].start, region[1].stop, self.chunk[1])
            for x in range(region[2].start, region[2].stop, self.chunk[2])
        ]

    def chunk_count(self, index: tuple[int, int, int]) -> int:
        """How many chunks (blocks) shard `index` holds."""
        return math.prod(
            -(-(r.stop - r.start) // c) for r, c in zip(self.region(index), self.chunk, strict=True)
        )

    @property
    def total_chunks(self) -> int:
        """How many chunks (blocks) the whole output holds."""
        return math.prod(-(-n // c) for n, c in zip(self.shape, self.chunk, strict=True))

    def chunks_in(self, region: tuple[slice, slice, slice]) -> list[tuple[int, int, int]]:
        """Start voxels of the chunks that overlap `region`."""
        spans = [
            range(r.start // c * c, min(r.stop, n), c)
            for r, c, n in zip(region, self.chunk, self.shape, strict=True)
        ]
        return [(z, y, x) for z in spans[0] for y in spans[1] for x in spans[2]]

    def shards_in(self, region: tuple[slice, slice, slice]) -> list[int]:
        """Numbers of the shards that overlap `region`."""
        spans = [
            range(r.start // s, (min(r.stop, n) - 1) // s + 1)
            for r, s, n in zip(region, self.shard, self.shape, strict=True)
        ]
        return [self.number((z, y, x)) for z in spans[0] for y in spans[1] for x in spans[2]]

    def shards_touching(self, chunk_index: tuple[int, int, int], chunk: tuple[int, int, int]) -> set[int]:
        """Numbers of the shards that the chunk `chunk_index` of another grid (of shape `chunk`) overlaps."""
        spans = [
            range(c * size // s, min(((c + 1) * size - 1) // s, n - 1) + 1)
            for c, size, s, n in zip(chunk_index, chunk, self.shard, self.counts, strict=True)
        ]
        return {self.number((z, y, x)) for z in spans[0] for y in spans[1] for x in spans[2]}


def group_range(shards: int, group: int, groups: int) -> range:
    """The shard numbers of block group `group` of `groups`: contiguous, sizes differing by one at most."""
    if groups < 1 or not 0 <= group < groups:
        raise ValueError(f"block group {group} of {groups} is out of range: use 0 <= group < groups")
    return range(group * shards // groups, (group + 1) * shards // groups)


def auto_groups(shards: int, output_bytes: int, *, bytes_per_group: int) -> int:
    """How many block groups (jobs) split an output of `output_bytes`: one per `bytes_per_group`, at least
    one, at most one per shard."""
    return max(1, min(shards, -(-output_bytes // max(1, bytes_per_group))))
