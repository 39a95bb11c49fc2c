"""Which shards of a prediction are complete: a journal per block group, checked against the data.

Each job appends one line per shard once both of its files are on disk: the shard's number and the byte
size of its probability and segmentation files (0 where a shard has no file: no data there, or all fill
value). The journals live beside the prediction (`<volume>.progress/`), not inside its Zarr hierarchy, and
a shard counts as complete only while its files still exist with the recorded sizes, so a deleted or
truncated file makes the next run redo that shard. A line cut short by a kill is ignored.

On an object store (a prediction at an s3:// or gs:// URL) there is no append: each entry is an empty
object whose key is the line (`<volume>.progress/<group>.tsv/<level>.<shard>/<size>.<size>`, the shard's
earlier entries deleted once it is stored; unetflow.stores.journal, which the segmentation's journals use
too), so one listing reads a journal; a PUT is all or nothing, so a killed job leaves no partial entry, and
a shard's objects are only taken for complete while their sizes are the recorded ones (one listing of each
array's shards).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from unetflow.errors import InputError
from unetflow.layout import prediction_progress
from unetflow.predict.plan import PredictionPlan, read_plan
from unetflow.stores import Location
from unetflow.stores import journal as journals

SEGMENTATION = "segmentation"
"""The labels image of a prediction holding its thresholded segmentation."""
INSTANCES = "instances"
"""The labels image holding the segmentation's connected components (finalize with instances)."""
ARRAYS = ("{level}", f"labels/{SEGMENTATION}/{{level}}")
"""The arrays of a prediction at one pyramid level, in the order of the journal's size columns."""
Recorder = Callable[["Entry"], None]
WIDTH = 2 + len(ARRAYS)
"""Fields of a journal record: level, shard, and a size per array."""
HEAD = 2
"""Fields that name what a record is about: the level and the shard."""


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

    def record(self) -> tuple[int, ...]:
        """The journal record of this entry: level, shard, sizes."""
        return (self.level, self.shard, *self.sizes)

    def line(self) -> str:
        """The journal line of this entry."""
        return "\t".join(str(v) for v in self.record()) + "\n"


def _entry(record: tuple[int, ...]) -> Entry:
    level, shard, *sizes = record
    return Entry(shard=shard, sizes=tuple(sizes), level=level)


def read_journal(path: Path | Location) -> dict[tuple[int, int], Entry]:
    """Complete lines of a journal by (level, shard); the last line for a shard wins (on an object store,
    where entries are keys of one listing, the largest key of a shard does)."""
    entries = (_entry(record) for record in journals.read_records(Location.of(path), WIDTH))
    return {(entry.level, entry.shard): entry for entry in entries}


@contextlib.contextmanager
def journal(path: Path | Location) -> Iterator[Recorder]:
    """Append entries to a journal (unetflow.stores.journal): each is on disk (in the page cache) or on the
    store before the call returns, so a killed process keeps every entry it recorded."""
    with journals.appending(Location.of(path), head=HEAD) as record:
        yield lambda entry: record(entry.record())


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
