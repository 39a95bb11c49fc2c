"""Where do a prediction's pixel errors lie, and are the labels aligned with the raw image?

Three tables for the chosen slices of an imported volume and a prediction of it:
1. Pixel errors by distance to the nearest label boundary: how much of the pixel error is the boundary's
   exact placement (errors 1-2 px from it) and how much is a missed or invented structure.
2. The pixel error of the segmentation shifted by whole pixels: a minimum away from (0, 0) means the
   labels sit off-centre of what the net predicts.
3. The mean raw gray value under the labelled membranes shifted by whole pixels: where the labels are
   darkest is where they are aligned with the raw image's membranes (independent of any net).
A net trained with flips and rotations cannot learn a label offset: each flip turns it the other way
(`train.label_offset: auto` measures it on the training slices and moves the raw onto the labels).

From the repo root, after `snakemake --profile profiles/local --configfile configs/isbi2012-cpu.yaml`:
  .venv/bin/python benchmarks/errors.py --slices 18-24
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi

from unetflow.config.slices import select_slices
from unetflow.data import omezarr
from unetflow.data.alignment import parabola_vertex
from unetflow.model.checkpoint import decision_threshold_of

SHIFTS = (-2, -1, 0, 1, 2)
BANDS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, np.inf))


def boundary_distance(truth: np.ndarray) -> np.ndarray:
    """Per pixel of each slice, its Euclidean distance (px) to the nearest pixel of the other class."""
    return np.stack(
        [np.where(t, ndi.distance_transform_edt(t), ndi.distance_transform_edt(~t)) for t in truth]
    )


def error_bands(segmentation: np.ndarray, truth: np.ndarray) -> list[tuple[str, float, float, float]]:
    """Rows (band, share of pixels, error rate in the band, its part of the whole pixel error)."""
    errors = segmentation != truth
    distance = boundary_distance(truth)
    rows = []
    for low, high in BANDS:
        band = (distance > low) & (distance <= high)
        label = f"({low:g}, {high:g}] px" if np.isfinite(high) else f"> {low:g} px"
        rows.append((label, float(band.mean()), float(errors[band].mean()), float((errors & band).mean())))
    return rows


def shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`mask` moved by (dy, dx) pixels within each slice, cropped by the largest shift on every side."""
    crop = slice(max(SHIFTS), -max(SHIFTS))
    return np.roll(mask, (dy, dx), axis=(1, 2))[:, crop, crop]


def subpixel_minimum(values: dict[tuple[int, int], float]) -> tuple[float, float]:
    """(dy, dx) of the minimum of a parabola through the values at -1, 0 and +1 along each axis."""
    return (
        parabola_vertex(values[-1, 0], values[0, 0], values[1, 0]),
        parabola_vertex(values[0, -1], values[0, 0], values[0, 1]),
    )


def shift_table(values: dict[tuple[int, int], float], title: str) -> str:
    """A 5x5 table of a value per (dy, dx)."""
    lines = [title, "dy\\dx " + "".join(f"{dx:>8d}" for dx in SHIFTS)]
    lines += [f"{dy:>5d} " + "".join(f"{values[dy, dx]:8.4f}" for dx in SHIFTS) for dy in SHIFTS]
    return "\n".join(lines)


def main() -> None:
    """Print the three tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="results/data/isbi2012.zarr", help="the imported volume")
    parser.add_argument("--prediction", default="results/predict/main/isbi2012.zarr", help="its prediction")
    parser.add_argument("--model", default="results/models/main/model.pt", help="its threshold's source")
    parser.add_argument("--slices", default="18-24", help="slices to score (default: validation + test)")
    args = parser.parse_args()
    raw = omezarr.open_image(args.data)
    chosen = select_slices(args.slices, raw.shape[0], what="--slices")
    image = np.asarray(raw.oindex[chosen]).astype(np.float32)
    truth = np.asarray(omezarr.open_labels(args.data, omezarr.DEFAULT_LABELS).oindex[chosen]) > 0
    probability = np.asarray(omezarr.open_image(args.prediction).oindex[chosen])
    threshold = decision_threshold_of(args.model)
    segmentation = probability > threshold
    print(
        f"slices {args.slices}, threshold {threshold:.3f}: pixel error {np.mean(segmentation != truth):.4f}"
    )
    print("distance to the label boundary | share of pixels | error rate | part of the pixel error")
    for label, share, rate, part in error_bands(segmentation, truth):
        print(f"{label:>14s} | {share:.3f} | {rate:.3f} | {part:.4f}")
    target = shifted(truth, 0, 0)
    errors = {
        (dy, dx): float(np.mean(shifted(segmentation, dy, dx) != target)) for dy in SHIFTS for dx in SHIFTS
    }
    print(shift_table(errors, "pixel error of the segmentation moved by (dy, dx)"))
    dy, dx = subpixel_minimum(errors)
    print(f"least pixel error at a move of ({dy:+.2f}, {dx:+.2f}) px")
    base = shifted(image, 0, 0)
    darkness = {(dy, dx): float(base[shifted(~truth, dy, dx)].mean()) for dy in SHIFTS for dx in SHIFTS}
    print(shift_table(darkness, "mean raw gray value under the labelled membranes moved by (dy, dx)"))
    dy, dx = subpixel_minimum(darkness)
    print(f"labels darkest (aligned with the raw) at a move of ({dy:+.2f}, {dx:+.2f}) px")


if __name__ == "__main__":
    main()
