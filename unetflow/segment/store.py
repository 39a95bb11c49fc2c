"""Where a segmentation's work lies and how its steps record what is done: journals beside the output.

`<out>.work/` holds the fragments (a Zarr array, one chunk per block, block-local ids), one journal per step
and block group (a line per finished block: its number and value, e.g. its fragment count; a line cut short
by a kill is ignored), each group's region-graph edges (`edges/<group>.npz`, written whole) and the
agglomeration's assignment of every fragment to its object (`assignment.npy`). A step redoes exactly the
blocks its journal does not list, and every block's result depends only on the input and the plan, so a
killed step run again gives the same ids.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from unetflow.atomic import atomic_path

Recorder = Callable[[int, int], None]


def record_many(path: Path, blocks: list[int], value: int) -> None:
    """Append one line per block, all with `value`, in one write (the blocks without data of a sparse
    volume: a million of them cost one write, not a million)."""
    if not blocks:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with journal(path) as record:
        del record
    with path.open("ab") as handle:
        handle.write("".join(f"{block}\t{value}\n" for block in blocks).encode())
        handle.flush()
        os.fsync(handle.fileno())


def work_folder(target: str | Path) -> Path:
    """The folder of a segmentation's work files (`<out>.work`, beside it)."""
    return Path(str(target).removesuffix("/").removesuffix(".zarr") + ".work")


def journal_path(target: str | Path, step: str, group: int) -> Path:
    """The journal of one step of one block group."""
    return work_folder(target) / step / f"{group}.tsv"


def read_journal(path: Path) -> dict[int, int]:
    """Complete lines of a journal: block number -> value (the last line for a block wins)."""
    found: dict[int, int] = {}
    if not path.is_file():
        return found
    for line in path.read_text().splitlines(keepends=True):
        parts = line.rstrip("\n").split("\t")
        if not line.endswith("\n") or len(parts) != 2 or not all(p.isdigit() for p in parts):
            continue  # cut short by a kill
        found[int(parts[0])] = int(parts[1])
    return found


@contextlib.contextmanager
def journal(path: Path) -> Iterator[Recorder]:
    """Append (block, value) lines to a journal, each flushed before the call returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")

        def record(block: int, value: int) -> None:
            handle.write(f"{block}\t{value}\n".encode())
            handle.flush()

        try:
            yield record
        finally:
            handle.flush()
            os.fsync(handle.fileno())


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays to an .npz file atomically (complete under its name, or not there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file written by `save_arrays`."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
