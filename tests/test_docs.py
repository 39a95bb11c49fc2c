"""The documentation says what is true: every file it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMED = re.compile(r"`((?:unetflow|tests|workflow|benchmarks|configs|profiles|envs|docs)/[A-Za-z0-9_./-]+)`")


def named_files(text: str) -> set[str]:
    """The repository paths a page names in backticks (templates such as `<step>` left out)."""
    return {path.rstrip("/") for path in NAMED.findall(text)}


def test_contributing_names_only_files_that_exist() -> None:
    names = named_files((ROOT / "docs" / "CONTRIBUTING.md").read_text())
    assert len(names) >= 15
    missing = sorted(name for name in names if not (ROOT / name).exists())
    assert missing == []
