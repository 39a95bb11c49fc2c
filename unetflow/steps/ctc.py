"""The cell tracking steps (the paper's Table 2): fetch a Cell Tracking Challenge dataset, import its
sequences, make cells of each predicted frame (16-bit stacks and the challenge's RES folders) and score
every cross-sequence model as the challenge scores it (SEG on the other sequence's gold frames)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetflow.atomic import atomic_path, protect_inputs
from unetflow.config.ctc import CTCConfig
from unetflow.config.model import UNSTATED_VOXEL_SIZE, CellsConfig, Config, VolumeConfig
from unetflow.data import ctc as ctc_data
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.errors import InputError
from unetflow.evaluate.objects import Contingency, object_errors
from unetflow.evaluate.registry import OBJECT_METRICS
from unetflow.logs import progress_bar, setup_logging
from unetflow.steps.common import write_json

log = logging.getLogger(__name__)

PROTOCOL = (
    "The challenge's test gold is secret: each model trains on the gold frames of one training sequence and "
    "is scored on the gold frames of the other (both directions, each and the mean); a final model trains "
    "on both and predicts the challenge's test sequences in the submission layout."
)


def run_ctc_fetch(*, source: str, target: str, ctc: CTCConfig, role: str) -> dict[str, Any]:
    """Fetch the training (or test) archive of `ctc` to the folder `target`, checked by its structure."""
    setup_logging()
    local = None if source.startswith(("http://", "https://")) else source.removeprefix("file://")
    with protect_inputs([local], outputs=[target]):
        return ctc_data.fetch_dataset(
            source,
            target,
            sequences=ctc.sequences,
            gold=role == "training",
            sha256=ctc.sha256 if role == "training" else ctc.test_sha256,
            frame_shape=ctc.frame_shape,
        )


def run_ctc_import(*, dataset: str, target: str, volume: VolumeConfig, ctc: CTCConfig) -> None:
    """Import one sequence as a (t, y, x) volume: labels on its gold frames (the rest unannotated), the
    touching cells separated (`ctc.separate`), the frames normalised by `ctc.normalize`."""
    setup_logging()
    if volume.ctc is None:
        raise ValueError("run_ctc_import imports a sequence of the ctc dataset; this volume is none")
    training = volume.ctc.role == "training"
    with protect_inputs([dataset], outputs=[target]):
        files = ctc_data.scan_dataset(
            dataset, [volume.ctc.sequence], gold=training, frame_shape=ctc.frame_shape
        )
        sequence = files[volume.ctc.sequence]
        frames, labels = ctc_data.read_sequence(
            dataset, sequence, partial=ctc.partial, margin=ctc.partial_margin
        )
        import_volume(
            frames,
            target,
            labels=labels if training else None,
            labels_kind="instance",
            labels_ignore=ctc_data.UNANNOTATED if training else None,
            labels_separate=ctc.separate if training else None,
            separate_key="ctc.separate",
            voxel_size=tuple(volume.voxel_size or UNSTATED_VOXEL_SIZE),
            unit=volume.unit,
            normalization=ctc.normalize,
            percentiles=(ctc.percentiles[0], ctc.percentiles[1]),
            attrs={"ctc": {"dataset": ctc.dataset, "sequence": sequence.name, **sequence.describe()}},
        )
    log.info("imported sequence %s of %s (%d frames) -> %s", sequence.name, dataset, len(frames), target)


def run_ctc_cells(
    *,
    prediction: str,
    cells: str,
    results: str,
    options: CellsConfig,
    threshold: float | str = "auto",
) -> dict[str, Any]:
    """One id per cell in every predicted frame: a 16-bit (t, y, x) TIFF stack `cells` and the challenge's
    result folder `results` (maskNNN.tif). `options.threshold` auto takes the prediction's threshold."""
    from unetflow.predict import check_complete, prediction_threshold
    from unetflow.segment.cells import segment_frames

    setup_logging()
    with protect_inputs([prediction], outputs=[cells, results]):
        check_complete(prediction)
        cut = options.threshold if options.threshold != "auto" else threshold
        cut = prediction_threshold(prediction) if cut == "auto" else float(cut)
        probability = omezarr.open_image(prediction)
        labels = np.stack(
            [
                segment_frames(
                    np.asarray(probability[number : number + 1], dtype=np.float32),
                    threshold=cut,
                    method=options.method,
                    seeds=options.seeds,
                    dynamic=options.dynamic,
                    seed_threshold=options.seed_threshold,
                    min_size=options.min_size,
                    fill_holes=options.fill_holes,
                    connectivity=options.connectivity,
                    grow=options.grow,
                )[0]
                for number in progress_bar(range(probability.shape[0]), desc="cells", unit="frame")
            ]
        )
        ctc_data.write_results(results, labels)
        with atomic_path(cells) as tmp:
            tifffile.imwrite(tmp, labels.astype(np.uint16), compression="zlib", metadata={"axes": "TYX"})
    counts = [int(frame.max()) for frame in labels]
    log.info("%s: %d frames, %.1f cells per frame (threshold %.3f)", cells, len(counts), np.mean(counts), cut)
    return {"frames": len(counts), "cells_per_frame": float(np.mean(counts)), "threshold": cut}


def _read_mask(path: Path) -> np.ndarray:
    return np.asarray(tifffile.imread(path)).astype(np.int64)


def score_sequence(
    dataset: str | Path, sequence: str, results: str | Path, *, partial: str, margin: int
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, int]]:
    """The object metrics of a RES folder against a sequence's gold frames: pooled over the sequence
    (SEG as the challenge computes it), per frame, and the errors counted (missed, split, merged, extra)."""
    files = ctc_data.scan_dataset(dataset, [sequence])[sequence]
    masks = ctc_data.result_masks(results)
    tables, rows = [], []
    errors = {"missed": 0, "split": 0, "merged": 0, "extra": 0}
    for number, path in sorted(files.gold.items()):
        if number not in masks:
            raise InputError(
                f"{results}: no mask{number:03d}.tif for gold frame {number} of sequence {sequence}"
            )
        gold = _read_mask(path)
        ignore = None
        if partial == "tra" and number in files.tracks:
            ignore = ctc_data.untraced(gold, _read_mask(files.tracks[number]), margin=margin)
        table = Contingency.of(gold, _read_mask(masks[number]), ignore=ignore)
        found = object_errors(table).counts()
        errors = {key: errors[key] + value for key, value in found.items()}
        tables.append(table)
        rows.append(
            {
                "frame": number,
                "cells": table.objects[0],
                **{key: float(metric.score(table)) for key, metric in OBJECT_METRICS.items()},
                **found,
            }
        )
    if not tables:
        raise InputError(f"{dataset}: sequence {sequence} has no gold frame to score")
    pooled = {key: float(metric.stack(tables)) for key, metric in OBJECT_METRICS.items() if metric.stack}
    return {**pooled, "gold_frames": len(tables), "cells": sum(t.objects[0] for t in tables)}, rows, errors


def run_ctc_score(
    *,
    dataset: str,
    results: Mapping[str, Mapping[str, str]],
    ctc: CTCConfig,
    target: str,
    frames: str,
) -> dict[str, Any]:
    """Score every cross-sequence model's RES folders (`results`: model -> sequence -> folder) against the
    gold of `dataset`: the SEG file `target` (JSON: protocol, archive, each direction, the mean) and every
    scored gold frame in `frames` (CSV)."""
    setup_logging()
    folders = [folder for by_sequence in results.values() for folder in by_sequence.values()]
    record = ctc_data.read_record(dataset)
    with protect_inputs([dataset, *folders], outputs=[target, frames]):
        folds: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        for model, by_sequence in results.items():
            scored = {}
            for sequence, folder in by_sequence.items():
                pooled, frame_rows, errors = score_sequence(
                    dataset, sequence, folder, partial=ctc.partial, margin=ctc.partial_margin
                )
                scored[sequence] = {**pooled, "errors": errors, "results": folder}
                rows += [{"model": model, "sequence": sequence, **row} for row in frame_rows]
            folds[model] = {"trained_on": ctc.training_sequences(model), "scored_on": scored}
        values = [s["seg"] for fold in folds.values() for s in fold["scored_on"].values()]
        payload = {
            "dataset": ctc.dataset,
            "seg": float(np.mean(values)) if values else float("nan"),
            "measure": OBJECT_METRICS["seg"].description,
            "protocol": PROTOCOL,
            "archive": {"source": record.get("source"), "sha256": record.get("sha256")},
            "folds": folds,
        }
        write_json(target, payload)
        _write_rows(frames, rows)
    log.info("SEG of %s: %s (mean %.4f)", ctc.dataset, values, payload["seg"])
    return payload


def _write_rows(path: str, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)


def run_ctc_report(
    *,
    output: str,
    seg: str,
    frames: str,
    dataset: str,
    cells: Sequence[str],
    step_logs: Sequence[str],
    config: Config,
    benchmarks: str,
    project: str | None = None,
) -> None:
    """Render the cell tracking run's HTML page (unetflow.report.cells)."""
    from unetflow.report.build import build_ctc_report

    setup_logging()
    with protect_inputs([seg, frames, dataset, *cells, *step_logs], outputs=[output]):
        build_ctc_report(
            output=output,
            seg=seg,
            dataset=dataset,
            cells=cells,
            step_logs=step_logs,
            config=config,
            benchmarks=benchmarks,
            project=project,
        )
