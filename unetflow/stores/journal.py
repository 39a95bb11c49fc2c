"""Journals of finished work, on a file system or an object store: records of whole numbers, each stored
before the call that records it returns, read back whole; a record cut short by a kill never counts.

The prediction's shard journals (unetflow.predict.progress) and the segmentation's block journals
(unetflow.segment.store) are both such journals. A record's first `head` fields say what it is about (a
shard, a block), the others what was found (file sizes, a fragment count); the last record about a thing
wins.

On a file system a journal is a file of tab-separated lines, appended and flushed record by record; a line
cut short by a kill (no newline at its end) is ignored, and the next writer ends it first. On an object
store there is no append: each record is an empty object whose key is the record, `<journal>/<head
fields>/<other fields>` (fields joined by dots), so one listing reads a journal; a PUT is all or nothing,
so a killed job leaves no partial record, and a record's earlier versions (the same head) are deleted once
it is stored. Many records at once (a sparse volume's blocks without data) are one object
`<journal>/many/<first head>.<count>` holding their lines: one PUT, not one per record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

from unetflow.stores.location import Location

Record = tuple[int, ...]
"""One record: whole numbers, what it is about first."""
Recorder = Callable[[Record], None]
MANY = "many"
"""Folder of a journal on an object store holding the objects of many records each."""


def parse(fields: Sequence[str], width: int) -> Record | None:
    """The record of `width` fields (None when they are not `width` whole numbers: no whole record)."""
    if len(fields) != width or not all(field.isdigit() for field in fields):
        return None
    return tuple(int(field) for field in fields)


def _lines(text: str, width: int) -> list[Record]:
    """The complete records of a journal's text, in order (a last line without its newline is cut short)."""
    found = []
    for line in text.splitlines(keepends=True):
        record = parse(line.rstrip("\n").split("\t"), width) if line.endswith("\n") else None
        if record is not None:
            found.append(record)
    return found


def _text(records: Sequence[Record]) -> str:
    return "".join("\t".join(str(value) for value in record) + "\n" for record in records)


def object_key(record: Record, head: int) -> str:
    """A record as the key of its object in a journal on an object store: `<head fields>/<others>`."""
    return ".".join(map(str, record[:head])) + "/" + ".".join(map(str, record[head:]))


def read_records(place: Location, width: int) -> list[Record]:
    """Every complete record of the journal at `place` ([] where there is none): a file's lines in order;
    on an object store the objects of many records first, then the others by key (one listing)."""
    if place.is_local:
        path = place.path
        return _lines(path.read_text(), width) if path.is_file() else []
    found: list[Record] = []
    names = sorted(place.sizes())
    for name in names:
        if name.startswith(f"{MANY}/"):
            found.extend(_lines((place / name).read_text(), width))
    for name in names:
        record = parse(name.replace("/", ".").split("."), width)
        if record is not None and not name.startswith(f"{MANY}/"):
            found.append(record)
    return found


@contextlib.contextmanager
def _appending_file(place: Location) -> Iterator[Callable[[str], None]]:
    """Append text to a journal file, flushed per call and synced at the end (one fsync per record cost
    ~0.1 s here); a line an earlier writer's kill cut short is ended first (it stays incomplete)."""
    path = place.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")

        def write(text: str) -> None:
            handle.write(text.encode())
            handle.flush()

        try:
            yield write
        finally:
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def appending(place: Location, *, head: int) -> Iterator[Recorder]:
    """Record into the journal at `place`: each record is stored (a file's page cache, or the store) before
    the call returns, so a killed process keeps every record it made."""
    if place.is_local:
        with _appending_file(place) as write:
            yield lambda record: write(_text([record]))
        return

    def put(record: Record) -> None:
        key = place / object_key(record, head)
        key.write_bytes(b"")
        for stale in key.parent.listdir():
            if stale != key.name:
                (key.parent / stale).unlink()

    yield put


def append_all(place: Location, records: Sequence[Record], *, head: int) -> None:
    """Record many records at once: one write (and sync) of a file, or one object on a store."""
    if not records:
        return
    if place.is_local:
        with _appending_file(place) as write:
            write(_text(records))
        return
    name = f"{MANY}/" + ".".join(map(str, records[0][:head])) + f".{len(records)}"
    (place / name).write_text(_text(records))
