"""One function per workflow step: the glue between config values and the package's modules.

The Snakemake scripts and the `unetflow` CLI both call these, so a step behaves the same inside and outside
the workflow. Each writes its outputs atomically.
"""

from __future__ import annotations

# torch and the modules that use it are imported inside the steps that need them: the data steps (download,
# synthesize, import, weights, evaluate) then start in a fraction of a second, which matters on a login node
# and for Snakemake jobs that each start a fresh interpreter.
import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile
from tqdm.dask import TqdmCallback

from unetflow import omezarr
from unetflow.atomic import atomic_path
from unetflow.download import fetch, verify_file
from unetflow.errors import InputError
from unetflow.importer import import_volume, invert_binary_labels
from unetflow.logs import bar_options, progress_bar, setup_logging
from unetflow.metrics import evaluate
from unetflow.slices import select_slices
from unetflow.synthesize import synthesize_volume
from unetflow.weights import class_balance_weights, weight_map_volume

log = logging.getLogger(__name__)

METRIC_KEYS = ("iou", "dice", "pixel_error")


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (indented, for people and diff tools)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def run_synthesize(
    *, raw: str, labels: str, shape: Sequence[int], seed: int = 0, cell_diameter: float = 40.0
) -> None:
    """Generate the embedded EM-like volume and write raw and instance labels as multi-page TIFFs."""
    setup_logging()
    image, cells = synthesize_volume(shape=tuple(shape), seed=seed, cell_diameter=cell_diameter)
    for path, data in ((raw, image), (labels, cells)):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib")
    log.info("synthesized %s slices of %s x %s (seed %d, %d cells)", *shape, seed, int(cells.max()))


def run_download(*, source: str, target: str, sha256: str | None) -> None:
    """Fetch one source file, verified against its checksum."""
    setup_logging()
    fetch(source, target, sha256=sha256)


def run_import(*, raw: str, labels: str | None, target: str, entry: dict[str, Any]) -> None:
    """Import a volume (and its labels) into OME-Zarr with voxel size and normalisation statistics.

    `path` sources are checked against their sha256 first (url sources were checked when downloaded);
    labels with `invert` are imported inverted.
    """
    setup_logging()
    raw_source = entry.get("raw", {})
    labels_source = entry.get("labels", {})
    for role, path, source in (("raw", raw, raw_source), ("labels", labels, labels_source)):
        if path is not None and "path" in source:
            verify_file(path, source.get("sha256"), what=f"{role} path source")
    label_data: str | da.Array | None = labels
    if labels is not None and labels_source.get("invert", False):
        label_data = invert_binary_labels(
            labels, fmt=labels_source.get("format"), member=labels_source.get("member")
        )
        log.info("labels of %s inverted: 0 (membrane) where they were non-zero", labels)
    import_volume(
        raw,
        target,
        labels=label_data,
        raw_format=raw_source.get("format"),
        raw_member=raw_source.get("member"),
        labels_format=labels_source.get("format"),
        labels_member=labels_source.get("member"),
        voxel_size=tuple(entry.get("voxel_size", (1.0, 1.0, 1.0))),
        unit=entry.get("unit", "nanometer"),
    )
    log.info("imported %s -> %s", raw, target)


def run_weights(
    *,
    data: str,
    target: str,
    train_slices: str | list[int],
    w0: float = 10.0,
    sigma: float = 5.0,
    connectivity: int = 1,
    workers: int = 2,
) -> None:
    """The paper's weight map for every slice; w_c balances the classes over the training slices."""
    setup_logging()
    labels = omezarr.open_labels(data)
    if labels is None:
        raise InputError(f"{data} has no labels: the weight map needs labels (config volumes.*.labels)")
    chosen = select_slices(train_slices, labels.shape[0], what="split.train")
    class_weights = class_balance_weights(labels[i] > 0 for i in chosen)
    log.info("class weights (background, foreground) over %d training slices: %s", len(chosen), class_weights)
    stack = da.from_zarr(labels).rechunk((1, *labels.shape[1:]))
    maps = stack.map_blocks(
        weight_map_volume,
        dtype=np.float32,
        w0=w0,
        sigma=sigma,
        class_weights=class_weights,
        connectivity=connectivity,
    )
    with (
        dask.config.set(scheduler="threads", num_workers=workers),
        TqdmCallback(desc="weights", unit="task", **bar_options()),
    ):
        omezarr.write_image(
            target,
            maps,
            voxel_size=omezarr.voxel_size(data),
            attrs={"class_weights": list(class_weights), "w0": w0, "sigma": sigma, "source": str(data)},
        )


def run_train(
    *,
    data: str,
    weights: str,
    output: str,
    step_log: str,
    val_log: str,
    workdir: str,
    model: dict[str, Any],
    train: dict[str, Any],
    split: dict[str, Any],
    threads: int = 2,
) -> dict[str, Any]:
    """Train the U-Net on the split's training slices (resuming from `workdir` when interrupted)."""
    import torch

    from unetflow.model import UNetConfig
    from unetflow.train import TrainConfig
    from unetflow.train import train as train_model

    setup_logging()
    torch.set_num_threads(max(1, threads))
    slices = omezarr.open_image(data).shape[0]
    result = train_model(
        data=data,
        weights=weights,
        train_slices=select_slices(split["train"], slices, what="split.train"),
        val_slices=select_slices(split.get("val") or [], slices, what="split.val"),
        model_config=UNetConfig(**model),
        config=TrainConfig.from_dict(train),
        workdir=workdir,
        output=output,
        step_log=step_log,
        val_log=val_log,
    )
    log.info("training finished: %s", result)
    return result


def resolve_threshold(option: float | str, model: str) -> float:
    """The segmentation threshold: a number as given, or "auto", the one the model's loss calls for."""
    from unetflow.checkpoint import decision_threshold_of

    threshold = decision_threshold_of(model) if option == "auto" else float(option)
    log.info("segmentation threshold %.4f (predict.threshold: %s)", threshold, option)
    return threshold


def run_predict_init(*, data: str, model: str, target: str, options: dict[str, Any]) -> None:
    """Create the empty prediction arrays of a volume, chunked by the tile plan."""
    from unetflow.checkpoint import load_model
    from unetflow.predict import init_prediction

    setup_logging()
    net = load_model(model)
    plan = init_prediction(
        data,
        target,
        model=net,
        memory_gb=options.get("memory_gb", 4.0),
        batch_size=options.get("batch_size", 1),
        workers=options.get("workers", 2),
        dtype=options.get("dtype", "float32"),
        threshold=resolve_threshold(options.get("threshold", "auto"), model),
    )
    log.info("prediction plan: stride %d, tile input %d, block %d", plan.stride, plan.input, plan.block)


def run_predict(
    *,
    data: str,
    model: str,
    target: str,
    options: dict[str, Any],
    group: int = 0,
    threads: int = 2,
    log_directory: str = "results/logs/dask",
) -> dict[str, int]:
    """Predict one block group of a volume (only its unfinished blocks), on threads or a dask cluster."""
    import torch

    from unetflow.checkpoint import load_model
    from unetflow.predict import predict_volume

    setup_logging()
    torch.set_num_threads(max(1, threads))
    scheduler = options.get("scheduler", "threads")
    with contextlib.ExitStack() as stack:
        engine: dict[str, Any] = {}
        if scheduler == "distributed":
            from unetflow.cluster import ClusterConfig, open_client

            cluster = ClusterConfig.from_dict(options.get("cluster"))
            client = stack.enter_context(open_client(cluster, log_directory=log_directory))
            log.info("dask cluster: %s", client)
            engine = {"client": client, "worker_threads": cluster.threads}
        counts = predict_volume(
            load_model(model),
            data,
            target,
            memory_gb=options.get("memory_gb", 4.0),
            device=options.get("device", "auto"),
            batch_size=options.get("batch_size", 1),
            tta=options.get("tta", False),
            dtype=options.get("dtype", "float32"),
            precision=options.get("precision", "float32"),
            threshold=resolve_threshold(options.get("threshold", "auto"), model),
            group=group,
            groups=options.get("block_groups", 1),
            workers=options.get("workers", 2),
            scheduler=scheduler,
            **engine,
        )
    log.info("block group %d: %s", group, counts)
    return counts


def run_predict_finalize(
    *, target: str, model: str, summary: str, options: dict[str, Any] | None = None
) -> None:
    """Check that every block of every group is complete, add instance labels if asked, write a summary."""
    from unetflow.checkpoint import load_model
    from unetflow.predict import finalize_prediction

    setup_logging()
    result = finalize_prediction(
        target, model=load_model(model), instances=bool((options or {}).get("instances", False))
    )
    write_json(summary, {"target": str(target), **result})


def run_export(
    *,
    model: str,
    output: str,
    data: str,
    split: dict[str, Any],
    volume: dict[str, Any],
    metrics: str | None = None,
) -> None:
    """Write a trained model as a bioimage.io package; its test input comes from the first test slice."""
    from unetflow.bioimageio import describe_training_data, export_model

    setup_logging()
    image = omezarr.open_image(data)
    slices = image.shape[0] if image.ndim == 3 else 1
    export_model(
        model,
        output,
        image=data,
        image_slice=select_slices(split["test"], slices, what="split.test")[0],
        metrics=metrics,
        training_data=describe_training_data(split["volume"], volume, split["train"]),
    )


def evaluation_slices(volume: str, split: dict[str, Any], slices: int) -> list[int]:
    """The split's test slices for the split volume; every slice for other labelled volumes."""
    if volume == split["volume"]:
        return select_slices(split["test"], slices, what="split.test")
    return list(range(slices))


def run_evaluate(
    *,
    data: Sequence[str],
    predictions: Sequence[str],
    volumes: Sequence[str],
    split: dict[str, Any],
    metrics: str,
    slices: str,
    threshold: float | str = "auto",
    connectivity: int = 1,
    warping: bool = True,
) -> dict[str, Any]:
    """Metrics per slice, per volume and overall; JSON summary plus a per-slice CSV.

    `threshold` "auto" takes the one each prediction's segmentation was made with (its attributes).
    """
    from unetflow.predict import prediction_threshold

    setup_logging()
    rows: list[dict[str, Any]] = []
    per_volume: dict[str, dict[str, float]] = {}
    thresholds: dict[str, float] = {}
    for volume, data_path, prediction in zip(volumes, data, predictions, strict=True):
        cut = prediction_threshold(prediction) if threshold == "auto" else float(threshold)
        thresholds[volume] = cut
        truth = omezarr.open_labels(data_path)
        probability = omezarr.open_image(prediction)
        chosen = evaluation_slices(volume, split, truth.shape[0])
        volume_rows = []
        for index in progress_bar(chosen, desc=f"evaluate {volume}", unit="slice"):
            scores = evaluate(
                np.asarray(probability[index], dtype=np.float32),
                np.asarray(truth[index]),
                threshold=cut,
                connectivity=connectivity,
                include_warping=warping,
            )
            volume_rows.append({"volume": volume, "slice": index, **scores})
        rows.extend(volume_rows)
        per_volume[volume] = _mean_scores(volume_rows)
    overall = _mean_scores(rows)
    payload = {**{key: overall[key] for key in METRIC_KEYS}, "overall": overall, "volumes": per_volume}
    payload["slices_evaluated"] = len(rows)
    payload["thresholds"] = thresholds
    payload["threshold"] = next(iter(thresholds.values()), 0.5)
    write_json(metrics, payload)
    columns = list(rows[0]) if rows else ["volume", "slice"]
    with atomic_path(slices) as tmp:
        lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
        tmp.write_text("\n".join(lines) + "\n")
    log.info("overall: %s", {key: round(overall[key], 4) for key in METRIC_KEYS})
    return payload


def _mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric metric over slices."""
    keys = [key for key in rows[0] if key not in ("volume", "slice")] if rows else []
    return {key: float(np.mean([row[key] for row in rows])) for key in keys}


def run_report(**kwargs: Any) -> None:
    """Render the HTML report (see unetflow.report)."""
    setup_logging()
    from unetflow.report import build_report

    build_report(**kwargs)
