"""The report of a cell tracking run: the paper's Table 2 beside this run's SEG, each model's object metrics,
a figure of cells (gold beside predicted, each cell its own colour, splits and merges marked), the protocol
and the data it was measured on, the training curves and the provenance; one self-contained page."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from unetflow.atomic import atomic_path
from unetflow.config.model import Config
from unetflow.data import ctc as ctc_data
from unetflow.errors import InputError
from unetflow.evaluate.objects import Contingency, object_errors
from unetflow.evaluate.registry import OBJECT_METRICS
from unetflow.report.figures import Image, _contrast, _instance_colours, embed, model_colour, smooth
from unetflow.report.inputs import columns
from unetflow.report.provenance import collect_provenance
from unetflow.report.render import environment, stylesheet
from unetflow.report.sections import Section, provenance_section

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
MARKS = {
    "split": (1.0, 0.55, 0.0),
    "merged": (1.0, 0.0, 1.0),
    "missed": (0.1, 0.45, 1.0),
    "extra": (1.0, 1.0, 0),
}
"""Outline colour of each kind of error in the cell figure."""


@dataclass(frozen=True)
class CellsPage:
    """The page: dataset, the run's mean SEG, the paper's figure for it, sections, time."""

    dataset: str
    seg: float
    paper: float | None
    sections: Sequence[Section]
    generated: str


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
    """Raw, gold and predicted cells of one frame; errors outlined in the colours of MARKS."""
    errors = object_errors(Contingency.of(gold, cells))
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    gold_rgb, cells_rgb = _instance_colours(gold, 1), _instance_colours(cells, 1)
    for kind, image, labels in (
        ("missed", gold_rgb, gold),
        ("split", gold_rgb, gold),
        ("merged", cells_rgb, cells),
        ("extra", cells_rgb, cells),
    ):
        ids = getattr(errors, kind)
        if ids:
            image[find_boundaries(np.where(np.isin(labels, ids), labels, 0), mode="inner")] = MARKS[kind]
    for ax, image, name in (
        (axes[0], _contrast(raw), "frame"),
        (axes[1], gold_rgb, f"gold: {int(len(np.unique(gold)) - 1)} cells"),
        (axes[2], cells_rgb, f"predicted: {int(cells.max())} cells"),
    ):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
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
    colours = {kind: tuple(round(255 * c) for c in colour) for kind, colour in MARKS.items()}
    return Section(
        "cells", "Cells: gold beside predicted", "ctc_cells.html.j2", {"rows": rows, "marks": colours}
    )


def _training_section(step_logs: Sequence[Path], models: Sequence[str]) -> Section:
    """The loss of every model's steps."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for index, (model, path) in enumerate(zip(models, step_logs, strict=True)):
        data = columns(path, ["step", "loss"])
        ax.plot(data["step"], data["loss"], color=model_colour(index), alpha=0.2, linewidth=0.8)
        span = max(1, len(data["loss"]) // 20)
        ax.plot(data["step"], smooth(data["loss"], span=span), color=model_colour(index), label=model)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted cross-entropy")
    ax.legend(frameon=False, fontsize=8)
    image: Image = embed(fig, fig_id="training-loss", alt="training loss per model")
    return Section(
        "ctc_training", "Training", "ctc_training.html.j2", {"image": image, "models": list(models)}
    )


def build_ctc_report(
    *,
    output: str | os.PathLike[str],
    seg: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    cells: Sequence[str | os.PathLike[str]],
    step_logs: Sequence[str | os.PathLike[str]],
    config: Config,
    benchmarks: str | os.PathLike[str],
    project: str | os.PathLike[str] | None = None,
) -> None:
    """Write the cell tracking run's page `output` atomically (module docstring); `cells` are the label
    stacks `results/cells/<model>/<sequence>.tif`, `step_logs` each model's (config.ctc.models() order)."""
    ctc = config.ctc
    if ctc is None:
        raise InputError("the cell tracking report needs the config's ctc section")
    for path in (seg, dataset, *cells, *step_logs):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: an input of the report is missing; run the workflow first")
    scores = json.loads(Path(seg).read_text())
    stacks = {(Path(path).parent.name, Path(path).stem): Path(path) for path in cells}
    parts = [
        Section("table2", "Table 2 of the paper and this run", "ctc_table2.html.j2", _table2(scores)),
        Section(
            "scores", "Object metrics", "ctc_scores.html.j2", {"scores": scores, "metrics": OBJECT_METRICS}
        ),
        _cells_section(scores, Path(dataset), stacks),
        Section(
            "protocol",
            "Protocol and data",
            "ctc_protocol.html.j2",
            {
                "ctc": ctc,
                "segment": config.segment,
                "record": ctc_data.read_record(dataset),
                "train": config.train,
                "model": config.model,
            },
        ),
        _training_section([Path(p) for p in step_logs], ctc.models()),
    ]
    provenance = collect_provenance(
        project=Path.cwd() if project is None else Path(project), benchmarks=Path(benchmarks), config=config
    )
    parts.append(provenance_section(provenance))
    column = TABLE2_COLUMNS.get(ctc.dataset)
    page = CellsPage(
        dataset=ctc.dataset,
        seg=float(scores["seg"]),
        paper=None if column is None else PAPER_TABLE2[-1][1 + column],
        sections=parts,
        generated=dt.datetime.now(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
    html = environment().get_template("ctc_page.html.j2").render(page=page, css=stylesheet())
    with atomic_path(output) as tmp:
        tmp.write_text(html, encoding="utf-8")
