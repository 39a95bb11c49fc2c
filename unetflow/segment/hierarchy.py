"""The global step with bounded memory: one pass where the graph fits, else two levels (domain
decomposition, as Pape et al. 2017 solve connectomics multicuts of 10^9 edges).

Level 1 agglomerates, block group by block group, the edges whose two fragments both live in the group
(a fragment lives in the block of its seed); what it merges is contracted. The graph of the contracted
regions (the edges across groups and between regions, their contact counts and boundary sums added up:
they stay additive) is agglomerated whole where it fits `max_edges`, else the same again with groups
twice as coarse, until it fits. Each job holds one group's edges or the last contracted graph, so the
largest is bounded by `max_edges` where the groups are small enough (a warning names a group that is
not). The two levels can merge less than one pass would (level 1 sees no repulsive contact across
its group's border); benchmarks/segment.py and tests/test_segment.py measure by how much.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

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
    """Node labels (length `nodes`) of the whole graph, and what the levels held; `home` (length `nodes`)
    is the block group each node lives in. Levels go on, each with groups twice as coarse, until the graph
    of what they merged fits `max_edges` (or one group is left)."""
    options = {"method": method, "threshold": threshold}
    if edges <= max_edges:
        graph, count, mean = merge(list(parts()), nodes)
        labels = agglomerate(graph, mean, count, **options)
        return labels, {"levels": 1, "largest_job_edges": int(graph.number_of_edges)}
    index = _node_dtype(nodes)
    representative = np.arange(nodes, dtype=index)
    home = home.astype(np.int32, copy=False)
    largest = 0
    for group, part in enumerate(parts()):
        largest = max(largest, _contract(part, home, group, representative, max_edges, options))
    reduced = _reduce((part for part in parts()), representative, nodes)
    level, groups = 1, int(home.max()) + 1
    while len(reduced) > max_edges and groups > 1:
        level, groups, home = level + 1, -(-groups // 2), np.where(home >= 0, home // 2, -1)
        step = np.arange(nodes, dtype=index)
        owner = home[reduced.uv[:, 0].astype(np.int64)]
        for group in range(groups):
            largest = max(
                largest, _contract(_select(reduced, owner == group), home, group, step, max_edges, options)
            )
        representative = step[representative]
        reduced = _reduce([reduced], step, nodes)
        del step, owner
    del home  # (the last level's solve is the step's largest: only what it needs is held through it)
    last = np.arange(nodes, dtype=index)
    held = _agglomerate_compact(reduced, last, options)
    return last[representative], {
        "levels": level + 1,
        "largest_job_edges": int(max(largest, held)),
        "last_level_edges": held,
    }


def _node_dtype(nodes: int) -> type[np.signedinteger]:
    """The narrowest index type for `nodes` nodes: the levels hold several arrays of one entry per node
    (33 million of them at 10^8 edges), so int32 saves a quarter of a GB per array there."""
    return np.int32 if nodes < 2**31 else np.int64


def _contract(
    part: Edges,
    home: np.ndarray,
    group: int,
    representative: np.ndarray,
    max_edges: int,
    options: dict[str, object],
) -> int:
    """Agglomerate the edges of `part` inside `group`; point each node it merged at its set's smallest
    node (in `representative`); the edges it held."""
    u, v = part.uv[:, 0].astype(np.int64), part.uv[:, 1].astype(np.int64)
    inner = (home[u] == group) & (home[v] == group)
    del u, v
    if not inner.any():
        return 0
    if np.count_nonzero(inner) > max_edges:
        log.warning(
            "block group %d holds %d edges inside it, above segment.max_edges %d: raise segment.block_groups "
            "so that each group's graph fits",
            group,
            np.count_nonzero(inner),
            max_edges,
        )
    inside = _select(part, inner)
    del part, inner
    return _agglomerate_compact(inside, representative, options)


def _select(edges: Edges, which: np.ndarray) -> Edges:
    """The edges `which` marks: a copy of some, the same object where it marks all (a coarse level often
    holds nearly the whole graph in one group; three copies of it would be a GB at 10^8 edges)."""
    if which.all():
        return edges
    return Edges(edges.uv[which], edges.count[which], edges.total[which])


def _agglomerate_compact(part: Edges, representative: np.ndarray, options: dict[str, object]) -> int:
    """Agglomerate the graph of `part`'s edges on the nodes they touch only (numbered 1..k for the solver,
    whose memory grows with its nodes too: the last level of 10^8 edges touches a fifteenth of the nodes);
    point each node it merged at its set's smallest node (in `representative`); the edges it held."""
    ids, compact = np.unique(part.uv.astype(np.int64).T.ravel(), return_inverse=True)
    local = Edges((compact.reshape(2, -1).T + 1).astype(np.uint64), part.count, part.total)
    del compact
    graph, count, mean = merge([local], len(ids) + 1)
    del local
    labels = agglomerate(graph, mean, count, **options)[1:]  # type: ignore[arg-type]
    held = int(graph.number_of_edges)
    del graph, count, mean
    first = np.full(int(labels.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, labels, ids)
    representative[ids] = first[labels]
    return held


def _reduce(parts: Iterable[Edges], representative: np.ndarray, nodes: int) -> Edges:
    """The edges between the regions `representative` names, their counts and sums added up; part by part
    first (a group's many edges between the same two regions become one), so that the edges of the whole
    graph are never held at once (10^8 of them would take 5 GB), then across the parts."""
    keys, counts, totals = [], [], []
    for part in parts:
        uv = np.sort(representative[part.uv.astype(np.int64)], axis=1)
        keep = uv[:, 0] != uv[:, 1]
        key, count, total = _summed(
            uv[keep, 0].astype(np.int64) * nodes + uv[keep, 1], part.count[keep], part.total[keep]
        )
        keys.append(key)
        counts.append(count)
        totals.append(total)
        del uv, keep
    key, count, total = (_joined(pieces) for pieces in (keys, counts, totals))
    unique, count, total = _summed(key, count, total)
    uv = np.stack([unique // nodes, unique % nodes], axis=1).astype(np.uint64)
    return Edges(uv, count.astype(np.uint32), total)


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    """The pieces end to end; the list emptied (each piece freed once copied)."""
    joined = np.concatenate(pieces) if pieces else np.empty(0)
    pieces.clear()
    return joined


def _summed(
    key: np.ndarray, count: np.ndarray, total: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys, and the counts and totals of each added up (float64)."""
    unique, inverse = np.unique(key, return_inverse=True)
    summed_count = np.bincount(inverse, weights=count.astype(np.float64, copy=False), minlength=len(unique))
    summed_total = np.bincount(inverse, weights=total, minlength=len(unique))
    return unique, summed_count, summed_total


def node_groups(keys: np.ndarray, plan: object) -> np.ndarray:
    """The block group each fragment lives in (its seed's block), index 0 (no data) in none (-1)."""
    shape = plan.shape  # type: ignore[attr-defined]
    z, y, x = np.unravel_index(keys.astype(np.int64) - 1, shape)
    counts = plan.counts  # type: ignore[attr-defined]
    block = plan.block  # type: ignore[attr-defined]
    numbers = ((z // block[0]) * counts[1] + y // block[1]) * counts[2] + x // block[2]
    starts = np.array([plan.group_blocks(g).start for g in range(plan.groups)])  # type: ignore[attr-defined]
    home = np.searchsorted(starts, numbers, side="right") - 1
    return np.concatenate([[-1], home]).astype(np.int32)
