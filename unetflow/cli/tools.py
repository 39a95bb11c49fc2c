"""Tools around the workflow: the config's schema and the SLURM profile."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unetflow import profiles
from unetflow.atomic import atomic_path
from unetflow.config.schema import schema_yaml


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser(
        "schema", help="print the config's JSON schema (as workflow/schemas/config.schema.yaml)"
    )
    p.add_argument("--output", help="write it to this file instead of printing it")
    p.set_defaults(handler=_schema)

    p = sub.add_parser(
        "install-profile",
        help="install a Snakemake profile (slurm) so that `snakemake --profile slurm` finds it",
        description="Write a Snakemake profile template of unetflow into Snakemake's user profile folder "
        f"({profiles.user_profiles_dir()} here); an existing profile is left as it is unless --force.",
    )
    p.add_argument("name", nargs="?", default="slurm", help="the template (default: slurm)")
    p.add_argument(
        "--force", action="store_true", help="replace an existing profile (it is kept as <name>.old-<time>)"
    )
    p.add_argument(
        "--profiles-dir",
        help="install into this folder of profiles instead (e.g. /etc/xdg/snakemake, for every user)",
    )
    p.set_defaults(handler=_install_profile)


def _schema(args: argparse.Namespace) -> None:
    text = schema_yaml()
    if args.output is None:
        sys.stdout.write(text)
        return
    with atomic_path(args.output) as tmp:
        tmp.write_text(text)


def _install_profile(args: argparse.Namespace) -> None:
    installed = profiles.install_profile(args.name, profiles_dir=args.profiles_dir, force=args.force)
    if installed.previous is not None:
        print(f"moved the profile that was there to {installed.previous}")
    print(
        f"installed the Snakemake profile {args.name!r} at {installed.path}: set your account and "
        f"partitions in its config.yaml and partitions.yaml, then run: snakemake --profile {args.name}"
    )
