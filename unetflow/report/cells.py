"""The report of a cell tracking run: the paper's Table 2 beside this run's SEG, each model's object metrics,
a figure of cells (gold beside predicted, each cell its own colour, splits and merges marked), the protocol
and the data it was measured on, the training curves and the provenance; one self-contained page."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from unetflow.config.model import Config
from unetflow.data import ctc as ctc_data
from unetflow.errors import InputError
from unetflow.evaluate.objects import Contingency, object_errors
from unetflow.evaluate.registry import OBJECT_METRICS
from unetflow.report.figures import (
    contrast,
    embed,
    hide_axes,
    instance_colours,
    loss_span,
    model_colour,
    new_figure,
    smooth,
)
from unetflow.report.inputs import columns
from unetflow.report.sections import Section, section
from unetflow.report.style import OBJECT_ERRORS

PAPER_TABLE2: list[tuple[str, float | None, float | None]] = [
    ("IMCB-SG (2014)", 0.2669, 0.2935),
    ("KTH-SE (2014)", 0.7953, 0.4607),
    ("HOUS-US (2014)", 0.5323, None),
    ("second-best 2015", 0.83, 0.46),
    ("u-net (2015)", 0.9203, 0.7756),
]
"""The paper's Table 2 (segmentation results, IOU, on the ISBI cell tracking challenge 2015), its rows as
printed: name, PhC-U373, DIC-HeLa."""
TABLE2_COLUMNS = {"PhC-C2DH-U373": 0, "DIC-C2DH-HeLa": 1}
"""The challenge's dataset names of the paper's two columns."""


def _table2(scores: dict[str, Any]) -> dict[str, Any]:
    """Table 2 as printed, and this run's rows: each direction and the mean, in this dataset's column."""
    column = TABLE2_COLUMNS.get(scores["dataset"])
    runs = [
        (f"this run: trained on {', '.join(fold['trained_on'])}, scored on {sequence}", found["seg"])
        for fold in scores["folds"].values()
        for sequence, found in fold["scored_on"].items()
    ]
    return {
        "paper": PAPER_TABLE2,
        "column": column,
        "runs": [*runs, ("this run: mean", scores["seg"])],
        "dataset": scores["dataset"],
        "archive": scores["archive"],
        "protocol": scores["protocol"],
        "measure": scores["measure"],
    }


def _frame_figure(raw: np.ndarray, gold: np.ndarray, cells: np.ndarray, title: str) -> Figure:
    """Raw, gold and predicted cells of one frame; errors outlined in the colours of OBJECT_ERRORS."""
    errors = object_errors(Contingency.of(gold, cells))
    fig = new_figure(12.0, 4.4)
    axes = fig.subplots(1, 3)
    gold_rgb, cells_rgb = instance_colours(gold, 1), instance_colours(cells, 1)
    for kind, image, labels in (
        ("missed", gold_rgb, gold),
        ("split", gold_rgb, gold),
        ("merged", cells_rgb, cells),
        ("extra", cells_rgb, cells),
    ):
        ids = getattr(errors, kind)
        if ids:
            image[find_boundaries(np.where(np.isin(labels, ids), labels, 0), mode="inner")] = OBJECT_ERRORS[
                kind
            ]
    for ax, image, name in (
        (axes[0], contrast(raw), "frame"),
        (axes[1], gold_rgb, f"gold: {int(len(np.unique(gold)) - 1)} cells"),
        (axes[2], cells_rgb, f"predicted: {int(cells.max())} cells"),
    ):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        hide_axes(ax)
    counts = errors.counts()
    fig.suptitle(f"{title}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()), fontsize=11)
    return fig


def _cells_section(scores: dict[str, Any], dataset: Path, cells: dict[tuple[str, str], Path]) -> Section:
    """For each scored sequence, the gold frame with the lowest SEG, drawn."""
    rows = []
    for number, (model, fold) in enumerate(scores["folds"].items()):
        for sequence in fold["scored_on"]:
            files = ctc_data.scan_dataset(dataset, [sequence])[sequence]
            stack = tifffile.imread(cells[(model, sequence)])
            worst, frame = 2.0, next(iter(files.gold))
            for index, path in files.gold.items():
                value = float(
                    OBJECT_METRICS["seg"].score(Contingency.of(tifffile.imread(path), stack[index]))
                )
                if value < worst:
                    worst, frame = value, index
            raw = tifffile.imread(files.frames[frame])
            gold = np.asarray(tifffile.imread(files.gold[frame]))
            title = f"{model} on sequence {sequence}, frame {frame} (its lowest SEG, {worst:.3f})"
            image = embed(
                _frame_figure(raw, gold, np.asarray(stack[frame]), title),
                fig_id=f"cells-{number}-{sequence}",
                alt=title,
            )
            rows.append({"image": image, "model": model, "sequence": sequence, "frame": frame})
    colours = {kind: tuple(round(255 * c) for c in colour) for kind, colour in OBJECT_ERRORS.items()}
    return section("ctc_cells", "Cells: gold beside predicted", {"rows": rows, "marks": colours})


def _training_section(step_logs: Sequence[Path], models: Sequence[str]) -> Section:
    """The loss of every model's steps."""
    fig = new_figure(9.0, 3.6)
    ax = fig.subplots()
    for index, (model, path) in enumerate(zip(models, step_logs, strict=True)):
        data = columns(path, ["step", "loss"])
        ax.plot(data["step"], data["loss"], color=model_colour(index), alpha=0.2, linewidth=0.8)
        smoothed = smooth(data["loss"], span=loss_span(len(data["loss"])))
        ax.plot(data["step"], smoothed, color=model_colour(index), label=model)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted cross-entropy")
    ax.legend(frameon=False, fontsize=8)
    image = embed(fig, fig_id="training-loss", alt="training loss per model")
    return section("ctc_training", "Training", {"image": image, "models": list(models)})


def _protocol(config: Config, dataset: str | os.PathLike[str]) -> dict[str, Any]:
    """What the protocol section states: the ctc, cells, train and model sections and the fetched data."""
    return {
        "ctc": config.ctc,
        "cells": config.cells,
        "record": ctc_data.read_record(dataset),
        "train": config.train,
        "model": config.model,
    }


def cells_sections(
    scores: dict[str, Any], *, dataset: Path, cells: Sequence[Path], step_logs: Sequence[Path], config: Config
) -> list[Section]:
    """The sections of a cell tracking run's page (its provenance aside), from its SEG file `scores`, the
    fetched `dataset`, the label stacks `cells` (results/cells/<model>/<sequence>.tif) and each model's
    step log (config.ctc.models() order)."""
    if config.ctc is None:
        raise InputError("the cell tracking report needs the config's ctc section")
    stacks = {(path.parent.name, path.stem): path for path in cells}
    return [
        section("ctc_table2", "Table 2 of the paper and this run", _table2(scores)),
        section("ctc_scores", "Object metrics", {"scores": scores, "metrics": OBJECT_METRICS}),
        _cells_section(scores, dataset, stacks),
        section("ctc_protocol", "Protocol and data", _protocol(config, dataset)),
        _training_section(step_logs, config.ctc.models()),
    ]


def paper_seg(dataset: str) -> float | None:
    """The u-net's figure in the paper's Table 2 for a challenge dataset (None for another one)."""
    column = TABLE2_COLUMNS.get(dataset)
    return None if column is None else PAPER_TABLE2[-1][1 + column]
