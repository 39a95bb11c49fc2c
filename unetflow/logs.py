"""Logging set-up shared by the CLI and the workflow scripts: one clear line per event, to stderr."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Progress bars redraw this often (seconds) when stderr is a log file rather than a terminal.
LOG_FILE_PROGRESS_INTERVAL = "30"


def setup_logging(level: int = logging.INFO) -> None:
    """Send log records (and warnings) to stderr, which the workflow redirects to each rule's log."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    if not sys.stderr.isatty():
        # tqdm reads TQDM_* defaults from the environment: a bar line every 30 s, not every step, in logs.
        os.environ.setdefault("TQDM_MININTERVAL", LOG_FILE_PROGRESS_INTERVAL)
