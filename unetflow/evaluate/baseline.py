"""Objects scored against the truth beside a baseline: a whole-volume instance segmentation beside the
connected components of the thresholded mask (the baseline it must beat), in 3-D where the truth has
objects through the volume (VOI split and merge, adapted Rand error: unetflow.evaluate.instances) and
per slice as ISBI 2012 scores them (Rand error, V_rand, V_info: unetflow.evaluate.metrics).

Shaped to fold into the object-metric family of the metric registry (SEG, detection F1, matched IoU over
label images): each score is a function of a stack of (truth, objects) slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetflow.evaluate import instances
from unetflow.evaluate.instances import instance_scores as instances_scores
from unetflow.evaluate.metrics import evaluate

SLICE_KEYS = ("rand_error", "v_rand", "v_info")
"""The per-slice scores of a label image (the registry's, computed on instance labels)."""


def stack_scores(
    truth: np.ndarray,
    objects: np.ndarray,
    *,
    instances: bool,
    ignore: np.ndarray | None = None,
    per_slice: np.ndarray | None = None,
) -> dict[str, float]:
    """3-D VOI and adapted Rand error (where the truth holds instance ids through the volume: `instances`)
    and the per-slice Rand error, V_rand and V_info (means over slices) of a (z, y, x) label stack
    (of `per_slice` where the slices are scored on other labels, e.g. the baseline's 2-D components)."""
    scores: dict[str, float] = {}
    if instances:
        scores.update(instances_scores(truth, objects))
    objects = objects if per_slice is None else per_slice
    rows: list[dict[str, float]] = []
    for z in range(truth.shape[0]):
        mask = None if ignore is None else ignore[z]
        result = evaluate(
            objects[z].astype(np.int64),
            truth[z],
            include_warping=False,
            prediction_instances=True,
            truth_instances=instances,
            ignore=mask,
        )
        rows.append({key: result[key] for key in SLICE_KEYS})
    for key in SLICE_KEYS:
        values = [row[key] for row in rows if not math.isnan(row[key])]
        scores[key] = float(np.mean(values)) if values else math.nan
    return scores


def connected_components(probability: np.ndarray, threshold: float, *, three_d: bool) -> np.ndarray:
    """The baseline: connected components of the foreground probability above `threshold`, in 3-D
    (6-connected) or per slice (4-connected), ids unique over the stack."""
    mask = np.asarray(probability) > threshold
    if three_d:
        return ndimage.label(mask)[0]
    out = np.zeros(mask.shape, dtype=np.int64)
    top = 0
    for z in range(mask.shape[0]):
        labels, count = ndimage.label(mask[z])
        out[z] = np.where(labels > 0, labels + top, 0)
        top += count
    return out


def compare(
    truth: np.ndarray,
    objects: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    *,
    instances: bool,
    ignore: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """The segmentation's scores and the connected-components baseline's, side by side: the baseline is
    3-D (6-connected) for the 3-D scores and per slice (4-connected, today's instances) for the slices'."""
    flat = connected_components(probability, threshold, three_d=False)
    baseline = connected_components(probability, threshold, three_d=True) if instances else flat
    return {
        "segmentation": stack_scores(truth, objects, instances=instances, ignore=ignore),
        "connected_components": stack_scores(
            truth, baseline, instances=instances, ignore=ignore, per_slice=flat
        ),
    }


def worst(truth: np.ndarray, objects: np.ndarray, *, limit: int = 3) -> dict[str, list[dict[str, int]]]:
    """The largest splits and merges of a segmentation (unetflow.evaluate.instances.worst)."""
    return instances.worst(truth, objects, limit=limit)


def mean_over(rows: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean of each score over several volumes' comparisons (NaN where none has it)."""
    merged: dict[str, dict[str, float]] = {}
    for row in rows:
        for kind, scores in row.items():
            for key, value in scores.items():
                merged.setdefault(kind, {}).setdefault(key, []).append(value)  # type: ignore[arg-type]
    return {
        kind: {
            key: float(np.mean([v for v in values if not math.isnan(v)]))  # type: ignore[union-attr]
            if any(not math.isnan(v) for v in values)  # type: ignore[union-attr]
            else math.nan
            for key, values in scores.items()
        }
        for kind, scores in merged.items()
    }
