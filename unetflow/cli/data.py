"""The data subcommands: synthesize, download, import, class-balance and weights."""

from __future__ import annotations

import argparse
from typing import Any

from unetflow.cli.options import add_config, add_source, sections, training_entry
from unetflow.config.model import SyntheticConfig, VolumeConfig, WeightsConfig
from unetflow.errors import InputError
from unetflow.steps import data as steps

SYNTHETIC = SyntheticConfig()
WEIGHTS = WeightsConfig()


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    _add_synthesize(sub)
    _add_download(sub)
    _add_import(sub)
    _add_weights(sub)
    _add_class_balance(sub)


def _add_synthesize(sub: Any) -> None:
    p = sub.add_parser("synthesize", help="generate the embedded EM-like volume (raw + labels TIFFs)")
    p.add_argument("raw", help="multi-page TIFF to write the raw volume to")
    p.add_argument("labels", help="multi-page TIFF to write the instance labels to")
    p.add_argument(
        "--shape", type=int, nargs=3, default=SYNTHETIC.shape, metavar=("Z", "Y", "X"), help="volume size"
    )
    p.add_argument("--seed", type=int, default=SYNTHETIC.seed, help="random seed (same seed, same data)")
    p.add_argument(
        "--cell-diameter", type=float, default=SYNTHETIC.cell_diameter, help="mean cell diameter in pixels"
    )
    p.add_argument(
        "--mode",
        choices=("2d", "3d"),
        default=SYNTHETIC.mode,
        help="2d: a tessellation per slice; 3d: neurites that run through the volume",
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="3d: the voxel size, whose z over y sets the section spacing (default: isotropic)",
    )
    p.add_argument(
        "--tilt", type=float, default=SYNTHETIC.tilt, help="3d: degrees between the neurites and z"
    )
    p.set_defaults(handler=_synthesize)


def _add_download(sub: Any) -> None:
    p = sub.add_parser("download", help="fetch a file and verify its sha256")
    p.add_argument("source", help="http(s):// or file:// URL, or a local path")
    p.add_argument("target", help="where to save the file")
    p.add_argument("--sha256", help="the file's expected SHA-256 (a mismatch is an error)")
    p.set_defaults(handler=_download)


def _add_import(sub: Any) -> None:
    p = sub.add_parser("import", help="import a volume (and labels) into OME-Zarr")
    p.add_argument(
        "raw", help="the raw volume: a TIFF stack, a folder of slices, an HDF5 file or a Zarr store"
    )
    p.add_argument("target", help="the OME-Zarr store to write (must not be, contain or lie inside an input)")
    p.add_argument("--labels", help="its labels (instance ids, or binary with cell interior non-zero)")
    add_source(p, "raw")
    add_source(p, "labels")
    p.add_argument("--invert-labels", action="store_true", help="binary labels with membrane as foreground")
    p.add_argument(
        "--labels-ignore",
        type=int,
        metavar="VALUE",
        help="label value of unannotated pixels (sparse labels): no loss, no class, no metric there",
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="voxel size written to the OME-Zarr metadata (default: 1 1 1)",
    )
    p.add_argument(
        "--unit",
        default=VolumeConfig.model_fields["unit"].default,
        help="unit of the voxel size (an OME-NGFF unit)",
    )
    p.set_defaults(handler=_import)


def _add_weights(sub: Any) -> None:
    p = sub.add_parser(
        "weights", help="the paper's border weight map of an imported volume (in 3-D for model.dims 3)"
    )
    p.add_argument("data", help="an imported OME-Zarr with labels")
    p.add_argument("target", help="the weight-map OME-Zarr to write")
    p.add_argument(
        "--train-slices", help='slices that set the class balance, e.g. "0-19" (default: split.train)'
    )
    p.add_argument("--w0", type=float, help=f"weight of the border term (default {WEIGHTS.w0})")
    p.add_argument("--sigma", type=float, help=f"border term width in pixels (default {WEIGHTS.sigma})")
    p.add_argument(
        "--connectivity", type=int, choices=(1, 2), help="cells of binary labels: 1 = 4-, 2 = 8-nb"
    )
    p.add_argument(
        "--class-balance",
        metavar="JSON",
        help="take w_c from this class balance (unetflow class-balance) instead of --train-slices",
    )
    add_config(p)
    p.set_defaults(handler=_weights)


def _add_class_balance(sub: Any) -> None:
    p = sub.add_parser(
        "class-balance",
        help="the class weights w_c over the training pixels of every split source (JSON)",
        description="The class weights w_c over the annotated training pixels of every source of the "
        "config's split, checked (a source of one class, a split without annotation), as JSON for "
        "`unetflow weights --class-balance` of each volume.",
    )
    p.add_argument("target", help="the JSON to write")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="VOLUME=ZARR",
        required=True,
        help="an imported volume of the split by its name in the config; repeat for each training volume",
    )
    add_config(p)
    p.set_defaults(handler=_class_balance)


def _synthesize(args: argparse.Namespace) -> None:
    options = {
        "shape": list(args.shape),
        "seed": args.seed,
        "cell_diameter": args.cell_diameter,
        "mode": args.mode,
        "tilt": args.tilt,
    }
    steps.run_synthesize(
        raw=args.raw,
        labels=args.labels,
        options=SyntheticConfig.from_dict(options),
        voxel_size=args.voxel_size,
    )


def _download(args: argparse.Namespace) -> None:
    steps.run_download(source=args.source, target=args.target, sha256=args.sha256)


def _import(args: argparse.Namespace) -> None:
    volume: dict[str, Any] = {
        "raw": {"path": args.raw, "format": args.raw_format, "member": args.raw_member},
        "voxel_size": None if args.voxel_size is None else list(args.voxel_size),
        "unit": args.unit,
    }
    if args.labels is not None:
        volume["labels"] = {
            "path": args.labels,
            "format": args.labels_format,
            "member": args.labels_member,
            "invert": args.invert_labels,
            "ignore": args.labels_ignore,
        }
    elif args.labels_format or args.labels_member or args.invert_labels or args.labels_ignore is not None:
        raise InputError(
            "--labels-format, --labels-member, --invert-labels and --labels-ignore need --labels"
        )
    steps.run_import(
        raw=args.raw, labels=args.labels, target=args.target, volume=VolumeConfig.from_dict(volume)
    )


def _weights(args: argparse.Namespace) -> None:
    config = sections(args)
    given = {
        key: getattr(args, key) for key in ("w0", "sigma", "connectivity") if getattr(args, key) is not None
    }
    options = WeightsConfig.from_dict({**config.weights.dump(), **given})
    if args.class_balance is not None:
        if args.train_slices is not None:
            raise InputError("--class-balance and --train-slices both set w_c: give one")
        steps.run_weights(
            data=args.data,
            target=args.target,
            class_balance=args.class_balance,
            options=options,
            model=config.model,
        )
        return
    train_slices = args.train_slices if args.train_slices is not None else training_entry(config).train
    steps.run_weights(
        data=args.data, target=args.target, train_slices=train_slices, options=options, model=config.model
    )


def _class_balance(args: argparse.Namespace) -> None:
    config = sections(args)
    data = {}
    for item in args.data:
        name, _, path = item.partition("=")
        if not name or not path:
            raise InputError(
                f"--data {item!r}: give VOLUME=ZARR, e.g. --data stack1=results/data/stack1.zarr"
            )
        data[name] = path
    steps.run_class_balance(data=data, split=config.split, target=args.target)
