"""Instance ids whose cells touch: the separating background the U-Net paper forces between them (Fig. 3).

Touching cells of one class give a net trained on "cell interior against background" nothing to learn
between them: no background pixel lies there, so the border weight map (unetflow.train.weights), whose term
lives on background pixels, has nothing to weigh either. The paper therefore forces the background label
between touching cells and weighs that gap high. `separate_touching` derives it from instance ids: where
two different ids meet, and only there, cell pixels become background, `width` pixels across the gap:

- even width 2k: on each side, the pixels within Euclidean distance k (pixel centres) of a pixel of the
  other cell; a straight interface loses k pixel layers on each side;
- odd width 2k + 1: the same, and on the side of the lower id one more layer (pixels within k + 1 of a
  higher id), so a width of 1 removes one layer, on one side only.

A cell's border with background or with unannotated pixels (sparse labels, `ignore`) is left as it is: only
a meeting of two annotated ids is a contact. The same derivation turns dense connectomics ids (CREMI,
SNEMI3D, FIB-25: no membrane pixels at all) into training labels. In each 2-D slice (`per_slice=True`:
serial sections, the frames of a time-lapse) or in 3-D (isotropic volumes, voxel distances).

`contacts` counts how much cells touch and how much background there is, and `check_contacts` turns that
into the import's check: dense ids without separation (nearly no background) are refused, touching cells
without a stated width are named in a warning with the fix (`volumes.<name>.labels.separate`).

Pure NumPy/SciPy: the import, the weights and the metrics use it without torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetflow.errors import InputError

log = logging.getLogger(__name__)

DENSE_BACKGROUND = 0.02
"""Below this fraction of background among the annotated pixels, touching instance ids are dense ids (the
class weights would be more than 49 : 1): refused without separation."""


def _footprint(radius: int, ndim: int, per_slice: bool) -> np.ndarray:
    """Offsets within Euclidean distance `radius` (pixel centres): a disk per slice, or a ball in 3-D."""
    axes = ndim - 1 if per_slice and ndim == 3 else ndim
    grid = np.indices((2 * radius + 1,) * axes) - radius
    disk = (grid**2).sum(axis=0) <= radius * radius
    return disk[None] if axes < ndim else disk


def _checked_ids(ids: np.ndarray, ignore: int | None) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim not in (2, 3):
        raise ValueError(f"ids must be a 2-D (y, x) slice or a 3-D (z, y, x) stack, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"ids must be integer instance labels (0 = background), got dtype {array.dtype}; a probability "
            "or a binary mask has no ids to separate"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"ids must be >= 0 (0 = background), got minimum {array.min()}")
    if ignore is not None and (isinstance(ignore, bool) or ignore < 1):
        raise ValueError(f"ignore must be the positive label value of unannotated pixels, got {ignore!r}")
    return array


def _cells(array: np.ndarray, ignore: int | None) -> np.ndarray:
    """The annotated cell ids (unannotated pixels as background, for the neighbour tests)."""
    if ignore is None:
        return array
    return np.where(array == ignore, np.zeros((), dtype=array.dtype), array)


def _near_other(cells: np.ndarray, radius: int, per_slice: bool, *, higher_only: bool) -> np.ndarray:
    """Cell pixels with a pixel of another (with `higher_only`: of a higher) id within `radius`."""
    footprint = _footprint(radius, cells.ndim, per_slice)
    highest = ndimage.maximum_filter(cells, footprint=footprint, mode="nearest")
    near = highest > cells
    if not higher_only:
        top = np.iinfo(cells.dtype).max
        lowest = ndimage.minimum_filter(
            np.where(cells == 0, top, cells).astype(cells.dtype), footprint=footprint, mode="nearest"
        )
        near |= lowest < cells
    near &= cells > 0
    return near


def separate_touching(
    ids: np.ndarray, *, width: int, ignore: int | None = None, per_slice: bool = True
) -> np.ndarray:
    """`ids` with the background (0) forced `width` pixels wide wherever two different ids meet.

    2-D (y, x) or 3-D (z, y, x) integer ids, 0 = background; pixels equal to `ignore` are unannotated: kept
    as they are and no cell to meet. `per_slice` (3-D input): contacts within each slice only, as for serial
    sections and time-lapse frames; False: in 3-D. Width 0 returns a copy. The rule for odd and even widths
    is in the module docstring; a cell thinner than the gap may lose every pixel. Same dtype as `ids`.
    """
    array = _checked_ids(ids, ignore)
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 0:
        raise ValueError(f"width must be a whole number of pixels >= 0, got {width!r}")
    out = array.copy()
    if width == 0 or array.size == 0:
        return out
    cells = _cells(array, ignore)
    half, odd = divmod(int(width), 2)
    remove = np.zeros(array.shape, dtype=bool)
    if half:
        remove |= _near_other(cells, half, per_slice, higher_only=False)
    if odd:
        remove |= _near_other(cells, half + 1, per_slice, higher_only=True)
    out[remove] = 0
    return out


@dataclass(frozen=True)
class Contacts:
    """How instance ids touch: annotated pixels, background pixels among them, and cell pixels that have a
    pixel of another id as a face neighbour (4-neighbour in a slice, 6-neighbour in 3-D)."""

    annotated: int
    background: int
    touching: int

    def __add__(self, other: Contacts) -> Contacts:
        return Contacts(
            self.annotated + other.annotated,
            self.background + other.background,
            self.touching + other.touching,
        )

    @property
    def background_fraction(self) -> float:
        """Background pixels over annotated pixels (1.0 without annotated pixels)."""
        return self.background / self.annotated if self.annotated else 1.0

    @property
    def dense(self) -> bool:
        """Whether these are dense ids: cells touch and nearly no pixel is background."""
        return self.touching > 0 and self.background_fraction < DENSE_BACKGROUND


def contacts(ids: np.ndarray, *, ignore: int | None = None, per_slice: bool = True) -> Contacts:
    """Count the annotated, background and touching pixels of 2-D or 3-D instance ids (see Contacts)."""
    array = _checked_ids(ids, ignore)
    annotated = array.size if ignore is None else int(np.count_nonzero(array != ignore))
    cells = _cells(array, ignore)
    background = annotated - int(np.count_nonzero(cells))
    return Contacts(
        annotated, background, int(np.count_nonzero(_near_other(cells, 1, per_slice, higher_only=False)))
    )


def check_contacts(found: Contacts, *, name: str, separate: int | None, key: str) -> None:
    """The import's check of instance ids: dense ids without separation are an InputError, touching cells
    without a stated `separate` a warning; both name `key` (the config key of the width) and the fix."""
    if found.touching == 0 or (separate is not None and separate > 0):
        return
    if found.dense:
        share = found.background_fraction
        weights = f"class weights {(1 - share) / share:.0f} : 1" if share else "no background pixel at all"
        raise InputError(
            f"{name}: dense instance ids: cells touch along {found.touching} pixels and only {share:.1%} of "
            f"the annotated pixels are background ({weights}), so a net would learn no boundary; set "
            f"{key}: 1 (or 2) to force the background between touching cells (the paper's Fig. 3)"
        )
    if separate is None:
        log.warning(
            "%s: cells of different ids touch along %d pixels with no background between them: the net "
            "learns to join them; set %s: 2 to force the background there (the paper's Fig. 3), or %s: 0 "
            "to keep them touching and silence this warning",
            name,
            found.touching,
            key,
            key,
        )
