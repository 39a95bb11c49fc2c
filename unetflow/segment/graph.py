"""The region graph of the fragments: per block, then merged; edge features that add up across blocks.

A block owns the voxel pairs whose first voxel lies in it (along z, y and x); the second voxel may lie one
voxel beyond its upper faces, in the next block. So every pair of face-adjacent voxels of the volume counts
exactly once, whatever the blocks, and the pairs across a block face are edges like any other. An edge's
features are the number of voxel pairs between its two fragments (contact area) and the sum over them of
the mean boundary probability of the pair; both add up across blocks, so the merged graph and its mean
boundary per edge are those of a single block holding the volume.

Bytes per edge: a block's edges are stored as two uint64 ids, a float64 sum and a uint32 count (28 bytes);
the merged graph holds two uint64 ids, a float64 sum and a float64 count (32 bytes) plus the graph library's
adjacency (measured in benchmarks/segment.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bioimage_cpp.graph import UndirectedGraph
from bioimage_cpp.graph import distributed as rag


@dataclass(frozen=True)
class Edges:
    """Edges (u < v, uint64 global fragment ids), their contact counts and summed boundary probability."""

    uv: np.ndarray
    count: np.ndarray
    total: np.ndarray

    @staticmethod
    def empty() -> Edges:
        """No edges."""
        return Edges(np.empty((0, 2), np.uint64), np.empty(0, np.uint32), np.empty(0, np.float64))

    def __len__(self) -> int:
        return int(self.uv.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Mean boundary probability over each edge's voxel pairs."""
        return self.total / np.maximum(self.count, 1)


def block_edges(labels: np.ndarray, boundary: np.ndarray, own: tuple[int, int, int]) -> Edges:
    """The edges a block owns: `labels` (global ids, 0 = no data) and `boundary` cover the block from its
    first voxel to one voxel beyond its upper faces where the volume goes on; `own` is the block's shape.

    A voxel pair's boundary value is the larger of its two voxels' (the pair is as much apart as its more
    membrane-like voxel: two neurites that overlap between serial sections only where one of them has its
    membrane stay apart). Pairs touching label 0 (no data) are no edge.
    """
    labels = np.asarray(labels)
    ids, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape).astype(np.int64)
    keys, values = [], []
    for axis in range(3):
        if own[axis] == 0 or labels.shape[axis] < 2:
            continue
        first = [
            slice(0, min(own[axis], labels.shape[axis] - 1)) if a == axis else slice(0, own[a])
            for a in range(3)
        ]
        second = [slice(s.start + 1, s.stop + 1) if a == axis else s for a, s in enumerate(first)]
        a, b = compact[tuple(first)], compact[tuple(second)]
        differ = a != b
        if ids[0] == 0:
            differ &= (a > 0) & (b > 0)
        lo, hi = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
        keys.append(lo * len(ids) + hi)
        values.append(np.maximum(boundary[tuple(first)][differ], boundary[tuple(second)][differ]))
    if not keys:
        return Edges.empty()
    key = np.concatenate(keys)
    unique, inverse = np.unique(key, return_inverse=True)
    uv = np.stack([ids[unique // len(ids)], ids[unique % len(ids)]], axis=1).astype(np.uint64)
    count = np.bincount(inverse, minlength=len(unique)).astype(np.uint32)
    total = np.bincount(inverse, weights=np.concatenate(values).astype(np.float64), minlength=len(unique))
    return Edges(uv, count, total)


def merge(parts: list[Edges], nodes: int) -> tuple[UndirectedGraph, np.ndarray, np.ndarray]:
    """The region graph of `nodes` fragments (ids 0..nodes-1) from every block's edges: the graph, and per
    edge its contact count and mean boundary probability (float64)."""
    uv = rag.merge_edges([part.uv for part in parts]) if parts else np.empty((0, 2), np.uint64)
    graph = UndirectedGraph.from_unique_edges(nodes, uv)
    count = np.zeros(len(uv), dtype=np.float64)
    total = np.zeros(len(uv), dtype=np.float64)
    for part in parts:
        if len(part):
            ids = graph.find_edges(part.uv)
            count += np.bincount(ids, weights=part.count, minlength=len(uv))
            total += np.bincount(ids, weights=part.total, minlength=len(uv))
    return graph, count, total / np.maximum(count, 1)
