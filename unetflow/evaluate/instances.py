"""Scores of an instance segmentation of a whole volume against instance labels, as CREMI and SNEMI3D
score neurons: variation of information (split and merge, in bits) and the adapted Rand error, in 3-D.

Both come from one contingency table of (truth id, segment id) voxel counts over the voxels where the
truth has an object (truth 0 is unlabelled and ignored, as CREMI's `ignore_groundtruth=[0]`):

- VOI split = H(segment | truth): how much a truth object is cut into pieces; VOI merge = H(truth |
  segment): how much a segment spans several truth objects; in bits (log2), 0 is perfect (CREMI's `voi`).
- Adapted Rand error = 1 - F, F the harmonic mean of the Rand precision sum_ij n_ij^2 / sum_j b_j^2 and
  recall sum_ij n_ij^2 / sum_i a_i^2 (SNEMI3D's and CREMI's `adapted_rand`: a segment id 0 inside a truth
  object counts as that many one-voxel segments, divided by the whole volume's voxel count as there).

The table is accumulated block by block (`Contingency.add`), so a volume of any size is scored in bounded
memory: it grows with the number of (truth, segment) pairs, not with the voxels. The largest splits and
merges (`worst`) name the truth objects cut into most pieces and the segments spanning most truth objects,
for the report's figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Contingency:
    """Voxel counts per (truth id, segment id) over the truth's objects, and the volume's voxel count."""

    pairs: dict[tuple[int, int], int] = field(default_factory=dict)
    voxels: int = 0

    def add(self, truth: np.ndarray, segment: np.ndarray) -> None:
        """Fold in one block of truth ids and segment ids (the same shape)."""
        truth = np.asarray(truth).ravel()
        segment = np.asarray(segment).ravel()
        if truth.shape != segment.shape:
            raise ValueError(f"truth has {truth.size} voxels but the segmentation {segment.size}")
        self.voxels += int(truth.size)
        inside = truth != 0
        if not inside.any():
            return
        keys = np.stack([truth[inside].astype(np.uint64), segment[inside].astype(np.uint64)], axis=1)
        unique, counts = np.unique(keys, axis=0, return_counts=True)
        for (a, b), n in zip(unique.tolist(), counts.tolist(), strict=True):
            self.pairs[(a, b)] = self.pairs.get((a, b), 0) + n

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(truth ids, segment ids, counts) of every pair."""
        if not self.pairs:
            empty = np.empty(0, dtype=np.uint64)
            return empty, empty, np.empty(0, dtype=np.float64)
        keys = np.array(list(self.pairs), dtype=np.uint64)
        return keys[:, 0], keys[:, 1], np.array(list(self.pairs.values()), dtype=np.float64)

    def scores(self) -> dict[str, float]:
        """voi_split, voi_merge, voi (their sum) and adapted_rand_error."""
        truth, segment, counts = self.table()
        n = counts.sum()
        if n == 0:
            return dict.fromkeys(("voi_split", "voi_merge", "voi", "adapted_rand_error"), math.nan)
        a = _sums(truth, counts)
        b = _sums(segment, counts)
        h_joint = _entropy(counts, n)
        split = h_joint - _entropy(a, n)
        merge = h_joint - _entropy(b, n)
        labelled = segment != 0
        zero = counts[~labelled].sum()
        sum_a = float(np.sum(a * a))
        sum_b = float(np.sum(_sums(segment[labelled], counts[labelled]) ** 2)) + zero / self.voxels
        sum_ab = float(np.sum(counts[labelled] ** 2)) + zero / self.voxels
        precision, recall = sum_ab / sum_b, sum_ab / sum_a
        fscore = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "voi_split": max(0.0, split),
            "voi_merge": max(0.0, merge),
            "voi": max(0.0, split) + max(0.0, merge),
            "adapted_rand_error": 1.0 - fscore,
        }

    def worst(self, *, limit: int = 3) -> dict[str, list[dict[str, Any]]]:
        """The truth objects cut into most segments (splits) and the segments spanning most truth objects
        (merges), each with its pieces and voxels, largest first; pieces under 1% of an object not counted."""
        truth, segment, counts = self.table()
        found: dict[str, list[dict[str, Any]]] = {"splits": [], "merges": []}
        for key, own, other in (("splits", truth, segment), ("merges", segment, truth)):
            rows = []
            for value in np.unique(own):
                if key == "merges" and value == 0:
                    continue
                mine = own == value
                parts = counts[mine]
                size = parts.sum()
                big = parts >= 0.01 * size
                if key == "merges":
                    big &= other[mine] != 0
                if int(big.sum()) > 1:
                    rows.append({"id": int(value), "pieces": int(big.sum()), "voxels": int(size)})
            rows.sort(key=lambda row: (-row["pieces"], -row["voxels"], row["id"]))
            found[key] = rows[:limit]
        return found


def _sums(ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts summed per id."""
    _, inverse = np.unique(ids, return_inverse=True)
    return np.bincount(inverse.ravel(), weights=counts)


def _entropy(counts: np.ndarray, n: float) -> float:
    """Entropy in bits of a distribution of counts out of n."""
    p = counts[counts > 0] / n
    return float(-np.sum(p * np.log2(p)))


def instance_scores(truth: np.ndarray, segment: np.ndarray) -> dict[str, float]:
    """VOI split, merge and sum (bits) and adapted Rand error of a segmentation against truth ids."""
    table = Contingency()
    table.add(truth, segment)
    return table.scores()
