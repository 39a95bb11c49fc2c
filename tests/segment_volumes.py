"""Small 3-D test volumes for the segment step: a Voronoi tessellation of cells with membranes and noise.

The test volumes of issue 27 until the embedded generator has a 3-D mode: cells are the Voronoi regions
of random points in physical space (so a voxel size of (z, y, x) makes them span fewer slices than
pixels), the truth is their ids (dense, no membrane voxels, as CREMI's), and the boundary probability is
1 on the voxels where the id changes (in-plane only for serial sections, whose z is more than twice
coarser than y), blurred in-plane, with noise, clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def voronoi_volume(
    shape: tuple[int, int, int],
    *,
    cells: int,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(boundary probability float32 in [0, 1], truth ids uint64 from 1) of a Voronoi tessellation."""
    rng = np.random.default_rng(seed)
    extent = np.array(shape, dtype=np.float64) * np.array(voxel_size)
    points = rng.uniform(0, 1, size=(cells, 3)) * extent
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).reshape(-1, 3)
    _, nearest = cKDTree(points).query((grid + 0.5) * np.array(voxel_size))
    truth = (nearest.reshape(shape) + 1).astype(np.uint64)
    edge = np.zeros(shape, dtype=bool)
    anisotropic = voxel_size[0] > 2 * voxel_size[1]
    for axis in range(3):
        if shape[axis] < 2 or (axis == 0 and anisotropic):
            continue
        step = np.diff(truth, axis=axis) != 0
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        edge[tuple(lower)] |= step
        edge[tuple(upper)] |= step
    boundary = ndimage.gaussian_filter(edge.astype(np.float32), (0, 1.0, 1.0)) * 2.5
    boundary += rng.normal(0, noise, size=shape).astype(np.float32)
    return np.clip(boundary, 0, 1).astype(np.float32), truth
