"""Benchmark overlap-tile prediction of whole volumes: throughput against the raw net, and flat memory.

(a) Throughput. In one run, with the repeats interleaved so that machine load hits all alike, times:
    - the raw forward (the baseline): `model(tile)` + softmax on a preallocated tensor of the tile plan's
      input size, no I/O, in the two ways the machine can run it (one stream using every torch thread, and
      `workers` concurrent streams of one thread each), for the net as given and for the channels-last copy
      that `predict_volume` runs on the CPU; the best of the four is the baseline;
    - `predict_volume` end to end: Zarr read -> normalise -> tiles -> net -> probability and segmentation
      Zarr writes (whole shards) -> completion journal, into a fresh target each repeat.
    Wall-clock throughput depends on how much of the 2 cores other processes leave us, so the CPU time of
    this process (all threads) per voxel is reported too: their ratio is the pipeline's own overhead.
    Baseline voxels are counted as the net's whole output per tile (plan.output ** 2, a little more than the
    plan keeps), so the ratios are conservative.
(b) Memory and time scaling. A fresh subprocess per volume size predicts a volume of `--memory-slices`
    slices (e.g. 8 and 64, 8x the voxels) and reports its RSS high-water mark (VmHWM) and time
    per voxel; the small size runs before and after the large one, and their mean is used.

Prints a markdown table; asserts nothing about time.

    .venv/bin/python benchmarks/predict.py [--size 2048] [--slices 4] [--repeats 3] [--memory-size 1024]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.geometry import TilePlan, plan_tiles
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import inference_model, predict_volume

ROOT = Path(__file__).resolve().parents[1]


def make_model(depth: int, base_channels: int) -> UNet:
    """A seeded, randomly initialised net (its speed and memory do not depend on the weights)."""
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=depth, base_channels=base_channels)).eval()


def make_volume(path: Path, shape: tuple[int, int, int], *, seed: int = 0) -> str:
    """A uint8 EM-like volume (smooth blobs plus noise) stored as OME-Zarr with 512 x 512 chunks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    base = 128 + 60 * np.sin(yy / 23.0) * np.cos(xx / 31.0)
    volume = np.empty(shape, dtype=np.uint8)
    for z in range(shape[0]):
        volume[z] = np.clip(base + rng.normal(0, 20, shape[1:]), 0, 255).astype(np.uint8)
    omezarr.write_image(path, volume, voxel_size=(50.0, 4.0, 4.0))
    return str(path)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def forward_seconds(
    model: UNet, plan: TilePlan, tiles: int, *, streams: int, threads: int
) -> tuple[float, float]:
    """Wall and CPU time of `tiles` raw forwards (+ softmax) on preallocated tiles, `streams` at a time."""
    inputs = [torch.randn(1, 1, plan.input, plan.input) for _ in range(streams)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def one(index: int) -> None:
        with torch.inference_mode():
            torch.softmax(model(inputs[index % streams]), dim=1)

    try:
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(one, range(streams)))  # warm-up (first-call allocations, oneDNN primitives)
            start, cpu = time.perf_counter(), cpu_seconds()
            list(pool.map(one, range(tiles)))
            return time.perf_counter() - start, cpu_seconds() - cpu
    finally:
        torch.set_num_threads(previous)


def predict_seconds(
    model: UNet, source: str, target: Path, *, stride: int, workers: int, block: int | None = None
) -> tuple[float, float]:
    """Wall and CPU time of one end-to-end `predict_volume` into a fresh `target` (block None: default)."""
    shutil.rmtree(target, ignore_errors=True)
    start, cpu = time.perf_counter(), cpu_seconds()
    options = PredictConfig(device="cpu", workers=workers)
    predict_volume(
        model, source, str(target), options=options, stride=stride, block=block, show_progress=False
    )
    return time.perf_counter() - start, cpu_seconds() - cpu


class LoadMeter:
    """Average CPU use of the whole machine (all processes, in cores) while the benchmark runs."""

    def __init__(self) -> None:
        self.start = self._read()
        self.wall = time.monotonic()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def busy_cores(self) -> float:
        """Cores busy on average since construction (ours and other processes')."""
        busy, total = self._read()
        cores = os.cpu_count() or 1
        return cores * (busy - self.start[0]) / max(1, total - self.start[1])


def throughput(args: argparse.Namespace, work: Path) -> list[tuple[str, str]]:
    """Part (a): interleaved repeats of both raw-forward baselines and of predict_volume."""
    model = make_model(args.depth, args.base_channels)
    shape = (args.slices, args.size, args.size)
    source = make_volume(work / "raw.zarr", shape)
    plan = plan_tiles(model.config.geometry, args.size, args.size, stride=args.stride)
    cores = torch.get_num_threads()
    nets = {"": model, "channels-last ": inference_model(model, torch.device("cpu"))}
    baselines: dict[str, Callable[[], tuple[float, float]]] = {}
    for label, net in nets.items():
        for streams, threads in ((1, cores), (args.workers, 1)):
            name = f"raw forward, {label}net, {streams} stream(s) x {threads} thread(s)"
            baselines[name] = functools.partial(
                forward_seconds, net, plan, args.tiles, streams=streams, threads=threads
            )
    default = plan_tiles(model.config.geometry, args.size, args.size, stride=args.stride).block
    blocks = {"predict_volume": None} | {
        f"predict_volume, {block} px blocks": block for block in args.compare_blocks if block != default
    }
    wall: dict[str, list[float]] = {name: [] for name in [*baselines, *blocks]}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    predict_seconds(model, source, work / "warm.zarr", stride=args.stride, workers=args.workers)
    meter = LoadMeter()
    for _ in range(args.repeats):
        for name, run in baselines.items():
            seconds, cpu_used = run()
            wall[name].append(seconds)
            cpu[name].append(cpu_used)
        for name, block in blocks.items():
            seconds, cpu_used = predict_seconds(
                model, source, work / "pred.zarr", stride=args.stride, workers=args.workers, block=block
            )
            wall[name].append(seconds)
            cpu[name].append(cpu_used)
    busy = meter.busy_cores()
    voxels = dict.fromkeys(baselines, args.tiles * plan.output**2)
    voxels |= dict.fromkeys(blocks, int(np.prod(shape)))
    rate = {name: voxels[name] / statistics.median(values) for name, values in wall.items()}
    cost = {name: statistics.median(values) / voxels[name] for name, values in cpu.items()}
    best_rate = max(rate[name] for name in baselines)
    best_cost = min(cost[name] for name in baselines)
    plain_rate = max(rate[name] for name in baselines if "channels-last" not in name)
    print(
        f"## (a) throughput: {shape[0]} x {shape[1]} x {shape[2]} uint8, depth-{args.depth} "
        f"{args.base_channels}-channel U-Net, tile stride {plan.stride} (input {plan.input}, output "
        f"{plan.output}, default block {plan.block}), {args.workers} workers; medians of {args.repeats} "
        f"interleaved repeats ({args.tiles} tiles per baseline repeat, {voxels['predict_volume']:,} "
        "voxels per predict_volume repeat)\n"
    )
    print(
        "| method | wall s | Mvoxel/s (wall) | throughput vs best raw forward | CPU s / Mvoxel "
        "| CPU efficiency vs best raw forward |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in wall:
        print(
            f"| {name} | {statistics.median(wall[name]):.2f} | {rate[name] / 1e6:.3f} | "
            f"{rate[name] / best_rate:.2f} | {cost[name] * 1e6:.3f} | {best_cost / cost[name]:.2f} |"
        )
    print(
        f"\nmachine: {os.cpu_count()} cores, {busy:.2f} cores busy on average (all processes) during (a); "
        "CPU s = user + system time of this process (all threads)\n"
    )
    return [
        (
            "throughput ratio predict_volume / best raw forward, wall clock (target >= 0.9)",
            f"{rate['predict_volume'] / best_rate:.2f}",
        ),
        (
            "throughput ratio predict_volume / best plain raw forward `model(tile)`, wall clock",
            f"{rate['predict_volume'] / plain_rate:.2f}",
        ),
        (
            "CPU-time ratio best raw forward / predict_volume per voxel (1 = no overhead)",
            f"{best_cost / cost['predict_volume']:.2f}",
        ),
        ("cores busy during (a), all processes", f"{busy:.2f} of {os.cpu_count()}"),
    ]


CHILD = """
import json, resource, sys, time
import torch
from unetflow.config.model import PredictConfig
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_volume
depth, channels, stride, workers, source, target = sys.argv[1:7]
torch.manual_seed(0)
model = UNet(UNetConfig(depth=int(depth), base_channels=int(channels))).eval()
start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
if source != "-":
    options = PredictConfig(device="cpu", workers=int(workers))
    predict_volume(model, source, target, options=options, stride=int(stride), show_progress=False)
seconds = time.perf_counter() - start
end = resource.getrusage(resource.RUSAGE_SELF)
cpu = end.ru_utime + end.ru_stime - usage.ru_utime - usage.ru_stime
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_kb": int(status["VmHWM"].split()[0])}))
"""


def child_run(args: argparse.Namespace, source: str, target: Path) -> dict[str, float]:
    """Predict `source` ("-": nothing) in a fresh Python process; its wall and CPU time and peak RSS.

    The peak is the process's VmHWM: getrusage's ru_maxrss would carry over the RSS of this (forking)
    benchmark process through fork + exec.
    """
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, "-c", CHILD, str(args.depth), str(args.base_channels), str(args.stride)]
    command += [str(args.workers), source, str(target)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(args: argparse.Namespace, work: Path) -> list[tuple[str, str]]:
    """Part (b): RSS high-water mark and time per voxel of a small and an 8x larger volume."""
    small_z, large_z = args.memory_slices
    size = args.memory_size
    sources = {z: make_volume(work / f"raw{z}.zarr", (z, size, size), seed=z) for z in (small_z, large_z)}
    meter = LoadMeter()
    floor = child_run(args, "-", work / "none.zarr")
    runs = [(z, child_run(args, sources[z], work / f"pred{z}.zarr")) for z in (small_z, large_z, small_z)]
    busy = meter.busy_cores()
    print(
        f"## (b) memory and time scaling: {size} x {size} uint8 slices, depth-{args.depth} "
        f"{args.base_channels}-channel U-Net, tile stride {args.stride}, {args.workers} workers; a fresh "
        "process per run (RSS high-water mark: VmHWM); the small volume runs before and after the "
        "large one\n"
    )
    print("| slices | voxels | wall s | wall ns/voxel | CPU ns/voxel | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| 0 (imports + net only) | 0 | - | - | - | {floor['peak_kb'] / 1024:.0f} |")
    for z, run in runs:
        voxels = z * size * size
        print(
            f"| {z} | {voxels:,} | {run['seconds']:.1f} | {1e9 * run['seconds'] / voxels:.0f} | "
            f"{1e9 * run['cpu'] / voxels:.0f} | {run['peak_kb'] / 1024:.0f} |"
        )
    small = [run for z, run in runs if z == small_z]
    large = next(run for z, run in runs if z == large_z)
    small_voxels, large_voxels = small_z * size * size, large_z * size * size

    def per_voxel_ratio(key: str) -> float:
        return (large[key] / large_voxels) / (statistics.mean(run[key] for run in small) / small_voxels)

    rss_ratio = large["peak_kb"] / statistics.mean(run["peak_kb"] for run in small)
    print(f"\nmachine: {busy:.2f} of {os.cpu_count()} cores busy on average (all processes) during (b)\n")
    return [
        (f"peak RSS ratio {large_z} / {small_z} slices (target <= 1.1)", f"{rss_ratio:.2f}"),
        (
            f"wall time per voxel ratio {large_z} / {small_z} slices (linear: ~1)",
            f"{per_voxel_ratio('seconds'):.2f}",
        ),
        (
            f"CPU time per voxel ratio {large_z} / {small_z} slices (linear: ~1)",
            f"{per_voxel_ratio('cpu'):.2f}",
        ),
        ("cores busy during (b), all processes", f"{busy:.2f} of {os.cpu_count()}"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print their tables and a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="slice height and width for (a)")
    parser.add_argument("--slices", type=int, default=4, help="slices of the volume for (a)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth")
    parser.add_argument("--base-channels", type=int, default=8, help="U-Net width")
    parser.add_argument("--stride", type=int, default=512, help="tile stride (a multiple of 2**depth)")
    parser.add_argument("--workers", type=int, default=2, help="predict_volume workers")
    parser.add_argument(
        "--compare-blocks",
        type=int,
        nargs="*",
        default=[512],
        help="also time predict_volume with these block sizes (multiples of the stride)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats in (a)")
    parser.add_argument("--tiles", type=int, default=8, help="forwards per baseline repeat in (a)")
    parser.add_argument("--memory-size", type=int, default=1024, help="slice height and width for (b)")
    parser.add_argument("--memory-slices", type=int, nargs=2, default=(8, 64), help="small and large z")
    parser.add_argument("--skip-memory", action="store_true", help="run (a) only")
    parser.add_argument("--skip-throughput", action="store_true", help="run (b) only")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} torch threads, load average {os.getloadavg()}\n")
    with tempfile.TemporaryDirectory(prefix="unetflow-bench-") as folder:
        work = Path(folder)
        summary = [] if args.skip_throughput else throughput(args, work)
        if not args.skip_memory:
            summary += memory(args, work)
    print("## summary\n")
    print("| figure | value |")
    print("|---|---:|")
    for name, value in summary:
        print(f"| {name} | {value} |")
    print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
