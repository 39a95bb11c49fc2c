"""Object metrics: truth and predicted label images compared object by object, from one contingency table.

Where the pixel family (unetflow.evaluate.measures) scores each slice's classes and boundaries, this family
scores objects, one id each, in 2-D frames or 3-D volumes alike: every measure is a function of one
`Contingency` (the sizes of the truth and predicted objects and the pixels each pair shares), and its value
pooled over several frames is the same function of their tables joined (`Contingency.join`: the objects of
each frame stay distinct objects). Id 0 is background on both sides; it is in the table (so measures over
every pixel, such as the variation of information, can be added to the family) and no object.

Measures (keys of `unetflow.evaluate.registry.OBJECT_METRICS`):

* ``seg``: the Cell Tracking Challenge's SEG (Ulman et al. 2017, Nat. Methods 14:1141; py-ctcmetrics
  ``ctc_metrics.metrics.seg``). A truth object R matches the predicted object S with |R n S| > 0.5 |R| (at
  most one S can); J(R) = |R n S| / |R u S| with the whole of S, else 0; SEG is the mean of J over every
  truth object. Predicted objects that match nothing cost nothing (false positives do not count), a cell
  split in two keeps at most the piece that covers more than half of it, and cells merged into one share
  an S whose union with each is large.
* ``detection_f1``, ``precision``, ``recall``: objects matched one to one at IoU > 0.5 (a pair with IoU
  above a half is the only one of either object), TP the matched pairs, FN the unmatched truth objects,
  FP the unmatched predicted objects; F1 = 2 TP / (2 TP + FP + FN). Splits and merges cost here what SEG
  forgives: the unmatched pieces are false positives, the cells lost in a merge false negatives.
* ``matched_iou``, ``matched_dice``: the mean IoU and Dice (2 |R n S| / (|R| + |S|)) of the matched pairs;
  how well the cells that were found are outlined.

Partial annotations (`ignore`, the unannotated pixels): the truth there is background, the predicted
objects keep every pixel (J and IoU use their whole size, as the challenge's SEG does), and a predicted
object with half its pixels or more on unannotated pixels is not counted as a false positive when it
matches nothing (it most likely outlines a cell nobody traced).

`object_errors` names what went wrong, object by object: truth objects missed (J = 0) or split (two or more
predicted objects lie mostly inside them), predicted objects that merge (cover more than half of two or
more truth objects) or are extra (match nothing, lie mostly on background). The report marks them.

NumPy only: it runs on any label images, unetflow's or another tool's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MATCH_IOU = 0.5
"""Detection matches pairs whose IoU exceeds this: then each object has at most one partner."""
SEG_COVER = 0.5
"""SEG's rule: a predicted object matches a truth object covering more than this fraction of it."""


@dataclass(frozen=True)
class Contingency:
    """The sparse contingency table of two label images: each side's ids and sizes (pixels), and every
    pair (index into the truth ids, index into the predicted ids, pixels shared) that shares pixels.

    `pred_unannotated` counts each predicted object's pixels on unannotated truth pixels.
    """

    truth_ids: np.ndarray
    truth_sizes: np.ndarray
    pred_ids: np.ndarray
    pred_sizes: np.ndarray
    pair_truth: np.ndarray
    pair_pred: np.ndarray
    overlap: np.ndarray
    pred_unannotated: np.ndarray

    @staticmethod
    def of(truth: np.ndarray, prediction: np.ndarray, *, ignore: np.ndarray | None = None) -> Contingency:
        """The table of a truth and a predicted label image of one shape (2-D, 3-D: any), non-negative
        integers, 0 = background; `ignore` (bool, same shape) marks unannotated pixels, truth 0 there."""
        truth_array, pred_array = np.asarray(truth), np.asarray(prediction)
        if truth_array.shape != pred_array.shape:
            raise ValueError(
                f"truth has shape {truth_array.shape} but prediction has shape {pred_array.shape}; give "
                "label images of the same shape"
            )
        for name, array in (("truth", truth_array), ("prediction", pred_array)):
            if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{name} must be an integer label image (0 = background), got {array.dtype}")
            if array.size and array.min() < 0:
                raise ValueError(f"{name} holds negative ids; use 0 for background and positive ids")
        truth_flat, pred_flat = truth_array.ravel(), pred_array.ravel()
        unannotated = None
        if ignore is not None:
            unannotated = np.asarray(ignore, dtype=bool)
            if unannotated.shape != truth_array.shape:
                raise ValueError(f"ignore has shape {unannotated.shape}, the labels {truth_array.shape}")
            unannotated = unannotated.ravel()
            truth_flat = np.where(unannotated, 0, truth_flat)
        truth_ids, truth_index = np.unique(truth_flat, return_inverse=True)
        pred_ids, pred_index = np.unique(pred_flat, return_inverse=True)
        keys, overlap = np.unique(
            truth_index.ravel().astype(np.int64) * pred_ids.size + pred_index.ravel(), return_counts=True
        )
        outside = np.zeros(pred_ids.size, dtype=np.int64)
        if unannotated is not None:
            outside = np.bincount(pred_index.ravel()[unannotated], minlength=pred_ids.size)
        return Contingency(
            truth_ids=truth_ids,
            truth_sizes=np.bincount(truth_index.ravel(), minlength=truth_ids.size),
            pred_ids=pred_ids,
            pred_sizes=np.bincount(pred_index.ravel(), minlength=pred_ids.size),
            pair_truth=keys // pred_ids.size,
            pair_pred=keys % pred_ids.size,
            overlap=overlap,
            pred_unannotated=outside,
        )

    @staticmethod
    def join(tables: Sequence[Contingency]) -> Contingency:
        """The tables of several frames as one, each frame's objects distinct (what a pooled value uses)."""
        if not tables:
            raise ValueError("join needs at least one contingency table")
        truth_offsets = np.cumsum([0] + [t.truth_ids.size for t in tables[:-1]])
        pred_offsets = np.cumsum([0] + [t.pred_ids.size for t in tables[:-1]])
        return Contingency(
            truth_ids=np.concatenate([t.truth_ids for t in tables]),
            truth_sizes=np.concatenate([t.truth_sizes for t in tables]),
            pred_ids=np.concatenate([t.pred_ids for t in tables]),
            pred_sizes=np.concatenate([t.pred_sizes for t in tables]),
            pair_truth=np.concatenate([t.pair_truth + o for t, o in zip(tables, truth_offsets, strict=True)]),
            pair_pred=np.concatenate([t.pair_pred + o for t, o in zip(tables, pred_offsets, strict=True)]),
            overlap=np.concatenate([t.overlap for t in tables]),
            pred_unannotated=np.concatenate([t.pred_unannotated for t in tables]),
        )

    @property
    def objects(self) -> tuple[int, int]:
        """(truth objects, predicted objects): ids other than 0."""
        return int(np.count_nonzero(self.truth_ids)), int(np.count_nonzero(self.pred_ids))

    def object_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(truth index, predicted index, shared pixels) of the pairs of two objects (no background)."""
        keep = (self.truth_ids[self.pair_truth] != 0) & (self.pred_ids[self.pair_pred] != 0)
        return self.pair_truth[keep], self.pair_pred[keep], self.overlap[keep]

    def pair_iou(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(truth index, predicted index, shared pixels, IoU) of every pair of two objects."""
        rows, cols, shared = self.object_pairs()
        union = self.truth_sizes[rows] + self.pred_sizes[cols] - shared
        return rows, cols, shared, shared / union


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def seg_matches(table: Contingency) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth index, predicted index, J) of SEG's matches: |R n S| > 0.5 |R| (at most one S per R)."""
    rows, cols, shared, iou = table.pair_iou()
    chosen = shared > SEG_COVER * table.truth_sizes[rows]
    return rows[chosen], cols[chosen], iou[chosen]


def seg(table: Contingency) -> float:
    """The challenge's SEG: J of every truth object (0 without a match) averaged over them (NaN: none)."""
    truth_objects, _ = table.objects
    return _ratio(float(seg_matches(table)[2].sum()), truth_objects)


def detection_matches(table: Contingency) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(truth index, predicted index, shared pixels, IoU) of the one-to-one matches at IoU > 0.5."""
    rows, cols, shared, iou = table.pair_iou()
    chosen = iou > MATCH_IOU
    return rows[chosen], cols[chosen], shared[chosen], iou[chosen]


def _detections(table: Contingency) -> tuple[int, int, int]:
    """(TP, FP, FN): matched pairs, counted unmatched predictions, unmatched truth objects."""
    rows, cols, _, _ = detection_matches(table)
    truth_objects, _ = table.objects
    counted = (table.pred_ids != 0) & (2 * table.pred_unannotated < table.pred_sizes)
    counted[cols] = False
    true_positives = int(rows.size)
    return true_positives, int(np.count_nonzero(counted)), truth_objects - true_positives


def detection_f1(table: Contingency) -> float:
    """F1 of the one-to-one matches at IoU > 0.5: 2 TP / (2 TP + FP + FN) (NaN with no object at all)."""
    tp, fp, fn = _detections(table)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def precision(table: Contingency) -> float:
    """Matched predicted objects over the counted predicted objects, TP / (TP + FP)."""
    tp, fp, _ = _detections(table)
    return _ratio(tp, tp + fp)


def recall(table: Contingency) -> float:
    """Matched truth objects over all truth objects, TP / (TP + FN)."""
    tp, _, fn = _detections(table)
    return _ratio(tp, tp + fn)


def matched_iou(table: Contingency) -> float:
    """Mean IoU of the matched pairs (NaN without a match)."""
    _, _, _, iou = detection_matches(table)
    return float(iou.mean()) if iou.size else math.nan


def matched_dice(table: Contingency) -> float:
    """Mean Dice, 2 |R n S| / (|R| + |S|), of the matched pairs (NaN without a match)."""
    rows, cols, shared, _ = detection_matches(table)
    if not rows.size:
        return math.nan
    return float(np.mean(2 * shared / (table.truth_sizes[rows] + table.pred_sizes[cols])))


def pooled(score: Callable[[Contingency], float]) -> Callable[[Sequence[Contingency]], float]:
    """An object measure over several frames: the measure of their tables joined (objects stay distinct)."""

    def of_frames(tables: Sequence[Contingency]) -> float:
        return score(Contingency.join(tables))

    return of_frames


@dataclass(frozen=True)
class ObjectErrors:
    """What went wrong, by id: truth objects missed or split, predicted objects merging cells or extra."""

    missed: list[int]
    split: list[int]
    merged: list[int]
    extra: list[int]

    def counts(self) -> dict[str, int]:
        """How many of each."""
        return {name: len(getattr(self, name)) for name in ("missed", "split", "merged", "extra")}


def object_errors(table: Contingency) -> ObjectErrors:
    """The error of each object (module docstring), as ids of one frame's table (ids repeat in a join)."""
    rows, cols, shared = table.object_pairs()
    matched_rows, matched_cols, _ = seg_matches(table)
    truth_objects = np.flatnonzero(table.truth_ids)
    missed = np.setdiff1d(truth_objects, matched_rows)
    inside = shared * 2 > table.pred_sizes[cols]  # the predicted object lies mostly inside this truth object
    pieces = np.bincount(rows[inside], minlength=table.truth_ids.size)
    split = np.flatnonzero(pieces >= 2)
    covers = np.bincount(matched_cols, minlength=table.pred_ids.size)
    merged = np.flatnonzero(covers >= 2)
    counted = (table.pred_ids != 0) & (2 * table.pred_unannotated < table.pred_sizes)
    counted[matched_cols] = False
    counted[cols[inside]] = False
    extra = np.flatnonzero(counted)
    return ObjectErrors(
        missed=table.truth_ids[missed].tolist(),
        split=table.truth_ids[split].tolist(),
        merged=table.pred_ids[merged].tolist(),
        extra=table.pred_ids[extra].tolist(),
    )


def _foreground_pairs(table: Contingency) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth index, predicted index, shared pixels) of the pairs inside truth objects (truth 0 left out,
    predicted 0 kept), as CREMI and SNEMI3D score neurons."""
    keep = table.truth_ids[table.pair_truth] != 0
    return table.pair_truth[keep], table.pair_pred[keep], table.overlap[keep].astype(np.float64)


def _entropy_bits(counts: np.ndarray, total: float) -> float:
    p = counts[counts > 0] / total
    return float(-np.sum(p * np.log2(p)))


def _conditional_entropy(table: Contingency, *, given_truth: bool) -> float:
    rows, cols, shared = _foreground_pairs(table)
    total = shared.sum()
    if total == 0:
        return math.nan
    given = np.bincount(rows if given_truth else cols, weights=shared)
    return max(0.0, _entropy_bits(shared, total) - _entropy_bits(given, total))


def voi_split(table: Contingency) -> float:
    """Variation of information, split part: H(prediction | truth) in bits over the truth's objects (how
    much a truth object is cut into pieces; CREMI's `voi`, truth 0 ignored, 0 is perfect)."""
    return _conditional_entropy(table, given_truth=True)


def voi_merge(table: Contingency) -> float:
    """Variation of information, merge part: H(truth | prediction) in bits over the truth's objects (how
    much a predicted object spans several truth objects)."""
    return _conditional_entropy(table, given_truth=False)


def adapted_rand_error(table: Contingency) -> float:
    """1 - the Rand F-score of SNEMI3D and CREMI (`adapted_rand`): pairs within truth objects; predicted 0
    inside a truth object counts as one-pixel segments (each over the whole image's pixel count there)."""
    rows, cols, shared = _foreground_pairs(table)
    if shared.sum() == 0:
        return math.nan
    pixels = float(table.truth_sizes.sum())
    labelled = table.pred_ids[cols] != 0
    zero = float(shared[~labelled].sum()) / pixels
    sum_a = float(np.sum(np.bincount(rows, weights=shared) ** 2))
    sum_b = float(np.sum(np.bincount(cols[labelled], weights=shared[labelled]) ** 2)) + zero
    sum_ab = float(np.sum(shared[labelled] ** 2)) + zero
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    return 1.0 - 2 * precision * recall / (precision + recall)
