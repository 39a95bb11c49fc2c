"""Fine-tuning against training from scratch on a second volume with other membrane contrast, in one run.

A:  the embedded default (config.yaml's synthetic volume, 16 x 256 x 256, seed 0) and its model, trained
    as the default run trains it (config.yaml's model and train sections: 1000 steps on slices 0-9), or
    given with --model (results/models/main/model.pt of a finished `make run`, which is that model).
B:  another synthetic volume (--seed, default 1) whose membranes are paler (--contrast, default 0.4: the
    membranes 40% as dark against the cytoplasm) and thinner; slices 0-9 train, 12-15 are held out.

Three models of B are scored on B's held-out slices, at the threshold each one's loss calls for:
zero-shot (A's model as it is), scratch (--steps steps on B from random weights) and fine-tuned (the same
steps on B from A's model: `train.init_from`). Both trainings use config.yaml's train section otherwise
(Adam, lr 1e-3, cosine, seed 0, the paper's border weights), the same batches and no validation.

Run from the repo root:  .venv/bin/python benchmarks/finetune.py [--model results/models/main/model.pt]
(about 5 minutes on 2 idle CPU cores with the default model to train, 2 with --model; --workdir keeps the
volumes and runs, and a rerun with the same options reuses them: training resumes, a finished run is done).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetflow.config.model import Config
from unetflow.data.importer import import_volume
from unetflow.data.synthesize import synthesize_volume
from unetflow.evaluate.metrics import evaluate
from unetflow.model.checkpoint import load_checkpoint, load_model
from unetflow.model.unet import UNetConfig
from unetflow.predict import predict_array
from unetflow.steps.data import run_weights
from unetflow.train.loop import train

TRAIN, VAL, TEST = list(range(10)), [10, 11], [12, 13, 14, 15]
DEFAULT = Config()


def volume(folder: Path, name: str, **options: Any) -> tuple[Path, Path]:
    """A synthetic volume imported with labels, and its weight maps (class balance of slices 0-9)."""
    raw, cells = synthesize_volume(shape=tuple(DEFAULT.volumes["synthetic"].synthetic.shape), **options)
    data = folder / f"{name}.zarr"
    weights = folder / f"{name}-weights.zarr"
    if not weights.exists():
        import_volume(raw, data, labels=cells, voxel_size=(50.0, 4.0, 4.0))
        run_weights(data=str(data), target=str(weights), options=DEFAULT.weights, train_slices=TRAIN)
    return data, weights


def fit(folder: Path, data: Path, weights: Path, *, steps: int, val: list[int], init: Path | None) -> Path:
    """Train config.yaml's net for `steps` steps (from `init` when given); the model file."""
    config = DEFAULT.train.from_dict({**DEFAULT.train.dump(), "steps": steps, "device": "cpu"})
    model = UNetConfig.from_section(DEFAULT.model)
    started = time.perf_counter()
    train(
        data=data,
        weights=weights,
        train_slices=TRAIN,
        val_slices=val,
        model_config=model,
        config=config,
        workdir=folder / "checkpoints",
        output=folder / "model.pt",
        step_log=folder / "train_log.csv",
        val_log=folder / "val_log.csv",
        init=init,
        progress=False,
    )
    print(f"  trained {folder.name}: {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    return folder / "model.pt"


def held_out(model_path: Path, data: Path) -> dict[str, float]:
    """IoU, Dice, pixel and Rand error of a model on the held-out slices of `data` (mean over slices)."""
    from unetflow.data import omezarr

    model = load_model(model_path)
    threshold = float(load_checkpoint(model_path).get("threshold", 0.5))
    mean, std = omezarr.normalization(data)
    raw = omezarr.open_image(data)
    labels = omezarr.open_labels(data)
    scores = []
    for index in TEST:
        probability = predict_array(model, raw[index], mean=mean, std=std, device="cpu")
        scores.append(evaluate(probability, labels[index], threshold=threshold, include_warping=False))
    return {
        key: float(np.mean([s[key] for s in scores])) for key in ("iou", "dice", "pixel_error", "rand_error")
    }


def main() -> None:
    """Print held-out scores of zero-shot, scratch and fine-tuned models on the second volume."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the embedded default's model (default: train it here)")
    parser.add_argument("--steps", type=int, default=200, help="training steps on the second volume")
    parser.add_argument("--contrast", type=float, default=0.4, help="membrane contrast of the second volume")
    parser.add_argument("--seed", type=int, default=1, help="seed of the second volume")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the volumes and runs here (default: a temporary folder); a rerun resumes or reuses them",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="unetflow-finetune-") as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"b-seed{args.seed}-contrast{args.contrast}"  # what a kept volume or run was made of
        other = volume(
            folder, name, seed=args.seed, membrane_contrast=args.contrast, membrane_width=(1.5, 3.5)
        )
        start = args.model
        if start is None:
            print(
                "training the embedded default's model (config.yaml: 1000 steps on volume A) ...", flush=True
            )
            first = volume(folder, "a", seed=DEFAULT.volumes["synthetic"].synthetic.seed)
            start = fit(folder / "default", *first, steps=DEFAULT.train.steps, val=VAL, init=None)
        print(
            f"volume B: seed {args.seed}, membrane_contrast {args.contrast}; {args.steps} steps each:",
            flush=True,
        )
        runs = {
            "zero-shot (A's model)": start,
            f"scratch, {args.steps} steps": fit(
                folder / f"{name}-scratch-{args.steps}", *other, steps=args.steps, val=[], init=None
            ),
            f"fine-tuned, {args.steps} steps": fit(
                folder / f"{name}-tuned-{args.steps}", *other, steps=args.steps, val=[], init=start
            ),
        }
        print(
            f"\nheld-out slices {TEST[0]}-{TEST[-1]} of volume B (mean over slices, each model's threshold):"
        )
        print(f"{'model':<28}{'IoU':>8}{'Dice':>8}{'pixel err':>11}{'Rand err':>10}")
        results = {}
        for name, path in runs.items():
            results[name] = held_out(path, other[0])
            row = results[name]
            print(
                f"{name:<28}{row['iou']:8.4f}{row['dice']:8.4f}{row['pixel_error']:11.4f}{row['rand_error']:10.4f}"
            )
        scratch, tuned = (results[name]["iou"] for name in list(runs)[1:])
        print(f"\nfine-tuned IoU - scratch IoU = {tuned - scratch:+.4f} ({tuned / scratch:.3f}x)")


if __name__ == "__main__":
    main()
