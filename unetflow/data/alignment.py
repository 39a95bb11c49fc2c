"""The sub-pixel offset of a volume's labels from the boundaries they trace in its raw image, and the move
that puts the raw image onto the labels.

Annotation tools draw labels a fraction of a pixel off the structures they trace: in the ISBI 2012 release
the membranes are labelled about 0.6 px above and 0.2 px left of where the raw image shows them. A net
trained with flips and rotations cannot learn such an offset (each flip turns it the other way), so it learns
the boundaries where the raw shows them and misses the labels by the offset. With `train.label_offset: auto`
the offset is measured on the training slices, and the raw image is moved onto the labels in training and
in prediction alike (the checkpoint records it); the net never sees the offset.

The measure needs no net: the mean raw value under the labels' boundary class (label 0, membranes), the
labels moved by whole pixels along one axis, is most extreme (darkest for dark membranes) where the labels
lie on the raw image's boundaries; a parabola through that move and its neighbours places it to a fraction
of a pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

log = logging.getLogger(__name__)

SEARCH = 2
"""Whole-pixel moves tried along each axis: -SEARCH..SEARCH; a measured offset lies within SEARCH - 0.5."""
HALO = SEARCH
"""Pixels beyond a region that moving it by a measured offset reads (linear interpolation)."""
NO_OFFSET = (0.0, 0.0)

Pair = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""A stack's (raw, labels, unannotated): (z, y, x) raw, 0/1 labels, and the mask of unannotated pixels."""


def parabola_vertex(minus: float, centre: float, plus: float) -> float:
    """Where a parabola through the values at -1, 0 and +1 has its minimum (NaN without one)."""
    curvature = minus - 2 * centre + plus
    return 0.5 * (minus - plus) / curvature if curvature > 0 else float("nan")


def boundary_profile(
    raw: np.ndarray, labels: np.ndarray, unannotated: np.ndarray | None, axis: int
) -> np.ndarray:
    """Sums and counts (2, 2 * SEARCH + 1) of the raw values under the boundary-class labels moved by
    -SEARCH..SEARCH px along `axis` (1: y, 2: x of a (z, y, x) stack), over every slice's centre."""
    boundary = labels == 0
    if unannotated is not None:
        boundary &= ~unannotated
    core = (slice(None), slice(SEARCH, -SEARCH), slice(SEARCH, -SEARCH))
    values = raw[core]
    out = np.zeros((2, 2 * SEARCH + 1))
    for index, move in enumerate(range(-SEARCH, SEARCH + 1)):
        under = np.roll(boundary, move, axis=axis)[core]
        out[:, index] = values[under].sum(dtype=np.float64), under.sum()
    return out


def boundary_contrast(raw: np.ndarray, labels: np.ndarray, unannotated: np.ndarray | None) -> np.ndarray:
    """Sums and counts (2, 2) of the raw values under the boundary class and under the other class."""
    annotated = np.ones(labels.shape, bool) if unannotated is None else ~unannotated
    return np.array(
        [
            [raw[(labels == k) & annotated].sum(dtype=np.float64), ((labels == k) & annotated).sum()]
            for k in (0, 1)
        ]
    ).T


def estimate_label_offset(pairs: Iterable[Pair]) -> tuple[float, float]:
    """(dy, dx) px by which to move the raw image onto the labels, measured on the given stacks together.

    Axes without a clear extremum within the search (no boundaries, or no contrast) measure 0 and say so.
    """
    profiles = np.zeros((2, 2, 2 * SEARCH + 1))
    contrast = np.zeros((2, 2))
    for raw, labels, unannotated in pairs:
        for axis in (0, 1):
            profiles[axis] += boundary_profile(raw, labels, unannotated, axis + 1)
        contrast += boundary_contrast(raw, labels, unannotated)
    if np.any(contrast[1] == 0) or np.any(profiles[:, 1] == 0):
        log.warning("label offset: the training slices hold no boundary or no cell pixels; not measured")
        return NO_OFFSET
    means = contrast[0] / contrast[1]
    darker = 1.0 if means[0] < means[1] else -1.0  # dark boundaries (EM membranes) or bright ones
    offset = []
    for axis, name in ((0, "y"), (1, "x")):
        profile = darker * profiles[axis, 0] / profiles[axis, 1]
        best = int(np.argmin(profile))
        vertex = parabola_vertex(*profile[best - 1 : best + 2]) if 0 < best < 2 * SEARCH else float("nan")
        if np.isnan(vertex):
            log.warning(
                "label offset along %s: no clear alignment within %d px; not moved along %s",
                name,
                SEARCH,
                name,
            )
            offset.append(0.0)
            continue
        offset.append(-float(best - SEARCH + vertex))  # labels align when moved by +m: they lie at -m
    return offset[0], offset[1]


def move(image: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """`image` (..., y, x) moved by `offset` (dy, dx) px: float32, linear interpolation, mirrored ends.

    A pixel of the result reads the image within `HALO` px of it, so a region read with that much more
    context on every side moves seamlessly: its centre equals the same part of the whole image moved.
    """
    shift = (0.0,) * (image.ndim - 2) + tuple(float(value) for value in offset)
    return ndi.shift(np.asarray(image, dtype=np.float32), shift, order=1, mode="mirror")


def recorded_offset(state: dict[str, Any]) -> tuple[float, float]:
    """The (dy, dx) px a checkpoint's prediction moves the raw image by ((0, 0) where it records none)."""
    dy, dx = state.get("label_offset") or NO_OFFSET
    return float(dy), float(dx)


def moves(offset: tuple[float, float]) -> bool:
    """Whether `offset` moves anything."""
    return any(float(value) != 0.0 for value in offset)
