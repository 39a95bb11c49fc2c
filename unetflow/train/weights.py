"""Pixel-wise loss weights of the U-Net paper (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

d1, d2 are the Euclidean distances from a background pixel to the nearest pixel of the nearest and of the
second-nearest cell; the border term applies to background pixels (label 0) only, as in the paper's
Fig. 3d, and is zero where a slice has fewer than two cells. w_c balances the class frequencies.

Sparse labels: pixels equal to `ignore` are unannotated. They weigh 0, count as neither class in w_c, and
are no cell: the distances d1, d2 run to annotated cells only, so a cell touching unlabelled space does not
make a border there.

`border_weight_map_reference` is the direct definition (one EDT per cell, memory and time growing with the
number of cells). `border_weight_map` computes the same map from one separable two-nearest-label distance
transform truncated at the distance where the border term drops below `BORDER_TOLERANCE`: cost a small
multiple of a single EDT of the slice and memory independent of the number of cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from unetflow.config.model import WeightsConfig
from unetflow.data.labels import split_ignore

_DEFAULT = WeightsConfig()

#: Absolute error allowed on the border term: where w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) is below this,
#: `border_weight_map` may treat it as zero. Keeps the map within 1e-4 of the direct definition.
BORDER_TOLERANCE = 1e-5


def class_counts(mask: np.ndarray, unannotated: np.ndarray | None = None) -> tuple[int, int]:
    """(background, foreground) pixel counts of a mask (non-zero: foreground); unannotated pixels left out."""
    array = np.asarray(mask)
    if unannotated is None:
        foreground = int(np.count_nonzero(array))
        return array.size - foreground, foreground
    annotated = ~np.asarray(unannotated, dtype=bool)
    foreground = int(np.count_nonzero(array.astype(bool) & annotated))
    return int(np.count_nonzero(annotated)) - foreground, foreground


def class_balance_from_counts(counts: tuple[int, int]) -> tuple[float, float]:
    """Class weights (background, foreground) from the classes' pixel counts (see class_balance_weights)."""
    total = sum(counts)
    if total == 0:
        raise ValueError("class_balance_weights needs at least one annotated pixel; got no pixels")
    present = sum(1 for count in counts if count > 0)
    background_weight, foreground_weight = (
        total / (present * count) if count > 0 else 1.0 for count in counts
    )
    return background_weight, foreground_weight


def class_balance_weights(masks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Class weights (background, foreground) that balance the pixel counts over all `masks`.

    Foreground is every non-zero pixel (a cell interior, whether the masks are binary or instance labels).
    Convention: w_c(k) = N / (K * N_k), with N the number of pixels, N_k those of class k and K the number
    of classes present, so that w_c averaged over all pixels is 1 and each present class carries the same
    total weight. A class absent from every mask gets weight 1.0 (it weighs no pixel).
    Compute it once over the training set and pass it as `class_weights=` to every slice; with sparse
    labels sum `class_counts` (which leave the unannotated pixels out) and use `class_balance_from_counts`.
    """
    background, foreground = 0, 0
    for mask in masks:
        counts = class_counts(mask)
        background, foreground = background + counts[0], foreground + counts[1]
    return class_balance_from_counts((background, foreground))


def border_weight_map(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
) -> np.ndarray:
    """The weight map of eq. 2 for one 2-D slice, as float32 of the slice's shape (fast, exact to 1e-4).

    `labels`: instance labels (0 = background, > 0 = cell id) or a binary interior mask, whose cells are
    then its connected components (`connectivity` 1 = 4-neighbour, 2 = 8-neighbour). `binary=None`
    auto-detects: a bool array, or values within {0, 1} or {0, 255}, is a mask; pass `binary=False` for an
    instance image that happens to hold a single cell id 1 or 255. `class_weights=None` balances the classes
    of this slice (see `class_balance_weights`, which gives the same over a whole training set). Pixels
    equal to `ignore` are unannotated: weight 0, and neither a cell nor background (module docstring).
    """
    return _weight_map(labels, w0, sigma, class_weights, binary, connectivity, ignore, _border_term_truncated)


def border_weight_map_reference(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
) -> np.ndarray:
    """The same map by the direct definition (one full-slice EDT per cell): the ground truth for tests.

    Time and memory grow with the number of cells (about 285 MB for a 512 x 512 slice with 136 cells).
    """
    return _weight_map(labels, w0, sigma, class_weights, binary, connectivity, ignore, _border_term_direct)


def weight_map_volume(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
) -> np.ndarray:
    """`border_weight_map` of each slice of a (z, y, x) stack, as float32 (z, y, x).

    Binary or instance input is decided once for the whole stack (unannotated pixels, `ignore`, left
    out). With `class_weights=None` each slice is balanced on its own; pass `class_balance_weights(...)` of
    the training set for one global balance.
    """
    array = np.asarray(labels)
    if array.ndim != 3:
        raise ValueError(
            f"weight_map_volume needs a 3-D (z, y, x) label stack, got shape {array.shape}; "
            "use border_weight_map for a single 2-D slice"
        )
    if binary is None:
        binary = _looks_binary(split_ignore(array, ignore)[0])
    out = np.empty(array.shape, dtype=np.float32)
    for z in range(array.shape[0]):
        out[z] = border_weight_map(
            array[z], w0, sigma, class_weights, binary=binary, connectivity=connectivity, ignore=ignore
        )
    return out


def border_weight_map_3d(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """The weight map of eq. 2 in 3-D for a (z, y, x) volume, as float32 (fast, exact to 1e-4).

    d1, d2 are 3-D distances to the nearest and second-nearest cell with voxels `sampling` (z, y, x) apart,
    in units of the finest axis (`sigma` stays in its pixels): pass the voxel size over its smallest value,
    e.g. (12.5, 1, 1) for 50 nm sections of 4 nm pixels. Binary labels' cells are their 3-D connected
    components (`connectivity` 1 = 6-, 2 = 18-neighbour); the rest as `border_weight_map`.
    """
    term = partial(_border_term_3d, sampling=_checked_sampling(sampling))
    return _weight_map(labels, w0, sigma, class_weights, binary, connectivity, ignore, term, ndim=3)


def border_weight_map_3d_reference(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """The same 3-D map by the direct definition (one full-volume EDT per cell): ground truth for tests."""
    term = partial(_border_term_direct, sampling=_checked_sampling(sampling))
    return _weight_map(labels, w0, sigma, class_weights, binary, connectivity, ignore, term, ndim=3)


BLOCK_3D = 32
"""Slices per block of `weight_map_volume_3d` (plus the halo that the border term reaches on each side)."""


def weight_map_volume_3d(
    labels: np.ndarray,
    w0: float = _DEFAULT.w0,
    sigma: float = _DEFAULT.sigma,
    class_weights: tuple[float, float] | None = None,
    *,
    binary: bool | None = None,
    connectivity: int = _DEFAULT.connectivity,
    ignore: int | None = None,
    sampling: Sequence[float] = (1.0, 1.0, 1.0),
    block: int = BLOCK_3D,
) -> np.ndarray:
    """`border_weight_map_3d` of a whole (z, y, x) volume, in blocks of `block` slices with the halo the
    border term reaches (the same map; memory of a block and its halo, not of the volume's distances).

    Cells are found once for the whole volume (a binary mask's 3-D components), so a block sees the ids its
    halo holds; `class_weights=None` balances the classes of the whole volume.
    """
    sampling = _checked_sampling(sampling)
    _check_parameters(w0, sigma)
    annotated, unannotated = split_ignore(np.asarray(labels), ignore)
    cells = _cells(annotated, binary, connectivity, ndim=3).astype(np.int64)
    if class_weights is None:
        class_weights = class_balance_from_counts(class_counts(cells > 0, unannotated))
    marker = int(cells.max()) + 1  # no cell has this id: it marks the unannotated voxels for every block
    if unannotated is not None:
        cells[unannotated] = marker
    halo = math.ceil(_cutoff(w0, sigma) / sampling[0]) + 1
    out = np.empty(cells.shape, dtype=np.float32)
    for start in range(0, cells.shape[0], block):
        low, high = max(0, start - halo), min(cells.shape[0], start + block + halo)
        part = border_weight_map_3d(
            cells[low:high], w0, sigma, class_weights, binary=False, ignore=marker, sampling=sampling
        )
        out[start : start + block] = part[start - low : start - low + block]
    return out


def _checked_sampling(sampling: Sequence[float]) -> tuple[float, float, float]:
    """Three positive, finite voxel spacings (z, y, x)."""
    values = tuple(float(value) for value in sampling)
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"sampling must be three positive spacings (z, y, x), got {sampling!r}")
    return values  # type: ignore[return-value]


_BorderTerm = Callable[[np.ndarray, float, float], np.ndarray]


def _weight_map(
    labels: np.ndarray,
    w0: float,
    sigma: float,
    class_weights: tuple[float, float] | None,
    binary: bool | None,
    connectivity: int,
    ignore: int | None,
    border_term: _BorderTerm,
    *,
    ndim: int = 2,
) -> np.ndarray:
    """Shared body of the fast and the reference map, in 2-D or 3-D; only `border_term` differs."""
    annotated, unannotated = split_ignore(labels, ignore)
    cells = _cells(annotated, binary, connectivity, ndim=ndim)
    _check_parameters(w0, sigma)
    is_cell = cells > 0
    if class_weights is None:
        class_weights = class_balance_from_counts(class_counts(is_cell, unannotated))
    background_weight, foreground_weight = _checked_class_weights(class_weights)
    out = np.where(is_cell, np.float32(foreground_weight), np.float32(background_weight))
    if w0 > 0 and _has_two_cells(cells):
        out += border_term(cells, float(w0), float(sigma))
    if unannotated is not None:
        out[unannotated] = 0
    return out


def _cells(labels: np.ndarray, binary: bool | None, connectivity: int, *, ndim: int = 2) -> np.ndarray:
    """Instance labels of the cells (0 = background) from instance labels or a binary interior mask (its
    connected components in 2-D, or in 3-D for a 3-D map)."""
    array = np.asarray(labels)
    if array.ndim != ndim:
        raise ValueError(
            f"labels must be one 2-D (y, x) slice, got shape {array.shape}; "
            "use weight_map_volume for a (z, y, x) stack"
            if ndim == 2
            else f"labels must be one (z, y, x) volume for a 3-D weight map, got shape {array.shape}"
        )
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be a bool or integer array (instance ids or a binary mask), got dtype "
            f"{array.dtype}; convert with labels.astype(np.int32) after checking the values are whole numbers"
        )
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity!r}")
    if array.dtype != bool and array.size and array.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = background, > 0 = cell id), got minimum {array.min()}")
    if binary is None:
        binary = _looks_binary(array)
    if binary:
        cells, _ = ndi.label(array != 0, structure=ndi.generate_binary_structure(ndim, connectivity))
        return cells
    return array


def _looks_binary(array: np.ndarray) -> bool:
    """True for a bool array or one whose values lie within {0, 1} or {0, 255} (an interior mask)."""
    if array.dtype == bool or array.size == 0:
        return True
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        return False
    if high <= 1:
        return True
    return high == 255 and not np.any((array != 0) & (array != 255))


def _has_two_cells(cells: np.ndarray) -> bool:
    """Whether the slice holds at least two distinct cell ids (else the border term is zero)."""
    if cells.size == 0:
        return False
    highest = cells.max()
    return highest > 0 and bool(np.min(cells, where=cells > 0, initial=highest) != highest)


def _check_parameters(w0: float, sigma: float) -> None:
    """Reject a negative or non-finite w0 and a non-positive or non-finite sigma."""
    if not math.isfinite(w0) or w0 < 0:
        raise ValueError(f"w0 (border weight) must be a finite number >= 0, got {w0!r}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma (border width in pixels) must be a finite number > 0, got {sigma!r}")


def _checked_class_weights(class_weights: tuple[float, float]) -> tuple[float, float]:
    """The (background, foreground) pair as floats, rejecting anything else."""
    try:
        background_weight, foreground_weight = (float(value) for value in class_weights)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"class_weights must be a pair (background, foreground) of numbers, got {class_weights!r}"
        ) from error
    for value in (background_weight, foreground_weight):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"class_weights must be finite and >= 0, got {class_weights!r}")
    return background_weight, foreground_weight


def _border_from_distances(
    cells: np.ndarray, d1: np.ndarray, d2: np.ndarray, w0: float, sigma: float
) -> np.ndarray:
    """w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) on background pixels, 0 on cells, as float32."""
    total = np.add(d1, d2, dtype=np.float32)
    total *= total
    total *= np.float32(-1.0 / (2.0 * sigma * sigma))
    term = np.exp(total, out=total)
    term *= np.float32(w0)
    term[cells > 0] = 0
    return term


def _border_term_direct(
    cells: np.ndarray, w0: float, sigma: float, *, sampling: Sequence[float] | None = None
) -> np.ndarray:
    """The border term by definition: an EDT per cell, then the two smallest distances per pixel."""
    ids = np.unique(cells)
    ids = ids[ids > 0]
    distances = np.empty((ids.size, *cells.shape))
    for index, cell in enumerate(ids):
        distances[index] = ndi.distance_transform_edt(cells != cell, sampling=sampling)
    distances.partition(1, axis=0)  # in place: the two smallest distances come first
    return _border_from_distances(cells, distances[0], distances[1], w0, sigma)


def _cutoff(w0: float, sigma: float) -> float:
    """The d1 + d2 beyond which the border term is below BORDER_TOLERANCE."""
    return sigma * math.sqrt(2.0 * math.log(w0 / BORDER_TOLERANCE)) if w0 > BORDER_TOLERANCE else 0.0


def _border_term_truncated(cells: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """The border term from the two-nearest-cell distances computed up to the cutoff only."""
    cutoff = _cutoff(w0, sigma)
    if cutoff < 2.0:  # d1 + d2 >= 2 on every background pixel: the term is below tolerance everywhere
        return np.zeros(cells.shape, dtype=np.float32)
    d1_sq, d2_sq = _two_nearest_cells_sq(cells, cutoff)
    return _border_from_distances(
        cells, np.sqrt(d1_sq, dtype=np.float32), np.sqrt(d2_sq, dtype=np.float32), w0, sigma
    )


def _two_nearest_cells_sq(cells: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances (d1**2, d2**2) to the nearest and the second-nearest cell, exact up to `cutoff`.

    Exact wherever d1 + d2 <= cutoff; elsewhere the returned values still have sqrt(d1) + sqrt(d2) >
    cutoff, which is all the border term needs. Separable: a scan along each row gives, per pixel and
    column, the nearest cell pixel in that row and the nearest one of another cell; a sweep over row
    offsets up to the cutoff then takes the minimum (for d2, skipping the pixel's own nearest cell).
    """
    cutoff = min(cutoff, 2.0 * math.hypot(*cells.shape) + 1.0)  # no d1 + d2 in the slice is larger
    reach = math.floor(cutoff) + 1  # > cutoff: anything at least this far is "out of reach"
    nearest_rows = int(cutoff / 2)  # d1 <= cutoff / 2 wherever d1 + d2 <= cutoff
    other_rows = max(math.floor(cutoff) - 1, 0)  # d2 <= cutoff - 1 there, as d1 >= 1 off the cells
    cells = _compact_ids(cells)
    label_bits = max(int(cells.max()).bit_length(), 1)
    cap = reach * reach
    largest = cap + other_rows**2
    dist_dtype = np.int16 if largest < 2**15 else np.int32 if largest < 2**31 else np.int64
    g1, l1, g2 = _row_two_nearest(cells, reach, label_bits, dist_dtype)
    d1_sq, nearest = _sweep_nearest(g1, l1, nearest_rows, label_bits, cap)
    d2_sq = _sweep_other(g1, l1, g2, nearest, other_rows)
    return d1_sq, d2_sq


def _compact_ids(cells: np.ndarray) -> np.ndarray:
    """The cell ids as the smallest of int16 / int32 that holds them, renumbered 1..n if over 31 bits."""
    if int(cells.max()) >= 2**31:
        _, inverse = np.unique(cells, return_inverse=True)
        cells = inverse.reshape(cells.shape) + (0 if cells.min() == 0 else 1)
    return cells.astype(np.int16 if int(cells.max()) < 2**15 else np.int32, copy=False)


def _row_two_nearest(
    cells: np.ndarray, reach: int, label_bits: int, dist_dtype: type[np.signedinteger]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, along its row: squared distance to and id of the nearest cell pixel, and squared distance
    to the nearest pixel of any other cell; distances are capped at `reach`**2."""
    width = cells.shape[1]
    key_dtype = np.int32 if (width + reach).bit_length() + label_bits <= 31 else np.int64
    g_fwd, l_fwd, g2_fwd = _scan_from_left(cells, reach, label_bits, key_dtype, dist_dtype)
    mirrored = _scan_from_left(np.ascontiguousarray(cells[:, ::-1]), reach, label_bits, key_dtype, dist_dtype)
    g_bwd, l_bwd, g2_bwd = (np.ascontiguousarray(array[:, ::-1]) for array in mirrored)
    forward_first = g_fwd <= g_bwd
    g1 = np.minimum(g_fwd, g_bwd)
    l1 = np.where(forward_first, l_fwd, l_bwd)
    # Another cell than l1: the nearer side's second, and the other side's nearest unless it is l1 too.
    second_near_side = np.where(forward_first, g2_fwd, g2_bwd)
    other_side = np.where(l_fwd == l_bwd, np.where(forward_first, g2_bwd, g2_fwd), np.maximum(g_fwd, g_bwd))
    g2 = np.minimum(second_near_side, other_side)
    return g1, l1, g2


def _scan_from_left(
    cells: np.ndarray,
    reach: int,
    label_bits: int,
    key_dtype: type[np.signedinteger],
    dist_dtype: type[np.signedinteger],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the nearest cell pixel at or left of it in its row (squared distance, id), and the
    squared distance to the nearest one left of it that belongs to another cell.

    A cell pixel is packed as key = (x + reach) << label_bits | id, 0 meaning none, so a running maximum
    along the row carries the last cell pixel seen with its id; the last pixel of another cell is the one
    before the start of the current run of equal ids, carried by a second running maximum.
    """
    label_mask = key_dtype((1 << label_bits) - 1)
    shifted_x = np.arange(cells.shape[1], dtype=key_dtype) + key_dtype(reach)
    keys = cells.astype(key_dtype)
    keys |= shifted_x << key_dtype(label_bits)
    keys *= cells > 0
    last = np.maximum.accumulate(keys, axis=1)
    run_start = (last[:, :-1] & label_mask) != cells[:, 1:]
    run_start &= cells[:, 1:] > 0
    before_run = np.zeros_like(last)
    np.copyto(before_run[:, 1:], last[:, :-1], where=run_start)
    last_other = np.maximum.accumulate(before_run, axis=1)
    nearest_ids = (last & label_mask).astype(cells.dtype)
    return (
        _capped_sq_offset(shifted_x, last, label_bits, reach, dist_dtype),
        nearest_ids,
        _capped_sq_offset(shifted_x, last_other, label_bits, reach, dist_dtype),
    )


def _capped_sq_offset(
    shifted_x: np.ndarray, keys: np.ndarray, label_bits: int, reach: int, dist_dtype: type[np.signedinteger]
) -> np.ndarray:
    """min(x - position of key, reach)**2 (a missing key, 0, lies `reach` or more to the left)."""
    offset = np.subtract(shifted_x, keys >> keys.dtype.type(label_bits))
    np.minimum(offset, reach, out=offset)
    offset = offset.astype(dist_dtype)
    offset *= offset
    return offset


def _sweep_nearest(
    g1: np.ndarray, l1: np.ndarray, rows: int, label_bits: int, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """d1**2 and the nearest cell id: min over row offsets |dy| <= rows of dy**2 + g1[y + dy].

    (squared distance, id) are packed into one integer so that one running minimum carries both.
    """
    key_dtype = np.int32 if (cap + rows * rows).bit_length() + label_bits <= 31 else np.int64
    keys = g1.astype(key_dtype) << key_dtype(label_bits)
    keys |= l1
    best = keys.copy()
    buffer = np.empty_like(keys)
    height = keys.shape[0]
    for dy in range(1, min(rows, height - 1) + 1):
        step = key_dtype(dy * dy << label_bits)
        np.add(keys[dy:], step, out=buffer[dy:])
        np.minimum(best[:-dy], buffer[dy:], out=best[:-dy])
        np.add(keys[:-dy], step, out=buffer[:-dy])
        np.minimum(best[dy:], buffer[:-dy], out=best[dy:])
    nearest = (best & key_dtype((1 << label_bits) - 1)).astype(l1.dtype)
    return best >> key_dtype(label_bits), nearest


def _sweep_other(
    g1: np.ndarray, l1: np.ndarray, g2: np.ndarray, nearest: np.ndarray, rows: int
) -> np.ndarray:
    """d2**2: min over |dy| <= rows of dy**2 + (distance in row y + dy to a cell other than `nearest`).

    In a row that distance is g1 unless the row's nearest cell is the pixel's own nearest, then g2.
    """
    best = np.maximum(g1, (l1 == nearest) * g2)
    same = np.empty(g1.shape, dtype=bool)
    buffer = np.empty_like(g1)
    height = g1.shape[0]
    for dy in range(1, min(rows, height - 1) + 1):
        step = g1.dtype.type(dy * dy)
        for target, source in (
            (slice(0, height - dy), slice(dy, height)),
            (slice(dy, height), slice(0, height - dy)),
        ):
            candidate = buffer[target]
            np.equal(l1[source], nearest[target], out=same[target])
            np.multiply(same[target], g2[source], out=candidate)
            np.maximum(candidate, g1[source], out=candidate)
            candidate += step
            np.minimum(best[target], candidate, out=best[target])
    return best


def _border_term_3d(
    cells: np.ndarray, w0: float, sigma: float, *, sampling: tuple[float, float, float]
) -> np.ndarray:
    """The 3-D border term from the two-nearest-cell distances, exact up to the cutoff.

    Separable: along x the row scan of the 2-D map (each row of every slice), then sweeps along y and along
    z, each keeping per voxel the squared distance to the nearest cell, its id, and the squared distance to
    the nearest other cell, exact wherever they are within the cutoff (so that any of them may still be
    the d2 of a voxel further along the next axis).
    """
    cutoff = _cutoff(w0, sigma)
    if cutoff < 2.0 * min(sampling):
        return np.zeros(cells.shape, dtype=np.float32)
    cells = _compact_ids(cells)
    depth, height, width = cells.shape
    reach = math.floor(cutoff / sampling[2]) + 1
    label_bits = max(int(cells.max()).bit_length(), 1)
    g1, l1, g2 = _row_two_nearest(cells.reshape(depth * height, width), reach, label_bits, np.int64)
    d1, d2 = (g.reshape(cells.shape) * sampling[2] ** 2 for g in (g1, g2))
    nearest = l1.reshape(cells.shape)
    for axis in (1, 0):
        d1, nearest, d2 = _sweep_axis(d1, nearest, d2, axis=axis, spacing=sampling[axis], cutoff=cutoff)
    return _border_from_distances(
        cells, np.sqrt(d1, dtype=np.float32), np.sqrt(d2, dtype=np.float32), w0, sigma
    )


def _sweep_axis(
    d1: np.ndarray, l1: np.ndarray, d2: np.ndarray, *, axis: int, spacing: float, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine per-line (d1, id, d2) along `axis`: min over offsets k (|k| spacing <= cutoff) of k^2 s^2 plus
    the line's d1 (with its id) for the nearest, and plus its d1, or its d2 where the line's nearest is the
    voxel's own nearest, for the nearest other cell."""
    d1, l1, d2 = (np.moveaxis(a, axis, 0) for a in (d1, l1, d2))
    length = d1.shape[0]
    rows = min(math.floor(cutoff / spacing), length - 1)
    pairs = [
        (target, source)
        for k in range(1, rows + 1)
        for target, source in (
            (slice(0, length - k), slice(k, length)),
            (slice(k, length), slice(0, length - k)),
        )
    ]
    best, nearest = d1.copy(), l1.copy()
    for target, source in pairs:
        step = ((target.start - source.start) * spacing) ** 2
        candidate = d1[source] + step
        better = candidate < best[target]
        best[target] = np.where(better, candidate, best[target])
        nearest[target] = np.where(better, l1[source], nearest[target])
    other = np.where(l1 == nearest, d2, d1)
    for target, source in pairs:
        step = ((target.start - source.start) * spacing) ** 2
        candidate = np.where(l1[source] == nearest[target], d2[source], d1[source]) + step
        np.minimum(other[target], candidate, out=other[target])
    return tuple(np.moveaxis(a, 0, axis) for a in (best, nearest, other))  # type: ignore[return-value]
