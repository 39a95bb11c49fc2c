"""The registry of input formats: one reader class each, the only list of names, aliases and suffixes.

The config schema's `format` enum, the CLI help of `--format` and every error that lists formats derive
from it. Detection tries the readers in order: files by suffix, Zarr and N5 folders by suffix or marker files,
and any other folder is a folder of slices.
"""

from __future__ import annotations

import os
from pathlib import Path

from unetflow.errors import InputError
from unetflow.readers.base import Volume
from unetflow.readers.folder import SliceFolderReader
from unetflow.readers.hdf5 import Hdf5Reader
from unetflow.readers.image import ImageReader
from unetflow.readers.n5 import N5Reader
from unetflow.readers.tiff import TiffReader
from unetflow.readers.zarrstore import ZarrReader

READERS: tuple[type[Volume], ...] = (
    Hdf5Reader,
    ZarrReader,
    N5Reader,
    TiffReader,
    ImageReader,
    SliceFolderReader,
)
"""Every reader, in detection order (no two claim the same path; the slice folder takes any folder)."""


def format_names(*, aliases: bool = False) -> tuple[str, ...]:
    """The formats' names (for the config schema's enum); with `aliases`, every accepted spelling too."""
    names = [reader.name for reader in READERS]
    if aliases:
        names += [alias for reader in READERS for alias in reader.aliases]
    return tuple(names)


def describe_formats() -> str:
    """One line per format: name, aliases, what it reads and whether it is read in place or imported."""
    lines = []
    for reader in READERS:
        also = f" (also: {', '.join(reader.aliases)})" if reader.aliases else ""
        how = "read in place" if reader.chunked else "imported"
        lines.append(f"{reader.name}{also}: {reader.description} [{how}]")
    return "\n".join(lines)


def reader_for(name: str) -> type[Volume]:
    """The reader class of a format name or alias (any case), or an InputError listing the names."""
    wanted = str(name).strip().lower()
    for reader in READERS:
        if wanted == reader.name or wanted in reader.aliases:
            return reader
    raise InputError(
        f"unknown format {name!r}; use one of {', '.join(format_names())} (or leave it unset to infer it "
        f"from the path). Formats:\n{describe_formats()}"
    )


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of an existing `path` from its suffix or, for a folder, its marker files."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"{target}: no such file or folder; check the path in the config")
    for reader in READERS:
        if reader.detect(target):
            return reader.name
    suffix = target.suffix.lower()
    raise InputError(
        f"{target}: unknown format (suffix {suffix or 'none'!r}); supported:\n{describe_formats()}\n"
        f"Convert the file or name its format explicitly (format: {' | '.join(format_names())})"
    )


def format_from_suffix(path: str | os.PathLike[str]) -> str | None:
    """The format a path's suffix names (for a file not there yet, such as a pending download), or None."""
    suffix = Path(path).suffix.lower()
    for reader in READERS:
        if suffix and suffix in reader.suffixes:
            return reader.name
    return None


def open_input(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    member: str | None = None,
    level: int | str | None = None,
) -> Volume:
    """Open the (z, y, x) volume at `path` lazily with its format's reader (inferred unless `format`).

    `member` is a path inside a container (HDF5, Zarr, N5); `level` a multiscale level (index or path).
    """
    target = Path(path)
    reader = reader_for(format) if format is not None else None
    if not target.exists():
        raise InputError(f"{target}: no such file or folder; check the path in the config")
    if reader is None:
        reader = reader_for(detect_format(target))
    if member is not None and not reader.takes_member:
        takers = " and ".join(r.label for r in READERS if r.takes_member)
        raise InputError(
            f"{target}: member {member!r} only applies to {takers} containers, this is {reader.label}. "
            "Fix: drop member"
        )
    if level is not None and not reader.takes_level:
        takers = " and ".join(r.label for r in READERS if r.takes_level)
        raise InputError(
            f"{target}: level {level!r} only applies to {takers} multiscale images, this is {reader.label}. "
            "Fix: drop level"
        )
    options = {}
    if reader.takes_member:
        options["member"] = member
    if reader.takes_level:
        options["level"] = level
    return reader(target, **options)
