"""Every metric as a function of a slice's statistics, and of a stack's for its pooled value.

A metric is one function here (and, pooled over a stack, a second) plus one entry in
unetflow.evaluate.registry, which computes exactly the registered ones: what a function measures and why is
stated in unetflow.evaluate.metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from unetflow.evaluate.partition import Overlap
from unetflow.evaluate.pixels import PixelCounts, ratio_or_nan
from unetflow.evaluate.stats import SliceStats


def nanmax(values: Iterable[float]) -> float:
    """The largest value that is not NaN (NaN when every value is)."""
    found = [v for v in values if not math.isnan(v)]
    return max(found) if found else math.nan


def _summed(counts: Iterable[PixelCounts]) -> PixelCounts:
    items = list(counts)
    return sum(items[1:], items[0])


def pooled_counts(stacks: Sequence[SliceStats]) -> PixelCounts:
    """The pixel counts at the threshold summed over the slices of a stack."""
    return _summed(s.at_threshold for s in stacks)


def iou(stats: SliceStats) -> float:
    """Foreground IoU at the threshold."""
    return stats.at_threshold.iou()


def iou_background(stats: SliceStats) -> float:
    """Background (membrane) IoU at the threshold."""
    return stats.at_threshold.iou_background()


def mean_iou(stats: SliceStats) -> float:
    """Mean of the two classes' IoU at the threshold."""
    return stats.at_threshold.mean_iou()


def dice(stats: SliceStats) -> float:
    """Foreground Dice (F1) at the threshold."""
    return stats.at_threshold.fscore()


def pixel_error(stats: SliceStats) -> float:
    """Fraction of wrong pixels at the threshold."""
    return stats.at_threshold.pixel_error()


def pooled(score: Callable[[PixelCounts], float]) -> Callable[[Sequence[SliceStats]], float]:
    """A pixel score of the counts summed over the slices (the challenge's value for a stack)."""

    def of_stack(stacks: Sequence[SliceStats]) -> float:
        return score(pooled_counts(stacks))

    return of_stack


def isbi_pixel_error(stats: SliceStats) -> float:
    """1 - the best pixel F-score over the sweep."""
    return 1.0 - max(c.fscore() for c in stats.sweep_pixels)


def isbi_pixel_error_pooled(stacks: Sequence[SliceStats]) -> float:
    """1 - the best F-score over the sweep of the pixel counts summed over slices."""
    sweep = [_summed(counts) for counts in zip(*(s.sweep_pixels for s in stacks), strict=True)]
    return 1.0 - max(c.fscore() for c in sweep)


def rand_error(stats: SliceStats) -> float:
    """1 - the best foreground-restricted Rand F-score over the sweep (no thinning)."""
    return 1.0 - nanmax(o.rand_fscore(self_pairs=False) for o in stats.sweep_rand)


def rand_error_pooled(stacks: Sequence[SliceStats]) -> float:
    """1 - the best Rand F-score over the sweep of the pair sums (pairs within each slice) over slices."""
    scores = []
    for overlaps in zip(*(s.sweep_rand for s in stacks), strict=True):
        sums = [sum(getattr(o, name) for o in overlaps) for name in ("n", "sum_a2", "sum_b2", "sum_ab2")]
        scores.append(Overlap(*sums, math.nan, math.nan, math.nan).rand_fscore(self_pairs=False))
    return 1.0 - nanmax(scores)


def _v_rand_of(overlap: Overlap) -> float:
    return overlap.rand_fscore(self_pairs=True)


def v_rand(stats: SliceStats) -> float:
    """The best Rand F-score (N^2 form) over the sweep after thinning."""
    return nanmax(map(_v_rand_of, stats.sweep_thinned))


def v_info(stats: SliceStats) -> float:
    """The best information F-score over the sweep after thinning."""
    return nanmax(o.information_fscore() for o in stats.sweep_thinned)


def _best_mean(stacks: Sequence[SliceStats], score: Callable[[Overlap], float]) -> float:
    """The best over thresholds of the slice-averaged score after thinning (Fiji's value of a stack)."""
    means = []
    for overlaps in zip(*(s.sweep_thinned for s in stacks), strict=True):
        values = [v for v in map(score, overlaps) if not math.isnan(v)]
        means.append(float(np.mean(values)) if values else math.nan)
    return nanmax(means)


def v_rand_pooled(stacks: Sequence[SliceStats]) -> float:
    """The best slice-averaged V_rand over the sweep."""
    return _best_mean(stacks, _v_rand_of)


def v_info_pooled(stacks: Sequence[SliceStats]) -> float:
    """The best slice-averaged V_info over the sweep."""
    return _best_mean(stacks, Overlap.information_fscore)


def warping_error(stats: SliceStats) -> float:
    """Pixels left by warping over the annotated pixels (NaN when warping was skipped)."""
    if stats.warping_remaining is None:
        return math.nan
    return ratio_or_nan(stats.warping_remaining, stats.n_pixels)


def warping_error_pooled(stacks: Sequence[SliceStats]) -> float:
    """Pixels left by warping over the annotated pixels of every slice (NaN when warping was skipped)."""
    if any(s.warping_remaining is None for s in stacks):
        return math.nan
    return ratio_or_nan(sum(s.warping_remaining or 0 for s in stacks), sum(s.n_pixels for s in stacks))
