"""Cells as objects: a frame's foreground probability split into one id per cell.

Two methods (`cells.method`, unetflow.config.model.CellsConfig):

- components: the connected components of the thresholded foreground (probability > threshold). Cells
  the net left touching, even by one pixel, are one object.
- watershed (the default): each seed floods the foreground downhill on the probability (scikit-image's
  watershed of 1 - probability, masked to the foreground), so two cells joined by a gap the net saw only
  faintly (the probability dips there but stays above the threshold) are split along that dip. The seeds
  (`seeds`): `maxima`, the default, the probability's regional maxima that rise at least `dynamic` above
  the lowest pass to any higher one (h-maxima, by morphological reconstruction: a cell whose inside the
  net saw unevenly keeps one seed unless a dip deeper than `dynamic` parts it); `level`, the connected
  components of the pixels the net is surest of (probability > seed_threshold, auto: halfway between the
  threshold and 1), which cuts such a cell wherever it dips below that level. Foreground that no seed
  reaches is a cell of its own, so nothing the threshold calls foreground is lost.

Then, in both methods, the same rules: each cell's holes (background enclosed by that cell alone) are
filled; a cell smaller than `min_size` pixels joins the neighbour it shares the longest border with (4-
neighbour contacts), or, touching none, is dropped as noise; every cell grows `grow` pixels into the
background around it (scikit-image's expand_labels: where two grow towards each other they meet halfway),
which gives the cells back the gap a net trained on separated labels (unetflow.data.instances) learned to
leave between them; ids are renumbered 1..n in raster order of their first pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import expand_labels, relabel_sequential, watershed

METHODS = ("watershed", "components")
SEEDS = ("maxima", "level")


def seed_level(threshold: float, seed_threshold: float | str = "auto") -> float:
    """The probability above which pixels seed cells: `seed_threshold`, or halfway between the
    foreground threshold and 1 ("auto")."""
    if seed_threshold == "auto":
        return (1.0 + threshold) / 2.0
    value = float(seed_threshold)
    if value < threshold:
        raise ValueError(f"seed_threshold {value} lies below the foreground threshold {threshold}")
    return value


def segment_cells(
    probability: np.ndarray,
    *,
    threshold: float,
    method: str = "watershed",
    seeds: str = "maxima",
    dynamic: float = 0.5,
    seed_threshold: float | str = "auto",
    min_size: int = 30,
    fill_holes: bool = True,
    connectivity: int = 1,
    grow: int = 0,
) -> np.ndarray:
    """One id per cell (uint32, 0 = background) of a 2-D foreground probability (module docstring)."""
    values = np.asarray(probability)
    if values.ndim != 2:
        raise ValueError(f"segment_cells takes one 2-D (y, x) frame, got shape {values.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if seeds not in SEEDS:
        raise ValueError(f"seeds must be one of {', '.join(SEEDS)}, got {seeds!r}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    foreground = values > threshold
    if method == "components":
        cells = ndimage.label(foreground, structure=structure)[0]
    else:
        if seeds == "maxima":
            markers = ndimage.label(_dynamic_maxima(values, dynamic, structure) & foreground, structure)[0]
        else:
            markers = ndimage.label(values > seed_level(threshold, seed_threshold), structure=structure)[0]
        cells = watershed(
            1.0 - values.astype(np.float64), markers, mask=foreground, connectivity=connectivity
        )
        unreached = ndimage.label(foreground & (cells == 0), structure=structure)[0]
        cells = np.where(unreached > 0, unreached + cells.max(), cells)
    if fill_holes:
        cells = _fill_holes(cells)
    if min_size > 0:
        cells = _absorb_small(cells, min_size)
    if grow > 0:
        cells = expand_labels(cells, distance=grow)
    return relabel_sequential(cells.astype(np.uint32))[0].astype(np.uint32)


def _dynamic_maxima(values: np.ndarray, dynamic: float, structure: np.ndarray) -> np.ndarray:
    """The regional maxima of the probability lowered by `dynamic` and rebuilt under it (morphological
    reconstruction, as h-maxima are found): maxima joined by a pass less than `dynamic` below them become one
    plateau, hence one seed, even where they are equally high (a saturated net's 1.0s)."""
    image = values.astype(np.float64)
    rebuilt = reconstruction(image - dynamic, image, method="dilation", footprint=structure)
    return local_maxima(rebuilt, footprint=structure, allow_borders=True)


def segment_frames(probability: np.ndarray, **options: object) -> np.ndarray:
    """`segment_cells` of every frame of a (t, y, x) stack: ids 1..n in each frame (uint32)."""
    stack = np.asarray(probability)
    if stack.ndim != 3:
        raise ValueError(f"segment_frames takes a (t, y, x) stack, got shape {stack.shape}")
    return np.stack([segment_cells(frame, **options) for frame in stack])  # type: ignore[arg-type]


def _fill_holes(cells: np.ndarray) -> np.ndarray:
    """Background pixels enclosed by one cell alone become that cell."""
    out = cells.copy()
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:
            continue
        own = cells[box] == index
        holes = ndimage.binary_fill_holes(own) & (cells[box] == 0)
        out[box][holes] = index
    return out


def _borders(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(id, neighbour id, border length in 4-neighbour contacts) of each pair of touching cells, both ways."""
    pairs = []
    for first, second in ((cells[:, :-1], cells[:, 1:]), (cells[:-1, :], cells[1:, :])):
        meet = (first != second) & (first > 0) & (second > 0)
        pairs.append(np.stack([first[meet], second[meet]]))
        pairs.append(np.stack([second[meet], first[meet]]))
    joined = np.concatenate(pairs, axis=1).astype(np.int64)
    if not joined.size:
        return joined[0], joined[1], joined[0]
    unique, counts = np.unique(joined, axis=1, return_counts=True)
    return unique[0], unique[1], counts


def _absorb_small(cells: np.ndarray, min_size: int) -> np.ndarray:
    """Cells under `min_size` pixels join their longest-bordering neighbour (smallest first, repeated until
    none is left that can join), then the isolated ones are dropped."""
    out = cells.copy()
    while True:
        sizes = np.bincount(out.ravel())
        small = np.flatnonzero((sizes > 0) & (sizes < min_size))
        small = small[small > 0]
        if not small.size:
            return out
        ids, neighbours, lengths = _borders(out)
        target = np.arange(sizes.size)
        joined = False
        for cell in small[np.argsort(sizes[small], kind="stable")]:
            mine = ids == cell
            if mine.any() and target[cell] == cell:
                choice = neighbours[mine][np.argmax(lengths[mine])]
                if target[choice] != cell:
                    target[cell] = target[choice]
                    joined = True
        if not joined:
            out[np.isin(out, small)] = 0
            return out
        out = target[out]
