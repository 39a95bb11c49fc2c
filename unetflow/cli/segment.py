"""The segment subcommand: boundaries to objects, one instance segmentation of a whole volume."""

from __future__ import annotations

import argparse
from typing import Any

from unetflow.cli.options import add_config, format_help, sections
from unetflow.config.model import FORMAT_NAMES, OutputConfig
from unetflow.errors import InputError
from unetflow.steps import segment as segment_steps
from unetflow.steps.common import output_place


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser(
        "segment",
        help="instance segmentation of a probability volume: one id per cell or neurite (resumable)",
        description="Fragments per block (a seeded watershed with a halo), one region graph of the whole "
        "volume (contacts across block faces included), one agglomeration, a label image written block by "
        "block: OME-NGFF 0.5, uint64 ids, 0 = no object, with a pyramid. Killed at any step, the same "
        "command finishes it with the same ids. Options default to the config's segment section.",
    )
    p.add_argument(
        "probability",
        help="a unetflow prediction (its foreground probability at level 0) or any probability volume the "
        "readers read (Zarr, OME-Zarr, N5, HDF5, TIFF)",
    )
    p.add_argument("target", help="the label image (OUT.zarr) to write or resume")
    p.add_argument(
        "--boundary",
        action="store_true",
        help="the volume holds boundary probability (1 = membrane), e.g. ilastik",
    )
    p.add_argument("--block-shape", nargs=3, type=int, metavar=("Z", "Y", "X"), help="blocks of the steps")
    p.add_argument("--halo", nargs=3, type=int, metavar=("Z", "Y", "X"), help="voxels read beyond each face")
    p.add_argument("--mode", choices=("auto", "2d", "3d"), help="fragments per slice (2d) or in 3-D")
    p.add_argument("--method", choices=("mean", "multicut", "mutex"), help="agglomeration of the graph")
    p.add_argument("--threshold", type=float, help="mean boundary at which two regions stay apart")
    p.add_argument("--seed-threshold", type=float, help="boundary probability from which seeds are cut")
    p.add_argument("--block-groups", type=int, help="independent groups of blocks (for --group)")
    p.add_argument("--max-edges", type=int, help="largest graph agglomerated in one pass (else two levels)")
    p.add_argument("--group", type=int, help="only this block group's fragments and graph")
    p.add_argument(
        "--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"), help="override the volume's own"
    )
    p.add_argument("--format", choices=FORMAT_NAMES, metavar="FORMAT", help=f"input format. {format_help()}")
    p.add_argument("--member", metavar="PATH", help="HDF5 dataset or path inside a Zarr or N5 store")
    p.add_argument("--level", help="multiscale level of an OME-Zarr or N5 image (default: full resolution)")
    add_config(p)
    p.set_defaults(handler=_segment)


OPTIONS = {
    "block_shape": "block_shape",
    "halo": "halo",
    "mode": "mode",
    "method": "method",
    "threshold": "threshold",
    "seed_threshold": "seed_threshold",
    "block_groups": "block_groups",
    "max_edges": "max_edges",
}


def _segment(args: argparse.Namespace) -> None:
    config = sections(args)
    given = {key: getattr(args, name) for name, key in OPTIONS.items() if getattr(args, name) is not None}
    options = type(config.segment).from_dict({**config.segment.dump(), **given})
    level: int | str | None = args.level
    if isinstance(level, str) and level.isdigit():
        level = int(level)
    plain = args.format is None and args.member is None
    prediction = plain and _is_prediction(args.probability, config.predict.output)
    source = {
        "format": args.format,
        "member": args.member,
        "level": 0 if prediction and level is None else level,
    }
    segment_steps.run_segment(
        probability=args.probability,
        target=args.target,
        options=options,
        boundary=args.boundary,
        group=args.group,
        source=source,
        voxel_size=args.voxel_size,
        summary=args.target.removesuffix("/").removesuffix(".zarr") + ".json",
        output=config.predict.output,
    )


def _is_prediction(probability: str, output: OutputConfig | None) -> bool:
    """Whether `probability` is an OME-Zarr with a level 0 (a unetflow prediction: its foreground
    probability is read there), at a path or under predict.output (a URL the readers take in another way,
    precomputed://, is none)."""
    try:
        return (output_place(probability, output) / "0").exists()
    except InputError:
        return False
