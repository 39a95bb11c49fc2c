"""Jain et al.'s warping error (2010): the truth warped towards the prediction by simple-point flips, in the
order Fiji used for the ISBI 2012 challenge; what still differs are topological errors."""

from __future__ import annotations

import heapq
from functools import cache

import numpy as np
from scipy import ndimage

from unetflow.evaluate.inputs import (
    as_arrays,
    binarize,
    check_connectivity,
    check_threshold,
    prediction_kind,
    structure,
    truth_kind,
)
from unetflow.model.loss import EVEN_ODDS

#: The 8-neighbourhood in the bit order of a simple-point table index (bit k: neighbour k is foreground).
NEIGHBOURS_8: tuple[tuple[int, int], ...] = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
)


@cache
def simple_point_table(connectivity: int = 1) -> np.ndarray:
    """256 booleans: is the centre of this 8-neighbourhood a simple point (flipping it keeps topology)?

    Index = sum of 2**k over the foreground neighbours k of ``NEIGHBOURS_8``. Foreground connectivity is
    4 for ``connectivity=1`` (background 8) and 8 for 2 (background 4). Simple iff the foreground part of
    the neighbourhood has exactly one component touching the centre and so does the background part
    (Bertrand & Malandain 1994, Pattern Recogn. Lett. 15:169, the 2-D topological numbers).
    """
    check_connectivity(connectivity)
    foreground = structure(connectivity)
    background = structure(3 - connectivity)
    table = np.zeros(256, dtype=bool)
    for code in range(256):
        patch = np.zeros((3, 3), dtype=bool)
        for bit, (dy, dx) in enumerate(NEIGHBOURS_8):
            patch[1 + dy, 1 + dx] = bool(code >> bit & 1)
        table[code] = _touching(patch, foreground) == 1 and _touching(~patch, background) == 1
    table.setflags(write=False)
    return table


def _touching(part: np.ndarray, structure: np.ndarray) -> int:
    """Components of `part` (centre excluded) under `structure` that contain a neighbour of the centre."""
    part = part.copy()
    part[1, 1] = False
    labelled, _ = ndimage.label(part, structure=structure)
    adjacent = structure.copy()
    adjacent[1, 1] = False
    return len(set(labelled[adjacent].tolist()) - {0})


def warp(
    truth_mask: np.ndarray, target_mask: np.ndarray, confidence: np.ndarray | None, connectivity: int
) -> np.ndarray:
    """`truth_mask` warped towards `target_mask` by simple-point flips, in Fiji's order.

    Fiji (``WarpingError.simplePointWarp2d``) makes passes over all disagreeing pixels, sorted by
    confidence (descending; ties column by column, the order it lists pixels in), flipping each one that is
    simple at its turn, until a pass flips nothing. A pixel that was not simple stays so until a neighbour
    flips, so each pass here visits only such pixels ("dirty" ones), in the same order: the flips, and so
    the result, are Fiji's, at a cost proportional to the flips rather than passes times disagreements.
    """
    height, width = truth_mask.shape
    stride = width + 2
    current_np = np.zeros((height + 2, stride), dtype=np.uint8)
    current_np[1:-1, 1:-1] = truth_mask
    target_np = np.zeros_like(current_np)
    target_np[1:-1, 1:-1] = target_mask
    wrong = np.flatnonzero(current_np.ravel() != target_np.ravel())
    if wrong.size == 0:
        return truth_mask.astype(bool)
    rows, columns = np.divmod(wrong, stride)
    if confidence is None:
        ranked = wrong[np.lexsort((rows, columns))]
    else:
        keys = np.abs(confidence)[rows - 1, columns - 1]
        ranked = wrong[np.lexsort((rows, columns, -keys))]
    pixel_of = ranked.tolist()  # rank -> flat index in the padded image
    rank_of = dict(zip(pixel_of, range(len(pixel_of)), strict=True))

    current = bytearray(current_np.tobytes())
    target = target_np.tobytes()
    table = bytes(simple_point_table(connectivity).astype(np.uint8))
    offsets = [dy * stride + dx for dy, dx in NEIGHBOURS_8]
    o0, o1, o2, o3, o4, o5, o6, o7 = offsets
    waiting = bytearray(len(current))  # 1 while a pixel waits in this pass or the next
    for i in pixel_of:
        waiting[i] = 1
    pop, push = heapq.heappop, heapq.heappush
    visit = list(range(len(pixel_of)))  # ranks to visit in this pass (a sorted list is a heap)
    while visit:
        later: list[int] = []  # dirty pixels already passed in this pass: visited in the next one
        flipped = False
        while visit:
            rank = pop(visit)
            i = pixel_of[rank]
            waiting[i] = 0
            c = current
            code = (
                c[i + o0]
                | c[i + o1] << 1
                | c[i + o2] << 2
                | c[i + o3] << 3
                | c[i + o4] << 4
                | c[i + o5] << 5
                | c[i + o6] << 6
                | c[i + o7] << 7
            )
            if not table[code]:
                continue
            c[i] ^= 1
            flipped = True
            for offset in offsets:
                j = i + offset
                if not waiting[j] and c[j] != target[j]:
                    waiting[j] = 1
                    other = rank_of[j]
                    if other > rank:
                        push(visit, other)
                    else:
                        later.append(other)
        if not flipped:
            break
        later.sort()
        visit = later
    warped = np.frombuffer(bytes(current), dtype=np.uint8).reshape(height + 2, stride)
    return warped[1:-1, 1:-1].astype(bool)


def warping_error(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = EVEN_ODDS,
    connectivity: int = 1,
    prediction_instances: bool = False,
    truth_instances: bool = False,
) -> float:
    """Jain et al.'s warping error of one 2-D slice: topological errors per pixel (module docstring)."""
    warped, target = _warp_slice(
        prediction, truth, threshold, connectivity, prediction_instances, truth_instances
    )
    return np.count_nonzero(warped != target) / warped.size


def _warp_slice(
    prediction: np.ndarray,
    truth: np.ndarray,
    threshold: float,
    connectivity: int,
    prediction_instances: bool,
    truth_instances: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The warped truth and the thresholded prediction of one checked 2-D slice."""
    prediction, truth = as_arrays(prediction, truth)
    if prediction.ndim != 2:
        raise ValueError(f"warping takes one 2-D slice, got shape {prediction.shape}; loop over the slices")
    check_connectivity(connectivity)
    kind = prediction_kind(prediction, prediction_instances=prediction_instances)
    truth_kind(truth, truth_instances=truth_instances)
    target, confidence = binarize(prediction, kind, check_threshold(threshold))
    return warp(truth > 0, target, confidence, connectivity), target
