"""List the chunk keys a store holds by walking only what exists on disk (os.scandir), never per slot.

A store with 10^6 chunk slots of which 5 are written costs a handful of directory reads: a flat layout
(`i.j.k` files in one folder) is one scandir, a nested layout (`i/j/k`) one scandir per existing folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path


def _index(name: str) -> int | None:
    return int(name) if name.isdigit() else None


def scan_flat(
    folder: Path, ndim: int, *, prefix: str = "", separator: str = "."
) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunk files `<prefix><i><sep><j>...` directly in `folder` (one scandir)."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return
    with entries:
        for entry in entries:
            name = entry.name
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split(separator)
            if len(parts) == ndim and all(part.isdigit() for part in parts) and entry.is_file():
                yield tuple(int(part) for part in parts)


def scan_nested(
    folder: Path, ndim: int, *, allowed: Mapping[int, range] | None = None
) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunk files `<folder>/<i>/<j>/...` (`ndim` levels), walking existing folders.

    `allowed` maps a level to the indices to keep there: folders outside it are not entered.
    """
    keep = allowed or {}

    def walk(path: str, level: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                index = _index(entry.name)
                if index is None or (level in keep and index not in keep[level]):
                    continue
                if level == ndim - 1:
                    if entry.is_file():
                        yield (*prefix, index)
                elif entry.is_dir():
                    yield from walk(entry.path, level + 1, (*prefix, index))

    if ndim < 1:
        return iter(())
    return walk(os.fspath(folder), 0, ())
