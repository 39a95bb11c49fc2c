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
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile
from tqdm.dask import TqdmCallback

from unetflow import omezarr
from unetflow.atomic import atomic_path, protect_inputs
from unetflow.config import (
    EvaluateConfig,
    ExportConfig,
    ModelConfig,
    PredictConfig,
    SplitConfig,
    SyntheticConfig,
    TrainConfig,
    VolumeConfig,
    WeightsConfig,
    check_entries,
    primary_entry,
    source_names,
    split_entries,
    split_keys,
)
from unetflow.download import fetch, verify_file
from unetflow.errors import InputError
from unetflow.importer import import_volume, invert_binary_labels
from unetflow.labels import split_ignore
from unetflow.logs import bar_options, progress_bar, setup_logging
from unetflow.metrics import evaluate
from unetflow.metrics_registry import HEADLINE_KEYS
from unetflow.slices import select_slices
from unetflow.synthesize import synthesize_volume
from unetflow.training_data import check_training_data, count_classes, pooled_class_weights, resolve_sources
from unetflow.weights import weight_map_volume

SplitLike = SplitConfig | Mapping[str, Any] | Sequence[Any]
"""A split as the config states it: one entry (a mapping) or a list of entries."""

log = logging.getLogger(__name__)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (indented, for people and diff tools)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def run_synthesize(*, raw: str, labels: str, options: SyntheticConfig | Mapping[str, Any]) -> None:
    """Generate the embedded EM-like volume and write raw and instance labels as multi-page TIFFs."""
    setup_logging()
    section = SyntheticConfig.from_dict(options)
    if Path(raw).resolve() == Path(labels).resolve():
        raise InputError(
            f"{raw}: both raw and labels would be written to this one file (the labels replacing the raw); "
            "give them two paths"
        )
    image, cells = synthesize_volume(
        shape=tuple(section.shape),
        seed=section.seed,
        cell_diameter=section.cell_diameter,
        membrane_contrast=section.membrane_contrast,
    )
    for path, data in ((raw, image), (labels, cells)):
        with atomic_path(path) as tmp:
            # axes ZYX: a stack of 3 or 4 slices is not an RGB(A) image
            tifffile.imwrite(
                tmp, data, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"}
            )
    log.info(
        "synthesized %s slices of %s x %s (seed %d, %d cells)", *section.shape, section.seed, cells.max()
    )


def run_download(*, source: str, target: str, sha256: str | None) -> None:
    """Fetch one source file, verified against its checksum."""
    setup_logging()
    with protect_inputs([_local(source)], outputs=[target]):
        fetch(source, target, sha256=sha256)


def _local(source: str) -> str | None:
    """The local file a download source names (a path or file:// URL), or None for http(s)."""
    if source.startswith(("http://", "https://")):
        return None
    return source.removeprefix("file://")


def run_import(
    *, raw: str, labels: str | None, target: str, volume: VolumeConfig | Mapping[str, Any]
) -> None:
    """Import a volume (and its labels) into OME-Zarr with voxel size and normalisation statistics.

    `path` sources are checked against their sha256 first (url sources were checked when downloaded);
    labels with `invert` are imported inverted.
    """
    setup_logging()
    entry = VolumeConfig.from_dict(volume)
    with protect_inputs([raw, labels], outputs=[target]):
        for role, path, source in (("raw", raw, entry.raw), ("labels", labels, entry.labels)):
            if path is not None and source is not None and source.path is not None:
                verify_file(path, source.sha256, what=f"{role} path source")
        label_data: str | da.Array | None = labels
        ignore = entry.labels.ignore if entry.labels is not None else None
        if labels is not None and entry.labels is not None and entry.labels.invert:
            label_data = invert_binary_labels(
                labels, fmt=entry.labels.format, member=entry.labels.member, ignore=ignore
            )
            log.info("labels of %s inverted: 0 (membrane) where they were non-zero", labels)
        import_volume(
            raw,
            target,
            labels=label_data,
            raw_format=entry.raw.format if entry.raw else None,
            raw_member=entry.raw.member if entry.raw else None,
            labels_format=entry.labels.format if entry.labels else None,
            labels_member=entry.labels.member if entry.labels else None,
            labels_ignore=ignore,
            voxel_size=tuple(entry.voxel_size),
            unit=entry.unit,
        )
    log.info("imported %s -> %s", raw, target)


def run_class_balance(*, data: Mapping[str, str], split: SplitLike, target: str) -> dict[str, Any]:
    """The class weights w_c over the annotated training pixels of every split source (`data`: the imported
    volumes by name), checked (one class only, no annotation), written as JSON with each source's counts."""
    setup_logging()
    entries = split_entries(split)
    with protect_inputs(list(data.values()), outputs=[target]):
        sources = resolve_sources(entries, data, keys=split_keys(split))
        counts = {
            source.name: count_classes(source.data, source.train, rows=source.rows, columns=source.columns)
            for source in sources
            if source.train
        }
        check_training_data(counts)
        class_weights = pooled_class_weights(counts)
        payload = {
            "class_weights": list(class_weights),
            "sources": {
                name: {
                    "background": count.background,
                    "foreground": count.foreground,
                    "unannotated": count.unannotated,
                }
                for name, count in counts.items()
            },
        }
        write_json(target, payload)
    log.info(
        "class weights (background, foreground) over %d training sources: %s", len(counts), class_weights
    )
    return payload


def run_weights(
    *,
    data: str,
    target: str,
    options: WeightsConfig | Mapping[str, Any],
    train_slices: str | list[int] | None = None,
    class_balance: str | None = None,
    workers: int = 2,
) -> None:
    """The paper's weight map for every slice; w_c from `class_balance` (the JSON of run_class_balance,
    shared by every training volume), else balanced over this volume's `train_slices`."""
    setup_logging()
    section = WeightsConfig.from_dict(options)
    with protect_inputs([data, class_balance], outputs=[target]):
        labels = omezarr.open_labels(data)
        if labels is None:
            raise InputError(f"{data} has no labels: the weight map needs labels (config volumes.*.labels)")
        ignore = omezarr.label_ignore(data)
        if class_balance is not None:
            class_weights = tuple(json.loads(Path(class_balance).read_text())["class_weights"])
            log.info("class weights (background, foreground) from %s: %s", class_balance, class_weights)
        else:
            chosen = select_slices(train_slices, labels.shape[0], what="split.train")
            counts = {str(data): count_classes(data, chosen)}
            check_training_data(counts)
            class_weights = pooled_class_weights(counts)
            log.info(
                "class weights (background, foreground) over %d training slices: %s",
                len(chosen),
                class_weights,
            )
        kind = omezarr.read_attrs(data).get("labels", {}).get(omezarr.DEFAULT_LABELS)
        stack = da.from_zarr(labels).rechunk((1, *labels.shape[1:]))
        maps = stack.map_blocks(
            weight_map_volume,
            dtype=np.float32,
            w0=section.w0,
            sigma=section.sigma,
            class_weights=class_weights,
            binary=None if kind is None else kind == "binary",
            connectivity=section.connectivity,
            ignore=ignore,
        )
        with (
            dask.config.set(scheduler="threads", num_workers=workers),
            TqdmCallback(desc="weights", unit="task", **bar_options()),
        ):
            omezarr.write_image(
                target,
                maps,
                voxel_size=omezarr.voxel_size(data),
                attrs={
                    "class_weights": list(class_weights),
                    "w0": section.w0,
                    "sigma": section.sigma,
                    "source": str(data),
                },
            )


def run_train(
    *,
    data: Mapping[str, str] | str,
    weights: Mapping[str, str] | str,
    output: str,
    step_log: str,
    val_log: str,
    workdir: str,
    model: ModelConfig | Mapping[str, Any],
    train: TrainConfig | Mapping[str, Any],
    split: SplitLike,
    init_from: str | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Train the U-Net on the split's training sources (resuming from `workdir` when interrupted).

    `data` and `weights` map each training volume to its import and weight maps (one path each: the
    volume of the split's first entry). `init_from` is the model to fine-tune (its file: `train.init_from`
    downloaded or in place).
    """
    import torch

    from unetflow.checkpoint import init_architecture, load_checkpoint
    from unetflow.model import UNetConfig
    from unetflow.train import train as train_model

    setup_logging()
    model_section, train_section = ModelConfig.from_dict(model), TrainConfig.from_dict(train)
    entries = split_entries(split)
    if isinstance(data, str) or isinstance(weights, str):
        data, weights = {entries[0].volume: str(data)}, {entries[0].volume: str(weights)}
    torch.set_num_threads(max(1, threads))
    inputs = [*data.values(), *weights.values(), init_from]
    with protect_inputs(inputs, outputs=[output, step_log, val_log, workdir]):
        sources = resolve_sources(entries, data, weights, keys=split_keys(split))
        net = UNetConfig.from_section(model_section)
        if init_from is not None:
            net = init_architecture(load_checkpoint(init_from), model_section, source=str(init_from))
        log.info(
            "training on %s", ", ".join(f"{s.name} ({len(s.train)} + {len(s.val)} slices)" for s in sources)
        )
        result = train_model(
            sources=sources,
            model_config=net,
            config=train_section,
            workdir=workdir,
            output=output,
            step_log=step_log,
            val_log=val_log,
            init=init_from,
        )
    log.info("training finished: %s", result)
    return result


def resolve_threshold(option: float | str, model: str) -> float:
    """The segmentation threshold: a number as given, or "auto", the one the model's loss calls for."""
    from unetflow.checkpoint import decision_threshold_of

    threshold = decision_threshold_of(model) if option == "auto" else float(option)
    log.info("segmentation threshold %.4f (predict.threshold: %s)", threshold, option)
    return threshold


def run_predict_init(
    *,
    data: str,
    model: str,
    target: str,
    stats: str,
    options: PredictConfig | Mapping[str, Any],
    groups: int = 1,
    source: Mapping[str, Any] | None = None,
    voxel_size: Sequence[float] | None = None,
) -> None:
    """Plan the prediction of a volume and create its empty arrays; the volume's statistics go to `stats`.

    `source` gives the format, member and level of a container read in place (none for an import);
    `voxel_size` the config's, where the source's own metadata is not to be used.
    """
    from unetflow.checkpoint import load_model, provenance
    from unetflow.predict import init_prediction
    from unetflow.predict.sources import SourceSpec

    setup_logging()
    section = PredictConfig.from_dict(options)
    with protect_inputs([data, model], outputs=[target, stats]):
        init_prediction(
            SourceSpec(path=data, **dict(source or {})),
            target,
            model=load_model(model),
            options=section,
            groups=groups,
            threshold=resolve_threshold(section.threshold, model),
            provenance=provenance(model),
            stats=stats,
            voxel_size=voxel_size,
        )


def run_predict(
    *,
    data: str,
    model: str,
    target: str,
    options: PredictConfig | Mapping[str, Any],
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

    from unetflow.checkpoint import load_model
    from unetflow.predict import groups_for, predict_volume, prediction_threshold
    from unetflow.predict.sources import SourceSpec, open_source

    setup_logging()
    section = PredictConfig.from_dict(options)
    torch.set_num_threads(max(1, threads))
    with protect_inputs([data, model], outputs=[target]), contextlib.ExitStack() as stack:
        engine: dict[str, Any] = {}
        if section.scheduler == "distributed":
            from unetflow.cluster import open_client

            client = stack.enter_context(open_client(section.cluster, log_directory=log_directory))
            log.info("dask cluster: %s", client)
            engine = {"client": client, "worker_threads": section.cluster.threads}
        threshold = (
            prediction_threshold(target)
            if Path(target, "0").exists()
            else resolve_threshold(section.threshold, model)
        )
        spec = SourceSpec(path=data, **dict(source or {}))
        shape = tuple(open_source(spec).shape)
        groups = groups_for(
            shape, block_groups=section.block_groups, group_gb=section.group_gb, dtype=section.dtype
        )
        counts = predict_volume(
            load_model(model),
            spec,
            target,
            options=section,
            threshold=threshold,
            group=group,
            groups=groups,
            **engine,
        )
    log.info("predicted %s: %s", target, counts)
    return counts


def run_predict_finalize(*, target: str, summary: str, options: PredictConfig | Mapping[str, Any]) -> None:
    """Check that every shard of every group is complete, build the pyramid (and instance labels if asked),
    and write a summary (blocks, files, throughput)."""
    from unetflow.predict import finalize_prediction

    setup_logging()
    section = PredictConfig.from_dict(options)
    with protect_inputs([], outputs=[summary]):
        result = finalize_prediction(target, pyramid=section.pyramid, instances=section.instances)
        write_json(summary, {"target": str(target), **result})


def run_export(
    *,
    model: str,
    output: str,
    data: str,
    split: SplitLike,
    volume: VolumeConfig | Mapping[str, Any],
    volumes: Mapping[str, VolumeConfig | Mapping[str, Any]] | None = None,
    metrics: str | None = None,
    options: ExportConfig | Mapping[str, Any] | None = None,
) -> None:
    """Write a trained model as a bioimage.io package; its test input comes from the first test slice of
    the split's primary entry (`data`, `volume`: that entry's volume; `volumes`: every volume by name, for
    the description of the training data)."""
    from unetflow.bioimageio import describe_training_data, export_model

    setup_logging()
    entries = split_entries(split)
    entry = primary_entry(entries)
    if entry is None:
        raise InputError("split names no entry: the export takes its test image from the split's test slices")
    known = {entry.volume: volume, **dict(volumes or {})}
    section = ExportConfig.from_dict(options)
    with protect_inputs([model, data, metrics], outputs=[output]):
        image = omezarr.open_image(data)
        slices = image.shape[0] if image.ndim == 3 else 1
        test = select_slices(entry.test, slices, what="split.test") if entry.test not in ("", []) else [0]
        described = " ".join(
            describe_training_data(item.volume, VolumeConfig.from_dict(known[item.volume]).dump(), item.train)
            for item in entries
            if item.train not in ("", []) and item.volume in known
        )
        export_model(
            model,
            output,
            image=data,
            image_slice=test[0],
            metrics=metrics,
            name=section.name,
            description=section.description,
            license=section.license,
            authors=section.authors or None,
            training_data=described,
            training_data_license=section.training_data_license,
            test=section.test,
        )


def evaluation_units(
    volume: str, entries: Sequence[SplitConfig], shape: Sequence[int]
) -> list[tuple[str, list[int], tuple[int, int] | None, tuple[int, int] | None]]:
    """What is evaluated of a labelled volume: (source name, slices, rows, columns) of each split entry of
    it with test slices; the whole volume where the split names it not at all; nothing where it names the
    volume for training or validation only."""
    named = [
        (entry, name)
        for entry, name in zip(entries, source_names(entries), strict=True)
        if entry.volume == volume
    ]
    if not named:
        return [(volume, list(range(int(shape[0]))), None, None)]
    keys = [f"split entry {name!r}" for _, name in named]
    chosen = check_entries([entry for entry, _ in named], keys, {volume: shape})
    units = []
    for (entry, name), slices in zip(named, chosen, strict=True):
        if slices is None or not slices["test"]:
            continue
        _, rows, columns = entry.box(shape)
        units.append(
            (
                name,
                slices["test"],
                None if rows == (0, int(shape[1])) else rows,
                None if columns == (0, int(shape[2])) else columns,
            )
        )
    return units


def run_evaluate(
    *,
    data: Sequence[str],
    predictions: Sequence[str],
    volumes: Sequence[str],
    split: SplitLike | None,
    metrics: str,
    slices: str,
    threshold: float | str = "auto",
    options: EvaluateConfig | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics per slice, per volume, per split source and overall; JSON summary plus a per-slice CSV.

    Each volume is evaluated on the test slices (and regions) of its split entries, or whole where the
    split does not name it (`evaluation_units`); unannotated pixels count in no metric. `threshold` "auto"
    takes the one each prediction's segmentation was made with (its attributes).
    """
    from unetflow.predict import check_complete, planned_groups, prediction_threshold

    setup_logging()
    section = EvaluateConfig.from_dict(options)
    entries = split_entries(split)
    rows: list[dict[str, Any]] = []
    per_volume: dict[str, dict[str, float]] = {}
    per_source: dict[str, dict[str, float]] = {}
    thresholds: dict[str, float] = {}
    with protect_inputs([*data, *predictions], outputs=[metrics, slices]):
        for volume, data_path, prediction in zip(volumes, data, predictions, strict=True):
            truth = omezarr.open_labels(data_path)
            if truth is None:
                raise InputError(
                    f"{data_path} has no labels to evaluate {prediction} against; import its labels"
                )
            units = evaluation_units(volume, entries, truth.shape)
            if not units:
                continue  # the split trains or validates on this volume only
            if planned_groups(prediction) is not None:  # a unetflow prediction: every shard on disk
                check_complete(prediction)
            cut = prediction_threshold(prediction) if threshold == "auto" else float(threshold)
            thresholds[volume] = cut
            probability = omezarr.open_image(prediction)
            ignore = omezarr.label_ignore(data_path)
            volume_rows = []
            for name, chosen, rows_span, columns_span in units:
                window = tuple(slice(*span) if span else slice(None) for span in (rows_span, columns_span))
                source_rows = []
                for index in progress_bar(chosen, desc=f"evaluate {name}", unit="slice"):
                    labels, unannotated = split_ignore(np.asarray(truth[(index, *window)]), ignore)
                    scores = evaluate(
                        np.asarray(probability[(index, *window)], dtype=np.float32),
                        labels,
                        threshold=cut,
                        connectivity=section.connectivity,
                        include_warping=section.warping,
                        ignore=unannotated,
                    )
                    source_rows.append({"volume": volume, "slice": index, **scores})
                per_source[name] = {**_mean_scores(source_rows), "slices": len(source_rows)}
                volume_rows.extend(source_rows)
            rows.extend(volume_rows)
            per_volume[volume] = _mean_scores(volume_rows)
        if not rows:
            raise InputError("nothing to evaluate: give the split test slices (split.test)")
        overall = _mean_scores(rows)
        payload = {**{key: overall[key] for key in HEADLINE_KEYS}, "overall": overall, "volumes": per_volume}
        if set(per_source) != set(per_volume):
            payload["sources"] = per_source
        payload["slices_evaluated"] = len(rows)
        payload["thresholds"] = thresholds
        payload["threshold"] = next(iter(thresholds.values()), 0.5)
        write_json(metrics, payload)
        columns = list(rows[0])
        with atomic_path(slices) as tmp:
            lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
            tmp.write_text("\n".join(lines) + "\n")
    log.info("overall: %s", {key: round(overall[key], 4) for key in HEADLINE_KEYS})
    return payload


def _mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric metric over slices (slices where a measure is NaN left out)."""
    keys = [key for key in rows[0] if key not in ("volume", "slice")] if rows else []
    means = {}
    for key in keys:
        values = [row[key] for row in rows if not math.isnan(row[key])]
        means[key] = float(np.mean(values)) if values else math.nan
    return means


def run_report(**kwargs: Any) -> None:
    """Render the HTML report of a run that trained its models (see unetflow.report)."""
    setup_logging()
    from unetflow.report import build_report

    with protect_inputs([], outputs=[kwargs["output"]]):
        build_report(**kwargs)


def run_prediction_report(**kwargs: Any) -> None:
    """Render the HTML report of a run that predicted with a pretrained model (see unetflow.report)."""
    setup_logging()
    from unetflow.report import build_prediction_report

    with protect_inputs([], outputs=[kwargs["output"]]):
        build_prediction_report(**kwargs)
