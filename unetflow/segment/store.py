"""Where a segmentation's work lies and how its steps record what is done: beside the output, on the same
file system or object store.

`<out>.work/` (unetflow.layout.segmentation_work) holds the fragments (a Zarr array, one chunk per block),
one journal per step and block group (a record per finished block: its number and value, e.g. its fragment
count), each group's region-graph edges (`graph/<group>.npz`), the agglomeration's assignment of every
fragment to its object (`keys.npy`, `assignment.npy`, then `solve.json`, which marks them complete) and
what each run of a step did (`<step>/<group>.json`).

Everything is written whole under its final name or not at all: a file through a temporary name, an object
by one PUT (a store shows an object only once all of it has arrived); each block's chunk of the fragments
and of the label image is one object, written before its journal records it. The journals are
unetflow.stores.journal's, the prediction's kind: a line cut short by a kill is ignored, a record on a store
is an empty object. A step redoes exactly the blocks its journal does not list, and every block's result
depends only on the input and the plan, so a killed step run again gives the same ids.

On an object store (predict.output an s3:// or gs:// URL) the work folder lies there too, not on the
machine: every job (block groups on other machines, a new machine after a lost one) reads the fragments
and journals the others wrote, and the same command anywhere goes on where the last one stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from unetflow.atomic import atomic_path
from unetflow.layout import segmentation_work
from unetflow.stores import Location
from unetflow.stores import journal as journals

Recorder = Callable[[int, int], None]
Target = str | Path | Location
"""A segmentation: a path, or a Location (a URL with the options to reach its store)."""
FRAGMENTS_ARRAY = "fragments.zarr"


def work_folder(target: Target) -> Location:
    """The folder of a segmentation's work files (`<out>.work`, beside it)."""
    place = Location.of(target)
    return Location(segmentation_work(place.url), place.options)


def journal_path(target: Target, step: str, group: int) -> Location:
    """The journal of one step of one block group."""
    return work_folder(target) / step / f"{group}.tsv"


def read_journal(place: Location) -> dict[int, int]:
    """Complete records of a journal: block number -> value (the last record for a block wins)."""
    return {block: value for block, value in journals.read_records(place, 2)}


@contextlib.contextmanager
def journal(place: Location) -> Iterator[Recorder]:
    """Record (block, value) in a journal, each stored before the call returns."""
    with journals.appending(place, head=1) as record:
        yield lambda block, value: record((block, value))


def record_many(place: Location, blocks: list[int], value: int) -> None:
    """Record many blocks, all with `value`, in one write or object (the blocks without data of a sparse
    volume: a million of them cost one write, not a million)."""
    journals.append_all(place, [(block, value) for block in blocks], head=1)


def save_arrays(place: Location, **arrays: np.ndarray) -> None:
    """Write arrays to an .npz file or object, whole (complete under its name, or not there)."""
    if place.is_local:
        with atomic_path(place.path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        return
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    place.write_bytes(buffer.getvalue())


def load_arrays(place: Location) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by `save_arrays`."""
    source: Any = place.path if place.is_local else io.BytesIO(place.read_bytes())
    with np.load(source) as data:
        return {key: data[key] for key in data.files}


def save_array(place: Location, array: np.ndarray) -> None:
    """Write one array as an .npy file or object, whole."""
    if place.is_local:
        with atomic_path(place.path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
        return
    buffer = io.BytesIO()
    np.save(buffer, array)
    place.write_bytes(buffer.getvalue())


@contextlib.contextmanager
def local_copies(places: Sequence[Location]) -> Iterator[list[Location]]:
    """The files at `places` as local files for the duration: themselves on a file system, else copies
    downloaded once into a temporary folder (TMPDIR) that goes when the context ends (a step that reads a
    file several times, or maps it, fetches it once)."""
    if all(place.is_local for place in places):
        yield list(places)
        return
    with tempfile.TemporaryDirectory(prefix="unetflow-") as folder:
        copies = []
        for number, place in enumerate(places):
            if place.is_local:
                copies.append(place)
                continue
            local = Path(folder) / f"{number}-{place.name}"
            place.call(place.fs.get_file, place.fspath, str(local))
            copies.append(Location(local))
        yield copies


@contextlib.contextmanager
def mapped_array(place: Location) -> Iterator[np.ndarray]:
    """An .npy array memory-mapped (read only) from its file or a local copy of its object (an assignment
    of 10^8 fragments is 800 MB: mapped, a job reads only the pages it needs)."""
    with local_copies([place]) as (copy,):
        yield np.load(copy.path, mmap_mode="r")


def write_json(place: Location, payload: dict[str, Any]) -> None:
    """Write a JSON file or object, whole."""
    place.write_text(json.dumps(payload) + "\n")


def read_json(place: Location) -> dict[str, Any]:
    """A JSON file or object written by `write_json`."""
    return dict(json.loads(place.read_text()))


def create_fragments(target: Target, *, shape: tuple[int, ...], chunks: tuple[int, ...], level: int) -> None:
    """The empty fragments array of a segmentation (uint64, 0 = no fragment, one chunk per block)."""
    zarr.create_array(
        store=(work_folder(target) / FRAGMENTS_ARRAY).zarr_store(read_only=False),
        shape=shape,
        chunks=chunks,
        dtype="uint64",
        fill_value=0,
        compressors=zarr.codecs.ZstdCodec(level=level),
    )


def open_fragments(target: Target) -> zarr.Array:
    """The fragments array of a segmentation, to read and write."""
    place = work_folder(target) / FRAGMENTS_ARRAY
    return zarr.open_array(store=place.zarr_store(read_only=False), mode="r+")
