"""Which shards of a prediction are complete: a journal per block group, checked against the data.

Each job appends one line per shard once both of its files are on disk: the shard's number and the byte
size of its probability and segmentation files (0 where a shard has no file: no data there, or all fill
value). The journals live beside the prediction (`<volume>.progress/`), not inside its Zarr hierarchy, and
a shard counts as complete only while its files still exist with the recorded sizes, so a deleted or
truncated file makes the next run redo that shard. A line cut short by a kill is ignored.

On an object store (a prediction at an s3:// or gs:// URL) there is no append: each entry is an empty
object whose key is the line (`<volume>.progress/<group>.tsv/<level>.<shard>/<size>.<size>`, the shard's
earlier entries deleted once it is stored), so one listing reads a journal; a PUT is all or nothing, so a
killed job leaves no partial entry, and a shard's objects are only taken for complete while their sizes are
the recorded ones (one listing of each array's shards).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from unetflow.errors import InputError
from unetflow.layout import prediction_progress
from unetflow.predict.plan import PredictionPlan, read_plan
from unetflow.stores import Location

SEGMENTATION = "segmentation"
"""The labels image of a prediction holding its thresholded segmentation."""
INSTANCES = "instances"
"""The labels image holding the segmentation's connected components (finalize with instances)."""
ARRAYS = ("{level}", f"labels/{SEGMENTATION}/{{level}}")
"""The arrays of a prediction at one pyramid level, in the order of the journal's size columns."""
Recorder = Callable[["Entry"], None]


Target = str | Path | Location


def journal_folder(target: Target) -> Location:
    """The folder of a prediction's journals (beside it, outside its Zarr hierarchy)."""
    place = Location.of(target)
    return Location(prediction_progress(place.url), place.options)


def journal_path(target: Target, group: int | str) -> Location:
    """The journal of one block group (or "pyramid" for the finalisation's levels)."""
    return journal_folder(target) / f"{group}.tsv"


def group_summary_path(target: Target, group: int | str) -> Location:
    """What predicting one block group did (blocks, seconds), beside its journal."""
    return journal_folder(target) / f"{group}.json"


@dataclass(frozen=True)
class Entry:
    """A completed shard: its number, and the byte size of each array's file (0: no file)."""

    shard: int
    sizes: tuple[int, ...]
    level: int = 0

    def line(self) -> str:
        """The journal line of this entry."""
        return "\t".join(str(v) for v in (self.level, self.shard, *self.sizes)) + "\n"

    def key(self) -> str:
        """The entry as an object key of a journal on an object store: `<level>.<shard>/<size>.<size>`."""
        return f"{self.level}.{self.shard}/" + ".".join(str(v) for v in self.sizes)


def _parsed(parts: list[str]) -> Entry | None:
    """The entry of a line's or key's fields (None when it is not a whole entry)."""
    if len(parts) != 2 + len(ARRAYS) or not all(p.isdigit() for p in parts):
        return None
    level, shard, *sizes = (int(p) for p in parts)
    return Entry(shard=shard, sizes=tuple(sizes), level=level)


def read_journal(path: Path | Location) -> dict[tuple[int, int], Entry]:
    """Complete lines of a journal by (level, shard); the last line for a shard wins (on an object store,
    where entries are keys of one listing, the largest key of a shard does)."""
    entries: dict[tuple[int, int], Entry] = {}
    place = Location.of(path)
    if not place.is_local:
        for name in sorted(place.sizes()):
            entry = _parsed(name.replace("/", ".").split("."))
            if entry is not None:
                entries[(entry.level, entry.shard)] = entry
        return entries
    path = place.path
    if not path.is_file():
        return entries
    for line in path.read_text().splitlines(keepends=True):
        parts = line.rstrip("\n").split("\t")
        if not line.endswith("\n") or len(parts) != 2 + len(ARRAYS) or not all(p.isdigit() for p in parts):
            continue  # cut short by a kill
        level, shard, *sizes = (int(p) for p in parts)
        entries[(level, shard)] = Entry(shard=shard, sizes=tuple(sizes), level=level)
    return entries


@contextlib.contextmanager
def journal(path: Path | Location) -> Iterator[Recorder]:
    """Append entries to a journal: each is on disk (in the page cache) before the call returns, so a killed
    process keeps every entry it recorded; synced once at the end (one fsync per entry cost ~0.1 s here,
    and the shard files themselves are not synced by Zarr either). On an object store each entry is one
    PUT of an empty object named by the entry, stored before the call returns."""
    place = Location.of(path)
    if not place.is_local:

        def put(entry: Entry) -> None:
            key = place / entry.key()
            key.write_bytes(b"")
            for stale in key.parent.listdir():
                if stale != key.name:
                    (key.parent / stale).unlink()

        yield put
        return
    path = place.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")  # end a line cut short by a kill (it stays incomplete)

        def record(entry: Entry) -> None:
            handle.write(entry.line().encode())
            handle.flush()

        try:
            yield record
        finally:
            handle.flush()
            os.fsync(handle.fileno())


class ShardFiles:
    """Where the shard files of a prediction's arrays at one pyramid level lie, and their sizes.

    unetflow writes its outputs with the default chunk keys of each Zarr version: "c/z/y/x" on v3, "z/y/x"
    on v2 (dimension separator "/"), so the path of a shard follows from its grid coordinates.
    """

    def __init__(self, target: Target, level: int = 0) -> None:
        self.target = Location.of(target)
        self.arrays = [name.format(level=level) for name in ARRAYS]
        self.prefix = ("c",) if (self.target / "zarr.json").is_file() else ()

    def path(self, array: int, index: tuple[int, int, int]) -> Path | Location:
        """The file (a Path) or object (a Location) of shard `index` (grid coordinates) of array `array`."""
        place = self.target / "/".join((self.arrays[array], *self.prefix, *(str(i) for i in index)))
        return place.path if place.is_local else place

    def clear(self, index: tuple[int, int, int]) -> None:
        """Delete every array's file of shard `index` before it is written again, and what a write of it that
        was killed left behind (Zarr writes `<file>.<random>.partial` and renames it when complete; an
        object store shows no object before all of it has arrived)."""
        for array in range(len(self.arrays)):
            place = Location.of(self.path(array, index))
            place.unlink()
            if not place.is_local:
                continue
            path = place.path
            if path.parent.is_dir():
                for partial in path.parent.glob(f"{path.name}.*.partial"):
                    partial.unlink(missing_ok=True)

    def sizes(self, index: tuple[int, int, int]) -> tuple[int, ...]:
        """Byte size of each array's file of shard `index` (0 where there is none)."""
        return tuple(Location.of(self.path(array, index)).size() or 0 for array in range(len(self.arrays)))

    def listed(self) -> Callable[[tuple[int, int, int]], tuple[int, ...]]:
        """Sizes of every shard by its grid index from one listing per array (an object store: no request
        per shard); on a file system, the stat of each file when asked."""
        if self.target.is_local:
            return self.sizes
        tables = []
        for array in self.arrays:
            folder = self.target / "/".join((array, *self.prefix))
            tables.append(folder.sizes())
        return lambda index: tuple(table.get("/".join(map(str, index)), 0) for table in tables)


def complete(
    target: Target,
    numbers: Iterable[int],
    index_of: Callable[[int], tuple[int, int, int]],
    *,
    entries: dict[tuple[int, int], Entry],
    level: int = 0,
) -> set[int]:
    """The shard numbers among `numbers` whose journal entry still matches the files on disk."""
    sizes = ShardFiles(target, level).listed()
    done = set()
    for number in numbers:
        entry = entries.get((level, number))
        if entry is not None and (not any(entry.sizes) or sizes(index_of(number)) == entry.sizes):
            done.add(number)  # a shard without data has no file to check
    return done


def group_entries(target: Target, groups: int) -> dict[tuple[int, int], Entry]:
    """Every block group's journal entries of a prediction, merged."""
    merged: dict[tuple[int, int], Entry] = {}
    for group in range(groups):
        merged.update(read_journal(journal_path(target, group)))
    return merged


def pending_shards(target: Target, plan: PredictionPlan, group: int) -> tuple[list[int], int]:
    """The shards of `group` not yet complete, and how many of its shards are (journal vs files)."""
    mine = plan.group_shards(group)
    entries = read_journal(journal_path(target, group))
    done = complete(target, mine, plan.grid.index, entries=entries)
    return [n for n in mine if n not in done], len(done)


def incomplete_groups(target: Target) -> dict[int, int]:
    """Block groups of a prediction with shards missing or changed on disk, and how many (empty: complete)."""
    plan = read_plan(target)
    missing = {}
    for group in range(plan.groups):
        pending, _ = pending_shards(target, plan, group)
        if pending:
            missing[group] = len(pending)
    return missing


def check_complete(target: Target) -> dict[str, int]:
    """Verify every shard of every group is complete on disk; the error names what is missing and the fix."""
    plan = read_plan(target)
    missing = incomplete_groups(target)
    if missing:
        listing = ", ".join(f"group {g}: {n} shard(s)" for g, n in sorted(missing.items()))
        raise InputError(
            f"prediction {target} is incomplete ({listing} missing or changed on disk); run the prediction "
            "again (the workflow redoes exactly those)"
        )
    return {"blocks": plan.grid.total_chunks, "shards": len(plan.grid), "voxels": math.prod(plan.shape)}
