"""Two segmentations compared as partitions of the truth's foreground: the Rand and information-theoretic
F-scores (from the sums of their contingency table) and the border thinning the leaderboard applies first."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unetflow.evaluate.inputs import check_connectivity
from unetflow.evaluate.pixels import ratio

_WALL, _LINE, _QUEUED = -1, -2, -3  # outside the image, watershed line, queued (and below) while thinning


@dataclass(frozen=True)
class Overlap:
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
        return ratio(2 * (self.sum_ab2 - diagonal), self.sum_a2 + self.sum_b2 - 2 * diagonal)

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
class TruthCells:
    """The truth's foreground pixels (flat indices), their consecutive cell ids and the cell statistics."""

    where: np.ndarray
    ids: np.ndarray
    count: int
    sum_a2: float
    entropy: float

    @staticmethod
    def of(truth_labels: np.ndarray) -> TruthCells:
        flat = truth_labels.ravel()
        where = np.flatnonzero(flat)
        values, ids = np.unique(flat[where], return_inverse=True)
        sizes = np.bincount(ids.ravel(), minlength=values.size)
        return TruthCells(
            where, ids.ravel(), int(values.size), _square_sum(sizes), _entropy(sizes, where.size)
        )

    def overlap(self, pred_labels: np.ndarray) -> Overlap:
        """Overlap sums with a predicted label image of the same shape (its 0 pixels are singletons)."""
        n = int(self.where.size)
        if n == 0:
            return Overlap(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
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
        return Overlap(
            n=n,
            sum_a2=self.sum_a2,
            sum_b2=_square_sum(pred_sizes) + singletons,
            sum_ab2=_square_sum(joint.ravel()) + singletons,
            h_truth=self.entropy,
            h_pred=_entropy(pred_sizes, n, singletons),
            h_joint=_entropy(joint.ravel(), n, singletons),
        )


def _overlap_of(truth_labels: np.ndarray, pred_labels: np.ndarray) -> Overlap:
    truth_labels = np.asarray(truth_labels)
    pred_labels = np.asarray(pred_labels)
    if truth_labels.shape != pred_labels.shape:
        raise ValueError(
            f"truth_labels has shape {truth_labels.shape} but pred_labels has shape {pred_labels.shape}; "
            "pass label images of the same shape"
        )
    if (truth_labels.size and truth_labels.min() < 0) or (pred_labels.size and pred_labels.min() < 0):
        raise ValueError("label images must be >= 0 (0 = background/boundary); relabel negative ids")
    return TruthCells.of(truth_labels).overlap(pred_labels)


def rand_fscore(truth_labels: np.ndarray, pred_labels: np.ndarray, *, self_pairs: bool = False) -> float:
    """Foreground-restricted Rand F-score of two label images (truth 0 ignored, predicted 0 = singletons).

    ``self_pairs=False`` counts pairs of distinct pixels (Rand 1971; equals 1 - skimage's
    ``adapted_rand_error`` with the predicted 0 pixels relabelled uniquely); ``True`` is Fiji's N^2 form.
    """
    return _overlap_of(truth_labels, pred_labels).rand_fscore(self_pairs=self_pairs)


def information_fscore(truth_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Foreground-restricted information F-score 2 I / (H(truth) + H(pred)); predicted 0 = singletons."""
    return _overlap_of(truth_labels, pred_labels).information_fscore()


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
    check_connectivity(connectivity)
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
