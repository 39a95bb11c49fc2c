"""The segment step measured: agglomeration methods against the truth, block-shape independence, the
throughput of each sub-step against a plain in-memory scikit-image watershed of the same volume, memory for
1x / 8x the voxels, and the global step on synthetic graphs.

    .venv/bin/python benchmarks/segment.py                       # everything (several minutes on 2 cores)
    .venv/bin/python benchmarks/segment.py --only methods        # or blocks, throughput, memory, graph

Volumes: Voronoi tessellations with membranes and noise (tests/segment_volumes.py), isotropic ("3d") and
serial sections 5x coarser in z ("2d"), with several hundred cells.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.segment_volumes import voronoi_volume  # noqa: E402
from unetflow.data import omezarr  # noqa: E402
from unetflow.evaluate.instances import instance_scores  # noqa: E402
from unetflow.segment.pipeline import segment_volume  # noqa: E402
from unetflow.segment.source import ProbabilitySource  # noqa: E402

VOLUMES = {
    "3d": {"shape": (64, 192, 192), "cells": 400, "voxel_size": (1.0, 1.0, 1.0)},
    "2d": {"shape": (32, 256, 256), "cells": 400, "voxel_size": (5.0, 1.0, 1.0)},
}


def _write(folder: Path, boundary: np.ndarray, chunks: tuple[int, int, int]) -> Path:
    path = folder / "boundary.zarr"
    array = zarr.create_array(str(path), shape=boundary.shape, chunks=chunks, dtype="float32", overwrite=True)
    array[:] = boundary
    return path


def _segment(
    source: Path, target: Path, block: tuple[int, int, int], **options: object
) -> tuple[np.ndarray, dict]:
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(target.with_suffix(".work"), ignore_errors=True)
    result = segment_volume(ProbabilitySource(str(source)), target, block=block, boundary=True, **options)
    return np.asarray(omezarr.open_image(target)[:]), result


def methods(folder: Path) -> None:
    """Each agglomeration at three thresholds against the truth, one block, both kinds of volume."""
    for kind, spec in VOLUMES.items():
        boundary, truth = voronoi_volume(
            spec["shape"], cells=spec["cells"], voxel_size=spec["voxel_size"], noise=0.15, seed=7
        )
        source = _write(folder, boundary, (16, 64, 64))
        for method in ("mean", "multicut", "mutex"):
            for threshold in (0.3, 0.5, 0.7):
                labels, result = _segment(
                    source,
                    folder / "out.zarr",
                    spec["shape"],
                    halo=HALO[0],
                    mode=kind,
                    method=method,
                    threshold=threshold,
                    voxel_size=spec["voxel_size"],
                )
                s = instance_scores(truth, labels)
                print(
                    f"methods {kind} {method:8s} t={threshold}: objects {result['objects']} (truth "
                    f"{len(np.unique(truth))}), VOI split {s['voi_split']:.3f} merge {s['voi_merge']:.3f}, "
                    f"adapted Rand {s['adapted_rand_error']:.4f}, "
                    f"solve {result['steps']['solve']['seconds']:.3f} s",
                    flush=True,
                )


def blocks(folder: Path) -> None:
    """One block against 2x2x2 and odd blocks: VOI and adapted Rand between the partitions."""
    for kind, spec in VOLUMES.items():
        boundary, truth = voronoi_volume(
            spec["shape"], cells=spec["cells"], voxel_size=spec["voxel_size"], noise=0.15, seed=8
        )
        source = _write(folder, boundary, (16, 64, 64))
        shape = spec["shape"]
        options = {"halo": HALO[0], "mode": kind, "voxel_size": spec["voxel_size"]}
        whole, result = _segment(source, folder / "one.zarr", shape, **options)
        print(
            f"blocks {kind}: one block {result['objects']} objects (truth {len(np.unique(truth))}), "
            f"{instance_scores(truth, whole)}",
            flush=True,
        )
        halves = tuple(n // 2 for n in shape)
        odd = (shape[0] // 2 + 3 if kind == "3d" else 7, 77, 91)
        for block in (halves, odd):
            labels, result = _segment(source, folder / "blocks.zarr", block, groups=3, **options)
            s = instance_scores(whole, labels)
            print(
                f"blocks {kind} {block}: {result['blocks']} blocks, {result['objects']} objects; against one "
                f"block: VOI split {s['voi_split']:.5f} merge {s['voi_merge']:.5f}, adapted Rand "
                f"{s['adapted_rand_error']:.6f}",
                flush=True,
            )


THROUGHPUT_BLOCK = [(32, 96, 96)]
HALO = [(32, 32, 32)]


def throughput(folder: Path) -> None:
    """Voxels per second of each sub-step (one core) against skimage's watershed of the same volume."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    spec = VOLUMES["3d"]
    boundary, _ = voronoi_volume(spec["shape"], cells=spec["cells"], noise=0.15, seed=9)
    source = _write(folder, boundary, (32, 96, 96))
    voxels = boundary.size
    rounds = []
    for _ in range(2):
        started = time.perf_counter()
        markers = ndimage.label(boundary < 0.5)[0]
        watershed(boundary, markers)
        baseline = voxels / (time.perf_counter() - started)
        started = time.perf_counter()
        _, result = _segment(source, folder / "out.zarr", THROUGHPUT_BLOCK[0], halo=HALO[0], mode="3d")
        total = voxels / (time.perf_counter() - started)
        rounds.append((baseline, total, result["steps"]))
    baseline, total, steps = rounds[-1]
    print(
        "throughput: skimage watershed (markers: components of boundary < 0.5) "
        f"{baseline / 1e6:.2f} Mvoxel/s; "
        f"segment end to end (blocks of {THROUGHPUT_BLOCK[0]}, halo {HALO[0]}, with the pyramid) "
        f"{total / 1e6:.2f} Mvoxel/s = "
        f"{total / baseline:.2f}x",
        flush=True,
    )
    for name, step in steps.items():
        rate = step.get("voxels_per_second")
        extra = f"{rate / 1e6:.2f} Mvoxel/s" if rate else f"{step['seconds']:.3f} s"
        print(f"throughput: {name} {extra}", flush=True)


def memory(folder: Path) -> None:
    """Peak memory of a fresh process segmenting 1x and 8x the voxels with the same blocks."""
    peaks = []
    for factor in (1, 8, 64):
        code = (
            "import sys, resource, numpy as np, zarr; sys.path.insert(0, '.');"
            "from tests.segment_volumes import voronoi_volume;"
            "from unetflow.segment.pipeline import segment_volume;"
            "from unetflow.segment.source import ProbabilitySource;"
            "b, _ = voronoi_volume((32, 128, 128), cells=60, noise=0.1, seed=1);"
            f"f = {factor}; a = zarr.create_array('{folder}/m.zarr', shape=(32 * f, 128, 128),"
            " chunks=(32, 128, 128),"
            " dtype='float32', overwrite=True);"
            "[a.__setitem__(slice(32 * i, 32 * i + 32), b) for i in range(f)];"
            f"segment_volume(ProbabilitySource('{folder}/m.zarr'), '{folder}/m{factor}.zarr',"
            " block=(32, 128, 128),"
            f" halo={HALO[0]}, mode='3d', boundary=True);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        output = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        peaks.append(int(output.stdout.strip().splitlines()[-1]) / 1024)
    print(
        "memory: peak RSS "
        + ", ".join(
            f"{peak:.0f} MiB for {32 * f} x 128 x 128" for peak, f in zip(peaks, (1, 8, 64), strict=True)
        )
        + f" ({peaks[-1] / peaks[0]:.2f}x for 64x the voxels)",
        flush=True,
    )


GRAPH_METHOD = ["mean"]


def graph(edges: int) -> None:
    """The global step on a synthetic region graph of `edges` edges (a 3-D grid of fragments)."""
    from unetflow.segment.agglomerate import agglomerate
    from unetflow.segment.graph import Edges, merge

    side = round((edges / 3) ** (1 / 3))
    n = side**3
    index = np.arange(n, dtype=np.uint64).reshape(side, side, side) + np.uint64(1)
    rng = np.random.default_rng(0)
    parts = []
    for axis in range(3):
        a = np.take(index, np.arange(side - 1), axis=axis).ravel()
        b = np.take(index, np.arange(1, side), axis=axis).ravel()
        mean = rng.uniform(0, 1, a.size)
        count = rng.integers(1, 100, a.size).astype(np.uint32)
        parts.append(Edges(np.stack([a, b], 1), count, mean * count))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    g, count, mean = merge(parts, n + 1)
    merged = time.perf_counter() - started
    labels = agglomerate(g, mean, count, method=GRAPH_METHOD[0], threshold=0.5)
    total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"graph: {g.number_of_edges:,} edges, {n:,} nodes: merge {merged:.1f} s, "
        f"merge + {GRAPH_METHOD[0]} agglomeration "
        f"{total:.1f} s, {len(np.unique(labels)):,} objects; "
        f"peak RSS {peak:.0f} MiB (inputs {before:.0f} MiB), "
        f"{(peak - before) * 2**20 / g.number_of_edges:.0f} bytes per edge above the inputs",
        flush=True,
    )


def hierarchy(edges: int, groups: int) -> None:
    """The global step in two levels on a synthetic grid graph of `edges` edges, streamed group by group
    (z-slabs of the grid, generated on the fly: nothing but the solver's state is held)."""
    from unetflow.segment import hierarchy as levels

    side = round((edges / 3) ** (1 / 3))
    nodes = side**3 + 1
    slab = -(-side // groups)
    home = np.concatenate([[-1], np.repeat(np.arange(side) // slab, side * side)]).astype(
        np.int32
    )  # as node_groups gives it

    def parts():  # type: ignore[no-untyped-def]
        for group in range(groups):
            z0, z1 = group * slab, min(side, (group + 1) * slab)
            if z0 >= z1:
                continue
            rng = np.random.default_rng(group)
            index = (
                np.arange(z0, min(z1 + 1, side))[:, None, None] * side * side
                + np.arange(side * side).reshape(1, side, side)
                + 1
            ).astype(np.uint64)
            own = z1 - z0
            pairs = []
            for axis in range(3):
                if axis == 0:
                    a, b = index[: min(own, index.shape[0] - 1)], index[1 : min(own, index.shape[0] - 1) + 1]
                else:
                    a = np.take(index[:own], np.arange(side - 1), axis=axis)
                    b = np.take(index[:own], np.arange(1, side), axis=axis)
                pairs.append(np.stack([a.ravel(), b.ravel()], 1))
            uv = np.concatenate(pairs)
            count = rng.integers(1, 100, len(uv)).astype(np.uint32)
            yield levels.Edges(uv, count, rng.uniform(0, 1, len(uv)) * count)

    total = sum(len(part) for part in parts())
    started = time.perf_counter()
    labels, info = levels.solve(
        parts, nodes, home, edges=total, max_edges=total // groups + 1, method=GRAPH_METHOD[0], threshold=0.5
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"hierarchy: {total:,} edges, {nodes - 1:,} nodes in {groups} groups, {GRAPH_METHOD[0]}: {info}, "
        f"{len(np.unique(labels)):,} objects, {seconds:.0f} s, peak RSS {peak:.0f} MiB",
        flush=True,
    )


def _sparse(folder: Path) -> Path:
    """A 1000 x 32768 x 32768 uint8 foreground probability (1.07 TB as stored, Zarr v3, chunks 16 x 512 x
    512) with 5 chunks of data: serial sections of Voronoi cells."""
    boundary, _ = voronoi_volume((16, 512, 512), cells=150, voxel_size=(12.5, 1.0, 1.0), noise=0.1, seed=5)
    values = np.round(255 * (1 - boundary)).astype(np.uint8)
    path = folder / "sparse.zarr"
    array = zarr.create_array(
        str(path),
        shape=(1000, 32768, 32768),
        chunks=(16, 512, 512),
        dtype="uint8",
        fill_value=0,
        overwrite=True,
    )
    for z, y, x in (
        (0, 0, 0),
        (32, 4096, 4096),
        (496, 16384, 16384),
        (960, 30720, 1024),
        (992, 32256, 32256),
    ):
        array[z : z + 16, y : y + 512, x : x + 512] = values
    return path


def scale(folder: Path) -> None:
    """The sparse 1 TB volume with the default blocks, and the bookkeeping of 10^6 blocks."""
    source = _sparse(folder)
    for block in ((32, 512, 512), (16, 256, 256)):
        target = folder / f"sparse-{block[1]}.zarr"
        started = time.perf_counter()
        result = segment_volume(
            ProbabilitySource(str(source)),
            target,
            block=block,
            halo=(32, 32, 32),
            mode="auto",
            voxel_size=(50.0, 4.0, 4.0),
            groups=4,
        )
        seconds = time.perf_counter() - started
        files = sum(1 for p in target.rglob("*") if p.is_file())
        work = sum(1 for p in target.with_suffix(".work").rglob("*") if p.is_file())
        steps = ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in result["steps"].items())
        print(
            f"scale: 1000 x 32768 x 32768 uint8, 5 chunks of data, blocks {block}: "
            f"{result['blocks']:,} blocks, "
            f"{result['blocks_with_data']} with data, {result['objects']} objects, whole run {seconds:.1f} s "
            f"({steps}; the rest: planning, sample check, pyramid); {files} files in the label image, "
            f"{work} work files",
            flush=True,
        )


def startup(folder: Path) -> None:
    """Start-up at 10^6 blocks against 10^3: plan and create the output, then open a step's context (the
    source's stored chunks, the blocks with data) and list every group's pending blocks."""
    from unetflow.segment import run

    source = _sparse(folder)
    for block in ((256, 4096, 4096), (16, 256, 256)):
        target = folder / f"startup-{block[1]}.zarr"
        started = time.perf_counter()
        plan = run.init_segmentation(
            ProbabilitySource(str(source)),
            target,
            block=block,
            halo=(8, 32, 32),
            groups=4,
            voxel_size=(50.0, 4.0, 4.0),
        )
        created = time.perf_counter() - started
        context = run.StepContext(target)
        pending = sum(len(run.pending_blocks(target, run.FRAGMENTS, plan, g)[0]) for g in range(plan.groups))
        total = time.perf_counter() - started
        print(
            f"startup: {plan.blocks:,} blocks ({len(context.with_data or [])} with data, "
            f"{pending:,} pending): "
            f"plan and create {created:.2f} s, with a step's context and every group's pending list "
            f"{total:.2f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="*",
        default=["methods", "blocks", "throughput", "memory", "graph", "scale", "startup"],
    )
    parser.add_argument("--edges", nargs="*", type=int, default=[10**6])
    parser.add_argument("--block", nargs=3, type=int, default=THROUGHPUT_BLOCK[0], help="throughput's blocks")
    parser.add_argument("--halo", nargs=3, type=int, default=HALO[0], help="the blocks' halo")
    parser.add_argument("--method", default="mean", help="the agglomeration of --only graph / hierarchy")
    parser.add_argument("--groups", type=int, default=100, help="block groups of --only hierarchy")
    args = parser.parse_args()
    GRAPH_METHOD[0] = args.method
    THROUGHPUT_BLOCK[0] = tuple(args.block)
    HALO[0] = tuple(args.halo)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for part in args.only:
            if part == "graph":
                for edges in args.edges:
                    graph(edges)
            elif part == "hierarchy":
                for edges in args.edges:
                    hierarchy(edges, args.groups)
            else:
                globals()[part](folder)
    print(json.dumps({"done": args.only}))


if __name__ == "__main__":
    main()
