"""Time unetflow.evaluate.metrics on ISBI 2012 slices against baselines run here, and print seconds per slice.

Run from the repository root: ``.venv/bin/python benchmarks/metrics.py [--slices N] [--repeats R]``.
The "prediction" is a smoothed noisy probability made from the labels. Baselines: scikit-image's
adapted_rand_error + variation_of_information at the one threshold 0.5 (what a peer library gives for
part of the work), and a Fiji-style warping (sorted passes over all disagreeing pixels until a pass flips
nothing, the order of trainableSegmentation's WarpingError) in pure Python with the same simple-point table.
Prints figures only; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage.measure import label
from skimage.metrics import adapted_rand_error, variation_of_information

from unetflow.evaluate import metrics, warping

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "data" / "isbi2012" / "train-labels.tif"


def noisy_probability(truth: np.ndarray, seed: int, noise: float = 0.8) -> np.ndarray:
    """A foreground probability: the labels plus Gaussian noise (sd `noise`), blurred (sigma 1.5), clipped."""
    rng = np.random.default_rng(seed)
    noisy = (truth > 0) + rng.normal(0.0, noise, truth.shape)
    return np.clip(ndimage.gaussian_filter(noisy, 1.5), 0.0, 1.0)


def best_time(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The fastest of `repeats` runs: wall and CPU seconds (on a shared machine the CPU time is steadier)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def skimage_baseline(probability: np.ndarray, truth: np.ndarray) -> None:
    """Rand error and VI of the prediction thresholded at 0.5, with scikit-image."""
    truth_cells = label(truth > 0, connectivity=1)
    cells = label(probability > 0.5, connectivity=1)
    adapted_rand_error(truth_cells, cells)
    variation_of_information(truth_cells, cells, ignore_labels=(0,))


def fiji_style_warping(probability: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> int:
    """Pixels left after Fiji's passes: all disagreeing pixels by |p - threshold| (descending, ties column
    by column), each flipped if simple at its turn, until a pass flips nothing."""
    height, width = truth.shape
    stride = width + 2
    current = np.zeros((height + 2, stride), dtype=np.uint8)
    current[1:-1, 1:-1] = truth > 0
    target = np.zeros_like(current)
    target[1:-1, 1:-1] = probability > threshold
    confidence = np.zeros((height + 2, stride))
    confidence[1:-1, 1:-1] = np.abs(probability - threshold)
    flat_current, flat_target, flat_confidence = current.ravel(), target.ravel(), confidence.ravel()
    table = warping.simple_point_table(1)
    offsets = [dy * stride + dx for dy, dx in warping.NEIGHBOURS_8]
    before = -1
    while True:
        wrong = np.flatnonzero(flat_current != flat_target)
        if wrong.size in (0, before):
            return int(wrong.size)
        before = wrong.size
        rows, columns = np.divmod(wrong, stride)
        for i in wrong[np.lexsort((rows, columns, -flat_confidence[wrong]))].tolist():
            code = sum(int(flat_current[i + offset]) << bit for bit, offset in enumerate(offsets))
            if table[code]:
                flat_current[i] ^= 1


def main() -> None:
    """Parse the options, time each function per slice and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=5, help="ISBI slices to time (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per slice; the fastest counts (3)")
    parser.add_argument("--noise", type=float, default=0.8, help="sd of the noise added to the labels (0.8)")
    args = parser.parse_args()
    if not LABELS.exists():
        raise FileNotFoundError(
            f"{LABELS} not found; the benchmark needs the ISBI 2012 labels beside the repo"
        )
    truths = tifffile.imread(LABELS)[: args.slices]
    predictions = [noisy_probability(truth, seed, args.noise) for seed, truth in enumerate(truths)]
    pairs = list(zip(predictions, truths, strict=True))

    def per_slice(function: Callable[[np.ndarray, np.ndarray], object]) -> tuple[float, float]:
        times = [best_time(lambda p=p, t=t: function(p, t), args.repeats) for p, t in pairs]
        return float(np.mean([w for w, _ in times])), float(np.mean([c for _, c in times]))

    rows = {
        f"evaluate, all measures, {len(metrics.DEFAULT_THRESHOLDS)} thresholds": per_slice(metrics.evaluate),
        "evaluate, include_warping=False": per_slice(
            lambda p, t: metrics.evaluate(p, t, include_warping=False)
        ),
        "warping_error alone (threshold 0.5)": per_slice(warping.warping_error),
        "baseline: skimage Rand + VI at 0.5": per_slice(skimage_baseline),
        "baseline: Fiji-style warping passes": per_slice(fiji_style_warping),
    }
    full, _, warping_time, baseline, fiji = rows.values()
    ours = [round(warping.warping_error(p, t) * t.size) for p, t in pairs]
    theirs = [fiji_style_warping(p, t) for p, t in pairs]
    wrong = [int(np.count_nonzero((p > 0.5) != (t > 0))) for p, t in pairs]
    example = metrics.evaluate(*pairs[0])

    print(f"ISBI 2012 train-labels, {len(truths)} slices of {truths.shape[1]} x {truths.shape[2]},")
    print(f"prediction = labels + noise (sd {args.noise}), blurred; best of {args.repeats} runs per slice\n")
    print(f"{'':44s}{'wall s/slice':>14s}{'CPU s/slice':>14s}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:44s}{wall:14.3f}{cpu:14.3f}")
    print(
        f"\n{'evaluate / skimage baseline':44s}{full[0] / baseline[0]:13.2f}x{full[1] / baseline[1]:13.2f}x"
    )
    print(
        f"{'warping_error / Fiji-style passes':44s}"
        f"{warping_time[0] / fiji[0]:13.2f}x{warping_time[1] / fiji[1]:13.2f}x"
    )
    print(f"disagreeing pixels at 0.5 per slice         {wrong}")
    print(f"left after warping: ours / Fiji-style       {ours} / {theirs}")
    print("slice 0:", ", ".join(f"{key} {value:.5f}" for key, value in example.items()))


if __name__ == "__main__":
    main()
