"""Slice selections ("0-19", "0,3,5-7", lists): which slices train, validate and test.

Light on purpose (no dask, zarr or torch): the workflow imports it while parsing the Snakefile, once per job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from unetflow.errors import InputError

_RANGE = re.compile(r"(\d+)\s*(?:-\s*(\d+))?")


def select_slices(spec: str | int | Sequence[int] | None, n: int, *, what: str) -> list[int]:
    """Slice indices from a spec like "0-19", "0,3,5-7" (inclusive ranges) or a list; None means all.

    Returns sorted unique indices; an index outside 0..n-1 is an InputError naming `what` and `n`.
    """
    if n < 1:
        raise ValueError(f"{what}: the volume has no slices (n={n})")
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(n))
    ranges: list[tuple[int, int]] = []
    if isinstance(spec, str):
        for part in spec.split(","):
            match = _RANGE.fullmatch(part.strip())
            if match is None:
                raise InputError(
                    f"{what}: cannot read {spec!r} as slices; write indices and inclusive ranges such as "
                    "'0-19' or '0,3,5-7' (or a list of integers)"
                )
            low = int(match.group(1))
            high = int(match.group(2)) if match.group(2) is not None else low
            if high < low:
                raise InputError(f"{what}: range {part.strip()!r} runs backwards; write it as '{high}-{low}'")
            ranges.append((low, high))
    else:
        items = [spec] if isinstance(spec, int | np.integer) else list(spec)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | np.integer):
                raise InputError(f"{what}: {item!r} is not a slice index; use integers such as [0, 3, 5]")
            ranges.append((int(item), int(item)))
    for low, high in ranges:
        for index in (low, high):
            if not 0 <= index < n:
                raise InputError(
                    f"{what}: slice {index} is out of range; the volume has {n} slices (0-{n - 1}). "
                    f"Fix {what} in the config"
                )
    return sorted({i for low, high in ranges for i in range(low, high + 1)})
