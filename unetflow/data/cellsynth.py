"""A synthetic time-lapse in the Cell Tracking Challenge's layout, for offline tests and a quick run.

Light-microscopy-like cells that touch and move: each frame, every cell is the part of its Voronoi region
(of the cell centres) within its radius of its centre, so neighbours that come close share a border with
no background between them, as HeLa cells do. Centres drift between frames. The image is phase-contrast
like: a bright halo at each cell's outer edge, a brighter textured interior, a faint darker line where two
cells touch, blur and noise; 8-bit or 16-bit (an offset and a 12-bit range, as cameras give).
Tracking marks are a small disk at every cell's centre on every frame; gold masks cover every
`gold_every`-th frame and leave `untraced` cells of each gold frame out (partial annotations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class TimeLapse:
    """Frames (t, y, x), every cell's ids (t, y, x, uint16, all traced), tracking marks and gold frames."""

    frames: np.ndarray
    cells: np.ndarray
    tracks: np.ndarray
    gold: dict[int, np.ndarray]


def _cells_of(centres: np.ndarray, radii: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    points = np.zeros(shape, dtype=np.int32)
    for number, (y, x) in enumerate(np.round(centres).astype(int), start=1):
        points[min(max(y, 0), shape[0] - 1), min(max(x, 0), shape[1] - 1)] = number
    distance, nearest = ndimage.distance_transform_edt(points == 0, return_indices=True)
    owner = points[tuple(nearest)]
    return np.where(distance <= radii[owner - 1], owner, 0).astype(np.uint16)


def _image(cells: np.ndarray, rng: np.random.Generator, bits: int) -> np.ndarray:
    inside = cells > 0
    edge = inside & ~ndimage.binary_erosion(inside, iterations=2)
    between = np.zeros_like(inside)
    for axis in (0, 1):
        shifted = np.roll(cells, 1, axis=axis)
        between |= (cells != shifted) & (cells > 0) & (shifted > 0)
    texture = ndimage.gaussian_filter(rng.normal(size=cells.shape), 2.0)
    image = 0.35 + 0.2 * inside + 0.35 * edge - 0.12 * between + 0.05 * texture * inside
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(scale=0.03, size=cells.shape)
    image = np.clip(image, 0, 1)
    if bits == 8:
        return (image * 255).astype(np.uint8)
    return (200 + image * 4000).astype(np.uint16)


def synthesize_timelapse(
    *,
    frames: int = 8,
    shape: tuple[int, int] = (96, 128),
    cells: int = 10,
    seed: int = 0,
    bits: int = 8,
    gold_every: int = 2,
    untraced: int = 1,
) -> TimeLapse:
    """A deterministic time-lapse (module docstring) of `frames` frames of `shape` with `cells` cells."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    rng = np.random.default_rng(seed)
    height, width = shape
    size = np.sqrt(height * width / cells)
    centres = rng.uniform([size / 2, size / 2], [height - size / 2, width - size / 2], size=(cells, 2))
    radii = rng.uniform(0.55, 0.8, size=cells) * size
    velocity = rng.normal(scale=size / 12, size=(cells, 2))
    images, ids, tracks, gold = [], [], [], {}
    for number in range(frames):
        labels = _cells_of(centres, radii, shape)
        marks = np.zeros(shape, dtype=np.uint16)
        yy, xx = np.indices(shape)
        for cell, (y, x) in enumerate(centres, start=1):
            marks[((yy - y) ** 2 + (xx - x) ** 2 <= 9) & (labels == cell)] = cell
        images.append(_image(labels, rng, bits))
        ids.append(labels)
        tracks.append(marks)
        if number % gold_every == 0:
            present = np.unique(labels[labels > 0])
            left_out = rng.choice(present, size=min(untraced, max(present.size - 1, 0)), replace=False)
            gold[number] = np.where(np.isin(labels, left_out), 0, labels).astype(np.uint16)
        centres = np.clip(centres + velocity, [0, 0], [height - 1, width - 1])
    return TimeLapse(np.stack(images), np.stack(ids), np.stack(tracks), gold)
