"""Logging set-up shared by the CLI and the workflow scripts: one clear line per event, to stderr."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

# Progress bars redraw this often (seconds) when stderr is a log file rather than a terminal.
LOG_FILE_PROGRESS_INTERVAL = 30.0


def bar_options() -> dict[str, Any]:
    """tqdm options for the current stderr: a line every 30 s in a log file, live redraws on a terminal."""
    return {} if sys.stderr.isatty() else {"mininterval": LOG_FILE_PROGRESS_INTERVAL}


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar on stderr that stays readable in a rule's log (see `bar_options`)."""
    return tqdm(iterable, **{**bar_options(), **kwargs})


_LEVEL = {"level": logging.INFO}


def set_verbosity(level: int) -> None:
    """The level every later `setup_logging` uses (the CLI's -v / --quiet)."""
    _LEVEL["level"] = level


def setup_logging(level: int | None = None) -> None:
    """Send log records (and warnings) to stderr, which the workflow redirects to each rule's log."""
    logging.basicConfig(
        level=_LEVEL["level"] if level is None else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
