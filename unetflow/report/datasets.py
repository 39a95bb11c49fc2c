"""What a run predicted: each volume's prediction (size, files, throughput, a look at a region with data)
and the model it was predicted with. The sections of a predict-only report, and a section of every report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.data import omezarr
from unetflow.evaluate.registry import METRICS, Metric, metric_info
from unetflow.model.loss import EVEN_ODDS
from unetflow.predict.plan import read_plan
from unetflow.predict.progress import SEGMENTATION, group_entries
from unetflow.predict.sources import open_source
from unetflow.report.figures import MAX_PANEL, Image, contrast, embed, hide_axes, new_figure
from unetflow.report.sections import Section, section


@dataclass(frozen=True)
class DatasetRow:
    """One predicted volume: its size, layout, work and speed (from its finalisation summary)."""

    model: str
    volume: str
    shape: tuple[int, ...]
    ngff: str
    levels: int
    groups: int
    shards: int
    blocks: int
    computed: int
    empty: int
    files: int
    gigabytes: float
    seconds: float
    voxels_per_second: float
    threshold: float
    image: Image | None


@dataclass(frozen=True)
class DatasetsContent:
    """The datasets section: a row and a figure per prediction."""

    rows: list[DatasetRow]


def _window(prediction: str) -> tuple[int, slice, slice]:
    """A slice and a window of at most MAX_PANEL px around the first shard that holds data."""
    plan = read_plan(prediction)
    entries = group_entries(prediction, plan.groups)
    written = sorted(number for (level, number), entry in entries.items() if level == 0 and any(entry.sizes))
    number = written[0] if written else 0
    region = plan.grid.region(plan.grid.index(number))
    z = region[0].start
    ys = slice(region[1].start, min(region[1].stop, region[1].start + MAX_PANEL))
    xs = slice(region[2].start, min(region[2].stop, region[2].start + MAX_PANEL))
    return z, ys, xs


def dataset_figure(source: str, prediction: str, *, fig_id: str, title: str) -> Image:
    """Raw, probability and segmentation of a region with data of one prediction."""
    z, ys, xs = _window(prediction)
    raw = np.asarray(open_source(source)[z, ys, xs])
    probability = np.asarray(omezarr.open_image(prediction)[z, ys, xs], dtype=np.float32)
    segmentation = np.asarray(omezarr.open_labels(prediction, SEGMENTATION)[z, ys, xs])
    fig = new_figure(10.0, 3.6)
    axes = fig.subplots(1, 3, squeeze=False)[0]
    panels = (("Raw", contrast(raw)), ("p(cell)", probability), ("Segmentation", segmentation > 0))
    for ax, (name, image) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        hide_axes(ax)
    axes[0].set_ylabel(f"slice {z}, y {ys.start}-{ys.stop}, x {xs.start}-{xs.stop}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return embed(fig, fig_id=fig_id, alt=f"{title}: raw, probability and segmentation")


def datasets_section(predictions: Sequence[tuple[str, str, str, str, str]], *, figures: int = 4) -> Section:
    """Every (model, volume, source, prediction, summary): a table row each, a figure for the first few."""
    rows = []
    for index, (model, volume, source, prediction, summary_path) in enumerate(predictions):
        summary = json.loads(Path(summary_path).read_text())
        attrs = omezarr.read_attrs(prediction)
        image = (
            dataset_figure(
                source, prediction, fig_id=f"dataset-{model}-{volume}", title=f"{volume} ({model})"
            )
            if index < figures
            else None
        )
        rows.append(
            DatasetRow(
                model=model,
                volume=volume,
                shape=tuple(read_plan(prediction).shape),
                ngff=str(summary.get("ngff", "")),
                levels=int(summary.get("levels", 1)),
                groups=int(summary.get("groups", 1)),
                shards=int(summary.get("shards", 0)),
                blocks=int(summary.get("blocks", 0)),
                computed=int(summary.get("blocks_computed", 0)),
                empty=int(summary.get("blocks_empty", 0)),
                files=int(summary.get("files", 0)),
                gigabytes=float(summary.get("bytes", 0)) / 1e9,
                seconds=float(summary.get("predict_seconds", 0.0)),
                voxels_per_second=float(summary.get("voxels_per_second", 0.0)),
                threshold=float(attrs.get("threshold", EVEN_ODDS)),
                image=image,
            )
        )
    return section("datasets", "Predicted volumes", DatasetsContent(rows=rows))


@dataclass(frozen=True)
class ModelContent:
    """The model section: what predicted, where it came from, how it was trained."""

    path: str
    sha256: str
    architecture: Mapping[str, Any]
    step: Any
    steps: Any
    loss_weights: Any
    threshold: Any
    normalization: Mapping[str, Any] | None
    validation: Mapping[str, Any]


def model_section(prediction: str) -> Section:
    """The provenance of the model a prediction was made with (recorded in its attributes)."""
    model = dict(omezarr.read_attrs(prediction).get("model") or {})
    content = ModelContent(
        path=str(model.get("path", "unknown")),
        sha256=str(model.get("sha256", "unknown")),
        architecture=dict(model.get("architecture") or {}),
        step=model.get("step"),
        steps=model.get("steps"),
        loss_weights=model.get("loss_weights"),
        threshold=model.get("threshold"),
        normalization=model.get("normalization"),
        validation=dict(model.get("validation") or {}),
    )
    return section("model", "Model", content)


@dataclass(frozen=True)
class VolumeMetricRow:
    """One metric over the evaluated volumes."""

    key: str
    metric: Metric | None
    values: list[float]


@dataclass(frozen=True)
class VolumeMetricsContent:
    """The metrics of each labelled volume."""

    volumes: list[str]
    rows: list[VolumeMetricRow]


def volume_metrics_section(metrics: str | Path) -> Section:
    """The registered metrics of every evaluated volume of a metrics JSON (`unetflow evaluate`)."""
    per_volume = dict(json.loads(Path(metrics).read_text()).get("volumes") or {})
    names = list(per_volume)
    keys = [key for key in METRICS if any(key in per_volume[v] for v in names)]
    rows = [
        VolumeMetricRow(
            key=key,
            metric=metric_info(key),
            values=[float(per_volume[v].get(key, float("nan"))) for v in names],
        )
        for key in keys
    ]
    return section("volume_metrics", "Metrics of the labelled volumes", VolumeMetricsContent(names, rows))
