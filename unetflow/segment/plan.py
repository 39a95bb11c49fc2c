"""The plan of one segmentation: its blocks, their halo, the groups of blocks that jobs take, the options.

Fixed when the segmentation starts and stored in the output's attributes, so every job, a resumed run and
the finalisation see the same blocks; the work files of the steps lie beside the output
(`<out>.work/`), never inside the label image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unetflow.data import zarrmeta
from unetflow.errors import InputError
from unetflow.geometry import group_range

PLAN_KEY = "segment"
"""Key of the plan in the output's "unetflow" attributes."""
ANISOTROPY = 2.0
"""Mode auto: fragments per slice ("2d") where z is more than this many times coarser than y and x."""


@dataclass(frozen=True)
class SegmentPlan:
    """The blocks of a segmentation and everything that fixes its result."""

    shape: tuple[int, int, int]
    block: tuple[int, int, int]
    halo: tuple[int, int, int]
    groups: int
    mode: str
    boundary: bool
    method: str
    threshold: float
    seed_threshold: float
    voxel_size: tuple[float, float, float]
    max_edges: int = 10_000_000

    @property
    def counts(self) -> tuple[int, int, int]:
        """Blocks along z, y and x."""
        z, y, x = (-(-n // b) for n, b in zip(self.shape, self.block, strict=True))
        return z, y, x

    @property
    def blocks(self) -> int:
        """How many blocks the volume has."""
        return math.prod(self.counts)

    def index(self, number: int) -> tuple[int, int, int]:
        """Grid coordinates (z, y, x) of block `number` (z-major)."""
        _, ny, nx = self.counts
        return number // (ny * nx), (number // nx) % ny, number % nx

    def number(self, index: tuple[int, int, int]) -> int:
        """The z-major number of the block at grid coordinates `index`."""
        _, ny, nx = self.counts
        return (index[0] * ny + index[1]) * nx + index[2]

    def box(self, number: int) -> tuple[slice, slice, slice]:
        """The voxels of block `number`, cropped at the volume's end."""
        z, y, x = (
            slice(i * b, min((i + 1) * b, n))
            for i, b, n in zip(self.index(number), self.block, self.shape, strict=True)
        )
        return z, y, x

    def haloed(self, number: int) -> tuple[tuple[slice, slice, slice], tuple[slice, slice, slice]]:
        """The block grown by the halo (cropped at the volume), and where the block lies inside it."""
        outer, inner = [], []
        for piece, halo, n in zip(self.box(number), self.effective_halo, self.shape, strict=True):
            start, stop = max(0, piece.start - halo), min(n, piece.stop + halo)
            outer.append(slice(start, stop))
            inner.append(slice(piece.start - start, piece.stop - start))
        return tuple(outer), tuple(inner)  # type: ignore[return-value]

    @property
    def effective_halo(self) -> tuple[int, int, int]:
        """The halo the fragments read: none in z where every slice is flooded on its own (mode 2d)."""
        return (0 if self.mode == "2d" else self.halo[0], self.halo[1], self.halo[2])

    def group_blocks(self, group: int) -> range:
        """The block numbers of block group `group`."""
        try:
            return group_range(self.blocks, group, self.groups)
        except ValueError as error:
            raise InputError(f"{error}; this segmentation was planned with {self.groups} groups") from None

    def blocks_in(self, region: tuple[slice, slice, slice]) -> list[int]:
        """Numbers of the blocks that overlap `region`."""
        spans = [
            range(r.start // b, (min(r.stop, n) - 1) // b + 1)
            for r, b, n in zip(region, self.block, self.shape, strict=True)
        ]
        return [self.number((z, y, x)) for z in spans[0] for y in spans[1] for x in spans[2]]

    def to_dict(self) -> dict[str, Any]:
        """Plain form for the attributes."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SegmentPlan:
        """The plan stored by `to_dict`."""
        fields = dict(values)
        for key in ("shape", "block", "halo", "voxel_size"):
            fields[key] = tuple(fields[key])
        return cls(**fields)


def choose_mode(mode: str, voxel_size: tuple[float, float, float]) -> str:
    """ "2d" or "3d": as given, or for "auto" from the voxel size (z more than twice coarser: 2d)."""
    if mode != "auto":
        return mode
    z, y, x = voxel_size
    return "2d" if z > ANISOTROPY * min(y, x) else "3d"


def make_plan(
    shape: tuple[int, int, int],
    *,
    block: tuple[int, int, int],
    halo: tuple[int, int, int],
    groups: int,
    mode: str,
    boundary: bool,
    method: str,
    threshold: float,
    seed_threshold: float,
    voxel_size: tuple[float, float, float],
    source: str,
    max_edges: int = 10_000_000,
) -> SegmentPlan:
    """The plan of a volume of `shape`; a block smaller than its halo is an InputError naming both."""
    chosen = choose_mode(mode, voxel_size)
    axes = (1, 2) if chosen == "2d" else (0, 1, 2)
    small = [("z", "y", "x")[a] for a in axes if min(block[a], shape[a]) < halo[a] and block[a] < shape[a]]
    if small:
        raise InputError(
            f"segment: block shape {list(block)} is smaller than the halo {list(halo)} along "
            f"{', '.join(small)} ({source}); each block reads its halo from its neighbours only, so make "
            "the blocks at least as large as the halo (--block-shape, segment.block_shape) or the halo "
            "smaller (segment.halo). Nothing was written"
        )
    if groups < 1:
        raise InputError(f"segment.block_groups must be >= 1, got {groups}")
    counts = math.prod(-(-n // b) for n, b in zip(shape, block, strict=True))
    return SegmentPlan(
        shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        block=tuple(int(b) for b in block),  # type: ignore[arg-type]
        halo=tuple(int(h) for h in halo),  # type: ignore[arg-type]
        groups=min(groups, counts),
        mode=chosen,
        boundary=bool(boundary),
        method=method,
        threshold=float(threshold),
        seed_threshold=float(seed_threshold),
        voxel_size=tuple(float(v) for v in voxel_size),  # type: ignore[arg-type]
        max_edges=int(max_edges),
    )


def read_plan(target: str | Path) -> SegmentPlan:
    """The plan a segmentation was created with; an InputError naming it for anything else."""
    meta = dict((zarrmeta.group_attrs(target) or {}).get("unetflow") or {})
    if PLAN_KEY not in meta:
        raise InputError(
            f"{target} is not a unetflow segmentation (no plan in its attributes); delete it and run again"
        )
    return SegmentPlan.from_dict(meta[PLAN_KEY])


def planned_segment_groups(target: str | Path) -> int | None:
    """The block groups of an existing segmentation (None where there is none yet)."""
    try:
        return read_plan(target).groups
    except InputError:
        return None
