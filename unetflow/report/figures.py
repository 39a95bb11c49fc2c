"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot state) and embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter
from scipy import ndimage as ndi

from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.evaluate.registry import Metric
from unetflow.model.loss import ABLATION_MODE, LOSS_MODES
from unetflow.report.formatting import format_value, number
from unetflow.report.inputs import Inputs, Run, read_truth
from unetflow.report.style import FALSE_NEGATIVE, FALSE_POSITIVE, GRID, MODEL_COLOURS, NOTE

MAX_PANEL = 768
"""Largest side in pixels of an image panel; larger slices are shown as a centre crop."""
DPI = 110


@dataclass(frozen=True)
class Image:
    """A figure of the page: its element id, alt text and the PNG as base64."""

    id: str
    alt: str
    png: str


def embed(fig: Figure, *, fig_id: str, alt: str) -> Image:
    """The figure as a base64 PNG (Agg canvas), with the id and alt text the page shows it under."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return Image(id=fig_id, alt=alt, png=base64.b64encode(buffer.getvalue()).decode("ascii"))


def model_colour(index: int) -> str:
    """The line and bar colour of the `index`-th model."""
    return MODEL_COLOURS[index % len(MODEL_COLOURS)]


def rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    """A figure colour (0..1 floats) as 0..255 integers, for the page's colour swatches."""
    red, green, blue = (round(255 * c) for c in colour)
    return red, green, blue


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of `width` x `height` inches on white, laid out by matplotlib's constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_facecolor("white")
    return fig


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color=GRID, linewidth=0.7)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def window(shape: Sequence[int]) -> tuple[slice, slice]:
    """A centre crop of at most MAX_PANEL x MAX_PANEL of a (y, x) plane."""
    out = []
    for size in shape[-2:]:
        side = min(int(size), MAX_PANEL)
        start = (int(size) - side) // 2
        out.append(slice(start, start + side))
    return out[0], out[1]


def contrast(image: np.ndarray) -> np.ndarray:
    """Raw grey values stretched between the 0.5 and 99.5 percentiles, as floats in 0..1."""
    values = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(values, (0.5, 99.5))
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def instance_colours(labels: np.ndarray, connectivity: int) -> np.ndarray:
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
    grey = 0.5 + 0.45 * contrast(raw)
    image = np.repeat(grey[..., None], 3, axis=2)
    image[predicted & ~truth] = FALSE_POSITIVE
    image[~predicted & truth] = FALSE_NEGATIVE
    return image


def hide_axes(ax: Any) -> None:
    """An image panel: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def prediction_figure(
    rows: Sequence[tuple[str, int, float]], inputs: Inputs, model: str, threshold: float
) -> Figure:
    """Raw / ground truth / prediction / error overlay, one row per (tag, slice, IoU) of `rows`."""
    raw_volume = omezarr.open_image(inputs.data)
    probability = omezarr.open_image(inputs.predictions[model])
    if tuple(probability.shape) != inputs.shape:
        raise InputError(
            f"{inputs.predictions[model]}: prediction of shape {tuple(probability.shape)} does not match "
            f"{inputs.data} of shape {inputs.shape}; re-run the predict step"
        )
    ys, xs = window(inputs.shape)
    fig = new_figure(11.0, 2.95 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    titles = ("Raw", "Ground truth", f"Prediction p(cell) \u2014 {model}", "Errors")
    for r, (tag, z, iou) in enumerate(rows):
        raw = np.asarray(raw_volume[z, ys, xs])
        labels, unannotated = read_truth(inputs.data, (z, ys, xs))
        truth = labels > 0
        prob = np.asarray(probability[z, ys, xs], dtype=np.float32)
        predicted = prob > threshold
        if unannotated is not None:  # unannotated pixels: grey in the truth, no error
            predicted = np.where(unannotated, truth, predicted)
        shown_truth = truth.astype(np.float32)
        if unannotated is not None:
            shown_truth[unannotated] = 0.5
        panels = (
            (contrast(raw), "gray"),
            (shown_truth, "gray"),
            (prob, "gray"),
            (_error_overlay(raw, truth, predicted), None),
        )
        for c, (image, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            hide_axes(ax)
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


def weight_figure(inputs: Inputs, z: int, connectivity: int) -> Figure:
    """The paper's Fig. 3 for one training slice: raw, instances, binary mask, weight map with colour bar."""
    ys, xs = window(inputs.shape)
    raw = np.asarray(omezarr.open_image(inputs.data)[z, ys, xs])
    cells, _ = read_truth(inputs.data, (z, ys, xs))
    weight_map = omezarr.open_image(inputs.weights)
    if tuple(weight_map.shape) != inputs.shape:
        raise InputError(
            f"{inputs.weights}: weight map of shape {tuple(weight_map.shape)} does not match "
            f"{inputs.data} of shape {inputs.shape}; re-run the weights step"
        )
    weight = np.asarray(weight_map[z, ys, xs], dtype=np.float32)
    fig = new_figure(12.0, 3.35)
    axes = fig.subplots(1, 4)
    panels = (
        ("a  raw image", contrast(raw), "gray"),
        ("b  ground-truth instances", instance_colours(cells, connectivity), None),
        ("c  segmentation mask", (cells > 0).astype(np.float32), "gray"),
    )
    for ax, (title, image, cmap) in zip(axes[:3], panels, strict=True):
        ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=10, loc="left")
        hide_axes(ax)
    shown = axes[3].imshow(weight, cmap="jet", interpolation="nearest")
    axes[3].set_title("d  weight map w(x)", fontsize=10, loc="left")
    hide_axes(axes[3])
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


def loss_span(n: int) -> int:
    """Span of the loss smoothing: about a twentieth of the logged steps."""
    return max(1, n // 20)


def training_figure(runs: Sequence[Run]) -> Figure:
    """Training loss (raw faint, smoothed solid) and validation IoU against the step, per model."""
    fig = new_figure(11.0, 3.7)
    loss_ax, iou_ax = fig.subplots(1, 2)
    ranges = []
    for run in runs:
        steps, loss = run.steps["step"], run.steps["loss"]
        if len(steps):
            loss_ax.plot(steps, loss, color=run.colour, alpha=0.22, linewidth=0.8)
            smoothed = smooth(loss, span=loss_span(len(loss)))
            loss_ax.plot(steps, smoothed, color=run.colour, linewidth=1.8, label=run.name)
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
            ax.text(0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center", va="center", color=NOTE)
    return fig


def slices_figure(runs: Sequence[Run], keys: Sequence[tuple[str, int]], metrics: Sequence[Metric]) -> Figure:
    """Two metrics of every evaluated (volume, slice) per model, with each model's mean as a dashed line."""
    volumes = {v for v, _ in keys}
    labels = [f"{v}:{z}" if len(volumes) > 1 else str(z) for v, z in keys]
    width = min(11.0, max(8.0, 0.3 * len(keys) + 4.0))
    fig = new_figure(width, 3.5)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    positions = np.arange(len(keys))
    for ax, metric in zip(axes, metrics, strict=True):
        for run in runs:
            lookup = {(str(r["volume"]), int(r["slice"])): number(r.get(metric.key)) for r in run.slices}
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
        ax.set_title(f"{metric.mathtext} per slice ({metric.arrow} better)", fontsize=10)
    fig.legend(
        handles=axes[0].get_legend_handles_labels()[0],
        loc="outside upper center",
        ncol=len(runs),
        frameon=False,
        fontsize=9,
    )
    return fig


def ablation_figure(main: Run, ablation: Run, metrics: Sequence[Metric]) -> Figure:
    """Grouped bars of the ablation metrics, main (border term) against ablation (class weights only)."""
    fig = new_figure(7.5, 3.4)
    ax = fig.subplots()
    positions = np.arange(len(metrics))
    labels = (LOSS_MODES["border"], LOSS_MODES[ABLATION_MODE])
    for i, (run, label) in enumerate(zip((main, ablation), labels, strict=True)):
        values = [number(run.summary["overall"].get(m.key)) for m in metrics]
        bars = ax.bar(
            positions + (i - 0.5) * 0.38, values, 0.38, color=run.colour, label=f"{run.name}: {label}"
        )
        ax.bar_label(bars, labels=[format_value(v) for v in values], fontsize=8, padding=2)
    _style(ax)
    ax.set_xticks(positions, [f"{m.mathtext} ({m.arrow})" for m in metrics], fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("overall, test slices", fontsize=9)
    fig.legend(loc="outside upper center", ncol=2, frameon=False, fontsize=9)
    return fig
