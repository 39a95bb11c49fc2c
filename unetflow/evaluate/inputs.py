"""What the metrics take: prediction and truth checked and classified (probability, binary mask or instance
labels), restricted to the annotated pixels, thresholded, and the cells of a binary map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def check_connectivity(connectivity: int) -> None:
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), got {connectivity!r}")


def check_threshold(threshold: float, name: str = "threshold") -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {threshold!r}")
    return value


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(check_threshold(t, "every value of thresholds") for t in np.ravel(thresholds))
    if not values:
        raise ValueError("thresholds is empty; pass at least one value in [0, 1], e.g. DEFAULT_THRESHOLDS")
    return values


def _is_integer_valued(array: np.ndarray) -> bool:
    return bool(np.issubdtype(array.dtype, np.integer) or np.all(array == np.round(array)))


def _is_two_valued(array: np.ndarray) -> bool:
    """True when every value is 0 or one single positive value."""
    top = array.max() if array.size else 0
    return bool(np.all((array == 0) | (array == top)))


def prediction_kind(prediction: np.ndarray, *, prediction_instances: bool) -> str:
    """'probability', 'binary' or 'labels', from the dtype and values; raises on anything else."""
    if prediction.dtype == bool:
        return "binary"
    if not (np.issubdtype(prediction.dtype, np.integer) or np.issubdtype(prediction.dtype, np.floating)):
        raise ValueError(
            f"prediction has dtype {prediction.dtype}; pass a float probability, a bool/0-1 mask or "
            "integer instance labels"
        )
    if prediction.size and not np.all(np.isfinite(prediction)):
        raise ValueError("prediction contains NaN or infinite values; pass finite probabilities in [0, 1]")
    if prediction.size and prediction.min() < 0:
        raise ValueError(
            "prediction has negative values; pass a probability in [0, 1], a mask or labels >= 0"
        )
    if prediction_instances:
        if not _is_integer_valued(prediction):
            raise ValueError(
                "prediction_instances=True but prediction has non-integer values; pass integer labels"
            )
        return "labels"
    if np.issubdtype(prediction.dtype, np.integer):
        if _is_two_valued(prediction):
            return "binary"
        raise ValueError(
            "prediction is integer with more than two distinct values; pass a float probability in [0, 1], "
            "a 0/1 mask, or instance labels with prediction_instances=True"
        )
    if prediction.size and prediction.max() > 1:
        raise ValueError(
            "prediction is float with values above 1; pass a foreground probability in [0, 1] "
            "(or instance labels with prediction_instances=True)"
        )
    if np.all((prediction == 0) | (prediction == 1)):
        return "binary"
    return "probability"


def truth_kind(truth: np.ndarray, *, truth_instances: bool) -> str:
    """'binary' or 'labels', from the dtype and values; raises on anything else."""
    if truth.dtype == bool:
        return "binary"
    if not (np.issubdtype(truth.dtype, np.integer) or np.issubdtype(truth.dtype, np.floating)):
        raise ValueError(f"truth has dtype {truth.dtype}; pass a binary mask or integer instance labels")
    if truth.size and not np.all(np.isfinite(truth)):
        raise ValueError("truth contains NaN or infinite values; pass a binary mask or instance labels")
    if truth.size and truth.min() < 0:
        raise ValueError("truth has negative values; pass 0 for background/membrane and > 0 for cells")
    if not truth_instances and _is_two_valued(truth):
        return "binary"
    if not _is_integer_valued(truth):
        raise ValueError(
            "truth has more than two distinct values that are not all integers; pass a binary mask "
            "(e.g. 0/255) or integer instance labels"
        )
    return "labels"


def as_arrays(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(
            f"prediction has shape {prediction.shape} but truth has shape {truth.shape}; pass arrays of the "
            "same (y, x) or (z, y, x) shape"
        )
    if prediction.ndim not in (2, 3):
        raise ValueError(
            f"prediction and truth must be 2-D (y, x) slices or 3-D (z, y, x) stacks, got {prediction.ndim}-D"
        )
    if prediction.size == 0:
        raise ValueError(
            f"prediction and truth are empty (shape {prediction.shape}); pass at least one pixel"
        )
    return prediction, truth


def structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, connectivity)


def cells(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Label the connected components of a 2-D foreground mask (1..n, background 0)."""
    check_connectivity(connectivity)
    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=structure(connectivity))
    return labels


def restrict(
    prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, list[int | None]]:
    """Prediction and truth with the unannotated pixels (`ignore`) set to background, and the annotated
    pixels of each slice (None: all of them)."""
    slices = 1 if prediction.ndim == 2 else prediction.shape[0]
    if ignore is None:
        return prediction, truth, [None] * slices
    mask = np.asarray(ignore, dtype=bool)
    if mask.shape != prediction.shape:
        raise ValueError(
            f"ignore has shape {mask.shape} but prediction has shape {prediction.shape}; pass the mask of "
            "unannotated pixels of the same slices"
        )
    pixels = np.count_nonzero(~mask.reshape(slices, -1), axis=1)
    zero = np.zeros((), dtype=prediction.dtype)
    return (
        np.where(mask, zero, prediction),
        np.where(mask, np.zeros((), dtype=truth.dtype), truth),
        [int(n) for n in pixels],
    )


def binarize(prediction: np.ndarray, kind: str, threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == "probability":
        return prediction > threshold, np.abs(prediction.astype(np.float64) - threshold)
    return prediction > 0, None
