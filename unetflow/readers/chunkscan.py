"""List the chunk keys a store holds by walking only what exists on disk, never by probing each slot.

A store with 10^6 chunk slots of which 5 are written costs a handful of directory reads: a flat layout
(`i.j.k` files in one folder) is one listing, a nested layout (`i/j/k`) one listing per existing folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path


def parse_keys(
    names: Iterable[str], ndim: int, *, prefix: str = "", separator: str = "."
) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunk keys among `names` (`<prefix><i><sep><j>...`; others are skipped)."""
    skip = len(prefix)
    for name in names:
        if name.startswith(prefix):
            parts = name[skip:].split(separator)
            if len(parts) == ndim and all(map(str.isdigit, parts)):
                yield tuple(map(int, parts))


def scan_flat(
    folder: Path, ndim: int, *, prefix: str = "", separator: str = "."
) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunk files `<prefix><i><sep><j>...` directly in `folder` (one listing)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    yield from parse_keys(names, ndim, prefix=prefix, separator=separator)


def scan_nested(
    folder: Path, ndim: int, *, allowed: Mapping[int, range] | None = None
) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunk files `<folder>/<i>/<j>/...` (`ndim` levels), walking existing folders.

    `allowed` maps a level to the indices to keep there: folders outside it are not entered.
    """
    keep = allowed or {}

    def walk(path: str, level: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if level == ndim - 1:
            try:
                names = os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return
            rows = keep.get(level)
            for name in names:
                if name.isdigit() and (rows is None or int(name) in rows):
                    yield (*prefix, int(name))
            return
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                if not entry.name.isdigit() or not entry.is_dir():
                    continue
                index = int(entry.name)
                if level not in keep or index in keep[level]:
                    yield from walk(entry.path, level + 1, (*prefix, index))

    if ndim < 1:
        return iter(())
    return walk(os.fspath(folder), 0, ())
