"""Real inputs of the report step on a tiny synthetic volume, laid out as the workflow writes them."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from unetflow.config.load import load_config, merge_config
from unetflow.config.model import Config
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.synthesize import synthesize_volume
from unetflow.evaluate.metrics import evaluate
from unetflow.evaluate.registry import HEADLINE_KEYS
from unetflow.train.weights import class_balance_weights, weight_map_volume

VOLUME = "synthetic"
SPLIT = {"volume": VOLUME, "train": "0-2", "val": "3", "test": "4-5"}
BLUR = {"main": 1.2, "ablation": 2.5}
"""Sigma of the Gaussian blur that turns the labels into each model's 'prediction' (ablation: blurrier)."""
BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
BENCHMARKS = {
    "import_volume/synthetic.tsv": [(3.25, 180.5)],
    "train/main.tsv": [(125.5, 1450.25)],
    "train/ablation.tsv": [(120.0, 1400.0)],
    "predict/main/synthetic_0.tsv": [(10.0, 900.0)],
    "predict/main/synthetic_1.tsv": [(14.0, 950.0)],
    "weights.tsv": [(2.0, 100.0), (4.0, 120.0)],
}


def config(models: Sequence[str], **changes: Any) -> Config:
    """A workflow config as the report receives it: the defaults with a small run's values (and `changes`,
    whole sections as mappings)."""
    values = {
        "volumes": {VOLUME: {"synthetic": {"shape": [6, 64, 64], "seed": 0}, "voxel_size": [50.0, 4.0, 4.0]}},
        "split": dict(SPLIT),
        "weights": {"w0": 10.0, "sigma": 5.0, "connectivity": 1},
        "model": {"depth": 2, "base_channels": 4},
        "train": {"steps": 60, "lr": 0.02, "loss_weights": "border"},
        "predict": {"threshold": 0.5},
        "evaluate": {"connectivity": 1, "warping": True},
        "ablation": "ablation" in models,
    }
    return load_config(merge_config(merge_config(Config().dump(), values), changes))


def write_rows(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A CSV with a header row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def _evaluate(probability: np.ndarray, labels: np.ndarray, chosen: list[int], root: Path, model: str) -> None:
    """results/metrics/<model>.json and <model>_slices.csv in the evaluate step's format."""
    rows = [{"volume": VOLUME, "slice": z, **evaluate(probability[z], labels[z])} for z in chosen]
    keys = [k for k in rows[0] if k not in ("volume", "slice")]
    overall = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    payload = {
        **{k: overall[k] for k in HEADLINE_KEYS},
        "overall": overall,
        "volumes": {VOLUME: overall},
        "slices_evaluated": len(rows),
    }
    metrics = root / "results" / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / f"{model}.json").write_text(json.dumps(payload, indent=2))
    write_rows(metrics / f"{model}_slices.csv", ["volume", "slice", *keys], [list(r.values()) for r in rows])


def _logs(root: Path, model: str, *, val_rows: bool) -> tuple[Path, Path]:
    folder = root / "results" / "models" / model
    steps = np.arange(1, 61)
    scale = 1.0 if model == "main" else 0.6
    loss = scale * (0.7 * np.exp(-steps / 25) + 0.05 + 0.02 * np.sin(steps))
    # The main model's log is of a run of 4 processes (train.gpus 4); the ablation's predates the column.
    columns = ["step", "loss", "lr", "step_time", "data_time", *(["processes"] if model == "main" else [])]
    write_rows(
        folder / "train_log.csv",
        columns,
        [(s, f"{v:.5f}", 0.02, 0.25, 0.01, 4)[: len(columns)] for s, v in zip(steps, loss, strict=True)],
    )
    val = [(s, 0.3 - s / 400, 0.6 + s / 200, 0.2 - s / 600) for s in (20, 40, 60)] if val_rows else []
    write_rows(folder / "val_log.csv", ["step", "val_loss", "val_iou", "val_pixel_error"], val)
    return folder / "train_log.csv", folder / "val_log.csv"


def _benchmarks(root: Path) -> Path:
    folder = root / "benchmarks"
    for name, rows in BENCHMARKS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [BENCHMARK_HEADER] + [
            f"{s}\t0:00:{int(s):02d}\t{rss}\t1\t1\t1\t0\t0\t50.0\t1.0" for s, rss in rows
        ]
        path.write_text("\n".join(lines) + "\n")
    return folder


def make_inputs(
    root: Path,
    models: Sequence[str] = ("main",),
    *,
    empty_val: Sequence[str] = (),
    shape: tuple[int, int, int] = (6, 64, 64),
) -> dict[str, Any]:
    """Write every input of the report under `root` (a project folder) and return build_report's kwargs.

    Models in `empty_val` get a validation log with a header only.
    """
    raw, labels = synthesize_volume(shape=shape, seed=0, cell_diameter=min(40.0, shape[-1] / 3.5))
    data = root / "results" / "data" / f"{VOLUME}.zarr"
    import_volume(raw, data, labels=labels, voxel_size=(50.0, 4.0, 4.0))
    truth = np.asarray(omezarr.open_labels(data))
    train = [0, 1, 2]
    class_weights = class_balance_weights(truth[i] > 0 for i in train)
    weights = root / "results" / "weights" / f"{VOLUME}.zarr"
    omezarr.write_image(
        weights,
        weight_map_volume(truth, w0=10.0, sigma=5.0, class_weights=class_weights),
        voxel_size=(50.0, 4.0, 4.0),
        attrs={"class_weights": list(class_weights), "w0": 10.0, "sigma": 5.0},
    )
    step_logs, val_logs = [], []
    for model in models:
        probability = ndi.gaussian_filter((truth > 0).astype(np.float32), sigma=(0, BLUR[model], BLUR[model]))
        omezarr.write_image(
            root / "results" / "predict" / model / f"{VOLUME}.zarr", probability, voxel_size=(50, 4, 4)
        )
        _evaluate(probability, truth, [4, 5], root, model)
        step_log, val_log = _logs(root, model, val_rows=model not in empty_val)
        step_logs.append(step_log)
        val_logs.append(val_log)
    metrics = root / "results" / "metrics"
    return {
        "output": root / "results" / "report" / "index.html",
        "models": list(models),
        "metrics": [metrics / f"{m}.json" for m in models],
        "slices": [metrics / f"{m}_slices.csv" for m in models],
        "step_logs": step_logs,
        "val_logs": val_logs,
        "data": data,
        "weights": weights,
        "config": config(models),
        "benchmarks": _benchmarks(root),
        "predictions": [root / "results" / "predict" / m / f"{VOLUME}.zarr" for m in models],
        "project": root,
    }
