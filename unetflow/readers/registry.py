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
from unetflow.readers.n5 import ATTRIBUTES, N5Reader
from unetflow.readers.precomputed import INFO, PrecomputedReader
from unetflow.readers.tiff import TiffReader
from unetflow.readers.zarrstore import MARKERS, ZarrReader
from unetflow.stores import Location, StoreOptions, is_url

READERS: tuple[type[Volume], ...] = (
    Hdf5Reader,
    ZarrReader,
    N5Reader,
    PrecomputedReader,
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
        how += ", also from a URL" if reader.remote else ""
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


PRECOMPUTED_PREFIX = "precomputed://"
"""Neuroglancer's way of naming a precomputed source: precomputed://gs://bucket/path."""


def split_source(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """A source's address without neuroglancer's `precomputed://` prefix, and the format that prefix names."""
    text = os.fspath(path)
    if text.lower().startswith(PRECOMPUTED_PREFIX):
        return text[len(PRECOMPUTED_PREFIX) :], PrecomputedReader.name
    return text, None


def remote_readers() -> tuple[type[Volume], ...]:
    """The readers that read a URL in place."""
    return tuple(reader for reader in READERS if reader.remote)


def detect_url_format(location: Location) -> str:
    """The format of the volume at a URL: its suffix's, else the one whose marker object is there."""
    by_suffix = format_from_suffix(location.name)
    if by_suffix is not None:
        return by_suffix
    markers = {name: ZarrReader.name for name in MARKERS}
    markers.update({ATTRIBUTES: N5Reader.name, INFO: PrecomputedReader.name})
    for marker, name in markers.items():
        if (location / marker).is_file():
            return name
    if not location.listdir():
        raise location.missing_error("volume")
    names = ", ".join(reader.name for reader in remote_readers())
    raise InputError(
        f"{location.display}: no Zarr, N5 or precomputed metadata found there (zarr.json, .zgroup, "
        f"attributes.json, info). Fix: point to the volume's folder, or name its format ({names})"
    )


def format_from_suffix(path: str | os.PathLike[str]) -> str | None:
    """The format a path's suffix names (for a file not there yet, such as a pending download), or None."""
    text, named = split_source(path)
    if named is not None:
        return named
    suffix = Path(text.rstrip("/")).suffix.lower()
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
    options: StoreOptions | None = None,
) -> Volume:
    """Open the (z, y, x) volume at `path` (or a URL) lazily with its format's reader (else inferred).

    `member` is a path inside a container (HDF5, Zarr, N5); `level` a multiscale level (index, path or
    precomputed scale key); `options` how to reach a URL's store (anon, endpoint_url, profile).
    """
    text, named = split_source(path)
    format = format or named
    if is_url(text):
        location = Location(text, options)
        if not location.is_local:
            return _open_url(location, format=format, member=member, level=level)
        text = str(location.path)
    target = Path(text)
    reader = reader_for(format) if format is not None else None
    if not target.exists():
        raise InputError(f"{target}: no such file or folder; check the path in the config")
    if reader is None:
        reader = reader_for(detect_format(target))
    return reader(target, **_reader_options(reader, target, member, level))


def _joined(labels: list[str]) -> str:
    """ "A, B and C"."""
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _reader_options(
    reader: type[Volume], target: object, member: str | None, level: int | str | None
) -> dict[str, object]:
    """The member and level a reader takes; one it does not take is an InputError naming it."""
    if member is not None and not reader.takes_member:
        takers = _joined([r.label for r in READERS if r.takes_member])
        raise InputError(
            f"{target}: member {member!r} only applies to {takers} containers, this is {reader.label}. "
            "Fix: drop member"
        )
    if level is not None and not reader.takes_level:
        takers = _joined([r.label for r in READERS if r.takes_level])
        raise InputError(
            f"{target}: level {level!r} only applies to {takers} multiscale images, this is {reader.label}. "
            "Fix: drop level"
        )
    options: dict[str, object] = {}
    if reader.takes_member:
        options["member"] = member
    if reader.takes_level:
        options["level"] = level
    return options


def _open_url(
    location: Location, *, format: str | None, member: str | None, level: int | str | None
) -> Volume:
    """Open a volume at a URL in place with a reader that reads URLs (else an InputError saying how)."""
    reader = reader_for(format if format is not None else detect_url_format(location))
    if not reader.remote:
        names = ", ".join(r.name for r in remote_readers())
        raise InputError(
            f"{location.display}: {reader.label} is not read from a URL in place (only {names} are). Fix: "
            "give it as url + sha256 to download it (http, https, file), or convert it to OME-Zarr"
        )
    return reader(location, options=location.options, **_reader_options(reader, location, member, level))
