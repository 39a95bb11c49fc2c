"""Benchmark the U-Net border weight map on real ISBI 2012 slices.

Times, in one run, the direct definition (`border_weight_map_reference`: one EDT per cell), one plain EDT of
the slice (scipy.ndimage.distance_transform_edt, the baseline unit) and `border_weight_map`; reports the
median of several repeats, the peak memory of each (tracemalloc: Python and NumPy allocations), the maximum
absolute difference to the direct definition, and the ratios "speedup vs direct" and "cost vs one EDT".
Prints figures only; it asserts nothing about time.

    .venv/bin/python benchmarks/weights.py [--data ../shared/data/isbi2012] [--slices N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from unetflow.train.weights import border_weight_map, border_weight_map_reference

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isbi2012"


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `function`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, the calls alternating so that machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_bytes(function: Callable[[], object]) -> int:
    """Peak traced memory (bytes) allocated during one call of `function`."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table per slice and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train-labels.tif")
    parser.add_argument("--slices", type=int, default=3, help="number of ISBI slices to time (from slice 0)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the fast map and of one EDT")
    parser.add_argument("--direct-repeats", type=int, default=3, help="repeats of the direct definition")
    args = parser.parse_args(argv)
    labels_path = args.data / "train-labels.tif"
    if not labels_path.exists():
        print(f"ISBI labels not found at {labels_path}; pass --data FOLDER holding train-labels.tif")
        return 2
    masks = tifffile.imread(labels_path)[: max(args.slices, 1)]

    rows = []
    for index, mask in enumerate(masks):
        cells = ndi.label(mask != 0)[1]
        methods: dict[str, Callable[[], object]] = {
            "direct": lambda mask=mask: border_weight_map_reference(mask),
            "one EDT": lambda mask=mask: ndi.distance_transform_edt(mask != 0),
            "border_weight_map": lambda mask=mask: border_weight_map(mask),
        }
        seconds = {"direct": median_seconds(methods["direct"], args.direct_repeats)}
        seconds |= interleaved_medians(
            {name: methods[name] for name in ("one EDT", "border_weight_map")}, args.repeats
        )
        memory = {name: peak_bytes(function) for name, function in methods.items()}
        diff = float(np.abs(border_weight_map(mask) - border_weight_map_reference(mask)).max())
        rows.append((index, cells, seconds, memory, diff))

    print(
        f"ISBI 2012 train-labels, {mask.shape[0]} x {mask.shape[1]} slices; median of {args.repeats} repeats"
    )
    print(f"({args.direct_repeats} for the direct definition); peak memory by tracemalloc\n")
    header = f"{'slice':>5} {'cells':>5} {'method':<18} {'time ms':>9} {'peak MB':>8}"
    print(header + f" {'max |diff|':>11} {'speedup vs direct':>18} {'cost vs one EDT':>16}")
    for index, cells, seconds, memory, diff in rows:
        for name in ("direct", "one EDT", "border_weight_map"):
            line = (
                f"{index:>5} {cells:>5} {name:<18} {seconds[name] * 1e3:>9.1f} {memory[name] / 2**20:>8.1f}"
            )
            if name == "border_weight_map":
                speedup = seconds["direct"] / seconds[name]
                cost = seconds[name] / seconds["one EDT"]
                line += f" {diff:>11.2e} {speedup:>17.1f}x {cost:>15.2f}x"
            print(line)
    summary = {name: statistics.median(row[2][name] for row in rows) for name in rows[0][2]}
    peaks = {name: max(row[3][name] for row in rows) for name in rows[0][3]}
    print(
        f"\nmedian over slices: direct {summary['direct'] * 1e3:.0f} ms,"
        f" one EDT {summary['one EDT'] * 1e3:.1f} ms,"
        f" border_weight_map {summary['border_weight_map'] * 1e3:.1f} ms"
    )
    print(
        f"speedup vs direct: {summary['direct'] / summary['border_weight_map']:.0f}x;"
        f" cost vs one EDT: {summary['border_weight_map'] / summary['one EDT']:.2f}x;"
        f" max |diff| vs direct: {max(row[4] for row in rows):.2e}"
    )
    print(
        f"peak memory: direct {peaks['direct'] / 2**20:.0f} MB, one EDT {peaks['one EDT'] / 2**20:.1f} MB,"
        f" border_weight_map {peaks['border_weight_map'] / 2**20:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
