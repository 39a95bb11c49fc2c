"""The plan of one prediction: tile stride, blocks (chunks), shards and block groups, fixed when it starts.

A plan is chosen once (`make_plan`), stored in the prediction's attributes and read back by every job
(`read_plan`), so every block group, a resumed run and the finalisation see the same layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.data import zarrmeta
from unetflow.errors import InputError
from unetflow.geometry import (
    SHARD_TARGET_BYTES,
    Layout,
    NetGeometry,
    ShardGrid,
    TilePlan,
    auto_groups,
    group_range,
    plan_volume_tiles,
    shard_shape,
)

PROBABILITY_DTYPES = ("float32", "float16")
NGFF_VERSIONS = ("0.5", "0.4")
PLAN_KEY = "plan"
"""Key of the plan in the prediction's "unetflow" attributes."""


@dataclass(frozen=True)
class PredictionPlan:
    """Everything that fixes a prediction's layout (stored in its attributes, the same for every job).

    A 2-D net's blocks are one slice deep (`stride_z` and `block_z` 1; `context` slices read on each side);
    a 3-D net's (`dims` 3, its per-level `kernels` and `pools`) are `block_z` slices deep, tiled by
    `stride_z`. A plan stored before 3-D nets existed reads as a 2-D net's.
    """

    shape: tuple[int, int, int]
    depth: int
    stride: int
    block: int
    shard: tuple[int, int, int]
    groups: int
    ngff: str
    dtype: str
    shard_bytes: int = SHARD_TARGET_BYTES
    dims: int = 2
    context: int = 0
    kernels: Layout | None = None
    pools: Layout | None = None
    stride_z: int = 1
    block_z: int = 1

    @property
    def net(self) -> NetGeometry:
        """The geometry of the net this prediction was planned for."""
        return NetGeometry(self.depth, self.dims, self.context, self.kernels, self.pools)

    @property
    def tiles(self) -> TilePlan:
        """How the volume is cut into overlap tiles and blocks."""
        return plan_volume_tiles(
            self.net,
            self.shape,
            stride=self.stride,
            stride_z=self.stride_z,
            block=self.block,
            block_z=self.block_z,
        )

    @property
    def chunk(self) -> tuple[int, int, int]:
        """The output chunk: one block (one slice deep for a 2-D net), cropped to the volume."""
        return (
            min(self.block_z, self.shape[0]),
            min(self.block, self.shape[1]),
            min(self.block, self.shape[2]),
        )

    @property
    def grid(self) -> ShardGrid:
        """The chunk and shard grid of the output."""
        return ShardGrid(self.shape, self.chunk, self.shard)

    def level_grid(self, level: int) -> ShardGrid:
        """The grid of pyramid level `level` (2**level coarser in y and x): the same chunks, clipped to the
        level, and shards chosen for the level's size as for level 0 (so every level has files of about
        `shard_bytes`, and the file count per GB stays that of level 0)."""
        if level == 0:
            return self.grid
        nz, ny, nx = self.shape
        shape = (nz, max(1, -(-ny // 2**level)), max(1, -(-nx // 2**level)))
        chunk = tuple(min(c, n) for c, n in zip(self.chunk, shape, strict=True))
        if not self.sharded:
            return ShardGrid(shape, chunk, chunk)  # type: ignore[arg-type]
        itemsize = np.dtype(self.dtype).itemsize
        shard = shard_shape(shape, chunk, itemsize=itemsize, target_bytes=self.shard_bytes)  # type: ignore[arg-type]
        return ShardGrid(shape, chunk, shard)  # type: ignore[arg-type]

    @property
    def sharded(self) -> bool:
        """Whether shards hold several chunks (OME-NGFF 0.5 on Zarr v3)."""
        return self.ngff == "0.5"

    def group_shards(self, group: int) -> range:
        """The shard numbers that block group `group` writes."""
        try:
            return group_range(len(self.grid), group, self.groups)
        except ValueError as error:
            raise InputError(f"{error}; this prediction was planned with {self.groups} groups") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the attributes, as JSON reads it back (lists, not tuples: it compares equal)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PredictionPlan:
        """The plan stored by `to_dict`."""
        net = NetGeometry.from_dict(values)
        return cls(
            dims=net.dims,
            context=net.context,
            kernels=net.kernels,
            pools=net.pools,
            stride_z=int(values.get("stride_z", 1)),
            block_z=int(values.get("block_z", 1)),
            shape=tuple(values["shape"]),  # type: ignore[arg-type]
            depth=int(values["depth"]),
            stride=int(values["stride"]),
            block=int(values["block"]),
            shard=tuple(values["shard"]),  # type: ignore[arg-type]
            groups=int(values["groups"]),
            ngff=str(values["ngff"]),
            dtype=str(values["dtype"]),
            shard_bytes=int(values.get("shard_bytes", SHARD_TARGET_BYTES)),
        )


def make_plan(
    shape: tuple[int, int, int],
    *,
    depth: int,
    stride: int,
    groups: int,
    ngff: str = "0.5",
    dtype: str = "float32",
    block: int | None = None,
    shard_bytes: int = SHARD_TARGET_BYTES,
    net: NetGeometry | None = None,
    stride_z: int = 1,
) -> PredictionPlan:
    """The plan of a volume of `shape`: blocks of about BLOCK_TARGET px (3-D nets: BLOCK_TARGET_3D, as deep as
    wide in tiles), shards of about `shard_bytes` (OME-NGFF 0.5) with at least `groups` shards where the
    volume allows, so every group writes its own. `net` is the net's geometry (default: the 2-D net of
    `depth`), `stride_z` a 3-D net's tile stride along z."""
    if dtype not in PROBABILITY_DTYPES:
        raise InputError(f"predict.dtype {dtype!r} is not one of {PROBABILITY_DTYPES}")
    if ngff not in NGFF_VERSIONS:
        raise InputError(f"predict.ngff {ngff!r} is not one of {NGFF_VERSIONS}")
    if groups < 1:
        raise InputError(f"predict.block_groups must be >= 1, got {groups}")
    net = net or NetGeometry(depth)
    tiles = plan_volume_tiles(net, shape, stride=stride, stride_z=stride_z, block=block)
    along_z = tiles.slices if net.dims == 3 else None
    chunk = (
        1 if along_z is None else min(along_z.block, shape[0]),
        min(tiles.block, shape[1]),
        min(tiles.block, shape[2]),
    )
    itemsize = np.dtype(dtype).itemsize
    shard = (
        shard_shape(shape, chunk, itemsize=itemsize, target_bytes=shard_bytes, min_shards=groups)
        if ngff == "0.5"
        else chunk
    )
    return PredictionPlan(
        shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        depth=net.depth,
        stride=tiles.stride,
        block=tiles.block,
        shard=shard,
        groups=groups,
        ngff=ngff,
        dtype=dtype,
        shard_bytes=shard_bytes,
        dims=net.dims,
        context=net.context,
        kernels=net.kernels,
        pools=net.pools,
        stride_z=1 if along_z is None else along_z.stride,
        block_z=1 if along_z is None else along_z.block,
    )


def check_depth(net: NetGeometry, slices: int, *, name: str) -> None:
    """A 3-D net on a volume thinner than its smallest input along z is an InputError naming the volume."""
    if net.dims == 3 and slices < net.min_slices:
        raise InputError(
            f"{name} has {slices} slice(s), fewer than the {net.min_slices} that this 3-D net's smallest "
            "input reads along z: predict or train it with a 2-D net (model.dims: 2, with "
            "model.context_slices for neighbouring slices), a shallower 3-D net, or on a thicker volume"
        )


def groups_for(shape: tuple[int, ...], *, block_groups: int | str, group_gb: float, dtype: str) -> int:
    """Block groups (jobs) of a volume: the number given, or with "auto" one per `group_gb` GB of output
    (probability + segmentation), at most one per slice."""
    if block_groups != "auto":
        return int(block_groups)
    output_bytes = math.prod(shape) * (np.dtype(dtype).itemsize + 1)
    return auto_groups(int(shape[0]), output_bytes, bytes_per_group=int(group_gb * 2**30))


def read_plan(target: str | Path) -> PredictionPlan:
    """The plan a prediction was created with; an InputError naming it for anything else."""
    meta = dict((zarrmeta.group_attrs(target) or {}).get("unetflow") or {})
    if PLAN_KEY not in meta:
        raise InputError(
            f"{target} is not a unetflow prediction (no plan in its attributes); delete it and run again"
        )
    return PredictionPlan.from_dict(meta[PLAN_KEY])


def planned_groups(target: str | Path) -> int | None:
    """The number of block groups of an existing prediction (None where there is none yet)."""
    try:
        return read_plan(target).groups
    except InputError:
        return None
