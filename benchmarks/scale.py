"""Benchmark prediction at the scale of whole EM datasets: start-up, files, memory, and a sparse 1 TB volume.

(a) Start-up: planning a prediction (plan, groups, the normalisation's sample of stored chunks) and the
    resume check (every group's journal against the files on disk, as the workflow does before any job)
    for volumes of about 10^3, 10^5 and 10^6 blocks of 1024^2, each half finished; and skip-empty's listing
    of the source's stored chunks. The 10^3 volume is the baseline: time should grow no worse than the
    block count.
(b) Files per GB of output (probability + segmentation, uncompressed and on disk) of a real prediction
    with every pyramid level, and the same count from the plan for reference datasets.
(c) Peak memory (a fresh process each, VmHWM) and time per voxel for 1x, 8x and 64x the voxels.
(d) A sparse 1 TB virtual volume (a Zarr v3 array of 1000 x 32768 x 32768 uint8 in which only a few
    chunks hold data) through the whole predict-only workflow (`snakemake` with `pretrained:`), timed:
    which blocks were predicted against those that touch data, and the output checked complete.

Prints markdown tables; asserts nothing about time.

    .venv/bin/python benchmarks/scale.py [--skip-startup] [--skip-files] [--skip-memory] [--skip-sparse]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unetflow.config.model import PredictConfig  # noqa: E402
from unetflow.data import omezarr  # noqa: E402
from unetflow.data.synthesize import synthesize_volume  # noqa: E402
from unetflow.model.checkpoint import save_checkpoint  # noqa: E402
from unetflow.model.unet import UNet, UNetConfig  # noqa: E402
from unetflow.predict import finalize_prediction, init_prediction, predict_volume, read_plan  # noqa: E402
from unetflow.predict.plan import groups_for, make_plan  # noqa: E402
from unetflow.predict.progress import Entry, ShardFiles, incomplete_groups, journal, journal_path  # noqa: E402
from unetflow.predict.sources import nonempty_blocks, open_source  # noqa: E402
from unetflow.preflight import invalidate_incomplete_groups  # noqa: E402

BLOCK = 1024
SIDE = 32768
GB = 1e9


def tiny_model() -> UNet:
    """A small seeded net: the costs measured here are the pipeline's, not the net's."""
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=2, base_channels=4)).eval()


def em_like(slices: int, side: int) -> np.ndarray:
    """A (slices, side, side) uint8 EM-like volume: one synthesized 1024^2 slice tiled, shifted per slice
    (the generator builds whole volumes in memory, too slowly for these sizes; the files do not care)."""
    tile, _ = synthesize_volume(shape=(1, 1024, 1024), seed=2, cell_diameter=40.0)
    reps = -(-side // 1024)
    plane = np.tile(tile[0], (reps + 1, reps + 1))
    return np.stack([plane[37 * z % 1024 :][:side, :side] for z in range(slices)])


def sparse_source(path: Path, slices: int, *, written: int, side: int = SIDE) -> list[tuple[int, int, int]]:
    """A Zarr v3 uint8 volume of `slices` x side x side in 1024^2 chunks with `written` chunks of EM-like data
    spread over it; the grid coordinates of those chunks."""
    import zarr

    array = zarr.create_array(
        str(path), shape=(slices, side, side), chunks=(1, BLOCK, BLOCK), dtype="uint8", fill_value=0
    )
    image, _ = synthesize_volume(shape=(1, BLOCK, BLOCK), seed=1, cell_diameter=40.0)
    grid = side // BLOCK
    rng = np.random.default_rng(0)
    picks = sorted(
        {(int(z), int(y), int(x)) for z, y, x in rng.integers(0, [slices, grid, grid], size=(written, 3))}
    )
    for z, y, x in picks:
        array[z, y * BLOCK : (y + 1) * BLOCK, x * BLOCK : (x + 1) * BLOCK] = image[0]
    return picks


def startup(work: Path) -> list[tuple[str, str]]:
    """(a): planning and the resume check at 10^3, 10^5 and 10^6 blocks, half the shards finished."""
    logging.getLogger("unetflow.preflight").setLevel(logging.ERROR)  # one warning per unfinished group
    model = tiny_model()
    rows, times = [], {}
    for slices in (1, 98, 977):
        folder = work / f"startup{slices}"
        folder.mkdir()
        source = folder / "raw.zarr"
        sparse_source(source, slices, written=5)
        target = folder / "pred.zarr"
        options = PredictConfig(device="cpu", block_groups="auto")
        started = time.perf_counter()
        shape = tuple(open_source(str(source)).shape)
        groups = groups_for(shape, block_groups="auto", group_gb=options.group_gb, dtype=options.dtype)
        init_prediction(
            str(source), target, model=model, options=options, groups=groups, stride=512, block=BLOCK
        )
        plan = read_plan(target)
        planning = time.perf_counter() - started
        files = ShardFiles(target)
        finished = range(0, len(plan.grid), 2)
        for number in finished:  # half finished: a small file per array, journalled with its size
            index = plan.grid.index(number)
            sizes = []
            for array in range(2):
                path = files.path(array, index)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x" * (100 + array))
                sizes.append(100 + array)
            group = next(g for g in range(plan.groups) if number in plan.group_shards(g))
            with journal(journal_path(target, group)) as record:
                record(Entry(shard=number, sizes=tuple(sizes)))
        started = time.perf_counter()
        missing = incomplete_groups(target)
        flags = [str(folder / f"{g}.done") for g in range(plan.groups)]
        for flag in flags:
            Path(flag).touch()
        invalidate_incomplete_groups(target, flags)
        resume = time.perf_counter() - started
        started = time.perf_counter()
        found = nonempty_blocks(open_source(str(source)), plan, range(len(plan.grid)))
        listing = time.perf_counter() - started
        blocks = plan.grid.total_chunks
        times[slices] = (blocks, planning, resume, listing)
        with_data = sum(len(v) for v in (found or {}).values())
        rows.append(
            f"| {slices} x {SIDE} x {SIDE} | {blocks:,} | {len(plan.grid):,} | {plan.groups} | "
            f"{planning:.2f} | {resume:.2f} ({sum(missing.values())} shards to do) | {listing:.2f} "
            f"({with_data} blocks with data) |"
        )
        shutil.rmtree(folder)
    print("## (a) start-up: planning and the resume check (half of the shards finished)\n")
    print("| volume | blocks | shards | groups | plan s | resume check s | skip-empty listing s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows) + "\n")
    (_, p0, r0, l0), (_, p1, r1, l1), (_, p2, r2, l2) = (times[s] for s in (1, 98, 977))
    total = p2 + r2 + l2
    return [
        ("start-up at 10^6 blocks (plan + resume check + listing), s (target < 10)", f"{total:.2f}"),
        (
            "start-up growth 10^3 -> 10^5 blocks (blocks grew 98x; linear or better: <= 98)",
            f"{(p1 + r1 + l1) / (p0 + r0 + l0):.1f}x",
        ),
        (
            "start-up growth 10^5 -> 10^6 blocks (blocks grew 10x; linear or better: <= 10)",
            f"{total / (p1 + r1 + l1):.1f}x",
        ),
    ]


def files_per_gb(work: Path, *, slices: int, side: int) -> list[tuple[str, str]]:
    """(b): files and bytes of a real prediction (every level), and files per GB of reference datasets."""
    from unetflow.predict.finalize import pyramid_levels

    source = work / "dense.zarr"
    omezarr.write_image(source, em_like(slices, side), voxel_size=(50.0, 4.0, 4.0), chunks=(1, 1024, 1024))
    target = work / "dense-pred.zarr"
    options = PredictConfig(device="cpu")
    started = time.perf_counter()
    predict_volume(tiny_model(), str(source), str(target), options=options, stride=512, show_progress=False)
    summary = finalize_prediction(target, pyramid=options.pyramid, show_progress=False)
    seconds = time.perf_counter() - started
    plan = read_plan(target)
    data_files = [
        p for p in target.rglob("*") if p.is_file() and p.name not in ("zarr.json", ".zattrs", ".zgroup")
    ]
    levels = summary["levels"]
    uncompressed = sum(
        math.prod(plan.level_grid(level).shape) * (np.dtype(plan.dtype).itemsize + 1)
        for level in range(levels)
    )
    on_disk = sum(p.stat().st_size for p in data_files)
    print(
        f"## (b) files of a real prediction: {slices} x {side} x {side}, {levels} levels, {seconds:.0f} s\n"
    )
    print("| files (all) | chunk/shard files | GB uncompressed | GB on disk | files per GB uncompressed |")
    print("|---:|---:|---:|---:|---:|")
    per_gb = len(data_files) / (uncompressed / GB)
    sizes = f"{uncompressed / GB:.2f} | {on_disk / GB:.3f}"
    print(f"| {summary['files']} | {len(data_files)} | {sizes} | {per_gb:.2f} |\n")
    print(
        "Files per GB of the layout for reference datasets (NGFF 0.5, default shards, 4 levels; a shard with"
    )
    print("data is one file per array, as the real run above shows):\n")
    print("| dataset (z, y, x) | shards, all levels | files | TB uncompressed | files per GB |")
    print("|---|---:|---:|---:|---:|")
    reference = {}
    for shape in ((10000, 20000, 20000), (1000, 32768, 32768), (100, 8192, 8192)):
        layout = make_plan(shape, depth=4, stride=512, groups=1)
        count = pyramid_levels(shape, 4)
        shards = sum(len(layout.level_grid(level)) for level in range(count))
        size = sum(math.prod(layout.level_grid(level).shape) * 5 for level in range(count))
        reference[shape] = 2 * shards / (size / GB)
        print(f"| {shape} | {shards:,} | {2 * shards:,} | {size / 1e12:.2f} | {reference[shape]:.2f} |")
    print()
    return [
        (f"files per GB, real {slices} x {side}^2 prediction with {levels} levels", f"{per_gb:.2f}"),
        (
            "files per GB, layout of a 20k x 20k x 10k dataset (target <= 2)",
            f"{reference[(10000, 20000, 20000)]:.2f}",
        ),
    ]


CHILD = """
import json, sys, time
import torch
from unetflow.config.model import PredictConfig  # noqa: E402
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_volume
source, target, shard_gb = sys.argv[1], sys.argv[2], float(sys.argv[3])
torch.manual_seed(0)
model = UNet(UNetConfig(depth=2, base_channels=4)).eval()
start = time.perf_counter()
if source != "-":
    options = PredictConfig(device="cpu", shard_gb=shard_gb)
    predict_volume(model, source, target, options=options, stride=512, show_progress=False)
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({"seconds": seconds, "peak_kb": int(status["VmHWM"].split()[0])}))
"""


def memory(work: Path, *, side: int, base: int, shard_gb: float) -> list[tuple[str, str]]:
    """(c): a fresh process predicts 1x, 8x and 64x `base` slices; its RSS high-water mark, time per voxel."""
    image = em_like(base, side)
    runs = {}
    for factor in (1, 8, 64):
        source = work / f"mem{factor}.zarr"
        volume = np.concatenate([image] * factor)
        omezarr.write_image(source, volume, voxel_size=(50.0, 4.0, 4.0), chunks=(1, 1024, 1024))
        target = work / f"mem{factor}-pred.zarr"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(source), str(target), str(shard_gb)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        runs[factor] = (volume.size, json.loads(done.stdout.strip().splitlines()[-1]))
        shutil.rmtree(target)
        shutil.rmtree(source)
    print(f"## (c) memory and time: {side} x {side} slices, 1x = {base} slices, shards of {shard_gb} GiB, ")
    print("a fresh process each (peak RSS: VmHWM)\n")
    print("| voxels | x | wall s | ns per voxel | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|")
    for factor, (voxels, run) in runs.items():
        print(
            f"| {voxels:,} | {factor} | {run['seconds']:.1f} | {1e9 * run['seconds'] / voxels:.0f} | "
            f"{run['peak_kb'] / 1024:.0f} |"
        )
    print()
    (v1, r1), (v64, r64) = runs[1], runs[64]
    return [
        ("peak RSS 64x / 1x the voxels (target: flat within 1.1x)", f"{r64['peak_kb'] / r1['peak_kb']:.2f}"),
        ("peak RSS 8x / 1x the voxels", f"{runs[8][1]['peak_kb'] / r1['peak_kb']:.2f}"),
        ("time per voxel 64x / 1x (linear: ~1)", f"{(r64['seconds'] / v64) / (r1['seconds'] / v1):.2f}"),
    ]


def sparse_workflow(work: Path, *, written: int, slices: int) -> list[tuple[str, str]]:
    """(d): a 1000 x 32768 x 32768 uint8 volume (1 TB) with a few chunks of data, predict-only workflow."""
    run = work / "sparse-run"
    run.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, run / name)
    for name in ("workflow", "envs", "profiles/default", "profiles/local"):
        shutil.copytree(ROOT / name, run / name)
    picks = sparse_source(run / "em.zarr", slices, written=written)
    model = tiny_model()
    save_checkpoint(
        run / "model.pt",
        {"model_state_dict": model.state_dict(), "model_config": model.config.to_dict(), "threshold": 0.5},
    )
    config = {
        "volumes": {"em": {"raw": {"path": "em.zarr"}, "voxel_size": [40.0, 4.0, 4.0]}},
        "pretrained": {"path": "model.pt"},
        "predict": {"device": "cpu", "block_groups": "auto"},
    }
    (run / "sparse.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    command += ["--configfile", "sparse.yaml"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=run, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stderr[-4000:])
        raise SystemExit("the sparse workflow failed")
    summary = json.loads((run / "results" / "predict" / "pretrained" / "em.json").read_text())
    target = run / "results" / "predict" / "pretrained" / "em.zarr"
    plan = read_plan(target)
    touching = set()
    for z, y, x in picks:  # blocks whose own region overlaps a written chunk
        for by in range(y * BLOCK // plan.block, ((y + 1) * BLOCK - 1) // plan.block + 1):
            for bx in range(x * BLOCK // plan.block, ((x + 1) * BLOCK - 1) // plan.block + 1):
                touching.add((z, by, bx))
    consistent = incomplete_groups(target) == {}
    output_files = sum(1 for p in target.rglob("*") if p.is_file())
    rules: dict[str, list[float]] = {}
    for tsv in (run / "results" / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(run / "results" / "benchmarks").parts[0]
        rows = tsv.read_text().splitlines()
        rules.setdefault(rule, []).append(float(rows[1].split("\t")[0]))
    print(f"## (d) sparse {slices} x {SIDE} x {SIDE} uint8 volume ({slices * SIDE * SIDE / 1e12:.2f} TB), ")
    print(f"{len(picks)} chunks with data, the whole predict-only workflow on {os.cpu_count()} cores\n")
    print(
        "| workflow wall time | jobs (block groups) | blocks | predicted | touching data | levels | files |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {seconds:.0f} s | {summary['groups']} | {summary['blocks']:,} | {summary['blocks_computed']} | "
        f"{len(touching)} | {summary['levels']} | {output_files} |\n"
    )
    print("| rule | jobs | seconds, all jobs | seconds per job |")
    print("|---|---:|---:|---:|")
    for rule, jobs in sorted(rules.items()):
        print(f"| {rule} | {len(jobs)} | {sum(jobs):.0f} | {sum(jobs) / len(jobs):.1f} |")
    print()
    return [
        (
            f"sparse {slices * SIDE * SIDE / 1e12:.2f} TB volume, whole predict-only workflow, s",
            f"{seconds:.0f}",
        ),
        (
            "blocks predicted = blocks touching data, every shard complete",
            f"{summary['blocks_computed']} = {len(touching)}: {summary['blocks_computed'] == len(touching)}, "
            f"{consistent}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print their tables and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files-size", type=int, nargs=2, default=(16, 4096), metavar=("Z", "SIDE"))
    parser.add_argument("--memory-side", type=int, default=1024, help="slice side of (c)")
    parser.add_argument("--memory-slices", type=int, default=8, help="slices of the 1x volume of (c)")
    parser.add_argument("--memory-shard-gb", type=float, default=0.004, help="shard size of (c), GiB")
    parser.add_argument("--sparse-slices", type=int, default=1000, help="slices of the sparse volume (d)")
    parser.add_argument("--sparse-chunks", type=int, default=5, help="chunks with data in (d)")
    for part in ("startup", "files", "memory", "sparse"):
        parser.add_argument(f"--skip-{part}", action="store_true", help=f"skip part {part}")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}\n")
    summary: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="unetflow-scale-") as folder:
        work = Path(folder)
        if not args.skip_startup:
            summary += startup(work)
        if not args.skip_files:
            summary += files_per_gb(work, slices=args.files_size[0], side=args.files_size[1])
        if not args.skip_memory:
            summary += memory(
                work, side=args.memory_side, base=args.memory_slices, shard_gb=args.memory_shard_gb
            )
        if not args.skip_sparse:
            summary += sparse_workflow(work, written=args.sparse_chunks, slices=args.sparse_slices)
    print("## summary\n")
    print("| figure | value |")
    print("|---|---:|")
    for name, value in summary:
        print(f"| {name} | {value} |")
    print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
