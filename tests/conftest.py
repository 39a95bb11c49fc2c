"""Shared fixtures: the real ISBI 2012 data beside the repo, and small deterministic inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The folder of the ISBI 2012 multi-page TIFFs (skips the test where it is absent)."""
    if not (ISBI / "train-volume.tif").exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    return ISBI
