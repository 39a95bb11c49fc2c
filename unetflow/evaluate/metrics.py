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

Measures (``evaluate`` keys; labels, directions and descriptions in ``unetflow.evaluate.registry``), each
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

import math
from collections.abc import Sequence

import numpy as np

from unetflow.evaluate.objects import Contingency
from unetflow.evaluate.registry import METRICS, OBJECT_METRICS, POOLED
from unetflow.evaluate.stats import SliceStats, evaluation_options, volume_stats
from unetflow.model.loss import EVEN_ODDS

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(11))


def evaluate(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = EVEN_ODDS,
    connectivity: int = 1,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    include_warping: bool = True,
    truth_instances: bool = False,
    prediction_instances: bool = False,
    ignore: np.ndarray | None = None,
) -> dict[str, float]:
    """All measures of a 2-D slice, or their mean over the slices of a 3-D (z, y, x) stack.

    Keys: the registry's (``unetflow.evaluate.registry.METRICS``); definitions and sources in the module
    docstring. ``threshold`` binarizes a probability for the pixel measures and the warping error,
    ``thresholds`` is the sweep of the ISBI measures (binary and instance predictions are used as they
    are); ``connectivity`` 1 or 2 makes cells of 4- or 8-connected pixels; ``include_warping=False`` skips
    the warping error (NaN then); ``truth_instances`` / ``prediction_instances`` mark integer label
    images; ``ignore`` (bool, the shape of the prediction) marks unannotated pixels, which no measure
    sees.
    """
    options = evaluation_options(threshold, connectivity, thresholds, include_warping)
    stats = volume_stats(prediction, truth, options, prediction_instances, truth_instances, ignore)
    return _mean([_scores(s) for s in stats])


def evaluate_volume(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = EVEN_ODDS,
    connectivity: int = 1,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    include_warping: bool = True,
    truth_instances: bool = False,
    prediction_instances: bool = False,
    ignore: np.ndarray | None = None,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-slice measures of a (z, y, x) stack (a 2-D slice is one slice) and their aggregate.

    The aggregate holds the mean over slices under each registered key (slices where a measure is
    NaN are left out) and pooled values as the challenge computes them for a stack: ``iou_pooled``,
    ``iou_background_pooled``, ``mean_iou_pooled``, ``dice_pooled``, ``pixel_error_pooled`` (pixel counts
    summed over slices); ``isbi_pixel_error_pooled`` and ``rand_error_pooled`` (pixel counts and pair sums
    summed over slices at each threshold, then the best threshold for the whole stack); ``v_rand_pooled`` and
    ``v_info_pooled`` (per-slice scores averaged at each threshold, then the best threshold, as Fiji does);
    ``warping_error_pooled`` (remaining pixels over all pixels). ``ignore`` as in ``evaluate``.
    """
    options = evaluation_options(threshold, connectivity, thresholds, include_warping)
    stats = volume_stats(prediction, truth, options, prediction_instances, truth_instances, ignore)
    per_slice = [_scores(s) for s in stats]
    aggregate = _mean(per_slice)
    aggregate.update(_pooled(stats))
    return per_slice, aggregate


def _scores(stats: SliceStats) -> dict[str, float]:
    """Every registered metric of one slice, in the registry's order."""
    return {key: float(metric.score(stats)) for key, metric in METRICS.items()}


def _mean(per_slice: list[dict[str, float]]) -> dict[str, float]:
    result = {}
    for key in METRICS:
        values = [d[key] for d in per_slice if not math.isnan(d[key])]
        result[key] = float(np.mean(values)) if values else math.nan
    return result


def _pooled(stats: Sequence[SliceStats]) -> dict[str, float]:
    """Every registered metric with a stack form, pooled over the slices (`<key>_pooled`)."""
    return {f"{key}{POOLED}": float(m.stack(stats)) for key, m in METRICS.items() if m.stack is not None}


def evaluate_objects(
    truth: np.ndarray, prediction: np.ndarray, *, ignore: np.ndarray | None = None
) -> dict[str, float]:
    """Every object metric (``unetflow.evaluate.registry.OBJECT_METRICS``, in order) of one truth and one
    predicted label image (a 2-D frame or a 3-D volume as one unit); ``ignore`` marks unannotated pixels
    (unetflow.evaluate.objects: they hold no truth object and excuse a false positive lying on them)."""
    table = Contingency.of(truth, prediction, ignore=ignore)
    return {key: float(metric.score(table)) for key, metric in OBJECT_METRICS.items()}


def evaluate_objects_frames(
    truth: np.ndarray, prediction: np.ndarray, *, ignore: np.ndarray | None = None
) -> tuple[list[dict[str, float]], dict[str, float], list[Contingency]]:
    """The object metrics of each 2-D frame of (t, y, x) stacks, their aggregate and each frame's table.

    The aggregate holds the mean over frames under each key (frames where a metric is NaN left out) and
    ``<key>_pooled``: the metric of all frames' objects together, as the challenge computes SEG over a
    sequence (every truth object of every annotated frame counts once).
    """
    truth_stack, pred_stack = np.asarray(truth), np.asarray(prediction)
    if truth_stack.ndim != 3 or truth_stack.shape != pred_stack.shape:
        raise ValueError(
            f"truth {truth_stack.shape} and prediction {pred_stack.shape} must be (t, y, x) stacks of one "
            "shape"
        )
    masks = [None] * len(truth_stack) if ignore is None else list(np.asarray(ignore, dtype=bool))
    tables = [Contingency.of(t, p, ignore=m) for t, p, m in zip(truth_stack, pred_stack, masks, strict=True)]
    per_frame = [{key: float(m.score(table)) for key, m in OBJECT_METRICS.items()} for table in tables]
    aggregate = {}
    for key in OBJECT_METRICS:
        values = [frame[key] for frame in per_frame if not math.isnan(frame[key])]
        aggregate[key] = float(np.mean(values)) if values else math.nan
    aggregate.update(
        {f"{key}{POOLED}": float(m.stack(tables)) for key, m in OBJECT_METRICS.items() if m.stack is not None}
    )
    return per_frame, aggregate, tables
