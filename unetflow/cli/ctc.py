"""The cell tracking steps (the paper's Table 2): fetch a Cell Tracking Challenge dataset, make cells of a
prediction with the challenge's result folder, and score any result folder as the challenge scores it."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from unetflow.cli.options import add_config, sections


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser(
        "ctc-fetch",
        help="fetch a Cell Tracking Challenge dataset (URL, file://, zip or folder), checked by structure",
    )
    p.add_argument(
        "source", help="the archive: http(s):// or file:// URL of the .zip, a local .zip or folder"
    )
    p.add_argument("target", help="the folder to unpack it to (its zip is kept beside it as TARGET.zip)")
    p.add_argument("--sha256", help="the archive's expected SHA-256 (default: not checked, only recorded)")
    p.add_argument("--sequences", nargs="+", default=["01", "02"], help="the sequences it must hold")
    p.add_argument("--no-gold", action="store_true", help="a test archive: no gold segmentation expected")
    p.add_argument("--frame-shape", nargs=2, type=int, metavar=("Y", "X"), help="the frame size it must have")
    p.set_defaults(handler=_fetch)

    p = sub.add_parser(
        "cells",
        help="one id per cell in every frame of a prediction: a 16-bit stack and the challenge's RES folder",
        description="Split a prediction's probability into cells with the config's cells: section (seeded "
        "watershed or connected components, small fragments joined or dropped).",
    )
    p.add_argument("prediction", help="a unetflow prediction (OME-Zarr of the probability)")
    p.add_argument("--cells", required=True, help="the 16-bit (t, y, x) TIFF stack to write")
    p.add_argument("--results", required=True, help="the result folder to write (NN_RES: maskNNN.tif)")
    add_config(p)
    p.set_defaults(handler=_cells)

    p = sub.add_parser(
        "seg",
        help="score a result folder (NN_RES) against a dataset's gold: SEG as the challenge computes it",
    )
    p.add_argument("dataset", help="the dataset folder (holding NN/ and NN_GT/SEG/)")
    p.add_argument("sequence", help="the sequence whose gold frames are scored, e.g. 02")
    p.add_argument("results", help="the result folder (maskNNN.tif for every frame)")
    p.add_argument(
        "--partial", choices=["tra", "none"], default="tra", help="untraced cells from tracking marks or not"
    )
    p.add_argument("--margin", type=int, default=15, help="px an untraced cell's marker grows")
    p.set_defaults(handler=_seg)


def _fetch(args: argparse.Namespace) -> None:
    from unetflow.data.ctc import fetch_dataset
    from unetflow.logs import setup_logging

    setup_logging()
    record = fetch_dataset(
        args.source,
        args.target,
        sequences=args.sequences,
        gold=not args.no_gold,
        sha256=args.sha256,
        frame_shape=args.frame_shape,
    )
    print(json.dumps(record, indent=2))


def _cells(args: argparse.Namespace) -> None:
    from unetflow.steps.ctc import run_ctc_cells

    config = sections(args)
    found = run_ctc_cells(
        prediction=args.prediction,
        cells=args.cells,
        results=args.results,
        options=config.cells,
        threshold=config.predict.threshold,
    )
    print(json.dumps(found))


def _seg(args: argparse.Namespace) -> None:
    from unetflow.steps.ctc import score_sequence

    pooled, _, errors = score_sequence(
        args.dataset, args.sequence, args.results, partial=args.partial, margin=args.margin
    )
    print(
        json.dumps({key: None if isinstance(v, float) and math.isnan(v) else v for key, v in pooled.items()})
    )
    print(json.dumps({"errors": errors}))
