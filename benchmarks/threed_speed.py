"""The 3-D net's speed: a training step against the bare net, prediction against the raw net, flat memory.

(a) training: the training loop's step of a 3-D net on the CPU (draw and render an augmented 3-D tile:
    position, rotation, flips, elastic deformation on a coarse 3-D grid, grey values; then forward, weighted
    loss, backward, optimizer step) against the bare step (the same optimize_step on one preallocated
    batch), timed round-robin in blocks of steps after a warm-up. Target: <= 1.15x.
(b) prediction: `predict_volume` of a Zarr volume into a Zarr prediction (reading, mirroring, normalising,
    tiling, writing shards) against the raw forward (+ softmax) of the same net on the same tiles, the best
    of a plain and a channels-last-3d loop; the two run alternately. Target: >= 0.9x the raw throughput.
(c) memory: a fresh process predicts a volume and one 8x as deep; peak RSS (VmHWM) and time per voxel.

Run from the repo root (about 15-30 minutes on 2 shared cores):
  .venv/bin/python benchmarks/threed_speed.py
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_volume
from unetflow.train.augment3d import VolumeTileSampler
from unetflow.train.loop import BatchStream, TrainConfig, build_optimizer, optimize_step

ROOT = Path(__file__).resolve().parents[1]


def net(depth: int, base: int) -> UNet:
    """A seeded 3-D net (its speed does not depend on the weights)."""
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=depth, base_channels=base, dims=3, dropout=0.0))


def training(depth: int, base: int, tile: int, *, repeats: int, block: int) -> dict[str, float]:
    """Median seconds per step of the bare step and of the training loop's step, timed round-robin."""
    model = net(depth, base).train()
    (input_z, output_z), (input_size, output_size) = model.config.net_geometry.training_tile(tile)
    raw, cells = synthesize_volume_3d(shape=(max(input_z, 48), 96, 96), seed=0, cell_diameter=20.0)
    labels = (cells > 0).astype(np.int64)
    weights = np.where(labels > 0, 0.7, 2.0).astype(np.float32)
    sampler = VolumeTileSampler(
        [(raw - raw.mean()) / raw.std()],
        [labels],
        [weights],
        input_size=(input_z, input_size),
        output_size=(output_z, output_size),
    )
    optimizer = build_optimizer(model, TrainConfig(optimizer="adam"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    fixed = sampler.sample(torch.Generator().manual_seed(1))
    stream = BatchStream(sampler, torch.Generator().manual_seed(2), prefetch=False)
    cases = {
        "bare": lambda: optimize_step(model, optimizer, scaler, fixed),
        "training step": lambda: optimize_step(model, optimizer, scaler, stream.next(ahead=False)),
        "sample only": lambda: sampler.sample(torch.Generator().manual_seed(3)),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():
        case()  # warm-up
    names = list(cases)
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            for _ in range(block):
                cases[name]()
            times[name].append((time.perf_counter() - started) / block)
    stream.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {**medians, "input": float(input_size), "input_z": float(input_z)}


def prediction(
    depth: int, base: int, stride: int, shape: tuple[int, int, int], work: Path, *, repeats: int
) -> dict[str, float]:
    """Seconds of predict_volume and of the best raw forward over the same tiles, alternately."""
    model = net(depth, base).eval()
    geometry = model.config.net_geometry
    raw, _ = synthesize_volume_3d(shape=shape, seed=1, cell_diameter=20.0)
    source = work / "raw.zarr"
    omezarr.write_image(source, raw, voxel_size=(8.0, 8.0, 8.0))
    inputs = [
        geometry.axis(axis).input_for_output(geometry.axis(axis).output_for_stride(stride))
        for axis in range(3)
    ]
    tiles = math.prod(-(-n // stride) for n in shape)
    tile = torch.randn(1, 1, *inputs)
    layouts = {
        "plain": net(depth, base).eval(),
        "channels-last-3d": net(depth, base).eval().to(memory_format=torch.channels_last_3d),
    }

    def raw_forward(name: str) -> float:
        model_, x = layouts[name], tile.to(memory_format=torch.channels_last_3d) if name != "plain" else tile
        started = time.perf_counter()
        with torch.inference_mode():
            for _ in range(tiles):
                torch.softmax(model_(x), dim=1)
        return time.perf_counter() - started

    def predicted() -> float:
        target = work / "prediction.zarr"
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        predict_volume(
            model,
            str(source),
            str(target),
            options=PredictConfig(device="cpu", workers=1),
            stride=stride,
            stride_z=stride,
            show_progress=False,
        )
        return time.perf_counter() - started

    for name in layouts:
        raw_forward(name)  # warm-up
    found: dict[str, list[float]] = {"plain": [], "channels-last-3d": [], "predict_volume": []}
    for _ in range(repeats):
        for name in layouts:
            found[name].append(raw_forward(name))
        found["predict_volume"].append(predicted())
    return {
        **{name: min(values) for name, values in found.items()},
        "tiles": float(tiles),
        "input": float(inputs[0]),
    }


CHILD = """
import json, sys, time, resource, torch
from unetflow.config.model import PredictConfig
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_volume
depth, base, stride = (int(value) for value in sys.argv[1:4])
source, target = sys.argv[4:6]
torch.manual_seed(0)
model = UNet(UNetConfig(depth=depth, base_channels=base, dims=3, dropout=0.0)).eval()
started = time.perf_counter()
options = PredictConfig(device="cpu", workers=1)
predict_volume(model, source, target, options=options, stride=stride, stride_z=stride, show_progress=False)
seconds = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({"seconds": seconds, "peak_kb": int(status["VmHWM"].split()[0])}))
"""


def memory(
    depth: int, base: int, stride: int, size: int, slices: tuple[int, int], work: Path
) -> dict[str, float]:
    """Peak RSS and seconds of a fresh process predicting a volume of each depth (small, large, small)."""
    sources = {}
    for depth_z in slices:
        raw = np.random.default_rng(depth_z).integers(60, 200, size=(depth_z, size, size), dtype=np.uint8)
        sources[depth_z] = str(work / f"raw{depth_z}.zarr")
        omezarr.write_image(sources[depth_z], raw, voxel_size=(8.0, 8.0, 8.0), chunks=(32, size, size))
    runs = []
    for depth_z in (slices[0], slices[1], slices[0]):
        target = work / f"pred{depth_z}.zarr"
        shutil.rmtree(target, ignore_errors=True)
        command = [
            sys.executable,
            "-c",
            CHILD,
            str(depth),
            str(base),
            str(stride),
            sources[depth_z],
            str(target),
        ]
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        runs.append((depth_z, json.loads(done.stdout.strip().splitlines()[-1])))
    small = [run for z, run in runs if z == slices[0]]
    large = next(run for z, run in runs if z == slices[1])
    return {
        "small_mib": statistics.mean(run["peak_kb"] for run in small) / 1024,
        "large_mib": large["peak_kb"] / 1024,
        "rss_ratio": large["peak_kb"] / statistics.mean(run["peak_kb"] for run in small),
        "time_per_voxel_ratio": (large["seconds"] / slices[1])
        / (statistics.mean(run["seconds"] for run in small) / slices[0]),
    }


def main() -> None:
    """Run the three parts and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=6, help="timed rounds of (a)")
    parser.add_argument("--block", type=int, default=2, help="steps per timed block of (a)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "prediction", "memory"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "training" not in args.skip:
        for depth, base, tile in ((2, 8, 28), (3, 16, 12)):
            t = training(depth, base, tile, repeats=args.repeats, block=args.block)
            print(
                f"(a) depth {depth}, {base} channels, input {t['input_z']:.0f} x {t['input']:.0f}^2: bare "
                f"{t['bare']:.3f} s/step, training step {t['training step']:.3f} s/step "
                f"({t['training step'] / t['bare']:.3f}x bare, target <= 1.15), "
                f"sampling alone {t['sample only']:.3f} s",
                flush=True,
            )
    with tempfile.TemporaryDirectory(prefix="threed-speed-") as tmp:
        if "prediction" not in args.skip:
            p = prediction(2, 8, 40, (80, 160, 160), Path(tmp), repeats=2)
            best = min(p["plain"], p["channels-last-3d"])
            print(
                f"(b) depth 2, 8 channels, {p['tiles']:.0f} tiles of {p['input']:.0f}^3: raw forward plain "
                f"{p['plain']:.1f} s, channels-last-3d {p['channels-last-3d']:.1f} s; predict_volume "
                f"{p['predict_volume']:.1f} s: {best / p['predict_volume']:.3f}x the best raw throughput "
                "(target >= 0.9)",
                flush=True,
            )
        if "memory" not in args.skip:
            m = memory(2, 4, 40, 160, (48, 384), Path(tmp))
            print(
                f"(c) 48 vs 384 slices of 160^2: peak RSS {m['small_mib']:.0f} / {m['large_mib']:.0f} MiB = "
                f"{m['rss_ratio']:.2f}x for 8x the voxels; time per voxel {m['time_per_voxel_ratio']:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
