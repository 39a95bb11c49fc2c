"""Shared fixtures: the real ISBI 2012 data beside the repo, and small deterministic inputs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import SLURM_STARTED

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
LONGEST_FIRST = ("test_slurm.py", "test_workflow.py", "test_faults.py", "test_ctc.py", "test_stores.py")
"""Files whose runs take minutes, started first: `make test`'s workers take whole files in collection order,
so the longest must not be the last to start."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of LONGEST_FIRST first, in that order; every file keeps its own tests' order."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The folder of the ISBI 2012 multi-page TIFFs (skips the test where it is absent)."""
    if not (ISBI / "train-volume.tif").exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    return ISBI


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the SLURM test cluster once every test has run (in the controller, under xdist), not when
    tests/test_slurm.py ends: Snakemake's SLURM plugin runs `scontrol show config` whenever Snakemake starts,
    which waits 9 s where SLURM is installed and slurmctld is down, and every later `snakemake` call of the
    other files would wait with it. Only the session that started it stops it (another pytest run beside
    this one, in another checkout, leaves it to its owner)."""
    if hasattr(session.config, "workerinput") or not SLURM_STARTED.exists():
        return
    if SLURM_STARTED.read_text().strip() != str(os.getpid()):
        return
    stop = ROOT / "tests" / "slurm" / "stop.sh"
    subprocess.run(["timeout", "-k", "5", "60", str(stop)], capture_output=True, check=False)
    SLURM_STARTED.unlink(missing_ok=True)
