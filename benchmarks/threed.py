"""3-D net, 2-D net and 2-D net with context slices at equal training time on the embedded 3-D volume.

One training volume and one held-out volume (another seed) of the embedded generator's 3-D mode
(unetflow.data.synthesize3d), imported as the workflow imports them, with the weight maps each net trains on
(2-D maps for the 2-D nets, the 3-D map for the 3-D net; one class balance). Every recipe is the same U-Net
(depth, width, Adam at a constant learning rate, the paper's augmentation) but for its view of z: `2-D`
(one slice), `2-D context` (the slice and `--context` neighbours on each side as channels), `3-D` (3-D
convolutions; in-plane only at the levels nnU-Net's rule picks from the voxel size). The recipes train
round-robin, each for `--block` seconds of wall clock in turn, until each has trained `--minutes`: load from
other processes hits them alike. Each net's last weights then predict the whole held-out volume
(overlap-tile), scored per slice at the threshold of its loss weights: foreground IoU, pixel error and
V_info (unetflow.evaluate; the per-slice information measure of the ISBI challenge), and the z-flicker:

    flicker = mean over voxels of |(p[z + 1] - p[z]) - (t[z + 1] - t[z])|

the mean absolute difference between consecutive slices' change of probability and the truth's change (0:
the prediction changes from slice to slice exactly as the truth does; a net that sees one slice at a time
flickers). Also printed: mean |p[z + 1] - p[z]| against the truth's. A 3-D VOI of an instance segmentation
awaits the volume's instance step (issue 27).

Run from the repo root (about 3 x --minutes plus a few minutes of data and prediction):
  .venv/bin/python benchmarks/threed.py --minutes 15                      # isotropic FIB-SEM-like
  .venv/bin/python benchmarks/threed.py --minutes 15 --voxel 32 8 8       # serial sections 4 px apart
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetflow.config.model import AugmentConfig, ModelConfig, TrainConfig
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.evaluate.metrics import evaluate
from unetflow.model.unet import UNetConfig
from unetflow.predict import predict_array
from unetflow.train.loop import BatchStream, TrainingRun, optimize_step, setup
from unetflow.train.sources import TrainingSource
from unetflow.train.weights import class_balance_weights, weight_map_volume, weight_map_volume_3d


def make_data(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The training and held-out volumes imported, and the training volume's 2-D and 3-D weight maps."""
    voxel = tuple(args.voxel)
    made = {}
    for name, seed, depth in (
        ("train", args.seed, args.train_slices),
        ("test", args.seed + 1, args.test_slices),
    ):
        raw, cells = synthesize_volume_3d(
            shape=(depth, args.size, args.size),
            seed=seed,
            voxel_size=voxel,
            cell_diameter=args.cell_diameter,
            tilt=args.tilt,
            membrane_width=(2.0, 4.0),
        )
        made[name] = (import_volume(raw, folder / f"{name}.zarr", labels=cells, voxel_size=voxel), cells)
    cells = made["train"][1]
    class_weights = class_balance_weights([cells > 0])
    sampling = np.asarray(voxel) / min(voxel)
    maps = {
        "2d": weight_map_volume(cells, class_weights=class_weights),
        "3d": weight_map_volume_3d(cells, class_weights=class_weights, sampling=sampling),
    }
    for kind, values in maps.items():
        omezarr.write_image(
            folder / f"w{kind}.zarr", values, voxel_size=voxel, attrs={"class_weights": list(class_weights)}
        )
    return {
        "train": made["train"][0],
        "test": made["test"][0],
        "weights": {k: folder / f"w{k}.zarr" for k in maps},
    }


def recipes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The compared nets: the same U-Net seeing one slice, 2k + 1 slices, or 3-D."""
    common = {"depth": args.depth, "base_channels": args.base_channels, "dropout": 0.0}
    return {
        "2-D": {"model": common, "tile": args.tile, "maps": "2d"},
        f"2-D context {args.context}": {
            "model": {**common, "context_slices": args.context},
            "tile": args.tile,
            "maps": "2d",
        },
        "3-D": {"model": {**common, "dims": 3}, "tile": args.tile_3d, "maps": "3d"},
    }


def build(
    name: str, recipe: dict[str, Any], data: dict[str, Any], args: argparse.Namespace, work: Path
) -> TrainingRun:
    """A training run of one recipe on the training volume (no validation: the last weights are scored)."""
    section = ModelConfig.from_dict(recipe["model"])
    config = TrainConfig.from_dict(
        {
            "steps": 10**7,
            "tile": recipe["tile"],
            "optimizer": "adam",
            "lr": args.lr,
            "schedule": "constant",
            "checkpoint_every": 10**7,
            "val_every": 10**7,
            "device": "cpu",
            "seed": args.seed,
            "augment": AugmentConfig().dump(),
        }
    )
    source = TrainingSource(
        name="train",
        data=Path(data["train"]),
        weights=Path(data["weights"][recipe["maps"]]),
        train=list(range(args.train_slices)),
        val=[],
    )
    folder = work / name.replace(" ", "-")
    return setup(
        sources=[source],
        model_config=UNetConfig.from_section(section, voxel_size=tuple(args.voxel)),
        config=config,
        workdir=folder,
        output=folder / "model.pt",
        step_log=folder / "steps.csv",
        val_log=folder / "val.csv",
    )


def train_round_robin(
    runs: dict[str, TrainingRun], *, minutes: float, block: float
) -> dict[str, dict[str, float]]:
    """Train every run `block` seconds in turn until each has trained `minutes`; steps and seconds each."""
    streams = {name: BatchStream(run.sampler, run.generator, prefetch=False) for name, run in runs.items()}
    spent = {name: 0.0 for name in runs}
    steps = {name: 0 for name in runs}
    budget = 60.0 * minutes
    for run in runs.values():
        run.model.train()
    names = list(runs)
    round_ = 0
    while min(spent.values()) < budget:
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            run, started = runs[name], time.perf_counter()
            while spent[name] < budget and time.perf_counter() - started < block:
                tick = time.perf_counter()
                batch = streams[name].next(ahead=False)
                optimize_step(run.model, run.optimizer, run.scaler, batch, step=steps[name])
                spent[name] += time.perf_counter() - tick
                steps[name] += 1
        round_ += 1
    for stream in streams.values():
        stream.close()
    voxels = {
        name: math.prod(runs[name].sampler.sample(torch.Generator().manual_seed(0)).labels.shape)
        for name in runs
    }
    return {
        name: {
            "steps": steps[name],
            "minutes": spent[name] / 60,
            "voxels_per_s": voxels[name] * steps[name] / spent[name],
        }
        for name in runs
    }


def score(run: TrainingRun, data: dict[str, Any]) -> dict[str, float]:
    """The net's prediction of the held-out volume, scored slice by slice and along z."""
    raw = omezarr.open_image(data["test"])[:]
    mean, std = omezarr.normalization(data["test"])
    truth = omezarr.open_labels(data["test"])[:] > 0
    run.model.eval()
    probability = predict_array(run.model, raw, mean=mean, std=std, device="cpu", memory_gb=1.0)
    per_slice = [
        evaluate(p, t, threshold=run.threshold, include_warping=False)
        for p, t in zip(probability, truth, strict=True)
    ]
    change, true_change = np.diff(probability, axis=0), np.diff(truth.astype(np.float32), axis=0)
    return {
        "iou": float(np.mean([s["iou"] for s in per_slice])),
        "pixel_error": float(np.mean([s["pixel_error"] for s in per_slice])),
        "v_info": float(np.mean([s["v_info"] for s in per_slice])),
        "flicker": float(np.mean(np.abs(change - true_change))),
        "change": float(np.mean(np.abs(change))),
        "true_change": float(np.mean(np.abs(true_change))),
    }


def main() -> None:
    """Make the data, train the recipes round-robin, score them on the held-out volume and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall clock per recipe")
    parser.add_argument("--block", type=float, default=30.0, help="seconds a recipe trains per turn")
    parser.add_argument("--voxel", type=float, nargs=3, default=(8.0, 8.0, 8.0), metavar=("Z", "Y", "X"))
    parser.add_argument("--size", type=int, default=160, help="height and width of the volumes")
    parser.add_argument("--train-slices", type=int, default=64, help="slices of the training volume")
    parser.add_argument("--test-slices", type=int, default=48, help="slices of the held-out volume")
    parser.add_argument("--cell-diameter", type=float, default=24.0, help="mean neurite diameter (px)")
    parser.add_argument("--tilt", type=float, default=45.0, help="degrees between the neurites and z")
    parser.add_argument("--depth", type=int, default=2, help="U-Net depth of every recipe")
    parser.add_argument("--base-channels", type=int, default=8, help="U-Net width of every recipe")
    parser.add_argument("--tile", type=int, default=60, help="in-plane output tile of the 2-D nets")
    parser.add_argument("--tile-3d", type=int, default=28, help="output tile of the 3-D net")
    parser.add_argument("--context", type=int, default=1, help="context slices on each side")
    parser.add_argument("--lr", type=float, default=0.001, help="Adam's learning rate (constant)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training volume and the runs")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="threed-") as tmp:
        started = time.perf_counter()
        data = make_data(args, Path(tmp))
        runs = {name: build(name, recipe, data, args, Path(tmp)) for name, recipe in recipes(args).items()}
        print(
            f"volumes: train {args.train_slices} x {args.size}^2, held out {args.test_slices} x "
            f"{args.size}^2, voxel {tuple(args.voxel)}, tilt {args.tilt}; "
            f"data in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        for name, run in runs.items():
            tile = run.sampler.sample(torch.Generator().manual_seed(0))
            print(
                f"  {name}: input {tuple(tile.raw.shape[1:])} -> labels {tuple(tile.labels.shape[1:])}",
                flush=True,
            )
        trained = train_round_robin(runs, minutes=args.minutes, block=args.block)
        scores = {name: score(run, data) for name, run in runs.items()}
    print(
        "\n| recipe | steps | minutes trained | labelled voxels/s | held-out IoU | pixel error | V_info | "
        "z-flicker | mean abs z-change (truth) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in runs:
        t, s = trained[name], scores[name]
        print(
            f"| {name} | {t['steps']} | {t['minutes']:.1f} | {t['voxels_per_s']:.0f} | {s['iou']:.4f} | "
            f"{s['pixel_error']:.4f} | {s['v_info']:.4f} | {s['flicker']:.4f} | {s['change']:.4f} "
            f"({s['true_change']:.4f}) |"
        )
    baseline = scores["2-D"]
    for name, s in scores.items():
        if name != "2-D":
            print(
                f"{name} / 2-D: IoU {s['iou'] / baseline['iou']:.3f}x, pixel error "
                f"{s['pixel_error'] / baseline['pixel_error']:.3f}x, "
                f"z-flicker {s['flicker'] / baseline['flicker']:.3f}x"
            )


if __name__ == "__main__":
    main()
