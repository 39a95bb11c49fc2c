"""Everything the metrics of a slice derive from: its pixel counts at the threshold and over the sweep, the
overlaps of its cells with the truth's before and after thinning, and the pixels left by warping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetflow.evaluate.inputs import (
    as_arrays,
    binarize,
    check_connectivity,
    check_threshold,
    check_thresholds,
    prediction_kind,
    restrict,
    structure,
    truth_kind,
)
from unetflow.evaluate.partition import Overlap, TruthCells, thin_boundaries
from unetflow.evaluate.pixels import PixelCounts
from unetflow.evaluate.warping import warp


@dataclass(frozen=True)
class EvaluationOptions:
    """The checked keyword options of evaluate / evaluate_volume."""

    threshold: float
    connectivity: int
    thresholds: tuple[float, ...]
    include_warping: bool


@dataclass(frozen=True)
class SliceStats:
    """Everything the scores of one slice (and pooled ones) derive from: each registered metric
    (unetflow.evaluate.registry) is a function of it."""

    at_threshold: PixelCounts
    sweep_pixels: tuple[PixelCounts, ...]
    sweep_rand: tuple[Overlap, ...]
    sweep_thinned: tuple[Overlap, ...]
    warping_remaining: int | None
    n_pixels: int


def slice_stats(
    prediction: np.ndarray,
    truth: np.ndarray,
    pred_kind: str,
    truth_kind: str,
    options: EvaluationOptions,
    pixels: int | None = None,
) -> SliceStats:
    """The statistics of one slice; `pixels` counts its annotated pixels where some are not (see
    `restrict`, which sets both images to background on the others)."""
    pixels = prediction.size if pixels is None else pixels
    truth_mask = truth > 0
    neighbours = structure(options.connectivity)
    truth_labels = truth if truth_kind == "labels" else ndimage.label(truth_mask, structure=neighbours)[0]
    truth_cells = TruthCells.of(truth_labels)

    target, confidence = binarize(prediction, pred_kind, options.threshold)
    at_threshold = PixelCounts.of(target, truth_mask, pixels)

    if pred_kind == "probability":
        sweep = [
            (mask, ndimage.label(mask, structure=neighbours)[0]) for mask in _sweep_masks(prediction, options)
        ]
    elif pred_kind == "labels":
        sweep = [(prediction > 0, prediction.astype(np.int64))]
    else:
        mask = prediction > 0
        sweep = [(mask, ndimage.label(mask, structure=neighbours)[0])]

    counts, rand, thinned = [], [], []
    for mask, labels in sweep:
        counts.append(PixelCounts.of(mask, truth_mask, pixels))
        rand.append(truth_cells.overlap(labels))
        thin = thin_boundaries(labels, connectivity=options.connectivity)
        thinned.append(truth_cells.overlap(thin))

    remaining = (
        int(np.count_nonzero(warp(truth_mask, target, confidence, options.connectivity) != target))
        if options.include_warping
        else None
    )
    return SliceStats(at_threshold, tuple(counts), tuple(rand), tuple(thinned), remaining, pixels)


def _sweep_masks(probability: np.ndarray, options: EvaluationOptions) -> list[np.ndarray]:
    """The thresholded masks of the sweep, reusing the mask of an equal threshold."""
    masks: dict[float, np.ndarray] = {}
    for t in options.thresholds:
        if t not in masks:
            masks[t] = probability > t
    return [masks[t] for t in options.thresholds]


def evaluation_options(
    threshold: float, connectivity: int, thresholds: Sequence[float], include_warping: bool
) -> EvaluationOptions:
    check_connectivity(connectivity)
    return EvaluationOptions(
        check_threshold(threshold), connectivity, check_thresholds(thresholds), bool(include_warping)
    )


def volume_stats(
    prediction: np.ndarray,
    truth: np.ndarray,
    options: EvaluationOptions,
    prediction_instances: bool,
    truth_instances: bool,
    ignore: np.ndarray | None = None,
) -> list[SliceStats]:
    prediction, truth = as_arrays(prediction, truth)
    pred_kind = prediction_kind(prediction, prediction_instances=prediction_instances)
    prediction, truth, pixels = restrict(prediction, truth, ignore)
    truth_is = truth_kind(truth, truth_instances=truth_instances)
    if prediction.ndim == 2:
        prediction, truth, pixels = prediction[None], truth[None], [pixels[0]]
    return [
        slice_stats(p, t, pred_kind, truth_is, options, n)
        for p, t, n in zip(prediction, truth, pixels, strict=True)
    ]
