"""Scores of a whole-volume instance segmentation against instance labels, as CREMI and SNEMI3D score
neurons: the object family's variation of information (split, merge; bits) and adapted Rand error
(unetflow.evaluate.objects, from one contingency table), and the largest splits and merges by id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unetflow.evaluate.objects import Contingency, adapted_rand_error, voi_merge, voi_split


def instance_scores(truth: np.ndarray, segment: np.ndarray) -> dict[str, float]:
    """VOI split, merge and their sum (bits) and adapted Rand error of a segmentation against truth ids."""
    table = Contingency.of(np.asarray(truth), np.asarray(segment))
    split, merge = voi_split(table), voi_merge(table)
    return {
        "voi_split": split,
        "voi_merge": merge,
        "voi": split + merge,
        "adapted_rand_error": adapted_rand_error(table),
    }


def worst(truth: np.ndarray, segment: np.ndarray, *, limit: int = 3) -> dict[str, list[dict[str, Any]]]:
    """The truth objects cut into most segments (splits) and the segments spanning most truth objects
    (merges), each with its pieces and pixels, largest first; pieces under 1% of an object not counted."""
    table = Contingency.of(np.asarray(truth), np.asarray(segment))
    keep = (table.truth_ids[table.pair_truth] != 0) & (table.pred_ids[table.pair_pred] != 0)
    rows, cols, shared = table.pair_truth[keep], table.pair_pred[keep], table.overlap[keep]
    found: dict[str, list[dict[str, Any]]] = {}
    for key, own, ids in (("splits", rows, table.truth_ids), ("merges", cols, table.pred_ids)):
        sizes = np.bincount(own, weights=shared, minlength=ids.size)
        big = shared >= 0.01 * sizes[own]
        pieces = np.bincount(own[big], minlength=ids.size)
        order = sorted((-int(pieces[i]), -int(sizes[i]), int(ids[i]), i) for i in np.flatnonzero(pieces > 1))
        found[key] = [{"id": int(ids[i]), "pieces": -p, "voxels": -v} for p, v, _, i in order[:limit]]
    return found
