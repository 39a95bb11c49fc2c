"""Validation during training: whole-slice overlap-tile prediction of each source's validation slices,
scored per source and pooled over the sources (the rows of the validation log)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unetflow.evaluate.metrics import evaluate
from unetflow.model import loss
from unetflow.model.unet import UNet
from unetflow.predict import predict_array
from unetflow.train.sources import TrainingData, joined

VAL_COLUMNS = ("step", "val_loss", "val_iou", "val_pixel_error")
VAL_SCORES = VAL_COLUMNS[1:]

__all__ = ["VAL_COLUMNS", "VAL_SCORES", "pooled_scores", "validate", "validate_per_source"]


def validate(
    model: UNet,
    data: TrainingData | Sequence[TrainingData],
    *,
    device: torch.device,
    threshold: float = loss.EVEN_ODDS,
    memory_gb: float = 1.0,
    tta: bool = False,
) -> dict[str, float]:
    """Whole-slice overlap-tile prediction of the validation slices (`tta`: averaged over the 8 flips and
    rotations): weighted loss, IoU and pixel error (unannotated pixels left out of both). A net that sees
    along z validates a source's runs, each predicted with the volume's slices around it."""
    runs = [data] if isinstance(data, TrainingData) else list(data)
    options = {"mean": 0.0, "std": 1.0, "device": device, "memory_gb": memory_gb, "tta": tta}
    probs = np.concatenate([predict_array(model, run.raw, z_range=run.z_range, **options) for run in runs])
    labels, weights, unannotated = joined(runs)
    scores = [
        evaluate(p, t, threshold=threshold, include_warping=False, ignore=mask)
        for p, t, mask in zip(probs, labels, unannotated, strict=True)
    ]
    model.train()
    return {
        "val_loss": loss.probability_loss(probs, labels, weights),
        "val_iou": _mean(s["iou"] for s in scores),
        "val_pixel_error": _mean(s["pixel_error"] for s in scores),
    }


def _mean(values: Any) -> float:
    """The mean of the values that are numbers (a slice without annotated pixels scores NaN)."""
    found = [value for value in values if not math.isnan(value)]
    return float(np.mean(found)) if found else math.nan


def pooled_scores(
    per_source: dict[str, dict[str, float]], sizes: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """The validation scores of several sources as one: the loss over all their pixels, IoU and pixel error
    over all their slices (`sizes`: pixels and slices of each); one source's scores as they are."""
    if len(per_source) == 1:
        return dict(next(iter(per_source.values())))
    pixels = sum(size[0] for size in sizes.values())
    slices = sum(size[1] for size in sizes.values())
    pooled = {"val_loss": sum(s["val_loss"] * sizes[n][0] for n, s in per_source.items()) / pixels}
    for key in ("val_iou", "val_pixel_error"):
        pooled[key] = sum(s[key] * sizes[n][1] for n, s in per_source.items()) / slices
    return pooled


def validate_per_source(
    model: UNet, val_data: Sequence[TrainingData], *, device: torch.device, threshold: float
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Validate on every source's validation slices: the scores of each source and the pooled scores."""
    by_source: dict[str, list[TrainingData]] = {}
    for data in val_data:  # a source's runs of slices (one for a 2-D net) validate together
        by_source.setdefault(data.name, []).append(data)
    per_source = {
        name: validate(model, runs, device=device, threshold=threshold) for name, runs in by_source.items()
    }
    sizes = {
        name: (sum(int(data.labels.size) for data in runs), sum(int(data.labels.shape[0]) for data in runs))
        for name, runs in by_source.items()
    }
    return per_source, pooled_scores(per_source, sizes)
