"""How numbers, durations and slice lists are written on the report (the templates' filters)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def number(value: Any) -> float:
    """A value read from a file as a float; NaN where it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def format_value(value: Any) -> str:
    """A metric value as shown on the page: 4 decimals, 6 below 0.001 (the paper's warping error), n/a."""
    value = number(value)
    if not math.isfinite(value):
        return "n/a"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.6f}"
    return f"{value:.4f}"


def format_seconds(seconds: float) -> str:
    """A duration for people: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def slice_ranges(indices: Iterable[int]) -> str:
    """Sorted slice indices written compactly: [0, 1, 2, 5] -> '0-2, 5'."""
    values = sorted(set(indices))
    if not values:
        return "none"
    parts: list[str] = []
    start = prev = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}\u2013{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)
