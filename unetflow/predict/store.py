"""Writing a shard from its pieces (blocks, or coarsened chunks of the level below): whole or piece by piece.

Zarr rewrites a shard file on every partial write, so a shard with data in most of it is assembled in
memory and written once; a shard with data in a small part of it (a sparse volume) has its pieces written
one by one, each write rewriting a file that holds only what has been written so far. Either way the
rest of the shard stays at the fill value and empty chunks are not stored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# zstd level of the outputs, written in the hot loop: level 1 costs ~2 ms per 512^2 chunk against ~11 ms at
# the default 5, for files ~4% larger (measured by benchmarks/predict.py).
OUTPUT_COMPRESSION = 1
Pieces = dict[tuple[int, int, int], np.ndarray]
"""Values by their start voxel (z, y, x) in the array."""
WHOLE_FRACTION = 0.25
"""Above this share of the shard's voxels holding data, the shard is assembled and written once."""


def write_pieces(array: Any, region: tuple[slice, slice, slice], pieces: Pieces) -> None:
    """Write `pieces` (each inside `region`, a shard of `array`) so that the shard file is written once when
    they fill much of it, else once per piece."""
    if not pieces:
        return
    shape = tuple(r.stop - r.start for r in region)
    filled = sum(values.size for values in pieces.values())
    if filled >= WHOLE_FRACTION * math.prod(shape):
        buffer = np.zeros(shape, dtype=array.dtype)
        for (z, y, x), values in pieces.items():
            z0, y0, x0 = z - region[0].start, y - region[1].start, x - region[2].start
            buffer[z0 : z0 + values.shape[0], y0 : y0 + values.shape[1], x0 : x0 + values.shape[2]] = values
        array[region] = buffer
        return
    for (z, y, x), values in pieces.items():
        array[z : z + values.shape[0], y : y + values.shape[1], x : x + values.shape[2]] = values.astype(
            array.dtype, copy=False
        )
