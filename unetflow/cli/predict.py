"""The predict and evaluate subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from unetflow.cli.options import add_config, sections
from unetflow.config.split import SplitConfig
from unetflow.errors import InputError
from unetflow.evaluate.registry import HEADLINE_KEYS, help_text
from unetflow.layout import slice_metrics_beside
from unetflow.steps import evaluate as evaluate_steps
from unetflow.steps import predict as predict_steps


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser("predict", help="overlap-tile prediction of a Zarr volume (resumable)")
    p.add_argument("model", help="a trained checkpoint (.pt)")
    p.add_argument("data", help="the OME-Zarr volume to predict")
    p.add_argument("target", help="the prediction OME-Zarr to write or resume")
    p.add_argument("--group", type=int, help="predict only this block group (default: every group)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    add_config(p)
    p.set_defaults(handler=_predict)

    p = sub.add_parser(
        "evaluate",
        help="metrics of a prediction against its labels",
        description="Metrics of a prediction against its labels: per slice (CSV beside the JSON) and their\n"
        f"mean (JSON, with the headline ones, {', '.join(HEADLINE_KEYS)}, at its top).",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prediction", help="a prediction OME-Zarr")
    p.add_argument("data", help="the imported OME-Zarr with the labels")
    p.add_argument("metrics", help="JSON to write (a per-slice CSV is written beside it)")
    p.add_argument("--slices", help='slices to evaluate, e.g. "20-24" (default: all)')
    p.add_argument(
        "--threshold", help="segmentation threshold, or auto (the prediction's own)", default="auto"
    )
    p.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest measure)")
    p.add_argument(
        "--segmentation",
        help="the segment step's label image of the same volume: scored beside the connected components",
    )
    add_config(p)
    p.set_defaults(handler=_evaluate)


def _predict(args: argparse.Namespace) -> None:
    config = sections(args)
    predict_steps.run_predict(
        data=args.data,
        model=args.model,
        target=args.target,
        options=config.predict,
        group=args.group,
        threads=args.threads,
    )


def _evaluate(args: argparse.Namespace) -> None:
    config = sections(args)
    threshold: float | str = args.threshold
    if threshold != "auto":
        try:
            threshold = float(threshold)
        except ValueError:
            raise InputError(f"--threshold {args.threshold!r}: give a number in [0, 1] or auto") from None
    options = config.evaluate.model_copy(update={"warping": False}) if args.no_warping else config.evaluate
    split = None if args.slices is None else SplitConfig.from_dict({"volume": "volume", "test": args.slices})
    evaluate_steps.run_evaluate(
        data=[args.data],
        predictions=[args.prediction],
        volumes=["volume"],
        split=split,
        metrics=args.metrics,
        slices=slice_metrics_beside(args.metrics),
        threshold=threshold,
        options=options,
        segmentations=None if args.segmentation is None else [args.segmentation],
    )
