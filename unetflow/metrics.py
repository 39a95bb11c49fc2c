"""Segmentation metrics of the U-Net paper's ISBI 2012 evaluation, per 2-D slice, in plain NumPy/SciPy.

Inputs. A prediction is a foreground probability in [0, 1] (float), a binary mask (bool, or integers 0
and one positive value, e.g. 0/1), or, with ``prediction_instances=True``, instance labels. A truth is a
binary mask (bool, 0/1, 0/255) or instance labels (integers other than 0 and one positive value, or any
integers with ``truth_instances=True``).
0 means background/membrane, > 0 cell interior (or cell id). A probability counts as foreground where it is
strictly greater than the threshold, as in the challenge's Fiji scripts. Cells of a binary map are its
connected components under ``connectivity`` (1: 4-neighbour, the default, as in the challenge's scripts;
2: 8-neighbour); the membrane is then 8-connected (4-connected), so a one-pixel diagonal membrane line still
separates two cells.

Measures (``evaluate`` keys; labels, directions and descriptions in ``unetflow.metrics_registry``), each
on one slice:

* ``iou``, ``iou_background``, ``mean_iou``, ``dice``, ``pixel_error``: the prediction thresholded at
  ``threshold`` against the truth's foreground; ``pixel_error`` is the fraction of wrongly classified
  pixels. An empty union counts as a perfect score.
* ``isbi_pixel_error``: 1 - the maximal F-score of foreground pixel classification over the threshold
  sweep, F = 2TP / (2TP + FP + FN) over all pixels (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142;
  Fiji ``PixelError.getPixelErrorMaximalFScore``).
* ``rand_error``: 1 - the maximal foreground-restricted Rand F-score over the sweep, without border
  thinning (the original 2012 challenge measure). Only pixels inside the truth's foreground count; the
  prediction's cells are the connected components of its thresholded foreground, and each predicted
  boundary pixel is a cell of its own (a singleton, as in the SNEMI3D/ISBI scripts). Pairs of distinct
  pixels are counted (Rand 1971), so the F-score equals ``1 - skimage.metrics.adapted_rand_error`` when
  the predicted boundary pixels are given unique labels; skimage's default treats the prediction's label 0
  as one segment, which the challenge does not.
* ``v_rand``, ``v_info``: the challenge's current leaderboard measures (Fiji "Segmentation evaluation after
  border thinning"; ``RandError.getMaximalVRandAfterThinning`` and
  ``VariationOfInformation.getMaximalVInfoAfterThinning``), the maximum over the sweep of the
  foreground-restricted Rand F-score and information-theoretic F-score (1 is best) after thinning the
  predicted boundary to one-pixel lines. Fiji thins with the classic watershed (Vincent & Soille 1991) of
  the binary map; here the predicted cells are flooded breadth-first into the predicted boundary
  (``connectivity`` neighbours), a boundary pixel takes the cell that reaches it first, and one reached by
  two cells at once stays boundary (of two neighbours reached by different cells in the same step, the
  later in raster order). Leftover boundary pixels are singletons as above. On ISBI slices this agrees
  with skimage's watershed lines to about 2e-4 in V_rand. As in Fiji, V_rand uses the N^2 normalisation
  (ordered pairs, a pixel with itself included: V_rand = 2 sum p_ij^2 / (sum a_i^2 + sum b_j^2)), and
  V_info = 2 I(A;B) / (H(A) + H(B)), the harmonic mean of I/H(A) and I/H(B). When both entropies are 0
  (one cell each), V_info is 1, where Fiji reports 0.
* ``warping_error``: Jain et al. 2010 ("Boundary learning by optimization with topological constraints",
  CVPR), as Fiji computed it for the challenge (``WarpingError.simplePointWarp2d``): the binary truth (L*
  in Jain et al.) is warped towards the thresholded prediction by flipping simple points only (2-D,
  foreground/background connectivity (4, 8) for ``connectivity=1``, as Fiji; (8, 4) for 2; the image is
  surrounded by background), in Fiji's order: passes over the disagreeing pixels sorted by the
  prediction's confidence |p - threshold|, largest first (ties, and all pixels of a binary prediction,
  column by column), each flipped if simple at its turn, until a pass flips nothing. The error is the
  number of pixels still disagreeing over the number of pixels: a merger or split costs the pixels of a
  cut across it, a missed or extra cell or hole one pixel, a shifted boundary nothing. This is the
  classic warping error at ``threshold``; the challenge's leaderboard (0.000353 for the U-Net paper)
  later counted only split and merger pixels, at the best threshold, never more than this at the same
  threshold. The truth is warped, not the prediction: warping the prediction could not grow a missed cell
  from nothing and would count all its pixels.

The sweep: for a probability, the thresholds ``thresholds`` (default 0.0, 0.1, ..., 1.0, as the challenge);
for a binary or instance prediction, the prediction itself. Measures that need truth foreground are NaN on
a slice without any. ``evaluate_volume`` gives per-slice values, their mean over slices (slices where a
measure is NaN are left out) and pooled values (``*_pooled``) as the challenge computes them for a stack.

Sparse truth: ``ignore`` marks unannotated pixels. Every measure is then that of the prediction and the
truth restricted to the annotated pixels: both are set to background there (so no predicted cell reaches
through unannotated space and no truth cell extends into it), those pixels are no pixel of the confusion
counts, and the pixel and warping errors divide by the annotated pixels only. What the net predicts on
unannotated pixels changes no measure; a slice without annotated pixels has NaN measures.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage

from unetflow.metrics_registry import METRIC_KEYS  # keys of one slice's result, in order

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(11))


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

_WALL, _LINE, _QUEUED = -1, -2, -3  # outside the image, watershed line, queued (and below) while thinning


# ----------------------------------------------------------------------------------------------- inputs


def _check_connectivity(connectivity: int) -> None:
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity!r}")


def _check_threshold(threshold: float, name: str = "threshold") -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {threshold!r}")
    return value


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(_check_threshold(t, "every value of thresholds") for t in np.ravel(thresholds))
    if not values:
        raise ValueError("thresholds is empty; pass at least one value in [0, 1], e.g. DEFAULT_THRESHOLDS")
    return values


def _is_integer_valued(array: np.ndarray) -> bool:
    return bool(np.issubdtype(array.dtype, np.integer) or np.all(array == np.round(array)))


def _is_two_valued(array: np.ndarray) -> bool:
    """True when every value is 0 or one single positive value."""
    top = array.max() if array.size else 0
    return bool(np.all((array == 0) | (array == top)))


def _prediction_kind(prediction: np.ndarray, *, prediction_instances: bool) -> str:
    """'probability', 'binary' or 'labels', from the dtype and values; raises on anything else."""
    if prediction.dtype == bool:
        return "binary"
    if not (np.issubdtype(prediction.dtype, np.integer) or np.issubdtype(prediction.dtype, np.floating)):
        raise ValueError(
            f"prediction has dtype {prediction.dtype}; pass a float probability, a bool/0-1 mask or "
            "integer instance labels"
        )
    if prediction.size and not np.all(np.isfinite(prediction)):
        raise ValueError("prediction contains NaN or infinite values; pass finite probabilities in [0, 1]")
    if prediction.size and prediction.min() < 0:
        raise ValueError(
            "prediction has negative values; pass a probability in [0, 1], a mask or labels >= 0"
        )
    if prediction_instances:
        if not _is_integer_valued(prediction):
            raise ValueError(
                "prediction_instances=True but prediction has non-integer values; pass integer labels"
            )
        return "labels"
    if np.issubdtype(prediction.dtype, np.integer):
        if _is_two_valued(prediction):
            return "binary"
        raise ValueError(
            "prediction is integer with more than two distinct values; pass a float probability in [0, 1], "
            "a 0/1 mask, or instance labels with prediction_instances=True"
        )
    if prediction.size and prediction.max() > 1:
        raise ValueError(
            "prediction is float with values above 1; pass a foreground probability in [0, 1] "
            "(or instance labels with prediction_instances=True)"
        )
    if np.all((prediction == 0) | (prediction == 1)):
        return "binary"
    return "probability"


def _truth_kind(truth: np.ndarray, *, truth_instances: bool) -> str:
    """'binary' or 'labels', from the dtype and values; raises on anything else."""
    if truth.dtype == bool:
        return "binary"
    if not (np.issubdtype(truth.dtype, np.integer) or np.issubdtype(truth.dtype, np.floating)):
        raise ValueError(f"truth has dtype {truth.dtype}; pass a binary mask or integer instance labels")
    if truth.size and not np.all(np.isfinite(truth)):
        raise ValueError("truth contains NaN or infinite values; pass a binary mask or instance labels")
    if truth.size and truth.min() < 0:
        raise ValueError("truth has negative values; pass 0 for background/membrane and > 0 for cells")
    if not truth_instances and _is_two_valued(truth):
        return "binary"
    if not _is_integer_valued(truth):
        raise ValueError(
            "truth has more than two distinct values that are not all integers; pass a binary mask "
            "(e.g. 0/255) or integer instance labels"
        )
    return "labels"


def _as_arrays(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(
            f"prediction has shape {prediction.shape} but truth has shape {truth.shape}; pass arrays of the "
            "same (y, x) or (z, y, x) shape"
        )
    if prediction.ndim not in (2, 3):
        raise ValueError(
            f"prediction and truth must be 2-D (y, x) slices or 3-D (z, y, x) stacks, got {prediction.ndim}-D"
        )
    if prediction.size == 0:
        raise ValueError(
            f"prediction and truth are empty (shape {prediction.shape}); pass at least one pixel"
        )
    return prediction, truth


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, connectivity)


def cells(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Label the connected components of a 2-D foreground mask (1..n, background 0)."""
    _check_connectivity(connectivity)
    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=_structure(connectivity))
    return labels


# ----------------------------------------------------------------------------------------------- pixels


@dataclass(frozen=True)
class _PixelCounts:
    """Confusion counts of a foreground mask against the truth's foreground."""

    tp: int
    fp: int
    fn: int
    tn: int

    @staticmethod
    def of(pred: np.ndarray, truth: np.ndarray, pixels: int | None = None) -> _PixelCounts:
        """Counts over `pixels` pixels (default: all of them; fewer where some are unannotated, which
        `pred` and `truth` must hold as background)."""
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(truth)) - tp
        return _PixelCounts(tp, fp, fn, (pred.size if pixels is None else pixels) - tp - fp - fn)

    def __add__(self, other: _PixelCounts) -> _PixelCounts:
        return _PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def scores(self) -> dict[str, float]:
        """IoU of each class, their mean, Dice of the foreground and the fraction of wrong pixels."""
        iou = _ratio(self.tp, self.tp + self.fp + self.fn)
        iou_background = _ratio(self.tn, self.tn + self.fp + self.fn)
        return {
            "iou": iou,
            "iou_background": iou_background,
            "mean_iou": (iou + iou_background) / 2,
            "dice": self.fscore(),
            "pixel_error": _ratio_or_nan(self.fp + self.fn, self.tp + self.fp + self.fn + self.tn),
        }

    def fscore(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0 / 0 = 1 (nothing to get wrong)."""
    return 1.0 if denominator == 0 else numerator / denominator


def _ratio_or_nan(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where there is nothing to count (a slice without annotated pixels)."""
    return math.nan if denominator == 0 else numerator / denominator


def pixel_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU (foreground, background, mean), Dice and pixel error of two binary masks of the same shape."""
    prediction, truth = _as_arrays(prediction, truth)
    return _PixelCounts.of(prediction > 0, truth > 0).scores()


# ----------------------------------------------------------------------------------------------- overlap


@dataclass(frozen=True)
class _Overlap:
    """Sums of the contingency table over the truth's foreground; predicted label 0 = singletons."""

    n: int  # truth-foreground pixels
    sum_a2: float  # sum of squared truth cell sizes
    sum_b2: float  # sum of squared predicted cell sizes, singletons included
    sum_ab2: float  # sum of squared overlaps, singletons included
    h_truth: float  # entropy (nats) of the truth cells
    h_pred: float  # entropy of the predicted cells, singletons included
    h_joint: float  # entropy of the overlaps, singletons included

    def rand_fscore(self, *, self_pairs: bool) -> float:
        """Rand F-score, pairs of distinct pixels (Rand 1971, skimage) or all ordered pairs (Fiji's N^2)."""
        if self.n == 0:
            return math.nan
        diagonal = 0 if self_pairs else self.n
        return _ratio(2 * (self.sum_ab2 - diagonal), self.sum_a2 + self.sum_b2 - 2 * diagonal)

    def information_fscore(self) -> float:
        """2 I(A;B) / (H(A) + H(B)), 1 when both are single cells (the ratio does not depend on the base)."""
        if self.n == 0:
            return math.nan
        total = self.h_truth + self.h_pred
        if total == 0:
            return 1.0
        return min(1.0, max(0.0, 2 * (total - self.h_joint) / total))


def _entropy(counts: np.ndarray, n: int, singletons: int = 0) -> float:
    """Entropy (nats) of cells of `counts` pixels plus `singletons` one-pixel cells, out of n pixels."""
    if n == 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(-np.sum(p * np.log(p))) + singletons * math.log(n) / n


def _square_sum(counts: np.ndarray) -> float:
    """Sum of squares, elementwise (a BLAS dot product spawns threads, slow on a busy machine)."""
    counts = counts.astype(np.float64)
    return float(np.sum(counts * counts))


@dataclass(frozen=True)
class _TruthCells:
    """The truth's foreground pixels (flat indices), their consecutive cell ids and the cell statistics."""

    where: np.ndarray
    ids: np.ndarray
    count: int
    sum_a2: float
    entropy: float

    @staticmethod
    def of(truth_labels: np.ndarray) -> _TruthCells:
        flat = truth_labels.ravel()
        where = np.flatnonzero(flat)
        values, ids = np.unique(flat[where], return_inverse=True)
        sizes = np.bincount(ids.ravel(), minlength=values.size)
        return _TruthCells(
            where, ids.ravel(), int(values.size), _square_sum(sizes), _entropy(sizes, where.size)
        )

    def overlap(self, pred_labels: np.ndarray) -> _Overlap:
        """Overlap sums with a predicted label image of the same shape (its 0 pixels are singletons)."""
        n = int(self.where.size)
        if n == 0:
            return _Overlap(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p = pred_labels.ravel()[self.where]
        top = int(p.max())
        if top >= 4 * n + 1024:  # sparse ids: make them consecutive, keeping 0 as 0
            values, p = np.unique(p, return_inverse=True)
            p = p.ravel() + (values[0] != 0)
            top = int(p.max())
        width = top + 1
        if self.count * width <= 1 << 22:
            table = np.bincount(self.ids * width + p, minlength=self.count * width).reshape(self.count, width)
            singletons = int(table[:, 0].sum())
            joint = table[:, 1:]
            pred_sizes = joint.sum(axis=0)
        else:
            inside = p > 0
            singletons = n - int(np.count_nonzero(inside))
            joint = np.unique(self.ids[inside] * width + p[inside], return_counts=True)[1]
            pred_sizes = np.unique(p[inside], return_counts=True)[1]
        return _Overlap(
            n=n,
            sum_a2=self.sum_a2,
            sum_b2=_square_sum(pred_sizes) + singletons,
            sum_ab2=_square_sum(joint.ravel()) + singletons,
            h_truth=self.entropy,
            h_pred=_entropy(pred_sizes, n, singletons),
            h_joint=_entropy(joint.ravel(), n, singletons),
        )


def _overlap_of(truth_labels: np.ndarray, pred_labels: np.ndarray) -> _Overlap:
    truth_labels = np.asarray(truth_labels)
    pred_labels = np.asarray(pred_labels)
    if truth_labels.shape != pred_labels.shape:
        raise ValueError(
            f"truth_labels has shape {truth_labels.shape} but pred_labels has shape {pred_labels.shape}; "
            "pass label images of the same shape"
        )
    if (truth_labels.size and truth_labels.min() < 0) or (pred_labels.size and pred_labels.min() < 0):
        raise ValueError("label images must be >= 0 (0 = background/boundary); relabel negative ids")
    return _TruthCells.of(truth_labels).overlap(pred_labels)


def rand_fscore(truth_labels: np.ndarray, pred_labels: np.ndarray, *, self_pairs: bool = False) -> float:
    """Foreground-restricted Rand F-score of two label images (truth 0 ignored, predicted 0 = singletons).

    ``self_pairs=False`` counts pairs of distinct pixels (Rand 1971; equals 1 - skimage's
    ``adapted_rand_error`` with the predicted 0 pixels relabelled uniquely); ``True`` is Fiji's N^2 form.
    """
    return _overlap_of(truth_labels, pred_labels).rand_fscore(self_pairs=self_pairs)


def information_fscore(truth_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Foreground-restricted information F-score 2 I / (H(truth) + H(pred)); predicted 0 = singletons."""
    return _overlap_of(truth_labels, pred_labels).information_fscore()


# ----------------------------------------------------------------------------------------------- thinning


def _offsets(width: int, connectivity: int) -> np.ndarray:
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 2:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    return np.array([dy * width + dx for dy, dx in steps], dtype=np.int64)


def thin_boundaries(labels: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Grow the labelled cells of a 2-D label image into its 0 pixels, leaving 1-pixel watershed lines.

    Breadth-first flooding from all cells at once (``connectivity`` neighbours): a 0 pixel takes the label
    of the cells that reach it first; one reached by two different cells, or next to a pixel that another
    cell reached in the same step (the later in raster order yields), stays 0. 0 pixels no cell reaches
    stay 0. A breadth-first form of the classic watershed of the binary map, which Fiji uses for the
    challenge's "border thinning". Returns a new label image.
    """
    _check_connectivity(connectivity)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0 (0 = boundary, > 0 = cell ids); relabel negative ids")
    height, width = labels.shape
    top = int(labels.max()) if labels.size else 0
    dtype = np.int32 if top < np.iinfo(np.int32).max - labels.size else np.int64
    padded = np.full((height + 2, width + 2), _WALL, dtype=dtype)
    padded[1:-1, 1:-1] = labels
    flat = padded.ravel()
    offsets = [int(o) for o in _offsets(width + 2, connectivity)]
    positive = flat > 0
    if not positive.any():
        return np.ascontiguousarray(padded[1:-1, 1:-1]).clip(min=0)
    near = np.zeros_like(positive)
    for offset in offsets:  # the padding keeps np.roll from wrapping real pixels around
        near |= np.roll(positive, -offset)
    frontier = np.flatnonzero(near & (flat == 0))
    while frontier.size:
        around = [flat[frontier + offset] for offset in offsets]
        high = around[0]
        for values in around[1:]:
            high = np.maximum(high, values)
        mixed = np.zeros(frontier.size, dtype=bool)
        for values in around:
            mixed |= (values > 0) & (values != high)
        flat[frontier] = np.where(mixed, _LINE, high)
        grown = frontier[~mixed]
        if grown.size == 0:
            break
        # A grown pixel next to another cell's pixel: that one grew in this same step (an older one would
        # have made this pixel mixed); the earlier in raster order keeps its label.
        mine = flat[grown]
        clash = np.zeros(grown.size, dtype=bool)
        for offset in offsets:
            if offset < 0:
                values = flat[grown + offset]
                clash |= (values > 0) & (values != mine)
        if clash.any():
            flat[grown[clash]] = _LINE
            grown = grown[~clash]
        following = np.concatenate([grown + offset for offset in offsets])
        following = following[flat[following] == 0]
        marks = _QUEUED - np.arange(following.size, dtype=dtype)  # distinct negative marks: the last of
        flat[following] = marks  # each repeated pixel wins, which keeps one copy without sorting
        frontier = following[flat[following] == marks]
    out = np.ascontiguousarray(padded[1:-1, 1:-1])
    out[out < 0] = 0
    return out


# ----------------------------------------------------------------------------------------------- warping


@cache
def simple_point_table(connectivity: int = 1) -> np.ndarray:
    """256 booleans: is the centre of this 8-neighbourhood a simple point (flipping it keeps topology)?

    Index = sum of 2**k over the foreground neighbours k of ``NEIGHBOURS_8``. Foreground connectivity is
    4 for ``connectivity=1`` (background 8) and 8 for 2 (background 4). Simple iff the foreground part of
    the neighbourhood has exactly one component touching the centre and so does the background part
    (Bertrand & Malandain 1994, Pattern Recogn. Lett. 15:169, the 2-D topological numbers).
    """
    _check_connectivity(connectivity)
    foreground = _structure(connectivity)
    background = _structure(3 - connectivity)
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


def _warp(
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


def warped_truth(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = 0.5,
    connectivity: int = 1,
    prediction_instances: bool = False,
    truth_instances: bool = False,
) -> np.ndarray:
    """The binary truth of one 2-D slice warped towards the thresholded prediction (Jain et al. 2010).

    Where it still differs from the prediction (``> threshold``) are the topological errors that the
    warping error counts.
    """
    return _warp_slice(prediction, truth, threshold, connectivity, prediction_instances, truth_instances)[0]


def warping_error(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = 0.5,
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
    prediction, truth = _as_arrays(prediction, truth)
    if prediction.ndim != 2:
        raise ValueError(f"warping takes one 2-D slice, got shape {prediction.shape}; loop over the slices")
    _check_connectivity(connectivity)
    kind = _prediction_kind(prediction, prediction_instances=prediction_instances)
    _truth_kind(truth, truth_instances=truth_instances)
    target, confidence = _binarize(prediction, kind, _check_threshold(threshold))
    return _warp(truth > 0, target, confidence, connectivity), target


def _binarize(prediction: np.ndarray, kind: str, threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == "probability":
        return prediction > threshold, np.abs(prediction.astype(np.float64) - threshold)
    return prediction > 0, None


# ----------------------------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class _Options:
    """The checked keyword options of evaluate / evaluate_volume."""

    threshold: float
    connectivity: int
    thresholds: tuple[float, ...]
    include_warping: bool


@dataclass(frozen=True)
class _SliceStats:
    """Everything the scores of one slice (and pooled ones) derive from."""

    at_threshold: _PixelCounts
    sweep_pixels: tuple[_PixelCounts, ...]
    sweep_rand: tuple[_Overlap, ...]
    sweep_thinned: tuple[_Overlap, ...]
    warping_remaining: int | None
    n_pixels: int

    def scores(self) -> dict[str, float]:
        """The slice's measures under METRIC_KEYS."""
        result = self.at_threshold.scores()
        result["isbi_pixel_error"] = 1.0 - max(c.fscore() for c in self.sweep_pixels)
        result["rand_error"] = 1.0 - _nanmax(o.rand_fscore(self_pairs=False) for o in self.sweep_rand)
        result["v_rand"] = _nanmax(o.rand_fscore(self_pairs=True) for o in self.sweep_thinned)
        result["v_info"] = _nanmax(o.information_fscore() for o in self.sweep_thinned)
        result["warping_error"] = (
            math.nan
            if self.warping_remaining is None
            else _ratio_or_nan(self.warping_remaining, self.n_pixels)
        )
        return {key: float(result[key]) for key in METRIC_KEYS}


def _nanmax(values: Iterable[float]) -> float:
    found = [v for v in values if not math.isnan(v)]
    return max(found) if found else math.nan


def _slice_stats(
    prediction: np.ndarray,
    truth: np.ndarray,
    pred_kind: str,
    truth_kind: str,
    options: _Options,
    pixels: int | None = None,
) -> _SliceStats:
    """The statistics of one slice; `pixels` counts its annotated pixels where some are not (see
    `_restrict`, which sets both images to background on the others)."""
    pixels = prediction.size if pixels is None else pixels
    truth_mask = truth > 0
    structure = _structure(options.connectivity)
    truth_labels = truth if truth_kind == "labels" else ndimage.label(truth_mask, structure=structure)[0]
    truth_cells = _TruthCells.of(truth_labels)

    target, confidence = _binarize(prediction, pred_kind, options.threshold)
    at_threshold = _PixelCounts.of(target, truth_mask, pixels)

    if pred_kind == "probability":
        sweep = [
            (mask, ndimage.label(mask, structure=structure)[0]) for mask in _sweep_masks(prediction, options)
        ]
    elif pred_kind == "labels":
        sweep = [(prediction > 0, prediction.astype(np.int64))]
    else:
        mask = prediction > 0
        sweep = [(mask, ndimage.label(mask, structure=structure)[0])]

    counts, rand, thinned = [], [], []
    for mask, labels in sweep:
        counts.append(_PixelCounts.of(mask, truth_mask, pixels))
        rand.append(truth_cells.overlap(labels))
        thin = thin_boundaries(labels, connectivity=options.connectivity)
        thinned.append(truth_cells.overlap(thin))

    remaining = (
        int(np.count_nonzero(_warp(truth_mask, target, confidence, options.connectivity) != target))
        if options.include_warping
        else None
    )
    return _SliceStats(at_threshold, tuple(counts), tuple(rand), tuple(thinned), remaining, pixels)


def _sweep_masks(probability: np.ndarray, options: _Options) -> list[np.ndarray]:
    """The thresholded masks of the sweep, reusing the mask of an equal threshold."""
    masks: dict[float, np.ndarray] = {}
    for t in options.thresholds:
        if t not in masks:
            masks[t] = probability > t
    return [masks[t] for t in options.thresholds]


# ----------------------------------------------------------------------------------------------- public


def _options(
    threshold: float, connectivity: int, thresholds: Sequence[float], include_warping: bool
) -> _Options:
    _check_connectivity(connectivity)
    return _Options(
        _check_threshold(threshold), connectivity, _check_thresholds(thresholds), bool(include_warping)
    )


def _volume_stats(
    prediction: np.ndarray,
    truth: np.ndarray,
    options: _Options,
    prediction_instances: bool,
    truth_instances: bool,
    ignore: np.ndarray | None = None,
) -> list[_SliceStats]:
    prediction, truth = _as_arrays(prediction, truth)
    pred_kind = _prediction_kind(prediction, prediction_instances=prediction_instances)
    prediction, truth, pixels = _restrict(prediction, truth, ignore)
    truth_kind = _truth_kind(truth, truth_instances=truth_instances)
    if prediction.ndim == 2:
        prediction, truth, pixels = prediction[None], truth[None], [pixels[0]]
    return [
        _slice_stats(p, t, pred_kind, truth_kind, options, n)
        for p, t, n in zip(prediction, truth, pixels, strict=True)
    ]


def _restrict(
    prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, list[int | None]]:
    """Prediction and truth with the unannotated pixels (`ignore`) set to background, and the annotated
    pixels of each slice (None: all of them)."""
    slices = 1 if prediction.ndim == 2 else prediction.shape[0]
    if ignore is None:
        return prediction, truth, [None] * slices
    mask = np.asarray(ignore, dtype=bool)
    if mask.shape != prediction.shape:
        raise ValueError(
            f"ignore has shape {mask.shape} but prediction has shape {prediction.shape}; pass the mask of "
            "unannotated pixels of the same slices"
        )
    pixels = np.count_nonzero(~mask.reshape(slices, -1), axis=1)
    zero = np.zeros((), dtype=prediction.dtype)
    return (
        np.where(mask, zero, prediction),
        np.where(mask, np.zeros((), dtype=truth.dtype), truth),
        [int(n) for n in pixels],
    )


def evaluate(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = 0.5,
    connectivity: int = 1,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    include_warping: bool = True,
    truth_instances: bool = False,
    prediction_instances: bool = False,
    ignore: np.ndarray | None = None,
) -> dict[str, float]:
    """All measures of a 2-D slice, or their mean over the slices of a 3-D (z, y, x) stack.

    Keys ``METRIC_KEYS``; definitions and sources in the module docstring. ``threshold`` binarizes a
    probability for the pixel measures and the warping error, ``thresholds`` is the sweep of the ISBI
    measures (binary and instance predictions are used as they are); ``connectivity`` 1 or 2 makes cells
    of 4- or 8-connected pixels; ``include_warping=False`` skips the warping error (NaN then);
    ``truth_instances`` / ``prediction_instances`` mark integer label images; ``ignore`` (bool, the
    shape of the prediction) marks unannotated pixels, which no measure sees.
    """
    options = _options(threshold, connectivity, thresholds, include_warping)
    stats = _volume_stats(prediction, truth, options, prediction_instances, truth_instances, ignore)
    return _mean([s.scores() for s in stats])


def evaluate_volume(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = 0.5,
    connectivity: int = 1,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    include_warping: bool = True,
    truth_instances: bool = False,
    prediction_instances: bool = False,
    ignore: np.ndarray | None = None,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-slice measures of a (z, y, x) stack (a 2-D slice is one slice) and their aggregate.

    The aggregate holds the mean over slices under each key of ``METRIC_KEYS`` (slices where a measure is
    NaN are left out) and pooled values as the challenge computes them for a stack: ``iou_pooled``,
    ``iou_background_pooled``, ``mean_iou_pooled``, ``dice_pooled``, ``pixel_error_pooled`` (pixel counts
    summed over slices); ``isbi_pixel_error_pooled`` and ``rand_error_pooled`` (pixel counts and pair sums
    summed over slices at each threshold, then the best threshold for the whole stack); ``v_rand_pooled`` and
    ``v_info_pooled`` (per-slice scores averaged at each threshold, then the best threshold, as Fiji does);
    ``warping_error_pooled`` (remaining pixels over all pixels). ``ignore`` as in ``evaluate``.
    """
    options = _options(threshold, connectivity, thresholds, include_warping)
    stats = _volume_stats(prediction, truth, options, prediction_instances, truth_instances, ignore)
    per_slice = [s.scores() for s in stats]
    aggregate = _mean(per_slice)
    aggregate.update(_pooled(stats))
    return per_slice, aggregate


def _mean(per_slice: list[dict[str, float]]) -> dict[str, float]:
    result = {}
    for key in METRIC_KEYS:
        values = [d[key] for d in per_slice if not math.isnan(d[key])]
        result[key] = float(np.mean(values)) if values else math.nan
    return result


def _pooled(stats: list[_SliceStats]) -> dict[str, float]:
    total = stats[0].at_threshold
    for s in stats[1:]:
        total = total + s.at_threshold
    result = {f"{key}_pooled": value for key, value in total.scores().items()}

    sweep_pixels = [
        sum(counts[1:], counts[0]) for counts in zip(*(s.sweep_pixels for s in stats), strict=True)
    ]
    result["isbi_pixel_error_pooled"] = 1.0 - max(c.fscore() for c in sweep_pixels)

    rand_scores = []
    for overlaps in zip(*(s.sweep_rand for s in stats), strict=True):  # pairs within each slice, summed
        sums = [sum(getattr(o, name) for o in overlaps) for name in ("n", "sum_a2", "sum_b2", "sum_ab2")]
        rand_scores.append(_Overlap(*sums, math.nan, math.nan, math.nan).rand_fscore(self_pairs=False))
    result["rand_error_pooled"] = 1.0 - _nanmax(rand_scores)

    def best_mean(score: Callable[[_Overlap], float]) -> float:
        """The best over thresholds of the slice-averaged score (Fiji's stack value)."""
        means = []
        for overlaps in zip(*(s.sweep_thinned for s in stats), strict=True):
            values = [v for v in map(score, overlaps) if not math.isnan(v)]
            means.append(float(np.mean(values)) if values else math.nan)
        return _nanmax(means)

    result["v_rand_pooled"] = best_mean(lambda o: o.rand_fscore(self_pairs=True))
    result["v_info_pooled"] = best_mean(_Overlap.information_fscore)
    if any(s.warping_remaining is None for s in stats):
        result["warping_error_pooled"] = math.nan
    else:
        pixels = sum(s.n_pixels for s in stats)
        result["warping_error_pooled"] = _ratio_or_nan(sum(s.warping_remaining or 0 for s in stats), pixels)
    return result
