"""Augmented tile sampling: the torch TileSampler against a SciPy elastic deformation, in one run.

Baseline: the classic CPU recipe for the paper's elastic deformation of one input tile: a 3x3 grid of
N(0, 10 px) displacements, upsampled by a cubic spline (scipy.ndimage.zoom) and applied with
scipy.ndimage.map_coordinates(order=3) to the raw tile only. The sampler does more per tile (position,
rotation, flips, elastic, gray values; raw, labels and weights), so the ratio is conservative.

Run from the repo root:  .venv/bin/python benchmarks/augment.py [--output 388] [--repeats 30] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from unetflow.geometry import UNetGeometry
from unetflow.train.augment import AugmentConfig, TileSampler


def interleaved_median_ms(
    cases: dict[str, tuple[Callable[[], object], Callable[[], None]]], *, repeats: int
) -> dict[str, float]:
    """Median wall time in ms of each (run, sync) case, timed round-robin after two warm-up calls each so
    that load from other processes on a shared machine hits every case alike."""
    for run, sync in cases.values():
        for _ in range(2):
            run()
        sync()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (run, sync) in cases.items():
            started = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def scipy_elastic(tile: np.ndarray, rng: np.random.Generator, *, grid: int, std: float) -> np.ndarray:
    """Elastic deformation of a square tile with SciPy: cubic-spline field, cubic map_coordinates."""
    size = tile.shape[0]
    coarse = rng.normal(0.0, std, size=(2, grid, grid))
    field = np.stack(
        [ndimage.zoom(c, size / grid, order=3, mode="grid-constant", grid_mode=True) for c in coarse]
    )
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return ndimage.map_coordinates(tile, [rows + field[0], cols + field[1]], order=3, mode="mirror")


def main() -> None:
    """Time both and print ms per tile and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=int, default=388, help="output tile size (input adds the margin)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="slice side in pixels")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, torch.get_num_threads()}),
        help="torch CPU thread counts to time (default: 1 and torch's default)",
    )
    args = parser.parse_args()

    geometry = UNetGeometry()
    out = args.output
    inp = geometry.input_for_output(out)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(args.slices, args.size, args.size)).astype(np.float32)
    labels = (rng.random((args.slices, args.size, args.size)) > 0.5).astype(np.uint8)
    weights = rng.uniform(1.0, 10.0, size=raw.shape).astype(np.float32)
    config = AugmentConfig()
    print(
        f"tile {inp}x{inp} input / {out}x{out} output, {args.slices} slices of {args.size}x{args.size}, "
        f"median of {args.repeats} (round-robin); torch {torch.__version__}, {os.cpu_count()} CPUs"
    )

    tile = np.pad(raw[0], inp, mode="reflect")[:inp, :inp].copy()
    baseline_name = "scipy zoom + map_coordinates(order=3), raw only (baseline)"
    timed = {
        baseline_name: (
            lambda: scipy_elastic(tile, rng, grid=config.elastic_grid, std=config.elastic_std),
            lambda: None,
        )
    }
    variants = {
        "full augmentation, raw bilinear": AugmentConfig(),
        "full augmentation, raw bicubic": AugmentConfig(interpolation="bicubic"),
        "augmentation off (mirrored crop)": AugmentConfig(enabled=False),
    }
    runs = [("cpu", threads) for threads in args.threads]
    if torch.cuda.is_available():
        runs.append(("cuda", torch.get_num_threads()))
    for device, threads in runs:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for label, variant in variants.items():
            sampler = TileSampler(
                raw, labels, weights, input_size=inp, output_size=out, config=variant, device=device
            )
            generator = torch.Generator().manual_seed(0)

            def run(s: TileSampler = sampler, g: torch.Generator = generator, t: int = threads) -> object:
                torch.set_num_threads(t)
                return s.sample(g)

            where = "cuda" if device == "cuda" else f"cpu, {threads} thread{'s' * (threads > 1)}"
            timed[f"TileSampler.sample ({where}), {label}"] = (run, sync)
    results = interleaved_median_ms(timed, repeats=args.repeats)
    baseline = results[baseline_name]
    for name, ms in results.items():
        ratio = "" if name == baseline_name else f"  baseline / this = {baseline / ms:5.1f}x"
        print(f"  {name:68s} {ms:8.2f} ms/tile{ratio}")


if __name__ == "__main__":
    main()
