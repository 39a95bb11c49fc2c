"""The loss, stated once: its weighting modes, the pixel weights of each, the energy on probabilities and
the decision threshold that undoes the class weights (the torch form of the energy, for training, is
unetflow.train.loop.weighted_cross_entropy, which takes its weights from here).

Modes (`train.loss_weights`): "border", the paper's w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2) read
from the weight map (unetflow.train.weights); "class", the class balance w_c(x) only; "none", plain
cross-entropy. Unannotated pixels (sparse labels) weigh 0 in every mode. The energy is the mean over the
tile's pixels of w(x) times the softmax cross-entropy (Ronneberger et al. 2015, eq. 1).

A net trained with class weights is biased towards the rarer class; `loss_threshold` is the foreground
probability at which its output reads even odds again, the threshold the checkpoint records and
prediction uses by default (`predict.threshold: auto`).

NumPy only (no torch), so the data steps, the metrics and the report ask it without loading torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.config.model import LossMode

LOSS_MODES: dict[str, str] = {
    "border": "border + class weights",
    "class": "class weights only",
    "none": "plain cross-entropy",
}
"""What each mode weighs with, in words (logs, the report)."""
ABLATION_MODE: LossMode = "class"
"""The loss of the ablation model (config `ablation: true`): the class balance without the border term."""
EVEN_ODDS = 0.5
"""The threshold of a loss without class weights."""


def uses_weight_map(mode: str) -> bool:
    """Whether the mode reads the precomputed weight map (the border term)."""
    return _checked(mode) == "border"


def uses_class_weights(mode: str) -> bool:
    """Whether the mode weighs the classes (and so shifts the decision threshold)."""
    return _checked(mode) != "none"


def _checked(mode: str) -> str:
    if mode not in LOSS_MODES:
        raise ValueError(f"loss weighting must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
    return mode


def pixel_weights(
    mode: str,
    foreground: np.ndarray,
    *,
    unannotated: np.ndarray | None = None,
    weight_map: np.ndarray | None = None,
    class_weights: tuple[float, float] | None = None,
) -> np.ndarray:
    """The loss weight of every pixel (float32, the shape of `foreground`, 0/1 interior) for `mode`.

    border: `weight_map` (the paper's w(x)); class: w_c of each pixel's class from `class_weights`
    (background, foreground); none: 1. Unannotated pixels weigh 0.
    """
    labels = np.asarray(foreground)
    if _checked(mode) == "none":
        weights = np.ones(labels.shape, dtype=np.float32)
    elif mode == "class":
        if class_weights is None:
            raise ValueError("loss weighting 'class' needs the class weights (background, foreground)")
        background, cell = class_weights
        weights = np.where(labels > 0, cell, background).astype(np.float32)
    else:
        if weight_map is None:
            raise ValueError("loss weighting 'border' needs the weight map w(x) of these pixels")
        weights = np.asarray(weight_map, dtype=np.float32)
        if weights.shape != labels.shape:
            raise ValueError(f"weight map of shape {weights.shape} does not match the labels {labels.shape}")
    if unannotated is not None:
        weights = np.where(unannotated, np.float32(0), weights)
    return weights


def decision_threshold(class_weights: tuple[float, float] | None) -> float:
    """Foreground-probability threshold that undoes the class weighting of the loss (EVEN_ODDS without it).

    A net trained with cross-entropy weighted w_c(k) per class estimates p_w(k|x) proportional to
    w_c(k) p(k|x) (Elkan 2001, cost-sensitive learning), so the unweighted rule p(fg|x) > 0.5 reads
    p_w(fg|x) > w_fg / (w_bg + w_fg). The border term w0 exp(...) stays: separating touching cells is its job.
    """
    if class_weights is None:
        return EVEN_ODDS
    background, foreground = (float(w) for w in class_weights)
    if not (background > 0 and foreground > 0):
        raise ValueError(f"class weights must be positive, got {class_weights!r}")
    return foreground / (background + foreground)


def loss_threshold(mode: str, class_weights: tuple[float, float] | None) -> float:
    """The segmentation threshold that matches a loss: it undoes its class weights (EVEN_ODDS for none)."""
    if not uses_class_weights(mode) or class_weights is None:
        return EVEN_ODDS
    return decision_threshold(class_weights)


def recorded_threshold(state: Mapping[str, Any]) -> float:
    """The threshold a checkpoint's loss called for (EVEN_ODDS where it records none)."""
    return float(state.get("threshold", EVEN_ODDS))


def class_weights_of(weight_maps: str | Path) -> tuple[float, float]:
    """The class weights (background, foreground) a weight-map OME-Zarr was made with."""
    from unetflow.data import omezarr

    background, foreground = omezarr.read_attrs(weight_maps)["class_weights"]
    return float(background), float(foreground)


def probability_loss(probability: np.ndarray, foreground: np.ndarray, weights: np.ndarray) -> float:
    """The same energy from foreground probabilities (validation, after overlap-tile prediction)."""
    chosen = np.where(foreground > 0, probability, 1.0 - probability)
    return float(np.mean(-np.log(np.clip(chosen, 1e-7, 1.0)) * weights))
