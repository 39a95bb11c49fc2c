"""Touching cells scored as the Cell Tracking Challenge scores them, on real images: ISBI 2012 as sequences.

The data: the 25 labelled ISBI 2012 slices of ../shared/data/isbi2012 rebuilt in the challenge's layout as
two sequences, 01 (slices 0-12) and 02 (slices 13-24). Each cell is a connected component of the labels'
interior (4-neighbour, at least --min-cell px), grown into the membrane by --grow px (scikit-image's
expand_labels: neighbours meet halfway), so that neighbouring cells touch along most of their border, as
HeLa cells do (the fraction is printed); gold masks on every other frame (0, 2, 4, ...), 16-bit ids.

The protocol (the challenge's test gold is secret): train on one sequence's gold frames (the last one
chooses the checkpoint), predict the other sequence, split the probability into cells, SEG on its gold
frames; both directions, each and the mean. Training is configs/isbi2012-cpu.yaml's CPU recipe (depth 4,
16 channels, Adam lr 1e-3 cosine, tile 196, the paper's weight map, augmentation, the raw moved onto the
labels' measured offset: train.label_offset auto) for --steps steps; prediction with test-time augmentation
(the 8 flips and rotations, as that recipe); cells at the checkpoint's threshold (cells: watershed and
components, seeds maxima with dynamic 0.5, min_size 30, grow 0, as config.yaml; --seeds, --dynamic,
--seed-threshold, --min-size, --grow-cells score others).

With --data synthetic: two synthetic time-lapses in the same layout instead (unetflow.data.cellsynth:
touching phase-contrast-like cells that move; 01 8-bit, 02 16-bit; 16 frames of 192 x 256, 24 cells).

Variants, each scored with both ways of making cells (unetflow.segment.cells: the seeded watershed on the
probability, and connected components of the threshold):
  separated  the labels with the background forced --separate px wide where two cells meet (the paper's
             Fig. 3; unetflow.data.instances), so the border weight map weighs that gap;
  touching   the labels as they are (cells touching, no gap): what the paper's method adds.

Run from the repo root:  .venv/bin/python benchmarks/cells.py --steps 3000
(about 15 minutes of training per run on 2 CPU cores; --workdir keeps the runs, and a rerun reuses them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage
from skimage.segmentation import expand_labels

from unetflow.config.model import TrainConfig, WeightsConfig
from unetflow.config.split import SplitConfig
from unetflow.data import omezarr
from unetflow.data.cellsynth import synthesize_timelapse
from unetflow.data.ctc import UNANNOTATED, read_sequence, scan_dataset, write_sequence
from unetflow.data.importer import import_volume
from unetflow.evaluate.metrics import evaluate_objects_frames
from unetflow.model.checkpoint import decision_threshold_of, load_model
from unetflow.model.unet import UNetConfig
from unetflow.predict import predict_array
from unetflow.segment.cells import segment_frames
from unetflow.steps.data import run_class_balance, run_weights
from unetflow.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
SEQUENCES = {"01": range(0, 13), "02": range(13, 25)}


def isbi_cells(interior: np.ndarray, *, grow: int, min_cell: int) -> np.ndarray:
    """Cells of one ISBI slice: interior components of at least `min_cell` px, grown `grow` px."""
    cells = ndimage.label(interior)[0]
    sizes = np.bincount(cells.ravel())
    cells[sizes[cells] < min_cell] = 0
    return expand_labels(cells, distance=grow).astype(np.uint16)


def touching_fraction(cells: np.ndarray) -> float:
    """Of the cells' outline pixels (a 4-neighbour outside the cell), the fraction next to another cell."""
    outline = np.zeros(cells.shape, dtype=bool)
    touching = np.zeros(cells.shape, dtype=bool)
    for axis in (0, 1):
        for shift in (1, -1):
            other = np.roll(cells, shift, axis=axis)
            differs = (other != cells) & (cells > 0)
            outline |= differs
            touching |= differs & (other > 0)
    return float(touching.sum() / outline.sum())


def isbi_sequences(*, grow: int, min_cell: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The two ISBI sequences (module docstring): frames and every frame's cells."""
    raw = tifffile.imread(ISBI / "train-volume.tif")
    labels = tifffile.imread(ISBI / "train-labels.tif")
    return {
        name: (
            raw[list(slices)],
            np.stack([isbi_cells(labels[z] > 0, grow=grow, min_cell=min_cell) for z in slices]),
        )
        for name, slices in SEQUENCES.items()
    }


def synthetic_sequences() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two synthetic time-lapses (unetflow.data.cellsynth): 01 8-bit, 02 16-bit, 16 frames of 192 x 256."""
    found = {}
    for name, bits, seed in (("01", 8, 11), ("02", 16, 12)):
        lapse = synthesize_timelapse(frames=16, shape=(192, 256), cells=24, seed=seed, bits=bits, untraced=0)
        found[name] = (lapse.frames, lapse.cells)
    return found


def build_layout(folder: Path, sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Write the sequences under `folder`, gold on every other frame; what they hold."""
    facts: dict[str, Any] = {}
    for name, (frames, cells) in sequences.items():
        gold = {number: cells[number] for number in range(0, len(cells), 2)}
        write_sequence(folder, name, frames, gold=gold)
        facts[name] = {
            "frames": len(cells),
            "gold_frames": sorted(gold),
            "cells_per_gold_frame": float(np.mean([len(np.unique(g)) - 1 for g in gold.values()])),
            "touching_fraction": float(np.mean([touching_fraction(g) for g in gold.values()])),
            "background_fraction": float(np.mean([(g == 0).mean() for g in gold.values()])),
        }
    return facts


def import_sequence(
    layout: Path, name: str, target: Path, *, separate: int | None
) -> tuple[np.ndarray, list[int]]:
    """Import a sequence (gold frames labelled, the rest unannotated; `separate` None: the raw only); its
    gold and the gold frame numbers."""
    files = scan_dataset(layout, [name])[name]
    frames, labels = read_sequence(layout, files, partial="none")
    if not target.exists():
        import_volume(
            frames,
            target,
            labels=None if separate is None else labels,
            labels_kind="instance",
            labels_ignore=None if separate is None else UNANNOTATED,
            labels_separate=separate,
        )
    return labels, sorted(files.gold)


def train_run(layout: Path, work: Path, train_seq: str, *, separate: int, steps: int) -> Path:
    """Train on `train_seq`'s gold frames (the last validates) with labels separated by `separate` px."""
    data = work / f"{train_seq}-sep{separate}.zarr"
    _, gold = import_sequence(layout, train_seq, data, separate=separate)
    split = SplitConfig(volume=train_seq, train=gold[:-1], val=gold[-1:], test=[])
    balance, weights = (
        work / f"balance-{train_seq}-sep{separate}.json",
        work / f"weights-{train_seq}-sep{separate}.zarr",
    )
    if not weights.exists():
        run_class_balance(data={train_seq: str(data)}, split=split, target=str(balance))
        run_weights(data=str(data), target=str(weights), options=WeightsConfig(), class_balance=str(balance))
    model = work / f"model-{train_seq}-sep{separate}.pt"
    if not model.exists():
        started = time.perf_counter()
        train(
            data=data,
            weights=weights,
            train_slices=gold[:-1],
            val_slices=gold[-1:],
            model_config=UNetConfig(depth=4, base_channels=16, dropout=0.5),
            config=TrainConfig(
                steps=steps, tile=196, checkpoint_every=250, val_every=250, device="cpu", label_offset="auto"
            ),
            workdir=work / f"run-{train_seq}-sep{separate}",
            output=model,
            step_log=work / f"steps-{train_seq}-sep{separate}.csv",
            val_log=work / f"val-{train_seq}-sep{separate}.csv",
            progress=False,
        )
        print(
            f"trained on {train_seq}, separate {separate}: {time.perf_counter() - started:.0f} s", flush=True
        )
    return model


def score(
    layout: Path,
    work: Path,
    model: Path,
    test_seq: str,
    *,
    seeds: str,
    dynamic: float,
    seed_threshold: float | str,
    min_size: int,
    grow: int,
) -> dict[str, Any]:
    """SEG and the other object metrics of `model` on `test_seq`'s gold frames, both ways of making cells."""
    data = work / f"{test_seq}-raw.zarr"
    labels, gold = import_sequence(layout, test_seq, data, separate=None)
    raw = np.asarray(omezarr.open_image(data)[:])
    mean, std = omezarr.normalization(data)
    cached = work / f"probability-{model.stem}-{test_seq}.npy"  # a rerun scores other cells without the net
    if cached.exists():
        probability = np.load(cached)
    else:
        net = load_model(model)
        probability = predict_array(net, raw[gold], mean=mean, std=std, device="cpu", memory_gb=1.0, tta=True)
        np.save(cached, probability)
    threshold = decision_threshold_of(model)
    truth = labels[gold].astype(np.int64)
    result: dict[str, Any] = {"threshold": threshold}
    for method in ("watershed", "components"):
        cells = segment_frames(
            probability,
            threshold=threshold,
            method=method,
            seeds=seeds,
            dynamic=dynamic,
            seed_threshold=seed_threshold,
            min_size=min_size,
            grow=grow,
        )
        _, aggregate, _ = evaluate_objects_frames(truth, cells.astype(np.int64))
        result[method] = {
            key.removesuffix("_pooled"): aggregate[key] for key in aggregate if key.endswith("_pooled")
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--data", choices=["isbi", "synthetic"], default="isbi", help="the ISBI sequences or synthetic ones"
    )
    parser.add_argument("--grow", type=int, default=3, help="px the cells grow into the membrane")
    parser.add_argument("--min-cell", type=int, default=50, help="smallest interior component kept (px)")
    parser.add_argument("--separate", type=int, default=2, help="width of the separating background (px)")
    parser.add_argument("--variants", nargs="+", default=["separated", "touching"])
    parser.add_argument("--directions", nargs="+", default=["01", "02"], help="sequences to train on")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seeds", choices=["maxima", "level"], default="maxima", help="cells.seeds")
    parser.add_argument("--dynamic", type=float, default=0.5, help="seeds maxima (cells.dynamic)")
    parser.add_argument("--seed-threshold", default="auto", help="seeds level (cells.seed_threshold)")
    parser.add_argument("--min-size", type=int, default=30, help="smallest cell kept (cells.min_size)")
    parser.add_argument("--grow-cells", type=int, default=0, help="px predicted cells grow (cells.grow)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="unetflow-cells-"))
    layout = work / "layout"
    if not layout.exists():
        if args.data == "isbi":
            sequences = isbi_sequences(grow=args.grow, min_cell=args.min_cell)
        else:
            sequences = synthetic_sequences()
        facts = build_layout(layout, sequences)
        (work / "layout.json").write_text(json.dumps(facts, indent=2))
    print("data:", (work / "layout.json").read_text(), flush=True)
    results: dict[str, Any] = {}
    for variant in args.variants:
        separate = args.separate if variant == "separated" else 0
        for train_seq in args.directions:
            test_seq = "02" if train_seq == "01" else "01"
            model = train_run(layout, work, train_seq, separate=separate, steps=args.steps)
            seeds = args.seed_threshold if args.seed_threshold == "auto" else float(args.seed_threshold)
            found = score(
                layout,
                work,
                model,
                test_seq,
                seeds=args.seeds,
                dynamic=args.dynamic,
                seed_threshold=seeds,
                min_size=args.min_size,
                grow=args.grow_cells,
            )
            results[f"{variant} {train_seq}->{test_seq}"] = found
            print(variant, f"{train_seq}->{test_seq}", json.dumps(found), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'variant':<12}{'cells':<12}{'direction':<11}{'SEG':>7}{'F1':>7}{'IoU(m)':>8}")
    for variant in args.variants:
        for method in ("watershed", "components"):
            values = []
            for key, found in results.items():
                if key.startswith(variant + " "):
                    scores = found[method]
                    values.append(scores["seg"])
                    print(
                        f"{variant:<12}{method:<12}{key.split()[1]:<11}{scores['seg']:>7.4f}"
                        f"{scores['detection_f1']:>7.4f}{scores['matched_iou']:>8.4f}"
                    )
            if values:
                print(f"{variant:<12}{method:<12}{'mean':<11}{float(np.mean(values)):>7.4f}")
    print(f"workdir: {work}")


if __name__ == "__main__":
    main()
