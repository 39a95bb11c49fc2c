"""Streaming a volume through memory block by block: chunk-aligned blocks (`iter_blocks`), the running mean
and standard deviation over them (`RunningStats`), and the z-score with volume-wide statistics that every
tile of a volume gets alike (`normalize`). unetflow.data.omezarr re-exports these."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

BLOCK_ELEMENTS = 8 * 1024 * 1024
"""Elements per block when streaming a volume through memory (64 MiB as float64)."""


def iter_blocks(
    shape: tuple[int, ...], chunks: tuple[int, ...], *, max_elements: int = BLOCK_ELEMENTS
) -> Iterator[tuple[slice, ...]]:
    """Chunk-aligned (z, y, full x) blocks covering a volume, each at most about `max_elements` elements."""
    nz, ny, nx = shape
    cz, cy, _ = chunks
    if cz * ny * nx <= max_elements:
        y_step, z_step = ny, cz * max(1, max_elements // (cz * ny * nx))
    else:
        y_step, z_step = min(ny, cy * max(1, max_elements // (cz * cy * nx))), cz
    for z0 in range(0, nz, z_step):
        for y0 in range(0, ny, y_step):
            yield (slice(z0, min(z0 + z_step, nz)), slice(y0, min(y0 + y_step, ny)), slice(0, nx))


class RunningStats:
    """Mean and standard deviation over blocks, combined in float64 (Chan et al.), non-finite skipped."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.nonfinite = 0

    def add(self, block: np.ndarray) -> None:
        """Fold one block of values into the running statistics."""
        values = np.asarray(block)
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            n_bad = int(values.size - np.count_nonzero(finite))
            if n_bad:
                self.nonfinite += n_bad
                values = values[finite]
        values = values.astype(np.float64, copy=False).ravel()
        n = int(values.size)
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(np.square(values - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values seen so far."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


def normalize(block: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(block - mean) / std as float32, with the volume-wide statistics (identical for every tile)."""
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"normalization std must be a positive number, got {std}")
    out = np.asarray(block, dtype=np.float32) - np.float32(mean)
    out /= np.float32(std)
    return out
