"""The prediction steps: plan a volume's prediction, predict its block groups, check and finalise it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from unetflow.atomic import protect_inputs
from unetflow.config.model import PredictConfig
from unetflow.logs import setup_logging
from unetflow.steps.common import output_place, write_json, write_record
from unetflow.stores import Location

log = logging.getLogger(__name__)


def resolve_threshold(option: float | str, model: str) -> float:
    """The segmentation threshold: a number as given, or "auto", the one the model's loss calls for."""
    from unetflow.model.checkpoint import decision_threshold_of

    threshold = decision_threshold_of(model) if option == "auto" else float(option)
    log.info("segmentation threshold %.4f (predict.threshold: %s)", threshold, option)
    return threshold


def prediction_place(target: str, options: PredictConfig) -> Location:
    """Where a prediction is written: `target` with the options to reach predict.output's store."""
    return output_place(target, options.output)


def run_predict_init(
    *,
    data: str,
    model: str,
    target: str,
    stats: str,
    options: PredictConfig,
    groups: int = 1,
    source: Mapping[str, Any] | None = None,
    voxel_size: Sequence[float] | None = None,
    record: str | None = None,
) -> None:
    """Plan the prediction of a volume and create its empty arrays; the volume's statistics go to `stats`.

    `source` gives the format, member and level of a container read in place (and for a URL anon,
    endpoint_url, profile; none for an import); `voxel_size` the config's, where the source's own metadata is
    not to be used; `record` a local JSON naming where the prediction was written (what the workflow tracks
    of an output on an object store, predict.output).
    """
    from unetflow.model.checkpoint import load_model, provenance
    from unetflow.predict import init_prediction
    from unetflow.predict.sources import SourceSpec

    setup_logging()
    with protect_inputs([data, model], outputs=[target, stats]):
        init_prediction(
            SourceSpec(path=data, **dict(source or {})),
            prediction_place(target, options),
            model=load_model(model),
            options=options,
            groups=groups,
            threshold=resolve_threshold(options.threshold, model),
            provenance=provenance(model),
            stats=stats,
            voxel_size=voxel_size,
        )
    if record is not None:
        write_record(record, "prediction", prediction_place(target, options))


def run_predict(
    *,
    data: str,
    model: str,
    target: str,
    options: PredictConfig,
    group: int | None = None,
    threads: int = 2,
    log_directory: str = "results/logs/dask",
    source: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Predict one block group of a volume (every group when `group` is None), on threads or a dask cluster.

    Only shards that are not complete on disk are computed; a new target is planned with
    `options.block_groups` groups (auto: from the volume's size). `source` as for run_predict_init.
    """
    import torch

    from unetflow.model.checkpoint import load_model
    from unetflow.predict import groups_for, predict_volume, prediction_threshold
    from unetflow.predict.run import is_planned
    from unetflow.predict.sources import SourceSpec, open_source

    setup_logging()
    torch.set_num_threads(max(1, threads))
    with protect_inputs([data, model], outputs=[target]), contextlib.ExitStack() as stack:
        engine: dict[str, Any] = {}
        if options.scheduler == "distributed":
            from unetflow.predict.cluster import open_client

            client = stack.enter_context(open_client(options.cluster, log_directory=log_directory))
            log.info("dask cluster: %s", client)
            engine = {"client": client, "worker_threads": options.cluster.threads}
        place = prediction_place(target, options)
        threshold = (
            prediction_threshold(place) if is_planned(place) else resolve_threshold(options.threshold, model)
        )
        spec = SourceSpec(path=data, **dict(source or {}))
        shape = tuple(open_source(spec).shape)
        groups = groups_for(
            shape, block_groups=options.block_groups, group_gb=options.group_gb, dtype=options.dtype
        )
        counts = predict_volume(
            load_model(model),
            spec,
            place,
            options=options,
            threshold=threshold,
            group=group,
            groups=groups,
            **engine,
        )
    log.info("predicted %s: %s", target, counts)
    return counts


def run_predict_finalize(*, target: str, summary: str, options: PredictConfig) -> None:
    """Check that every shard of every group is complete, build the pyramid (and instance labels if asked),
    and write a summary (blocks, files, throughput)."""
    from unetflow.predict import finalize_prediction

    setup_logging()
    with protect_inputs([], outputs=[summary]):
        result = finalize_prediction(
            prediction_place(target, options), pyramid=options.pyramid, instances=options.instances
        )
        write_json(summary, {"target": str(target), **result})
