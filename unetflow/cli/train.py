"""The train subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unetflow.cli.options import add_config, sections, training_entry
from unetflow.config.split import SplitConfig
from unetflow.errors import InputError
from unetflow.layout import training_outputs
from unetflow.steps import train as steps


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser("train", help="train (or resume) the U-Net")
    p.add_argument("data", help="an imported OME-Zarr with labels")
    p.add_argument("weights", help="its weight-map OME-Zarr")
    p.add_argument("output", help="the best checkpoint to write (.pt)")
    p.add_argument("--workdir", help="resumable checkpoints (default: checkpoints/ beside the output)")
    p.add_argument("--train-slices", help='training slices (default: the config\'s split.train), e.g. "0-19"')
    p.add_argument("--val-slices", help="validation slices (default: the config's split.val)")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads (default 2), shared by the processes of train.gpus or train.cpu_processes",
    )
    add_config(p)
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> None:
    config = sections(args)
    output = Path(args.output)
    entry = training_entry(config)
    split = SplitConfig.from_dict(
        {
            "volume": entry.volume,
            "region": None if entry.region is None else entry.region.dump(),
            "train": args.train_slices if args.train_slices is not None else entry.train,
            "val": args.val_slices if args.val_slices is not None else entry.val,
        }
    )
    init = config.train.init_from
    if init is not None and init.path is None:
        raise InputError(
            f"train.init_from {init.url}: the train command takes a local file; download it (unetflow "
            "download) and give its path"
        )
    step_log, val_log, workdir = training_outputs(output)
    steps.run_train(
        data={entry.volume: args.data},
        weights={entry.volume: args.weights},
        output=str(output),
        step_log=step_log,
        val_log=val_log,
        workdir=args.workdir or workdir,
        model=config.model,
        train=config.train,
        split=split,
        init_from=None if init is None else init.path,
        threads=args.threads,
    )
