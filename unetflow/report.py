"""The workflow's report: one self-contained HTML page with the metrics next to the paper's, figures,
training curves, the border-weight ablation and provenance.

Figures are drawn with matplotlib's Agg canvas and embedded as base64 PNG, the CSS is inline: the page
opens offline, can be mailed and archived as one file. Every input is checked before anything is drawn, so
a missing file is reported by name instead of as a half-written page.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import math
import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter
from scipy import ndimage as ndi

from unetflow import omezarr
from unetflow.atomic import atomic_path
from unetflow.errors import InputError
from unetflow.slices import select_slices

MAIN_MODEL = "main"
ABLATION_MODEL = "ablation"

PAPER_TABLE1: dict[str, float] = {"warping_error": 0.000353, "rand_error": 0.0382, "isbi_pixel_error": 0.0611}
"""The u-net row of the paper's Table 1 (ISBI 2012 EM segmentation challenge, test set), by our metric key.

The challenge's pixel error is 1 - maximal F-score of pixel similarity (`isbi_pixel_error`); where the
metrics have no such key the paper's figure is shown beside the plain `pixel_error`.
"""

PAPER_CITATION = (
    "O. Ronneberger, P. Fischer, T. Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
    "MICCAI 2015, LNCS 9351, pp. 234-241"
)


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is named on the page and which direction is better."""

    label: str
    higher_is_better: bool | None
    description: str


METRICS: dict[str, MetricInfo] = {
    "iou": MetricInfo("IoU (cells)", True, "intersection over union of the cell-interior (foreground) class"),
    "iou_background": MetricInfo("IoU (membrane)", True, "intersection over union of the membrane class"),
    "mean_iou": MetricInfo("Mean IoU", True, "mean of the cell and membrane IoU"),
    "dice": MetricInfo("Dice", True, "Dice coefficient (F1) of the cell-interior class"),
    "pixel_error": MetricInfo("Pixel error", False, "fraction of wrongly classified pixels at the threshold"),
    "isbi_pixel_error": MetricInfo(
        "Pixel error (ISBI)",
        False,
        "the challenge's pixel error, 1 - maximal F-score of pixel classification",
    ),
    "rand_error": MetricInfo(
        "Rand error", False, "the ISBI 2012 Rand error, 1 - maximal foreground-restricted Rand F-score"
    ),
    "v_rand": MetricInfo(
        "V<sub>rand</sub>", True, "Rand F-score after border thinning (current leaderboard)"
    ),
    "v_info": MetricInfo("V<sub>info</sub>", True, "information-theoretic F-score after border thinning"),
    "warping_error": MetricInfo(
        "Warping error", False, "topological errors (splits, mergers) per pixel, Jain et al. 2010"
    ),
}
"""Known metric keys of `unetflow.metrics.evaluate`; any other key is shown under its own name."""

ABLATION_METRICS = ("rand_error", "v_rand", "iou")
PACKAGES = ("unetflow", "torch", "numpy", "scipy", "zarr", "dask", "ome-zarr", "matplotlib", "snakemake")
MAX_PANEL = 768
"""Largest side in pixels of an image panel; larger slices are shown as a centre crop."""
MODEL_COLOURS = ("#1f5fa8", "#d9660b", "#2a9d4b", "#b3303b", "#7b52ab", "#8c6d31")
FALSE_POSITIVE = (0.87, 0.0, 0.40)
FALSE_NEGATIVE = (0.0, 0.40, 0.90)
DPI = 110


def build_report(
    *,
    output: str | os.PathLike[str],
    models: Sequence[str],
    metrics: Sequence[str | os.PathLike[str]],
    slices: Sequence[str | os.PathLike[str]],
    step_logs: Sequence[str | os.PathLike[str]],
    val_logs: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    split: Mapping[str, Any],
    config: Mapping[str, Any],
    benchmarks: str | os.PathLike[str],
) -> None:
    """Write the self-contained HTML report `output` (results/report/index.html) atomically.

    One entry per model in `metrics`, `slices`, `step_logs` and `val_logs`; predictions are read from
    ``<results>/predict/<model>/<volume>.zarr`` beside the report folder. Missing inputs raise
    FileNotFoundError naming the file before anything is drawn.
    """
    inputs = _check_inputs(
        output=Path(output),
        models=list(models),
        per_model={"metrics": metrics, "slices": slices, "step_logs": step_logs, "val_logs": val_logs},
        data=Path(data),
        weights=Path(weights),
        split=split,
    )
    runs = [_load_run(model, inputs, index) for index, model in enumerate(inputs.models)]
    counter = FigureCounter()
    sections = [
        _data_section(inputs, config, counter),
        _results_section(runs, inputs, config, counter),
        _predictions_section(runs, inputs, config, counter),
        _slices_section(runs, inputs, counter),
        _weights_section(inputs, config, counter),
        _training_section(runs, counter),
    ]
    if any(run.name == ABLATION_MODEL for run in runs) and len(runs) > 1:
        sections.append(_ablation_section(runs, counter))
    sections.append(_provenance_section(inputs, config, Path(benchmarks), counter))
    page = _page(runs, inputs, sections)
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """The checked inputs of the report."""

    output: Path
    models: list[str]
    files: dict[str, list[Path]]
    data: Path
    weights: Path
    volume: str
    shape: tuple[int, int, int]
    train: list[int]
    val: list[int]
    test: list[int]
    predictions: dict[str, Path]


@dataclass
class Run:
    """Everything read for one model: metrics summary, per-slice rows and the training logs."""

    name: str
    colour: str
    summary: dict[str, Any]
    slices: list[dict[str, Any]]
    steps: dict[str, np.ndarray]
    val: dict[str, np.ndarray]


PER_MODEL_FILES = {
    "metrics": "metrics JSON",
    "slices": "per-slice metrics CSV",
    "step_logs": "training log",
    "val_logs": "validation log",
}
"""The per-model inputs of the report and what each file is, for error messages."""


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path}: {what} not found; run the workflow steps that write it first (e.g. `snakemake --until "
        "report`) or fix the path passed to the report"
    )


def _check_inputs(
    *,
    output: Path,
    models: list[str],
    per_model: dict[str, Sequence[str | os.PathLike[str]]],
    data: Path,
    weights: Path,
    split: Mapping[str, Any],
) -> Inputs:
    """Lengths, existence and the split, checked up front: every error names the argument or file."""
    if not models:
        raise ValueError("models: no model given; the report needs at least one (e.g. ['main'])")
    files: dict[str, list[Path]] = {}
    for key, paths in per_model.items():
        listed = [Path(p) for p in paths]
        if len(listed) != len(models):
            raise ValueError(
                f"{key}: {len(listed)} path(s) for {len(models)} model(s) {models}; pass one per model, "
                "in the same order"
            )
        files[key] = listed
    for key, paths in files.items():
        for path in paths:
            if not path.is_file():
                raise _missing(path, PER_MODEL_FILES[key])
    if not data.exists():
        raise _missing(data, "OME-Zarr volume of the split (split.volume)")
    if not weights.exists():
        raise _missing(weights, "weight-map OME-Zarr")
    for key in ("volume", "train", "test"):
        if key not in split:
            raise InputError(f"split: no key {key!r}; the config's split needs volume, train, val and test")
    volume = str(split["volume"])
    shape = tuple(int(s) for s in omezarr.open_image(data).shape)
    if len(shape) != 3:
        raise InputError(f"{data}: expected a (z, y, x) volume, found shape {shape}")
    _labels(data)
    n = shape[0]
    results = output.absolute().parents[1]
    predictions = {model: results / "predict" / model / f"{volume}.zarr" for model in models}
    main = _main_model(models)
    if not predictions[main].exists():
        raise _missing(predictions[main], f"prediction of model {main!r} for volume {volume!r}")
    return Inputs(
        output=output,
        models=models,
        files=files,
        data=data,
        weights=weights,
        volume=volume,
        shape=(shape[0], shape[1], shape[2]),
        train=select_slices(split["train"], n, what="split.train"),
        val=select_slices(split.get("val") or [], n, what="split.val"),
        test=select_slices(split["test"], n, what="split.test"),
        predictions=predictions,
    )


def _labels(data: Path) -> Any:
    """The ground-truth label array of the split volume; an InputError where the volume has none."""
    labels = omezarr.open_labels(data)
    if labels is None:
        raise InputError(f"{data}: has no labels; the report needs the ground truth of split.volume")
    return labels


def _main_model(models: Sequence[str]) -> str:
    return MAIN_MODEL if MAIN_MODEL in models else models[0]


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts of strings (an empty list for a header only)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _columns(path: Path, required: Sequence[str]) -> dict[str, np.ndarray]:
    """Numeric columns of a log CSV; a missing required column is an InputError naming file and column."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    absent = [c for c in required if c not in header]
    if absent:
        raise InputError(
            f"{path}: missing column(s) {absent} (found {header}); it is not a unetflow training/validation "
            "log, re-run the training step"
        )
    return {c: np.array([_number(r.get(c)) for r in rows], dtype=np.float64) for c in header}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _load_run(name: str, inputs: Inputs, index: int) -> Run:
    metrics_path = inputs.files["metrics"][index]
    try:
        summary = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{metrics_path}: not valid JSON ({exc}); re-run the evaluate step") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("overall"), dict):
        raise InputError(f"{metrics_path}: no 'overall' metrics; re-run the evaluate step to rewrite it")
    slice_path = inputs.files["slices"][index]
    rows = read_csv_rows(slice_path)
    if rows and not {"volume", "slice"} <= set(rows[0]):
        raise InputError(f"{slice_path}: needs columns 'volume' and 'slice'; re-run the evaluate step")
    parsed = [
        {k: (v if k == "volume" else int(float(v)) if k == "slice" else _number(v)) for k, v in row.items()}
        for row in rows
    ]
    return Run(
        name=name,
        colour=MODEL_COLOURS[index % len(MODEL_COLOURS)],
        summary=summary,
        slices=parsed,
        steps=_columns(inputs.files["step_logs"][index], ("step", "loss")),
        val=_columns(inputs.files["val_logs"][index], ("step", "val_iou")),
    )


# ------------------------------------------------------------------------------------------ formatting


def format_value(value: Any) -> str:
    """A metric value as shown on the page: 4 decimals, 6 below 0.001 (the paper's warping error), n/a."""
    number = _number(value)
    if not math.isfinite(number):
        return "n/a"
    if number != 0 and abs(number) < 0.001:
        return f"{number:.6f}"
    return f"{number:.4f}"


def format_seconds(seconds: float) -> str:
    """A duration for people: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def slice_ranges(indices: Iterable[int]) -> str:
    """Sorted slice indices written compactly: [0, 1, 2, 5] -> '0-2, 5'."""
    values = sorted(set(indices))
    if not values:
        return "none"
    parts: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}\u2013{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


POOLED = "_pooled"


def metric_info(key: str) -> MetricInfo | None:
    """Name, direction and description of a metric key; `<key>_pooled` as its base key, marked pooled."""
    if key in METRICS:
        return METRICS[key]
    if key.endswith(POOLED) and key[: -len(POOLED)] in METRICS:
        base = METRICS[key[: -len(POOLED)]]
        return MetricInfo(
            f"{base.label} (pooled)", base.higher_is_better, f"{base.description}, pooled over slices"
        )
    return None


def paper_values(keys: Sequence[str]) -> dict[str, float]:
    """The paper's Table 1 figures by the metric key they stand beside (pixel error: the ISBI one if any)."""
    values = {k: v for k, v in PAPER_TABLE1.items() if k in keys}
    if "isbi_pixel_error" not in keys and "pixel_error" in keys:
        values["pixel_error"] = PAPER_TABLE1["isbi_pixel_error"]
    return values


def _label(key: str) -> str:
    info = metric_info(key)
    return info.label if info else _e(key)


def _direction(key: str) -> str:
    info = metric_info(key)
    if info is None or info.higher_is_better is None:
        return ""
    return "\u2191" if info.higher_is_better else "\u2193"


def _plain_label(key: str) -> str:
    """The metric label without HTML, for matplotlib."""
    return _label(key).replace("<sub>", "$_{").replace("</sub>", "}$")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", table_id: str = "") -> str:
    """An HTML table from already-escaped cells."""
    attrs = (f' id="{table_id}"' if table_id else "") + (f' class="{cls}"' if cls else "")
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section_id: str, title: str, body: str) -> tuple[str, str, str]:
    return section_id, title, f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


# -------------------------------------------------------------------------------------------- figures


def _png(fig: Figure) -> str:
    """The figure as a base64 PNG (Agg canvas, no pyplot state)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class FigureCounter:
    """Numbers the figures and tables of the page in order of appearance."""

    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0

    def figure(self, fig: Figure, *, fig_id: str, alt: str, caption: str) -> str:
        """A numbered <figure> with the embedded PNG, its alt text and caption (caption is HTML)."""
        self.figures += 1
        src = _png(fig)
        return (
            f'<figure id="{fig_id}"><img id="img-{fig_id}" alt="{_e(alt)}" src="data:image/png;base64,{src}">'
            f"<figcaption><b>Figure {self.figures}.</b> {caption}</figcaption></figure>"
        )

    def caption(self, text: str) -> str:
        """A numbered table caption (text is HTML)."""
        self.tables += 1
        return f'<p class="caption"><b>Table {self.tables}.</b> {text}</p>'


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_facecolor("white")
    return fig


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="#e3e3e3", linewidth=0.7)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def _window(shape: Sequence[int]) -> tuple[slice, slice]:
    """A centre crop of at most MAX_PANEL x MAX_PANEL of a (y, x) plane."""
    out = []
    for size in shape[-2:]:
        side = min(int(size), MAX_PANEL)
        start = (int(size) - side) // 2
        out.append(slice(start, start + side))
    return out[0], out[1]


def _contrast(image: np.ndarray) -> np.ndarray:
    """Raw grey values stretched between the 0.5 and 99.5 percentiles, as floats in 0..1."""
    values = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(values, (0.5, 99.5))
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _instance_colours(labels: np.ndarray, connectivity: int) -> np.ndarray:
    """Instance labels as an RGB image, one random colour per cell, membranes black (paper Fig. 3b)."""
    cells = np.asarray(labels)
    if cells.max(initial=0) <= 1:
        structure = ndi.generate_binary_structure(2, max(1, min(2, connectivity)))
        cells, _ = ndi.label(cells > 0, structure=structure)
    ids, inverse = np.unique(cells, return_inverse=True)
    palette = np.random.default_rng(7).uniform(0.25, 1.0, size=(len(ids), 3))
    palette[ids == 0] = 0.0
    return palette[inverse.reshape(cells.shape)]


def _error_overlay(raw: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Faded raw with false positives (predicted cell on membrane) and false negatives in strong colours."""
    grey = 0.5 + 0.45 * _contrast(raw)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[predicted & ~truth] = FALSE_POSITIVE
    rgb[~predicted & truth] = FALSE_NEGATIVE
    return rgb


def _hide_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _prediction_figure(
    rows: list[tuple[str, int, float]], inputs: Inputs, model: str, threshold: float
) -> Figure:
    """Raw / ground truth / prediction / error overlay, one row per chosen test slice."""
    raw_volume = omezarr.open_image(inputs.data)
    labels = _labels(inputs.data)
    probability = omezarr.open_image(inputs.predictions[model])
    if tuple(probability.shape) != inputs.shape:
        raise InputError(
            f"{inputs.predictions[model]}: prediction of shape {tuple(probability.shape)} does not match "
            f"{inputs.data} of shape {inputs.shape}; re-run the predict step"
        )
    ys, xs = _window(inputs.shape)
    fig = _new_figure(11.0, 2.95 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    titles = ("Raw", "Ground truth", f"Prediction p(cell) \u2014 {model}", "Errors")
    for r, (tag, z, iou) in enumerate(rows):
        raw = np.asarray(raw_volume[z, ys, xs])
        truth = np.asarray(labels[z, ys, xs]) > 0
        prob = np.asarray(probability[z, ys, xs], dtype=np.float32)
        predicted = prob > threshold
        panels = (
            (_contrast(raw), "gray"),
            (truth.astype(np.float32), "gray"),
            (prob, "gray"),
            (_error_overlay(raw, truth, predicted), None),
        )
        for c, (image, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            _hide_axes(ax)
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
        axes[r, 0].set_ylabel(f"{tag}: slice {z}\nIoU {format_value(iou)}", fontsize=10)
        false_pos = 100 * float(np.mean(predicted & ~truth))
        false_neg = 100 * float(np.mean(~predicted & truth))
        axes[r, 3].set_xlabel(f"FP {false_pos:.2f} %  \u00b7  FN {false_neg:.2f} % of pixels", fontsize=9)
    fig.legend(
        handles=[
            Patch(color=FALSE_POSITIVE, label="false positive (membrane predicted as cell)"),
            Patch(color=FALSE_NEGATIVE, label="false negative (cell predicted as membrane)"),
        ],
        loc="outside lower center",
        ncol=2,
        frameon=False,
        fontsize=9,
    )
    return fig


def _weight_figure(inputs: Inputs, z: int, connectivity: int) -> Figure:
    """The paper's Fig. 3 for one training slice: raw, instances, binary mask, weight map with colour bar."""
    ys, xs = _window(inputs.shape)
    raw = np.asarray(omezarr.open_image(inputs.data)[z, ys, xs])
    labels = _labels(inputs.data)
    cells = np.asarray(labels[z, ys, xs])
    weight_map = omezarr.open_image(inputs.weights)
    if tuple(weight_map.shape) != inputs.shape:
        raise InputError(
            f"{inputs.weights}: weight map of shape {tuple(weight_map.shape)} does not match "
            f"{inputs.data} of shape {inputs.shape}; re-run the weights step"
        )
    weight = np.asarray(weight_map[z, ys, xs], dtype=np.float32)
    fig = _new_figure(12.0, 3.35)
    axes = fig.subplots(1, 4)
    panels = (
        ("a  raw image", _contrast(raw), "gray"),
        ("b  ground-truth instances", _instance_colours(cells, connectivity), None),
        ("c  segmentation mask", (cells > 0).astype(np.float32), "gray"),
    )
    for ax, (title, image, cmap) in zip(axes[:3], panels, strict=True):
        ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=10, loc="left")
        _hide_axes(ax)
    shown = axes[3].imshow(weight, cmap="jet", interpolation="nearest")
    axes[3].set_title("d  weight map w(x)", fontsize=10, loc="left")
    _hide_axes(axes[3])
    bar = fig.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=8)
    return fig


def smooth(values: np.ndarray, *, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average with the given span (NaNs carry the previous value)."""
    alpha = 2.0 / (max(1, span) + 1.0)
    out = np.empty(len(values), dtype=np.float64)
    mean = weight = 0.0
    for i, value in enumerate(np.asarray(values, dtype=np.float64)):
        if math.isfinite(value):
            mean = (1 - alpha) * mean + alpha * value
            weight = (1 - alpha) * weight + alpha
        out[i] = mean / weight if weight > 0 else math.nan
    return out


def _span(n: int) -> int:
    """Span of the loss smoothing: about a twentieth of the logged steps."""
    return max(1, n // 20)


def _training_figure(runs: Sequence[Run]) -> Figure:
    """Training loss (raw faint, smoothed solid) and validation IoU against the step, per model."""
    fig = _new_figure(11.0, 3.7)
    loss_ax, iou_ax = fig.subplots(1, 2)
    ranges = []
    for run in runs:
        steps, loss = run.steps["step"], run.steps["loss"]
        if len(steps):
            loss_ax.plot(steps, loss, color=run.colour, alpha=0.22, linewidth=0.8)
            loss_ax.plot(
                steps, smooth(loss, span=_span(len(loss))), color=run.colour, linewidth=1.8, label=run.name
            )
            ranges.append((float(np.nanmin(loss)), float(np.nanmax(loss))))
        vsteps, viou = run.val["step"], run.val["val_iou"]
        if len(vsteps) and np.isfinite(viou).any():
            iou_ax.plot(vsteps, viou, "o-", color=run.colour, markersize=4, linewidth=1.5, label=run.name)
            best = int(np.nanargmax(viou))
            iou_ax.plot(vsteps[best], viou[best], "*", color=run.colour, markersize=13, zorder=5)
        elif len(runs) > 1:
            iou_ax.plot([], [], "o-", color=run.colour, alpha=0.4, label=f"{run.name} (no validation logged)")
    low, high = min((r[0] for r in ranges), default=0.0), max((r[1] for r in ranges), default=0.0)
    if low > 0 and high / low > 20:
        loss_ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        loss_ax.yaxis.set_major_formatter(plain)
        loss_ax.yaxis.set_minor_formatter(NullFormatter())
    for ax, title, ylabel in (
        (loss_ax, "Training loss (weighted cross-entropy)", "loss"),
        (iou_ax, "Validation IoU (star: best checkpoint)", "IoU"),
    ):
        _style(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(
                0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center", va="center", color="#777"
            )
    return fig


def _slice_keys(runs: Sequence[Run]) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    for run in runs:
        for row in run.slices:
            key = (str(row["volume"]), int(row["slice"]))
            if key not in keys:
                keys.append(key)
    return keys


def _slices_figure(runs: Sequence[Run], keys: list[tuple[str, int]]) -> Figure:
    """IoU and pixel error of every evaluated slice per model, with each model's mean as a dashed line."""
    volumes = {v for v, _ in keys}
    labels = [f"{v}:{z}" if len(volumes) > 1 else str(z) for v, z in keys]
    width = min(11.0, max(8.0, 0.3 * len(keys) + 4.0))
    fig = _new_figure(width, 3.5)
    axes = fig.subplots(1, 2)
    positions = np.arange(len(keys))
    for ax, key in zip(axes, ("iou", "pixel_error"), strict=True):
        for run in runs:
            lookup = {(str(r["volume"]), int(r["slice"])): _number(r.get(key)) for r in run.slices}
            values = np.array([lookup.get(k, math.nan) for k in keys])
            ax.plot(positions, values, "o-", color=run.colour, markersize=5, linewidth=1.2, label=run.name)
            if np.isfinite(values).any():
                ax.axhline(
                    float(np.nanmean(values)), color=run.colour, linestyle="--", linewidth=0.9, alpha=0.7
                )
        _style(ax)
        ax.set_xticks(positions, labels, fontsize=8, rotation=90 if len(keys) > 20 else 0)
        ax.set_xlim(-0.5, len(keys) - 0.5)
        ax.margins(y=0.15)
        ax.set_xlabel("test slice" if len(volumes) == 1 else "volume:slice", fontsize=9)
        ax.set_title(f"{_plain_label(key)} per slice ({_direction(key)} better)", fontsize=10)
    fig.legend(
        handles=axes[0].get_legend_handles_labels()[0],
        loc="outside upper center",
        ncol=len(runs),
        frameon=False,
        fontsize=9,
    )
    return fig


def _ablation_figure(main: Run, ablation: Run, keys: Sequence[str]) -> Figure:
    """Grouped bars of the ablation metrics, main (border term) against ablation (class weights only)."""
    fig = _new_figure(7.5, 3.4)
    ax = fig.subplots()
    positions = np.arange(len(keys))
    for i, (run, label) in enumerate(((main, "border + class weights"), (ablation, "class weights only"))):
        values = [_number(run.summary["overall"].get(k)) for k in keys]
        bars = ax.bar(
            positions + (i - 0.5) * 0.38, values, 0.38, color=run.colour, label=f"{run.name}: {label}"
        )
        ax.bar_label(bars, labels=[format_value(v) for v in values], fontsize=8, padding=2)
    _style(ax)
    ax.set_xticks(positions, [f"{_plain_label(k)} ({_direction(k)})" for k in keys], fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("overall, test slices", fontsize=9)
    fig.legend(loc="outside upper center", ncol=2, frameon=False, fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------- sections


def _data_section(inputs: Inputs, config: Mapping[str, Any], counter: FigureCounter) -> tuple[str, str, str]:
    attrs = omezarr.read_attrs(inputs.data)
    weight_attrs = omezarr.read_attrs(inputs.weights)
    voxel = attrs.get("voxel_size")
    unit = attrs.get("unit", "")
    z, y, x = inputs.shape
    class_weights = weight_attrs.get("class_weights")
    rows = [
        ("Volume", f"<code>{_e(inputs.volume)}</code> ({_e(inputs.data)})"),
        ("Shape (z, y, x)", f"{z} \u00d7 {y} \u00d7 {x}"),
        (
            "Voxel size (z, y, x)",
            _e(" \u00d7 ".join(f"{v:g}" for v in voxel) + f" {unit}") if voxel else "n/a",
        ),
        ("Training slices", f"{slice_ranges(inputs.train)} ({len(inputs.train)})"),
        ("Validation slices", f"{slice_ranges(inputs.val)} ({len(inputs.val)})"),
        ("Test slices (held out)", f"{slice_ranges(inputs.test)} ({len(inputs.test)})"),
        (
            "Class weights w<sub>c</sub> (membrane, cell)",
            _e(", ".join(f"{float(w):.3f}" for w in class_weights)) if class_weights else "n/a",
        ),
        (
            "Border term w<sub>0</sub>, \u03c3",
            f"{_e(weight_attrs.get('w0', 'n/a'))}, {_e(weight_attrs.get('sigma', 'n/a'))} px",
        ),
    ]
    volumes = config.get("volumes")
    if isinstance(volumes, Mapping) and len(volumes) > 1:
        rows.append(
            ("Other volumes (predicted)", _e(", ".join(str(v) for v in volumes if v != inputs.volume)))
        )
    body = counter.caption("The data and its split into training, validation and test slices.")
    body += _table(("", ""), rows, cls="kv", table_id="table-data")
    return _section("data", "Data and split", body)


def _metric_keys(runs: Sequence[Run]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for key in run.summary["overall"]:
            if key not in keys:
                keys.append(key)
    return keys


def _results_section(
    runs: Sequence[Run], inputs: Inputs, config: Mapping[str, Any], counter: FigureCounter
) -> tuple[str, str, str]:
    keys = _metric_keys(runs)
    predict = config.get("predict", {})
    threshold = _threshold(runs[0], config)
    tta = "averaged over 8 flips and rotations" if predict.get("tta") else "without test-time augmentation"
    volumes: list[str] = []
    for run in runs:
        for volume in run.summary.get("volumes", {}):
            if volume not in volumes:
                volumes.append(volume)
    columns = [*volumes, "overall"] if len(volumes) > 1 else (volumes or ["overall"])
    head1 = '<th rowspan="2">Metric</th><th rowspan="2"></th>'
    head1 += "".join(f'<th colspan="{len(columns)}" class="model">{_e(run.name)}</th>' for run in runs)
    head1 += '<th rowspan="2" class="paper">Paper, Table 1<br><span>u-net, ISBI 2012 test set</span></th>'
    scope = {
        c: " (test)" if c == inputs.volume else "" if c == "overall" else " (all slices)" for c in columns
    }
    head2 = "".join("".join(f"<th>{_e(c)}{scope[c]}</th>" for c in columns) for _ in runs)

    def value(run: Run, column: str, key: str) -> float:
        source = (
            run.summary["overall"] if column == "overall" else run.summary.get("volumes", {}).get(column, {})
        )
        if column != "overall" and not source and len(columns) == 1:
            source = run.summary["overall"]
        return _number(source.get(key))

    paper = paper_values(keys)
    body_rows = []
    for key in keys:
        info = metric_info(key)
        best = _best_model(runs, key, columns[-1], value) if len(runs) > 1 else None
        cells = []
        for run in runs:
            for column in columns:
                text = format_value(value(run, column, key))
                strong = best == run.name and column == columns[-1]
                cells.append(f'<td class="num">{"<b>" + text + "</b>" if strong else text}</td>')
        reference = format_value(paper[key]) if key in paper else "\u2014"
        title = f' title="{_e(info.description)}"' if info else ""
        body_rows.append(
            f"<tr><th{title}>{_label(key)}</th><td class='dir'>{_direction(key)}</td>{''.join(cells)}"
            f'<td class="num paper">{reference}</td></tr>'
        )
    counts = "".join(
        f'<td class="num">{_slice_count(run, column)}</td>' for run in runs for column in columns
    )
    body_rows.append(
        f"<tr class='count'><th>Slices evaluated</th><td></td>{counts}<td class='num paper'>30</td></tr>"
    )
    table = (
        f'<table id="table-metrics" class="metrics"><thead><tr>{head1}</tr><tr>{head2}</tr></thead>'
        f"<tbody>{''.join(body_rows)}</tbody></table>"
    )
    caption = counter.caption(
        "Segmentation metrics of each model, per volume and overall (mean over slices), beside the u-net row "
        "of the paper's Table 1. \u2191 higher is better, \u2193 lower is better"
        + ("; the better model per metric is in bold." if len(runs) > 1 else ".")
    )
    infos = [(key, metric_info(key)) for key in keys]
    definitions = "".join(f"<li><b>{_label(k)}</b>: {_e(i.description)}.</li>" for k, i in infos if i)
    note = (
        '<div class="note"><p><b>Which data each number was measured on.</b> The paper\'s figures are on the '
        "<b>ISBI 2012 EM segmentation challenge test set</b> (30 slices of <i>Drosophila</i> ventral nerve "
        "cord, serial-section TEM, labels withheld), scored by the challenge organisers on the u-net output "
        "averaged over 7 rotated versions of the input, without further pre- or post-processing. Ours are on "
        f"the <b>held-out test slices {_e(slice_ranges(inputs.test))} of the configured volume "
        f"<code>{_e(inputs.volume)}</code></b> (other volumes: all their slices), scored by "
        f"<code>unetflow.metrics</code> on the predicted foreground probability ({tta}): IoU, Dice and pixel "
        f"error at the threshold {threshold:.3g}{_threshold_origin(config)}, the challenge's measures at "
        "their best threshold, as the "
        "challenge scores them. Different data, annotators and scorer: the columns show the order of "
        "magnitude to expect, not a like-for-like comparison.</p></div>"
    )
    body = caption + f'<div class="scroll">{table}</div>' + note
    body += f'<details><summary>Metric definitions</summary><ul class="defs">{definitions}</ul></details>'
    return _section("results", "Results against the paper", body)


def _slice_count(run: Run, column: str) -> str:
    """Slices behind a column of the metrics table: of one volume (per-slice CSV) or all of them."""
    if column == "overall" or not run.slices:
        return _e(run.summary.get("slices_evaluated", len(run.slices)))
    return str(sum(1 for row in run.slices if str(row["volume"]) == column))


def _best_model(
    runs: Sequence[Run], key: str, column: str, value: Callable[[Run, str, str], float]
) -> str | None:
    info = metric_info(key)
    if info is None or info.higher_is_better is None:
        return None
    scored = [(value(run, column, key), run.name) for run in runs]
    scored = [(v, n) for v, n in scored if math.isfinite(v)]
    if len(scored) < 2:
        return None
    return (max if info.higher_is_better else min)(scored)[1]


def _threshold(run: Run, config: Mapping[str, Any]) -> float:
    """The segmentation threshold a run was evaluated at (its metrics record it; else the config's number)."""
    recorded = run.summary.get("threshold")
    if recorded is not None:
        return float(recorded)
    option = config.get("predict", {}).get("threshold", 0.5)
    return 0.5 if option == "auto" else float(option)


def _threshold_origin(config: Mapping[str, Any]) -> str:
    """How the threshold was chosen, for the captions."""
    if config.get("predict", {}).get("threshold", "auto") != "auto":
        return " (set in the config)"
    return " (w_fg / (w_bg + w_fg) of the class weights, which undoes the class weighting of the loss)"


def _ranked_test_slices(run: Run, inputs: Inputs) -> list[tuple[int, float]]:
    """(slice, IoU) of the split volume's evaluated slices, best first."""
    pairs = [
        (int(row["slice"]), _number(row.get("iou")))
        for row in run.slices
        if str(row["volume"]) == inputs.volume and math.isfinite(_number(row.get("iou")))
    ]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


def _predictions_section(
    runs: Sequence[Run], inputs: Inputs, config: Mapping[str, Any], counter: FigureCounter
) -> tuple[str, str, str]:
    main = next(run for run in runs if run.name == _main_model(inputs.models))
    ranked = _ranked_test_slices(main, inputs)
    title = "Predictions on the test slices"
    if not ranked:
        return _section(
            "predictions",
            title,
            f'<p class="missing">No IoU per slice of {_e(inputs.volume)} for {main.name}.</p>',
        )
    threshold = _threshold(main, config)
    rows = [("Best", *ranked[0])]
    if len(ranked) > 1:
        rows.append(("Worst", *ranked[-1]))
    fig = _prediction_figure([(tag, z, iou) for tag, z, iou in rows], inputs, main.name, threshold)
    crop = _crop_note(inputs)
    caption = (
        f"Best and worst test slices of <code>{_e(inputs.volume)}</code> by IoU, model <b>{_e(main.name)}</b>"
        f"{crop}. Columns: raw image; ground truth (white: cell interior, black: membrane); predicted "
        f"probability of the cell class; errors of the segmentation thresholded at {threshold:.3g}, "
        f"{_swatch(FALSE_POSITIVE)} false positives (membrane predicted as cell, the errors that "
        f"merge touching cells) and {_swatch(FALSE_NEGATIVE)} false negatives (cell predicted as "
        "membrane) over the faded raw image."
    )
    alt = (
        f"Raw, ground truth, prediction and error overlay of test slices {', '.join(str(r[1]) for r in rows)}"
    )
    body = counter.figure(fig, fig_id="fig-predictions", alt=alt, caption=caption)
    return _section("predictions", title, body)


def _swatch(colour: tuple[float, float, float]) -> str:
    """A small square of a figure colour, for captions."""
    red, green, blue = (round(255 * c) for c in colour)
    return f'<span class="swatch" style="background: rgb({red}, {green}, {blue})"></span>'


def _crop_note(inputs: Inputs) -> str:
    _, y, x = inputs.shape
    if y <= MAX_PANEL and x <= MAX_PANEL:
        return ""
    return f" (centre crop {min(y, MAX_PANEL)} \u00d7 {min(x, MAX_PANEL)} px of {y} \u00d7 {x})"


def _slices_section(runs: Sequence[Run], inputs: Inputs, counter: FigureCounter) -> tuple[str, str, str]:
    keys = _slice_keys(runs)
    title = "Metrics per test slice"
    if not keys:
        return _section("slices", title, '<p class="missing">No slice was evaluated.</p>')
    fig = _slices_figure(runs, keys)
    body = counter.figure(
        fig,
        fig_id="fig-slices",
        alt="IoU and pixel error per test slice and model",
        caption="IoU (left, higher is better) and pixel error (right, lower is better) of every evaluated "
        "slice, per model. The spread shows how much the overall mean depends on which slices are held out.",
    )
    metric_keys = [k for k in _metric_keys(runs) if any(k in row for run in runs for row in run.slices)]
    rows = []
    for run in runs:
        for row in run.slices:
            rows.append(
                [_e(run.name), _e(row["volume"]), _e(row["slice"])]
                + [f'<span class="num">{format_value(row.get(k))}</span>' for k in metric_keys]
            )
    table = _table(
        ["Model", "Volume", "Slice", *(_label(k) for k in metric_keys)], rows, table_id="table-slices"
    )
    body += f'<details><summary>All per-slice values</summary><div class="scroll">{table}</div></details>'
    return _section("slices", title, body)


def _weights_section(
    inputs: Inputs, config: Mapping[str, Any], counter: FigureCounter
) -> tuple[str, str, str]:
    z = inputs.train[0] if inputs.train else 0
    attrs = omezarr.read_attrs(inputs.weights)
    connectivity = int(config.get("weights", {}).get("connectivity", 1))
    fig = _weight_figure(inputs, z, connectivity)
    w0, sigma = attrs.get("w0", "n/a"), attrs.get("sigma", "n/a")
    caption = (
        f"The loss weight map of training slice {z}, as in the paper's Fig. 3{_crop_note(inputs)}: (a) raw "
        "image, (b) ground-truth segmentation, one colour per cell, (c) the segmentation mask the net learns "
        "(white: cell, black: membrane), (d) the pixel-wise loss weight "
        "w(x) = w<sub>c</sub>(x) + w<sub>0</sub>\u00b7exp(\u2212(d<sub>1</sub>(x) + d<sub>2</sub>(x))"
        f"\u00b2 / 2\u03c3\u00b2) with w<sub>0</sub> = {_e(w0)}, \u03c3 = {_e(sigma)} px: the narrow "
        "membranes between touching cells get the largest weight."
    )
    body = counter.figure(
        fig, fig_id="fig-weight-map", alt=f"Weight map of training slice {z}", caption=caption
    )
    return _section("weights", "Weight map", body)


def _training_rows(run: Run) -> list[str]:
    steps, loss = run.steps["step"], run.steps["loss"]
    step_time = run.steps.get("step_time", np.array([]))
    data_time = run.steps.get("data_time", np.array([]))
    final = smooth(loss, span=_span(len(loss)))[-1] if len(loss) else math.nan
    vsteps, viou = run.val["step"], run.val["val_iou"]
    if len(viou) and np.isfinite(viou).any():
        best = int(np.nanargmax(viou))
        best_text = f"{format_value(viou[best])} (step {int(vsteps[best])})"
    else:
        best_text = "n/a"
    finite_time = step_time[np.isfinite(step_time)] if len(step_time) else step_time
    finite_data = data_time[np.isfinite(data_time)] if len(data_time) else data_time
    return [
        _e(run.name),
        str(int(np.nanmax(steps))) if len(steps) else "0",
        format_value(final),
        best_text,
        format_seconds(float(finite_time.sum())) if len(finite_time) else "n/a",
        f"{1000 * float(np.median(finite_time)):.0f} ms" if len(finite_time) else "n/a",
        f"{1000 * float(np.median(finite_data)):.0f} ms" if len(finite_data) else "n/a",
    ]


def _training_section(runs: Sequence[Run], counter: FigureCounter) -> tuple[str, str, str]:
    fig = _training_figure(runs)
    caption = (
        "Training curves per model. Left: the weighted cross-entropy of every step (faint) and its "
        "exponential moving average (solid); the ablation's loss uses other weights, so only the shapes of "
        "the curves compare. Right: IoU on the validation slices; the starred point is the checkpoint kept."
    )
    body = counter.figure(fig, fig_id="fig-training", alt="Training loss and validation IoU", caption=caption)
    body += counter.caption("Training summary per model (times from the step log).")
    header = [
        "Model",
        "Steps",
        "Final loss (smoothed)",
        "Best val. IoU",
        "Time in steps",
        "Median step",
        "Median data wait",
    ]
    body += _table(header, [_training_rows(run) for run in runs], table_id="table-training")
    return _section("training", "Training", body)


def _ablation_section(runs: Sequence[Run], counter: FigureCounter) -> tuple[str, str, str]:
    main = next((run for run in runs if run.name == MAIN_MODEL), runs[0])
    ablation = next(run for run in runs if run.name == ABLATION_MODEL)
    keys = [k for k in ABLATION_METRICS if k in main.summary["overall"] and k in ablation.summary["overall"]]
    rows = []
    for key in keys:
        a, b = _number(main.summary["overall"][key]), _number(ablation.summary["overall"][key])
        rows.append(
            [
                f"{_label(key)} {_direction(key)}",
                f'<span class="num">{format_value(a)}</span>',
                f'<span class="num">{format_value(b)}</span>',
                f'<span class="num">{b - a:+.4f}</span>' if math.isfinite(a - b) else "n/a",
                _e(_verdict(key, a, b)),
            ]
        )
    header = [
        "Metric",
        f"{_e(main.name)}: border + class weights",
        f"{_e(ablation.name)}: class weights only",
        "Ablation \u2212 main",
        "Better",
    ]
    body = (
        "<p>The paper (Sec. 3, Fig. 3) pre-computes a weight map whose border term "
        "w<sub>0</sub>\u00b7exp(\u2212(d<sub>1</sub> + d<sub>2</sub>)\u00b2 / 2\u03c3\u00b2) gives the thin "
        "membranes between touching cells a large weight, to force the network to learn these separation "
        "borders, so that touching cells come out as separate objects. The ablation trains the same net with "
        "class-balancing weights only. The claim is about separating cells, which the region measures "
        "(Rand error, V<sub>rand</sub>) see and pixel overlap (IoU) hardly does.</p>"
    )
    body += f'<p class="finding">{_ablation_sentence(main, ablation)}</p>'
    body += counter.caption("The border term on and off, overall on the test slices.")
    body += _table(header, rows, table_id="table-ablation")
    if keys:
        fig = _ablation_figure(main, ablation, keys)
        body += counter.figure(
            fig,
            fig_id="fig-ablation",
            alt="Ablation: Rand error, V_rand and IoU with and without the border term",
            caption="Rand error (lower is better), V<sub>rand</sub> and IoU (higher is better) with the "
            "paper's border-weighted loss and with class balancing only.",
        )
    return _section("ablation", "Ablation: the border term of the weight map", body)


def _verdict(key: str, main: float, ablation: float) -> str:
    info = metric_info(key)
    if info is None or info.higher_is_better is None or not math.isfinite(main - ablation):
        return ""
    if main == ablation:
        return "tie"
    main_wins = (main > ablation) == info.higher_is_better
    return "border term" if main_wins else "class weights only"


def _ablation_sentence(main: Run, ablation: Run) -> str:
    """One sentence: does this run support the paper's claim on the Rand error?"""
    a = _number(main.summary["overall"].get("rand_error"))
    b = _number(ablation.summary["overall"].get("rand_error"))
    if not math.isfinite(a - b):
        return "The Rand error is missing from the metrics, so the claim cannot be checked here."
    if a < b:
        verdict = "consistent with the paper's claim that the weighted loss separates touching cells"
    elif a > b:
        verdict = (
            "not what the paper's claim predicts; with little data or few training steps the border term may "
            "not have paid off yet"
        )
    else:
        verdict = "no difference either way"
    return (
        f"Here the Rand error is {format_value(a)} with the border term and {format_value(b)} without it: "
        f"{verdict}."
    )


# ----------------------------------------------------------------------------------------- provenance


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the results depend on ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(folder: str | os.PathLike[str]) -> str:
    """`git rev-parse HEAD` of the checkout holding `folder` (marked when locally changed), else "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = " (with uncommitted changes)" if status.returncode == 0 and status.stdout.strip() else ""
    return head.stdout.strip() + dirty


def hardware() -> dict[str, str]:
    """CPU model, cores, memory and GPUs of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "CPU": cpu or platform.processor() or platform.machine() or "unknown",
        "CPU cores": str(os.cpu_count() or "unknown"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["CPU cores usable"] = str(len(os.sched_getaffinity(0)))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["Memory"] = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    info["GPU"] = _gpus()
    info["System"] = platform.platform()
    return info


def _gpus() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    try:
        if not torch.cuda.is_available():
            return "none (CUDA not available)"
        return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception as exc:  # a broken driver must not stop the report
        return f"unknown ({exc})"


def benchmark_times(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per rule: jobs, total and longest wall time (s) and peak max_rss (MB) from Snakemake benchmark TSVs.

    ``benchmarks/<rule>/<job>.tsv`` and ``benchmarks/<rule>.tsv`` are both read; repeated measurements
    within one file are averaged.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    rules: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.tsv")):
        relative = path.relative_to(root)
        rule = relative.parts[0] if len(relative.parts) > 1 else path.stem
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        seconds = [_number(r.get("s")) for r in rows]
        seconds = [s for s in seconds if math.isfinite(s)]
        rss = [_number(r.get("max_rss")) for r in rows]
        rss = [r for r in rss if math.isfinite(r)]
        if not seconds:
            continue
        entry = rules.setdefault(
            rule, {"rule": rule, "jobs": 0, "seconds": 0.0, "longest": 0.0, "max_rss": math.nan}
        )
        mean = float(np.mean(seconds))
        entry["jobs"] += 1
        entry["seconds"] += mean
        entry["longest"] = max(entry["longest"], mean)
        if rss:
            entry["max_rss"] = max(np.nan_to_num(entry["max_rss"], nan=-1.0), max(rss))
    return sorted(rules.values(), key=lambda e: -e["seconds"])


class _ConfigDumper(yaml.SafeDumper):
    """Block-style YAML with lists of plain values on one line ([16, 256, 256]), as in config.yaml."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_ConfigDumper.add_representer(list, _represent_list)


def config_yaml(config: Mapping[str, Any]) -> str:
    """The workflow config as YAML (values YAML cannot hold are written as strings)."""
    plain = json.loads(json.dumps(config, default=str))
    return yaml.dump(plain, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, width=100)


def _provenance_section(
    inputs: Inputs, config: Mapping[str, Any], benchmarks: Path, counter: FigureCounter
) -> tuple[str, str, str]:
    now = dt.datetime.now(dt.UTC).astimezone()
    project = inputs.output.resolve().parents[2]
    commit = git_commit(project)
    if commit == "unknown":
        commit = git_commit(Path(__file__).resolve().parent)
    run_rows = [
        ("Generated", _e(now.isoformat(timespec="seconds"))),
        ("Git commit", f"<code>{_e(commit)}</code>"),
        ("Project folder", f"<code>{_e(project)}</code>"),
    ]
    software = [(_e(k), _e(v)) for k, v in package_versions().items()]
    machine = _table(
        ("", ""), [(_e(k), _e(v)) for k, v in hardware().items()], cls="kv", table_id="table-hardware"
    )
    body = (
        '<div class="grid">'
        f'<div><h3 id="prov-run">Run</h3>{_table(("", ""), run_rows, cls="kv", table_id="table-run")}'
        f'<h3 id="prov-hardware">Hardware</h3>{machine}'
        f'</div><div><h3 id="prov-software">Software</h3>'
        f"{_table(('Package', 'Version'), software, table_id='table-software')}</div></div>"
    )
    body += '<h3 id="prov-rules">Time per rule</h3>'
    times = benchmark_times(benchmarks)
    if times:
        rows = [
            (
                f"<code>{_e(t['rule'])}</code>",
                str(t["jobs"]),
                format_seconds(t["seconds"]),
                format_seconds(t["longest"]),
                f"{t['max_rss']:.0f} MB" if math.isfinite(t["max_rss"]) else "n/a",
            )
            for t in times
        ]
        total = sum(t["seconds"] for t in times)
        rows.append(
            (
                "<b>all rules</b>",
                str(sum(t["jobs"] for t in times)),
                f"<b>{format_seconds(total)}</b>",
                "",
                "",
            )
        )
        body += counter.caption(
            "Wall time of each workflow rule from the Snakemake benchmark files in "
            f"<code>{_e(benchmarks)}</code> (summed over its jobs; the report's own time is written after "
            "the page)."
        )
        body += _table(
            ("Rule", "Jobs", "Total time", "Longest job", "Peak memory (max RSS)"),
            rows,
            table_id="table-rules",
        )
    else:
        body += f'<p class="missing">No benchmark files found in <code>{_e(benchmarks)}</code>.</p>'
    body += '<h3 id="prov-config">Configuration</h3>'
    body += f'<pre id="config-yaml">{_e(config_yaml(config))}</pre>'
    body += f'<p class="cite">Paper: {_e(PAPER_CITATION)}.</p>'
    return _section("provenance", "Provenance", body)


# ------------------------------------------------------------------------------------------------ page


CSS = """
:root { --ink: #1d2329; --muted: #5b6670; --rule: #d8dde2; --accent: #1f5fa8; --paper: #f6f1e4; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 15px/1.55 -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 64px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 18px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
header p { margin: 2px 0; color: var(--muted); }
h2 { font-size: 21px; margin: 38px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
h3 { font-size: 16px; margin: 22px 0 6px; }
nav { background: #f4f6f8; border: 1px solid var(--rule); border-radius: 6px; padding: 8px 14px;
  font-size: 14px; }
nav ol { margin: 4px 0; padding-left: 22px; columns: 2; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 6px; }
.card { flex: 1 1 150px; border: 1px solid var(--rule); border-radius: 6px; padding: 10px 14px; }
.card .v { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .k { font-size: 13px; color: var(--muted); }
.card .p { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid var(--ink); background: #fafbfc; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, span.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
td.dir { color: var(--muted); padding: 4px 2px; }
table.metrics thead th { text-align: center; }
table.metrics th.model { border-bottom: 1px solid var(--rule); }
th.paper, td.paper { background: var(--paper) !important; }
th.paper span { font-weight: normal; font-size: 12px; color: var(--muted); }
table.kv thead { display: none; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
.scroll { overflow-x: auto; }
.grid { display: flex; flex-wrap: wrap; gap: 8px 48px; align-items: flex-start; }
.caption { margin: 14px 0 2px; font-size: 14px; color: var(--muted); }
.caption b, figcaption b { color: var(--ink); }
figure { margin: 18px 0 8px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eceff1; }
figcaption { font-size: 14px; color: var(--muted); margin-top: 6px; max-width: 980px; }
.note { background: #f4f6f8; border-left: 4px solid var(--accent); padding: 6px 14px; font-size: 14px; }
.finding { border-left: 4px solid #2a9d4b; padding: 4px 12px; background: #f2f8f3; }
.missing { color: #a33; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px; }
pre { background: #f6f8fa; border: 1px solid var(--rule); border-radius: 6px; padding: 10px 14px;
  font-size: 13px; line-height: 1.4; overflow-x: auto; }
code { font-family: "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.92em; }
details { margin: 6px 0 10px; font-size: 14px; }
summary { cursor: pointer; color: var(--accent); }
ul.defs { margin: 4px 0; }
.cite { font-size: 13px; color: var(--muted); margin-top: 24px; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--rule);
  padding-top: 8px; }
@media print { nav { display: none; } h2 { break-after: avoid; } figure { break-inside: avoid; } }
"""

CARD_METRICS = ("iou", "dice", "rand_error", "warping_error", "isbi_pixel_error", "pixel_error")


def _cards(run: Run, volume: str) -> str:
    """Headline numbers of the main model on the split volume's test slices, beside the paper's figures."""
    overall = run.summary.get("volumes", {}).get(volume) or run.summary["overall"]
    keys = [k for k in CARD_METRICS if k in overall]
    if "isbi_pixel_error" in keys and "pixel_error" in keys:
        keys.remove("pixel_error")
    reference = paper_values(list(overall))
    cards = []
    for key in keys:
        paper = (
            f'<div class="p">paper, ISBI 2012: {format_value(reference[key])}</div>'
            if key in reference
            else ""
        )
        cards.append(
            f'<div class="card"><div class="k">{_label(key)} {_direction(key)}</div>'
            f'<div class="v">{format_value(overall[key])}</div>{paper}</div>'
        )
    return f'<div class="cards" id="summary-cards">{"".join(cards)}</div>'


def _page(runs: Sequence[Run], inputs: Inputs, sections: Sequence[tuple[str, str, str]]) -> str:
    main = next(run for run in runs if run.name == _main_model(inputs.models))
    toc = "".join(f'<li><a href="#{sid}">{_e(title)}</a></li>' for sid, title, _ in sections)
    stamp = dt.datetime.now(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    models = ", ".join(run.name for run in runs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>unetflow report \u2014 {_e(inputs.volume)}</title><style>{CSS}</style></head><body><main>"
        "<header><h1>U-Net reproduction report</h1>"
        "<p>Ronneberger, Fischer &amp; Brox (2015), <i>U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation</i>, EM membrane segmentation reproduced with unetflow.</p>"
        f"<p>Volume <code>{_e(inputs.volume)}</code> \u00b7 test slices {_e(slice_ranges(inputs.test))}"
        " \u00b7 "
        f"models: {_e(models)} \u00b7 generated {_e(stamp)}</p></header>"
        f"<p>Headline: model <b>{_e(main.name)}</b> on the held-out test slices, beside the paper's u-net on "
        "the ISBI 2012 test set.</p>"
        f"{_cards(main, inputs.volume)}"
        f"<nav><b>Contents</b><ol>{toc}</ol></nav>"
        f"{''.join(body for _, _, body in sections)}"
        "<footer>Generated by unetflow.report; figures are embedded, the page needs no network.</footer>"
        "</main></body></html>\n"
    )
