"""Logging set-up shared by the CLI and the workflow scripts: one clear line per event, to stderr."""

from __future__ import annotations

import logging
import sys
import warnings


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
