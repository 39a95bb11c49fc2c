"""Pixel classification: the confusion counts of a thresholded prediction and the scores derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelCounts:
    """Confusion counts of a foreground mask against the truth's foreground."""

    tp: int
    fp: int
    fn: int
    tn: int

    @staticmethod
    def of(pred: np.ndarray, truth: np.ndarray, pixels: int | None = None) -> PixelCounts:
        """Counts over `pixels` pixels (default: all of them; fewer where some are unannotated, which
        `pred` and `truth` must hold as background)."""
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(truth)) - tp
        return PixelCounts(tp, fp, fn, (pred.size if pixels is None else pixels) - tp - fp - fn)

    def __add__(self, other: PixelCounts) -> PixelCounts:
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def iou(self) -> float:
        """Intersection over union of the foreground (cell interior)."""
        return ratio(self.tp, self.tp + self.fp + self.fn)

    def iou_background(self) -> float:
        """Intersection over union of the background (membrane)."""
        return ratio(self.tn, self.tn + self.fp + self.fn)

    def mean_iou(self) -> float:
        """Mean of the two classes' IoU."""
        return (self.iou() + self.iou_background()) / 2

    def fscore(self) -> float:
        """F1 (Dice) of the foreground."""
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def pixel_error(self) -> float:
        """Fraction of wrongly classified pixels (NaN without annotated pixels)."""
        return ratio_or_nan(self.fp + self.fn, self.tp + self.fp + self.fn + self.tn)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0 / 0 = 1 (nothing to get wrong)."""
    return 1.0 if denominator == 0 else numerator / denominator


def ratio_or_nan(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where there is nothing to count (a slice without annotated pixels)."""
    return math.nan if denominator == 0 else numerator / denominator
