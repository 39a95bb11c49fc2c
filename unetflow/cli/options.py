"""What several subcommands share: config files, input sources, the split entry a one-volume command uses."""

from __future__ import annotations

import argparse

from unetflow.config.load import load_config_files
from unetflow.config.model import FORMAT_NAMES, Config
from unetflow.config.split import SplitConfig
from unetflow.errors import InputError
from unetflow.readers import describe_formats


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="a unetflow config file (as config.yaml); repeat to merge several, later ones win",
    )


def format_help() -> str:
    """The formats, from the registry of readers (the one list of formats)."""
    return "Formats: " + "; ".join(describe_formats().splitlines())


def add_source(parser: argparse.ArgumentParser, role: str) -> None:
    prefix = "" if role == "raw" else "labels-"
    parser.add_argument(
        f"--{prefix}format",
        dest=f"{role}_format",
        choices=FORMAT_NAMES,
        metavar="FORMAT",
        help=f"format of the {role} input (default: inferred from the path). {format_help()}",
    )
    parser.add_argument(
        f"--{prefix}member",
        dest=f"{role}_member",
        metavar="PATH",
        help=f"HDF5 dataset or path inside a Zarr store of the {role} input",
    )


def sections(args: argparse.Namespace) -> Config:
    return load_config_files(getattr(args, "config", []))


def training_entry(config: Config) -> SplitConfig:
    """The split entry a one-volume command (weights, train) takes its slices from: the first that trains."""
    entries = config.split_entries()
    entry = next((item for item in entries if item.train not in ("", [])), None)
    if entry is None:
        raise InputError("the config's split names no training slices: give --train-slices or a split")
    return entry
