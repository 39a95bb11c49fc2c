"""The evaluate step: every registered metric of each prediction on the test slices of its volume."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetflow.atomic import atomic_path, protect_inputs
from unetflow.config.model import EvaluateConfig
from unetflow.config.split import Split, SplitConfig, check_entries, source_names, split_entries
from unetflow.data import omezarr
from unetflow.data.labels import split_ignore
from unetflow.errors import InputError
from unetflow.evaluate.metrics import evaluate
from unetflow.evaluate.registry import HEADLINE_KEYS
from unetflow.logs import progress_bar, setup_logging
from unetflow.model.loss import EVEN_ODDS
from unetflow.steps.common import write_json

log = logging.getLogger(__name__)

EvaluationUnit = tuple[str, list[int], tuple[int, int] | None, tuple[int, int] | None]
"""A part of a volume that is evaluated: (source name, slices, rows, columns); None for a whole axis."""


def evaluation_units(
    volume: str, entries: Sequence[SplitConfig], shape: Sequence[int]
) -> list[EvaluationUnit]:
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


@dataclass
class _Tally:
    """The scores gathered so far: per slice, per volume, per split source, and of the segment step's
    label images; the threshold each volume was cut at."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    per_volume: dict[str, dict[str, float]] = field(default_factory=dict)
    per_source: dict[str, dict[str, float]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    objects: list[dict[str, dict[str, float]]] = field(default_factory=list)
    per_volume_objects: dict[str, Any] = field(default_factory=dict)


def run_evaluate(
    *,
    data: Sequence[str],
    predictions: Sequence[str],
    volumes: Sequence[str],
    split: Split | None,
    metrics: str,
    slices: str,
    threshold: float | str = "auto",
    options: EvaluateConfig,
    segmentations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics per slice, per volume, per split source and overall; JSON summary plus a per-slice CSV.

    Each volume is evaluated on the test slices (and regions) of its split entries, or whole where the
    split does not name it (`evaluation_units`); unannotated pixels count in no metric. `threshold` "auto"
    takes the one each prediction's segmentation was made with (its attributes). `segmentations` (one per
    volume, the segment step's label images) are scored beside the connected components of the thresholded
    mask on the same slices (`segment` in the JSON).
    """
    from unetflow.predict import check_complete, planned_groups, prediction_threshold

    setup_logging()
    entries = split_entries(split)
    tally = _Tally()
    with protect_inputs([*data, *predictions, *(segmentations or [])], outputs=[metrics, slices]):
        for number, (volume, data_path, prediction) in enumerate(
            zip(volumes, data, predictions, strict=True)
        ):
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
            tally.thresholds[volume] = cut
            _evaluate_volume(
                tally, volume, truth, data_path, prediction, units, threshold=cut, options=options
            )
            if segmentations:
                found = _objects(data_path, prediction, segmentations[number], units, cut)
                tally.objects.append(found["scores"])
                tally.per_volume_objects[volume] = found
        if not tally.rows:
            raise InputError("nothing to evaluate: give the split test slices (split.test)")
        payload = _payload(tally)
        write_json(metrics, payload)
        _write_rows(slices, tally.rows)
    log.info("overall: %s", {key: round(payload["overall"][key], 4) for key in HEADLINE_KEYS})
    return payload


def _evaluate_volume(
    tally: _Tally,
    volume: str,
    truth: Any,
    data_path: str,
    prediction: str,
    units: Sequence[EvaluationUnit],
    *,
    threshold: float,
    options: EvaluateConfig,
) -> None:
    """Score each test slice of each unit of a volume's prediction against its labels, into `tally`: the
    slices' rows, each source's and the volume's means."""
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
                threshold=threshold,
                connectivity=options.connectivity,
                include_warping=options.warping,
                ignore=unannotated,
            )
            source_rows.append({"volume": volume, "slice": index, **scores})
        tally.per_source[name] = {**_mean_scores(source_rows), "slices": len(source_rows)}
        volume_rows.extend(source_rows)
    tally.rows.extend(volume_rows)
    tally.per_volume[volume] = _mean_scores(volume_rows)


def _payload(tally: _Tally) -> dict[str, Any]:
    """The JSON summary: the headline metrics, every metric overall, per volume and (where the split has
    several sources in a volume) per source, the segment step's scores, and the thresholds used."""
    overall = _mean_scores(tally.rows)
    payload = {
        **{key: overall[key] for key in HEADLINE_KEYS},
        "overall": overall,
        "volumes": tally.per_volume,
    }
    if set(tally.per_source) != set(tally.per_volume):
        payload["sources"] = tally.per_source
    if tally.objects:
        from unetflow.evaluate.baseline import mean_over

        payload["segment"] = {**mean_over(tally.objects), "volumes": tally.per_volume_objects}
    payload["slices_evaluated"] = len(tally.rows)
    payload["thresholds"] = tally.thresholds
    payload["threshold"] = next(iter(tally.thresholds.values()), EVEN_ODDS)
    return payload


def _write_rows(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """The per-slice CSV: one line per evaluated slice, the columns of the first row."""
    columns = list(rows[0])
    with atomic_path(path) as tmp:
        lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
        tmp.write_text("\n".join(lines) + "\n")


def _objects(
    data_path: str,
    prediction: str,
    segmentation: str,
    units: Sequence[EvaluationUnit],
    threshold: float,
) -> dict[str, Any]:
    """A volume's segmentation against its truth on the evaluated slices, beside the connected components
    of its thresholded probability; 3-D scores where the truth holds instance ids (the ids as given, e.g.
    dense connectomics ids, not the separated labels the net trains on)."""
    from unetflow.evaluate.baseline import compare, mean_over, worst

    instances = omezarr.read_attrs(data_path).get("labels", {}).get(omezarr.DEFAULT_LABELS) == "instance"
    truth = omezarr.open_instances(data_path)
    ignore = omezarr.label_ignore(data_path)
    probability = omezarr.open_image(prediction)
    labels = omezarr.open_image(segmentation)
    found, splits = [], {}
    for name, chosen, rows_span, columns_span in units:
        window = tuple(slice(*span) if span else slice(None) for span in (rows_span, columns_span))
        stack = [split_ignore(np.asarray(truth[(z, *window)]), ignore) for z in chosen]
        truth_stack = np.stack([item[0] for item in stack])
        masks = [item[1] if item[1] is not None else np.zeros(truth_stack.shape[1:], bool) for item in stack]
        ignored = np.stack(masks) if any(item[1] is not None for item in stack) else None
        segment = np.stack([np.asarray(labels[(z, *window)]) for z in chosen])
        prob = np.stack([np.asarray(probability[(z, *window)], dtype=np.float32) for z in chosen])
        if ignored is not None:
            segment = np.where(ignored, 0, segment)
        found.append(compare(truth_stack, segment, prob, threshold, instances=instances, ignore=ignored))
        if instances:
            splits[name] = worst(truth_stack, segment)
    return {"scores": mean_over(found), "worst": splits, "instances": instances}


def _mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric metric over slices (slices where a measure is NaN left out)."""
    keys = [key for key in rows[0] if key not in ("volume", "slice")] if rows else []
    means = {}
    for key in keys:
        values = [row[key] for row in rows if not math.isnan(row[key])]
        means[key] = float(np.mean(values)) if values else math.nan
    return means
