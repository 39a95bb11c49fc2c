"""The `unetflow` command: one subcommand per workflow step, for use outside Snakemake.

Options that the workflow reads from config.yaml come from config files here too: `--config a.yaml
--config b.yaml` merges them over the defaults exactly as `snakemake --configfile a.yaml b.yaml` merges them
over config.yaml (unetflow.config.load.merge_config), so a step run by hand behaves like the same step in the
workflow. Command-line options override the files. Errors are one line that says what to fix; `--debug`
shows the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata

from unetflow.atomic import DISK_FULL
from unetflow.cli import ctc, data, predict, report, segment, tools, train
from unetflow.errors import InputError
from unetflow.logs import set_verbosity


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("unetflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="unetflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"unetflow {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    data.add_commands(sub)
    train.add_commands(sub)
    predict.add_commands(sub)
    segment.add_commands(sub)
    report.add_commands(sub)
    ctc.add_commands(sub)
    tools.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unetflow` command: 0 on success, 2 for bad input, 1 for other failures."""
    args = build_parser().parse_args(argv)
    set_verbosity(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    name = f"unetflow {args.step}"
    try:
        args.handler(args)
    except InputError as error:
        return _fail(name, str(error), 2)
    except KeyboardInterrupt:
        return _fail(name, "interrupted; no output was left half-written: run the same command again", 130)
    except OSError as error:
        if args.debug:
            raise
        if error.errno in DISK_FULL:
            return _fail(name, f"no space left on the device writing {error.filename or 'an output'}", 1)
        where = f" ({error.filename})" if error.filename else ""
        return _fail(name, f"{error.strerror or error}{where}; check the path and its permissions", 1)
    except MemoryError:
        return _fail(name, out_of_memory(args.step, gpu=False), 1)
    except Exception as error:
        if args.debug:
            raise
        if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), known by name
            return _fail(name, out_of_memory(args.step, gpu=True), 1)
        return _fail(name, f"unexpected {type(error).__name__}: {error} (rerun with --debug for details)", 1)
    return 0


MEMORY_ADVICE = {
    "synthesize": "make --shape smaller",
    "train": "lower train.tile or train.batch_size",
    "predict": "lower predict.memory_gb (or predict.batch_size, predict.workers)",
    "evaluate": "evaluate fewer slices at a time (--slices)",
}
"""What uses less memory in each step that can run out of it."""


def out_of_memory(step: str, *, gpu: bool) -> str:
    """The message for a step that ran out of (GPU) memory: what to lower, else a bigger machine."""
    where = "GPU memory" if gpu else "memory"
    advice = MEMORY_ADVICE.get(step)
    bigger = "a GPU with more memory" if gpu else "a machine with more memory"
    return f"out of {where}: {advice}, or use {bigger}" if advice else f"out of {where}: use {bigger}"


def _fail(name: str, message: str, code: int) -> int:
    print(f"{name}: error: {message}", file=sys.stderr)
    return code
