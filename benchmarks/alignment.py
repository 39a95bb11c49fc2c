"""What moving the raw image onto the labels buys a trained net, without training it again.

The labels' offset from the raw image's boundaries is measured on the training slices
(`unetflow.data.alignment`, what `train.label_offset: auto` does), then the checkpoint's net predicts the
validation and the held-out slices three times: the raw as it is, moved by the offset, and moved the
opposite way (a control: if the offset is real, that is worse than not moving). Printed per move: IoU,
pixel error and Rand error at the checkpoint's threshold, the mean over each set of slices.

From the repo root, after `snakemake --profile profiles/local --configfile configs/isbi2012-cpu.yaml`:
  .venv/bin/python benchmarks/alignment.py --model results/models/main/model.pt
(the ISBI data of ../shared/data/isbi2012: train 0-17, validation 18-19, held out 20-24; a few minutes
on 2 cores with --tta). A net trained with label_offset auto already moves by its own offset: the rows
then say what that move does for it.
"""

from __future__ import annotations

import argparse

from unetflow.config.slices import select_slices
from unetflow.data import alignment, omezarr
from unetflow.evaluate.metrics import evaluate
from unetflow.model.checkpoint import decision_threshold_of, load_model
from unetflow.predict import predict_array
from unetflow.train.sources import TrainingData, load_slices


def read(data: str, spec: str, *, what: str) -> TrainingData:
    """The normalised raw, 0/1 labels and unannotated mask of the chosen slices, as training reads them."""
    chosen = select_slices(spec, omezarr.open_image(data).shape[0], what=what)
    return load_slices(data, None, chosen, loss_weights="none")


def main() -> None:
    """Print the measured offset and a row per move and set of slices."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="results/data/isbi2012.zarr", help="the imported volume")
    parser.add_argument("--model", default="results/models/main/model.pt", help="a checkpoint")
    parser.add_argument("--train", default="0-17", help="slices the offset is measured on")
    parser.add_argument("--val", default="18-19", help="validation slices")
    parser.add_argument("--test", default="20-24", help="held-out slices")
    parser.add_argument("--tta", action="store_true", help="average the 8 flips and rotations")
    args = parser.parse_args()
    train = read(args.data, args.train, what="--train")
    offset = alignment.estimate_label_offset([(train.raw, train.labels, train.unannotated)])
    print(
        f"labels' offset from the raw boundaries on slices {args.train}: "
        f"({offset[0]:+.2f}, {offset[1]:+.2f}) px"
    )
    model = load_model(args.model)
    own = model.label_offset
    threshold = decision_threshold_of(args.model)
    print(
        f"{args.model}: its own move ({own[0]:+.2f}, {own[1]:+.2f}) px, threshold {threshold:.3f}, "
        f"tta {args.tta}"
    )
    sets = {
        name: read(args.data, spec, what=f"--{name}")
        for name, spec in (("val", args.val), ("test", args.test))
    }
    print("move (dy, dx) px   | slices | IoU    | pixel error | Rand error")
    for move in (alignment.NO_OFFSET, offset, (-offset[0], -offset[1])):
        model.label_offset = move
        for name, data in sets.items():
            probability = predict_array(
                model, data.raw, mean=0.0, std=1.0, device="cpu", memory_gb=2.0, tta=args.tta
            )
            scores = evaluate(probability, data.labels, threshold=threshold, include_warping=False)
            print(
                f"({move[0]:+.2f}, {move[1]:+.2f})     | {name:>6s} | {scores['iou']:.4f} | "
                f"{scores['pixel_error']:.4f}      | {scores['rand_error']:.4f}"
            )


if __name__ == "__main__":
    main()
