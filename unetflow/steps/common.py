"""What several steps share: writing a JSON result atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unetflow.atomic import atomic_path


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (indented, for people and diff tools)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
