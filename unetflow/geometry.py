"""Tile geometry of the valid-convolution U-Net: the one place that knows sizes, margins and tile grids.

Pure functions of integers (and NumPy index arrays); imports nothing else of the package. For the paper's
net (depth 4, two 3x3 valid convolutions per level) an input of 16 b + 124 gives an output of 16 b - 60,
so the context margin is 92 whatever the tile; tiles whose offsets are multiples of 2**depth reproduce a
whole-image pass exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

CONVS_PER_LEVEL = 2
KERNEL_SIZE = 3


@dataclass(frozen=True)
class UNetGeometry:
    """Sizes along one axis of a U-Net with `depth` poolings and two valid convolutions per level.

    By default every level's kernels are 3 wide and every pooling halves the axis (the paper's net, and
    each axis of the isotropic 3-D net). An axis of an anisotropic 3-D net may have 1-wide kernels at some
    levels (`kernels`: one per level, 0..depth, the last the bottleneck's; 3 or 1) and no pooling after them
    (`pools`: one per pooling, 2 or 1): along it the valid convolutions shrink nothing there and the pooling
    keeps its size.
    """

    depth: int = 4
    kernels: tuple[int, ...] | None = None
    pools: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"U-Net depth must be an integer >= 1, got {self.depth!r}")
        if self.kernels is not None and (
            len(self.kernels) != self.depth + 1 or not set(self.kernels) <= {1, KERNEL_SIZE}
        ):
            raise ValueError(
                f"kernels {self.kernels}: give one kernel width per level ({self.depth + 1}), each 1 or 3"
            )
        if self.pools is not None and (len(self.pools) != self.depth or not set(self.pools) <= {1, 2}):
            raise ValueError(f"pools {self.pools}: give one factor per pooling ({self.depth}), each 1 or 2")

    def kernel(self, level: int) -> int:
        """Kernel width along this axis at `level` (0..depth, depth = the bottleneck)."""
        return KERNEL_SIZE if self.kernels is None else self.kernels[level]

    def pool(self, level: int) -> int:
        """Pooling factor along this axis after `level` (0..depth-1)."""
        return 2 if self.pools is None else self.pools[level]

    def shrink(self, level: int) -> int:
        """Pixels lost along this axis by the valid convolutions of `level`."""
        return CONVS_PER_LEVEL * (self.kernel(level) - 1)

    @property
    def alignment(self) -> int:
        """The net is shift-equivariant only for shifts that are multiples of this (2**depth)."""
        return math.prod(self.pool(level) for level in range(self.depth))

    @property
    def margin(self) -> int:
        """Context lost on each side between input and output (92 for the paper's depth-4 net)."""
        return (self.input_for_bottleneck(1) - self.output_for_bottleneck(1)) // 2

    def input_for_bottleneck(self, bottleneck: int) -> int:
        """Input size whose contracting path ends in `bottleneck` pixels after the lowest convolutions."""
        size = bottleneck + self.shrink(self.depth)
        for level in reversed(range(self.depth)):
            size = self.pool(level) * size + self.shrink(level)
        return size

    def output_for_bottleneck(self, bottleneck: int) -> int:
        """Output size of the expansive path that starts from `bottleneck` pixels."""
        size = bottleneck
        for level in reversed(range(self.depth)):
            size = self.pool(level) * size - self.shrink(level)
        return size

    @property
    def min_bottleneck(self) -> int:
        """The smallest bottleneck size whose expansive path still yields at least one output pixel."""
        lost = -self.output_for_bottleneck(0)
        return max(1, -(-(lost + 1) // self.alignment))

    def output_size(self, input_size: int) -> int:
        """Output size for `input_size`; raises when some pooling would see a size it does not divide."""
        size = input_size
        for level in range(self.depth):
            size -= self.shrink(level)
            if size <= 0 or size % self.pool(level):
                raise ValueError(
                    f"input size {input_size} is not valid for a depth-{self.depth} U-Net: level {level} "
                    f"pools an odd or empty size {size}; use UNetGeometry.valid_input(n) to round up"
                )
            size //= self.pool(level)
        bottleneck = size - self.shrink(self.depth)
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


@dataclass(frozen=True)
class SliceContext:
    """The z axis of a 2-D net: one slice out, read with `context` neighbouring slices on each side as input
    channels (mirrored at the volume's ends). Answers as a UNetGeometry does where tiling asks."""

    context: int = 0

    @property
    def margin(self) -> int:
        """Slices read on each side of the predicted one."""
        return self.context

    @property
    def alignment(self) -> int:
        """Any slice may be predicted on its own."""
        return 1

    def output_for_stride(self, stride: int) -> int:
        """One slice per net call: the only stride is 1."""
        if stride != 1:
            raise ValueError(f"a 2-D net predicts one slice at a time: z stride must be 1, got {stride}")
        return 1

    def input_for_output(self, output_size: int) -> int:
        """Slices read for `output_size` predicted ones."""
        return output_size + 2 * self.context


Layout = tuple[tuple[int, int, int], ...]
"""Per level a (z, y, x) triple: kernel widths (depth + 1 levels) or pooling factors (depth poolings)."""


@dataclass(frozen=True)
class NetGeometry:
    """What tiling needs of a net: a 2-D net (with `context` slices as channels) or a 3-D one with its
    per-level (z, y, x) `kernels` and `pools` (None: 3x3x3 and 2x2x2 everywhere). y and x share a layout."""

    depth: int = 4
    dims: int = 2
    context: int = 0
    kernels: Layout | None = None
    pools: Layout | None = None

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims!r}")
        if self.context < 0 or (self.context and self.dims == 3):
            raise ValueError(f"context slices ({self.context}) are for 2-D nets, >= 0; a 3-D net sees z")
        if self.dims == 2 and (self.kernels is not None or self.pools is not None):
            raise ValueError("kernels and pools per axis are for 3-D nets; a 2-D net is 3x3 / 2x2 throughout")
        for name, layout, count in (
            ("kernels", self.kernels, self.depth + 1),
            ("pools", self.pools, self.depth),
        ):
            if layout is not None and (
                len(layout) != count or any(len(v) != 3 or v[1] != v[2] for v in layout)
            ):
                raise ValueError(
                    f"{name} {[list(v) for v in layout]}: give {count} (z, y, x) triples for depth "
                    f"{self.depth}, with y = x (the in-plane axes alike)"
                )
        self.axis(0)  # checks the values of the layouts

    def axis(self, index: int) -> UNetGeometry:
        """The geometry along axis `index` (0 = z, 1 = y, 2 = x) of a 3-D net, or in-plane of a 2-D one."""
        if self.dims == 2:
            return UNetGeometry(self.depth)
        kernels = None if self.kernels is None else tuple(level[index] for level in self.kernels)
        pools = None if self.pools is None else tuple(level[index] for level in self.pools)
        return UNetGeometry(self.depth, kernels=kernels, pools=pools)

    @property
    def plane(self) -> UNetGeometry:
        """The geometry along y and along x."""
        return self.axis(1)

    @property
    def z(self) -> UNetGeometry | SliceContext:
        """The geometry along z: the 3-D net's, or the 2-D net's slice context."""
        return self.axis(0) if self.dims == 3 else SliceContext(self.context)

    @property
    def min_slices(self) -> int:
        """The fewest slices the net's smallest tile reads along z (a 3-D net on fewer is an error)."""
        return self.axis(0).valid_input(1) if self.dims == 3 else 1

    def training_tile(self, tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(input, output) along z and in-plane of a training tile asked to be `tile` px in-plane: a 3-D
        net's z output grows with its z alignment (n steps along each axis, as `largest_volume_tile`); a 2-D
        net reads 2k + 1 slices for one."""
        plane = self.plane
        output = plane.valid_output(tile)
        if self.dims == 2:
            return (2 * self.context + 1, 1), (plane.input_for_output(output), output)
        z = self.axis(0)
        output_z = z.valid_output(-(-tile * z.alignment // plane.alignment))
        return (z.input_for_output(output_z), output_z), (plane.input_for_output(output), output)

    def to_dict(self) -> dict[str, Any]:
        """Plain form (a prediction plan's attributes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NetGeometry:
        """The geometry stored by `to_dict` (a plan of a 2-D net without context stores only its depth)."""

        def layout(value: Any) -> Layout | None:
            return None if value is None else tuple(tuple(int(v) for v in level) for level in value)  # type: ignore[misc]

        return cls(
            depth=int(values["depth"]),
            dims=int(values.get("dims", 2)),
            context=int(values.get("context", 0)),
            kernels=layout(values.get("kernels")),
            pools=layout(values.get("pools")),
        )


ANISOTROPY_JOIN = 2.0
"""nnU-Net's rule: an axis takes part in a level's 3-wide kernels and pooling once its spacing there is less
than this factor times the finest axis's spacing (pooling doubles a taking-part axis's spacing)."""


def anisotropic_layout(voxel_size: Sequence[float], depth: int) -> tuple[Layout, Layout]:
    """Per-level (z, y, x) kernel widths and pooling factors of a 3-D net for `voxel_size`, by nnU-Net's rule.

    At each level an axis whose current spacing is within ANISOTROPY_JOIN of the finest gets 3-wide kernels
    and (below the bottleneck) 2x pooling, which doubles its spacing; a coarser axis gets 1-wide kernels and
    no pooling until the others have caught up. 4 x 4 x 50 nm and depth 4: in-plane only (1x3x3, 1x2x2) at
    levels 0-2, 3x3x3 from level 3 (z joins when y and x reach 32 nm); isotropic: 3x3x3 and 2x2x2 throughout.
    """
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x), got {list(voxel_size)}")
    spacing = [float(value) for value in voxel_size]
    kernels, pools = [], []
    for level in range(depth + 1):
        finest = min(spacing)
        joins = [value / finest < ANISOTROPY_JOIN for value in spacing]
        kernels.append(tuple(KERNEL_SIZE if join else 1 for join in joins))
        if level < depth:
            pools.append(tuple(2 if join else 1 for join in joins))
            spacing = [value * 2 if join else value for value, join in zip(spacing, joins, strict=True)]
    return tuple(kernels), tuple(pools)  # type: ignore[return-value]


def activation_bytes(geometry: UNetGeometry, input_size: int, base_channels: int, *, batch: int = 1) -> int:
    """Estimated peak inference memory of a square tile: kept skip maps plus the working maps of a level."""
    return volume_activation_bytes([(geometry, input_size)] * 2, base_channels, batch=batch)


def volume_activation_bytes(
    axes: Sequence[tuple[UNetGeometry, int]], base_channels: int, *, batch: int = 1
) -> int:
    """Estimated peak inference memory of a tile with the given (geometry, input size) per spatial axis."""
    depth = axes[0][0].depth
    total = 0
    sizes = [size for _, size in axes]
    peak_level = 0
    for level in range(depth + 1):
        channels = base_channels * 2**level
        maps = channels * math.prod(sizes)
        total += maps
        peak_level = max(peak_level, 4 * maps)
        if level < depth:
            sizes = [(n - g.shrink(level)) // g.pool(level) for (g, _), n in zip(axes, sizes, strict=True)]
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


def largest_volume_tile(
    net: NetGeometry,
    memory_bytes: float,
    base_channels: int,
    *,
    shape: Sequence[int],
    batch: int = 1,
    cap: int | None = None,
) -> tuple[int, int]:
    """The largest (z, in-plane) tile strides of a net whose input fits `memory_bytes` per batch.

    A 2-D net predicts one slice per tile (z stride 1, the in-plane stride as `largest_tile_for_memory`). A
    3-D net's tile grows along all three axes together, n alignment steps each: an isotropic net's tile is a
    cube, an anisotropic one that pools z once in four levels takes 2n slices for 16n pixels in-plane (its
    alignment along z over in-plane, 1/8), each axis no further than the volume of `shape` (z, y, x) needs.
    """
    plane = net.plane
    if net.dims == 2:
        return 1, largest_tile_for_memory(plane, memory_bytes, base_channels, batch=batch, cap=cap)
    z = net.axis(0)
    need_z = -(-shape[0] // z.alignment) * z.alignment
    need = -(-max(shape[1:]) // plane.alignment) * plane.alignment
    if cap is not None:
        need = min(need, max(plane.alignment, cap // plane.alignment * plane.alignment))
    best = None
    n = 0
    while best is None or best != (need_z, need):
        n += 1
        depth, stride = min(need_z, n * z.alignment), min(need, n * plane.alignment)
        inputs = [(z, z.input_for_output(z.output_for_stride(depth)))]
        inputs += [(plane, plane.input_for_output(plane.output_for_stride(stride)))] * 2
        if volume_activation_bytes(inputs, base_channels, batch=batch) > memory_bytes:
            break
        best = (depth, stride)
    if best is None:
        raise ValueError(
            f"a memory budget of {memory_bytes / 2**30:.3f} GiB does not fit the smallest tile of a "
            f"{base_channels}-channel depth-{net.depth} 3-D U-Net; raise predict.memory_gb"
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


class _Strided:
    """What a tiling derives from its geometry and tile stride (the dataclasses below give both)."""

    geometry: UNetGeometry | SliceContext
    stride: int

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


@dataclass(frozen=True)
class AxisTiling(_Strided):
    """How one axis is cut into overlap tiles: tiles step by `stride` (a multiple of the axis's alignment),
    each predicts `output` >= `stride` and keeps the first `stride`; blocks of `block` (a multiple of the
    stride) are the unit of I/O. Along z of a 2-D net (SliceContext) every tile is one slice."""

    geometry: UNetGeometry | SliceContext
    length: int
    stride: int
    block: int

    def starts(self) -> list[int]:
        """Output offsets of the blocks along the axis."""
        return tile_starts(self.length, self.block)

    def extent(self, start: int) -> int:
        """Size of the block at `start`, cropped at the axis's end."""
        return min(self.block, self.length - start)

    def window(self, start: int, extent: int) -> tuple[int, int]:
        """Input coordinates [begin, end) that the tiles covering output [start, start + extent) read."""
        tiles = -(-extent // self.stride)
        return start - self.margin, start + (tiles - 1) * self.stride + self.input - self.margin


@dataclass(frozen=True)
class TilePlan(_Strided):
    """How a slice (or a volume) is cut into overlap tiles: every output pixel is predicted once, from full
    context.

    Tiles step by `stride` (a multiple of the alignment, so each tile sees the pooling grid of a whole-slice
    pass); each tile's net output is `output` >= `stride` pixels, of which the first `stride` are kept.
    Blocks (the unit of I/O and of resume) are `block` x `block` output pixels, a multiple of `stride`.
    `slices` tiles z: a 3-D net's z axis, or a 2-D net's context slices (None: one slice, no context).
    """

    geometry: UNetGeometry
    height: int
    width: int
    stride: int
    block: int
    slices: AxisTiling | None = None

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
        return AxisTiling(self.geometry, max(self.height, self.width), self.stride, self.block).window(
            start, extent
        )


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


# 3-D output blocks hold about this many tiles of the stride along each axis' 128 px: 128^3 float32 is 8 MB,
# a chunk size that neuroglancer and other 3-D viewers read well.
BLOCK_TARGET_3D = 128


def plan_volume_tiles(
    net: NetGeometry,
    shape: Sequence[int],
    *,
    stride: int,
    stride_z: int = 1,
    block: int | None = None,
    block_z: int | None = None,
) -> TilePlan:
    """A tile plan for a (z, y, x) volume: in-plane as `plan_tiles`, z tiled by the 3-D net or, for a 2-D
    net, one slice per tile read with its context slices. A 3-D net's blocks hold as many tiles along z as
    in-plane (about BLOCK_TARGET_3D px a side by default)."""
    depth = int(shape[0])
    if net.dims == 2:
        plan = plan_tiles(net.plane, int(shape[1]), int(shape[2]), stride=stride, block=block)
        context = AxisTiling(SliceContext(net.context), length=depth, stride=1, block=1)
        return replace(plan, slices=context if net.context else None)
    z = net.axis(0)
    if block is None:
        needed = -(-max(shape[1:]) // net.plane.alignment) * net.plane.alignment
        cut = min(stride, needed)
        block = cut * max(1, -(-BLOCK_TARGET_3D // cut))
    plan = plan_tiles(net.plane, int(shape[1]), int(shape[2]), stride=stride, block=block)
    stride_z = min(stride_z, -(-depth // z.alignment) * z.alignment)
    if stride_z <= 0 or stride_z % z.alignment:
        raise ValueError(f"z tile stride {stride_z} must be a positive multiple of {z.alignment}")
    if block_z is None:
        block_z = stride_z * (plan.block // plan.stride)
    if block_z % stride_z:
        raise ValueError(f"z block size {block_z} must be a multiple of the z tile stride {stride_z}")
    return replace(plan, slices=AxisTiling(z, length=depth, stride=stride_z, block=block_z))


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


def group_range(shards: int, group: int, groups: int) -> range:
    """The shard numbers of block group `group` of `groups`: contiguous, sizes differing by one at most."""
    if groups < 1 or not 0 <= group < groups:
        raise ValueError(f"block group {group} of {groups} is out of range: use 0 <= group < groups")
    return range(group * shards // groups, (group + 1) * shards // groups)


def auto_groups(shards: int, output_bytes: int, *, bytes_per_group: int) -> int:
    """How many block groups (jobs) split an output of `output_bytes`: one per `bytes_per_group`, at least
    one, at most one per shard."""
    return max(1, min(shards, -(-output_bytes // max(1, bytes_per_group))))
