"""The report's inputs: checked up front (every error names the file or argument) and read per model."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.config.split import Split, check_slices, primary_entry, source_names, split_entries
from unetflow.data import omezarr
from unetflow.data.labels import split_ignore
from unetflow.errors import InputError
from unetflow.layout import MAIN_MODEL
from unetflow.report.formatting import number

PER_MODEL_FILES = {
    "metrics": "metrics JSON",
    "slices": "per-slice metrics CSV",
    "step_logs": "training log",
    "val_logs": "validation log",
    "predictions": "prediction OME-Zarr of the split volume (split.volume)",
}
"""The per-model inputs of the report and what each is, for error messages."""


@dataclass(frozen=True)
class Inputs:
    """The checked inputs of the report."""

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
    sources: list[dict[str, Any]]
    """Every entry of the split: name, volume, region and its train / val / test slices as given."""

    @property
    def main(self) -> str:
        """The model of the headline numbers and the prediction figure: `main` if trained, else the first."""
        return main_model(self.models)


@dataclass
class Run:
    """Everything read for one model: metrics summary, per-slice rows, training logs and its colour."""

    name: str
    colour: str
    summary: dict[str, Any]
    slices: list[dict[str, Any]]
    steps: dict[str, np.ndarray]
    val: dict[str, np.ndarray]


def missing(path: Path, what: str) -> FileNotFoundError:
    """The error for an input file that is not there, naming it and the step that writes it."""
    return FileNotFoundError(
        f"{path}: {what} not found; run the workflow steps that write it first (e.g. `snakemake --until "
        "report`) or fix the path passed to the report"
    )


def check_inputs(
    *,
    models: list[str],
    per_model: Mapping[str, Sequence[str | os.PathLike[str]]],
    data: Path,
    weights: Path,
    split: Split | None,
) -> Inputs:
    """Lengths, existence and the split, checked up front: every error names the argument or file.

    `split` is the config's (one entry or a list); `data` the volume of its primary entry (the first with
    test slices), whose slices the page shows."""
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
            found = path.exists() if key == "predictions" else path.is_file()
            if not found:
                raise missing(path, PER_MODEL_FILES[key])
    if not data.exists():
        raise missing(data, "OME-Zarr volume of the split (split.volume)")
    if not weights.exists():
        raise missing(weights, "weight-map OME-Zarr")
    entries = split_entries(split)
    entry = primary_entry(entries)
    if entry is None:
        raise InputError("split: names no volume; the report needs the config's split")
    volume = entry.volume
    shape = tuple(int(s) for s in omezarr.open_image(data).shape)
    if len(shape) != 3:
        raise InputError(f"{data}: expected a (z, y, x) volume, found shape {shape}")
    open_labels(data)
    chosen = check_slices(entry, shape, what=f"volume {volume!r}", need_train=False)
    return Inputs(
        models=models,
        files=files,
        data=data,
        weights=weights,
        volume=volume,
        shape=(shape[0], shape[1], shape[2]),
        train=chosen["train"],
        val=chosen["val"],
        test=chosen["test"],
        predictions=dict(zip(models, files["predictions"], strict=True)),
        sources=[
            {**item.dump(), "name": name} for name, item in zip(source_names(entries), entries, strict=True)
        ],
    )


def open_labels(data: Path) -> Any:
    """The ground-truth label array of the split volume; an InputError where the volume has none."""
    labels = omezarr.open_labels(data)
    if labels is None:
        raise InputError(f"{data}: has no labels; the report needs the ground truth of split.volume")
    return labels


def read_truth(data: Path, region: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A region of the ground truth (unannotated pixels 0) and the mask of unannotated pixels (or None)."""
    return split_ignore(np.asarray(open_labels(data)[region]), omezarr.label_ignore(data))


def main_model(models: Sequence[str]) -> str:
    """`main` where it was trained, else the first model."""
    return MAIN_MODEL if MAIN_MODEL in models else models[0]


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts of strings (an empty list for a header only)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def columns(path: Path, required: Sequence[str]) -> dict[str, np.ndarray]:
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
    return {c: np.array([number(r.get(c)) for r in rows], dtype=np.float64) for c in header}


def load_run(name: str, inputs: Inputs, index: int, *, colour: str) -> Run:
    """The metrics, per-slice rows and logs of model `name`, the `index`-th of `inputs.models`."""
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
        {k: (v if k == "volume" else int(float(v)) if k == "slice" else number(v)) for k, v in row.items()}
        for row in rows
    ]
    return Run(
        name=name,
        colour=colour,
        summary=summary,
        slices=parsed,
        steps=columns(inputs.files["step_logs"][index], ("step", "loss")),
        val=columns(inputs.files["val_logs"][index], ("step", "val_iou")),
    )
