"""The global step with bounded memory: one pass where the graph fits, else two levels (domain
decomposition, as Pape et al. 2017 solve connectomics multicuts of 10^9 edges).

Level 1 agglomerates, block group by block group, the edges whose two fragments both live in the group
(a fragment lives in the block of its seed); what it merges is contracted. Level 2 agglomerates the graph
of the contracted regions: the edges across groups and between regions, their contact counts and boundary
sums added up (they stay additive). Each level-1 job holds one group's edges, level 2 the contracted graph,
so the largest job is bounded by `max_edges` where the groups are small enough (a warning names a group
that is not). The two levels can merge less than one pass would (level 1 sees no repulsive contact across
its group's border); benchmarks/segment.py and tests/test_segment.py measure by how much.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np

from unetflow.segment.agglomerate import agglomerate
from unetflow.segment.graph import Edges, merge

log = logging.getLogger(__name__)

Parts = Callable[[], Iterator[Edges]]
"""Yields the region graph's edges group by group, in dense node ids (1..n; 0 no data), loading one at a
time."""


def solve(
    parts: Parts,
    nodes: int,
    home: np.ndarray,
    *,
    edges: int,
    max_edges: int,
    method: str,
    threshold: float,
) -> tuple[np.ndarray, dict[str, int]]:
    """Node labels (length `nodes`) of the whole graph, and what each level held; `home` (length `nodes`)
    is the block group each node lives in."""
    if edges <= max_edges:
        graph, count, mean = merge(list(parts()), nodes)
        labels = agglomerate(graph, mean, count, method=method, threshold=threshold)
        return labels, {"levels": 1, "largest_job_edges": int(graph.number_of_edges)}
    representative = np.arange(nodes, dtype=np.int64)
    largest = 0
    for group, part in enumerate(parts()):
        u, v = part.uv[:, 0].astype(np.int64), part.uv[:, 1].astype(np.int64)
        inner = (home[u] == group) & (home[v] == group)
        if not inner.any():
            continue
        ids, compact = np.unique(np.concatenate([u[inner], v[inner]]), return_inverse=True)
        local = Edges((compact.reshape(2, -1).T + 1).astype(np.uint64), part.count[inner], part.total[inner])
        if len(local) > max_edges:
            log.warning(
                "block group %d holds %d edges inside it, above segment.max_edges %d: raise "
                "segment.block_groups so that each group's graph fits",
                group,
                len(local),
                max_edges,
            )
        graph, count, mean = merge([local], len(ids) + 1)
        largest = max(largest, graph.number_of_edges)
        labels = agglomerate(graph, mean, count, method=method, threshold=threshold)[1:]
        first = np.full(int(labels.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, labels, ids)
        representative[ids] = first[labels]
    reduced = []
    for part in parts():
        uv = representative[part.uv.astype(np.int64)]
        keep = uv[:, 0] != uv[:, 1]
        ordered = np.sort(uv[keep], axis=1).astype(np.uint64)
        reduced.append(Edges(ordered, part.count[keep], part.total[keep]))
    graph, count, mean = merge(reduced, nodes)
    del reduced
    labels = agglomerate(graph, mean, count, method=method, threshold=threshold)
    return labels[representative], {
        "levels": 2,
        "largest_job_edges": int(max(largest, graph.number_of_edges)),
        "level2_edges": int(graph.number_of_edges),
    }


def node_groups(keys: np.ndarray, plan: object) -> np.ndarray:
    """The block group each fragment lives in (its seed's block), index 0 (no data) in none (-1)."""
    shape = plan.shape  # type: ignore[attr-defined]
    z, y, x = np.unravel_index(keys.astype(np.int64) - 1, shape)
    counts = plan.counts  # type: ignore[attr-defined]
    block = plan.block  # type: ignore[attr-defined]
    numbers = ((z // block[0]) * counts[1] + y // block[1]) * counts[2] + x // block[2]
    starts = np.array([plan.group_blocks(g).start for g in range(plan.groups)])  # type: ignore[attr-defined]
    home = np.searchsorted(starts, numbers, side="right") - 1
    return np.concatenate([[-1], home]).astype(np.int64)
