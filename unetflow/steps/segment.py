"""The segmentation steps: plan a volume's segmentation, run one step of one block group, finish it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from unetflow.atomic import protect_inputs
from unetflow.config.model import SegmentConfig
from unetflow.logs import setup_logging
from unetflow.steps.common import write_json

log = logging.getLogger(__name__)

STEPS = ("fragments", "graph", "solve", "relabel")
WHOLE = "all"
"""The step that runs the four in turn: a segmentation of one block group is one job, not four."""


def _options(options: SegmentConfig, *, boundary: bool, groups: int | None = None) -> dict[str, Any]:
    """The keyword options of `init_segmentation` from the segment section."""
    return {
        "block": tuple(options.block_shape),
        "halo": tuple(options.halo),
        "groups": groups if groups is not None else options.block_groups,
        "mode": options.mode,
        "boundary": boundary,
        "method": options.method,
        "threshold": options.threshold,
        "seed_threshold": options.seed_threshold,
        "max_edges": options.max_edges,
    }


def run_segment_init(
    *,
    probability: str,
    target: str,
    options: SegmentConfig,
    boundary: bool = False,
    groups: int | None = None,
    source: dict[str, Any] | None = None,
    voxel_size: Sequence[float] | None = None,
) -> None:
    """Check the probability volume, plan its segmentation and create the empty label image."""
    from unetflow.segment.run import init_segmentation
    from unetflow.segment.source import ProbabilitySource

    setup_logging()
    with protect_inputs([probability], outputs=[target]):
        init_segmentation(
            ProbabilitySource(path=probability, **dict(source or {})),
            target,
            voxel_size=None if voxel_size is None else tuple(voxel_size),  # type: ignore[arg-type]
            **_options(options, boundary=boundary, groups=groups),
        )


def run_segment_step(*, step: str, target: str, group: int = 0) -> dict[str, Any]:
    """One step (fragments, graph, relabel: of block group `group`; solve: the whole graph; all: the four in
    turn, for a segmentation planned as one block group)."""
    from unetflow.segment import run

    setup_logging()
    if step == WHOLE:
        return _run_whole(target)
    functions = {"fragments": run.run_fragments, "graph": run.run_graph, "relabel": run.run_relabel}
    if step == "solve":
        return run.run_solve(target)
    if step not in functions:
        raise ValueError(f"segment step {step!r} is not one of {', '.join(STEPS)}")
    result = functions[step](target, group)
    log.info("segment %s of group %d of %s: %s", step, group, target, result)
    return result


def _run_whole(target: str) -> dict[str, Any]:
    """Every step of a one-group segmentation in this process (each resumes where it stopped, as alone)."""
    from unetflow.segment.plan import read_plan

    groups = read_plan(target).groups
    if groups != 1:
        raise ValueError(
            f"segment step {WHOLE!r} runs a segmentation of one block group; {target} has {groups}: "
            f"run {', '.join(STEPS)} as separate steps"
        )
    return {step: run_segment_step(step=step, target=target) for step in STEPS}


def run_segment_finalize(*, target: str, summary: str, options: SegmentConfig) -> dict[str, Any]:
    """Check every block is written, build the pyramid, write the summary."""
    from unetflow.segment.pipeline import finalize_segmentation

    setup_logging()
    with protect_inputs([], outputs=[summary]):
        result = finalize_segmentation(target, pyramid=options.pyramid)
        write_json(summary, result)
    return result


def run_segment(
    *,
    probability: str,
    target: str,
    options: SegmentConfig,
    boundary: bool = False,
    group: int | None = None,
    source: dict[str, Any] | None = None,
    voxel_size: Sequence[float] | None = None,
    summary: str | None = None,
) -> dict[str, Any]:
    """The whole segmentation of a probability volume (or one block group's blockwise steps), resumable."""
    from unetflow.segment.pipeline import segment_volume
    from unetflow.segment.source import ProbabilitySource

    setup_logging()
    outputs = [target] if summary is None else [target, summary]
    with protect_inputs([probability], outputs=outputs):
        result = segment_volume(
            ProbabilitySource(path=probability, **dict(source or {})),
            target,
            group=group,
            pyramid=options.pyramid,
            show_progress=True,
            voxel_size=None if voxel_size is None else tuple(voxel_size),
            **_options(options, boundary=boundary),
        )
        if summary is not None and group is None:
            write_json(summary, result)
    log.info(
        "segmented %s: %s", target, {k: result[k] for k in ("objects", "fragments", "edges") if k in result}
    )
    return result


def run_isbi_submission(*, segmentation: str, output: str) -> None:
    """Write a segmentation as the ISBI 2012 challenge's submission file (unetflow.segment.submission)."""
    from unetflow.segment.submission import write_submission

    setup_logging()
    with protect_inputs([segmentation], outputs=[output]):
        shape = write_submission(segmentation, output)
    log.info("wrote the ISBI 2012 submission %s (%s)", output, " x ".join(map(str, shape)))
