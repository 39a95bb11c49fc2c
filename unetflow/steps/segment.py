"""The segmentation steps: plan a volume's segmentation, run one step of one block group, finish it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from unetflow.atomic import protect_inputs
from unetflow.config.model import OutputConfig, SegmentConfig
from unetflow.logs import setup_logging
from unetflow.steps.common import output_place, write_json, write_record

if TYPE_CHECKING:
    from unetflow.segment.source import ProbabilitySource
    from unetflow.stores import Location

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


def _probability(
    probability: str, source: dict[str, Any] | None, output: OutputConfig | None
) -> ProbabilitySource:
    """The probability volume with its format options; a URL under predict.output (the prediction on a store)
    with the options to reach that store."""
    from unetflow.segment.source import ProbabilitySource

    given = dict(source or {})
    place = output_place(probability, output)
    if given.get("store") is None and not place.is_local:
        given["store"] = place.options.to_dict()
    return ProbabilitySource(path=probability, **given)


def run_segment_init(
    *,
    probability: str,
    target: str,
    options: SegmentConfig,
    boundary: bool = False,
    groups: int | None = None,
    source: dict[str, Any] | None = None,
    voxel_size: Sequence[float] | None = None,
    output: OutputConfig | None = None,
    record: str | None = None,
) -> None:
    """Check the probability volume, plan its segmentation and create the empty label image.

    `output` (predict.output): where the prediction and its segmentation lie when they lie under it, maybe
    on an object store; `record` a local JSON naming where the segmentation was written (what the workflow
    tracks of an output on predict.output).
    """
    from unetflow.segment.run import init_segmentation

    setup_logging()
    place = output_place(target, output)
    with protect_inputs([probability], outputs=[target]):
        init_segmentation(
            _probability(probability, source, output),
            place,
            voxel_size=None if voxel_size is None else tuple(voxel_size),  # type: ignore[arg-type]
            **_options(options, boundary=boundary, groups=groups),
        )
    if record is not None:
        write_record(record, "segmentation", place)


def run_segment_step(
    *, step: str, target: str, group: int = 0, output: OutputConfig | None = None
) -> dict[str, Any]:
    """One step (fragments, graph, relabel: of block group `group`; solve: the whole graph; all: the four in
    turn, for a segmentation planned as one block group); `output` as for run_segment_init."""
    from unetflow.segment import run

    setup_logging()
    if step == WHOLE:
        return _run_whole(target, output)
    functions = {"fragments": run.run_fragments, "graph": run.run_graph, "relabel": run.run_relabel}
    place = output_place(target, output)
    if step == "solve":
        return run.run_solve(place)
    if step not in functions:
        raise ValueError(f"segment step {step!r} is not one of {', '.join(STEPS)}")
    result = functions[step](place, group)
    log.info("segment %s of group %d of %s: %s", step, group, place, result)
    return result


def _run_whole(target: str, output: OutputConfig | None) -> dict[str, Any]:
    """Every step of a one-group segmentation in this process (each resumes where it stopped, as alone)."""
    from unetflow.segment.plan import read_plan

    groups = read_plan(output_place(target, output)).groups
    if groups != 1:
        raise ValueError(
            f"segment step {WHOLE!r} runs a segmentation of one block group; {target} has {groups}: "
            f"run {', '.join(STEPS)} as separate steps"
        )
    return {step: run_segment_step(step=step, target=target, output=output) for step in STEPS}


def run_segment_finalize(
    *, target: str, summary: str, options: SegmentConfig, output: OutputConfig | None = None
) -> dict[str, Any]:
    """Check every block is written, build the pyramid, write the summary (always local: results/)."""
    from unetflow.segment.pipeline import finalize_segmentation

    setup_logging()
    with protect_inputs([], outputs=[summary]):
        result = finalize_segmentation(output_place(target, output), pyramid=options.pyramid)
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
    output: OutputConfig | None = None,
) -> dict[str, Any]:
    """The whole segmentation of a probability volume (or one block group's blockwise steps), resumable;
    a target and a probability under predict.output (`output`, maybe a URL) are reached with its options,
    and a summary at a URL is written there."""
    from unetflow.segment.pipeline import segment_volume

    setup_logging()
    outputs = [target] if summary is None else [target, summary]
    with protect_inputs([probability], outputs=outputs):
        result = segment_volume(
            _probability(probability, source, output),
            output_place(target, output),
            group=group,
            pyramid=options.pyramid,
            show_progress=True,
            voxel_size=None if voxel_size is None else tuple(voxel_size),
            **_options(options, boundary=boundary),
        )
        if summary is not None and group is None:
            _write_summary(output_place(summary, output), result)
    log.info(
        "segmented %s: %s", target, {k: result[k] for k in ("objects", "fragments", "edges") if k in result}
    )
    return result


def _write_summary(place: Location, result: dict[str, Any]) -> None:
    """The summary JSON: a local file written atomically, or one object beside a segmentation on a store."""
    if place.is_local:
        write_json(place.path, result)
    else:
        place.write_text(json.dumps(result, indent=2) + "\n")


def run_isbi_submission(*, segmentation: str, submission: str, output: OutputConfig | None = None) -> None:
    """Write a segmentation (under predict.output, `output`, maybe on a store) as the ISBI 2012 challenge's
    submission file (unetflow.segment.submission)."""
    from unetflow.segment.submission import write_submission

    setup_logging()
    with protect_inputs([segmentation], outputs=[submission]):
        shape = write_submission(output_place(segmentation, output), submission)
    log.info("wrote the ISBI 2012 submission %s (%s)", submission, " x ".join(map(str, shape)))
