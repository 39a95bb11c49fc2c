"""Benchmark the input readers: listing stored chunks of huge sparse stores, and reading one region.

1. `Volume.stored_chunks()` of a 1000 x 32768 x 32768 uint8 array in 1 x 1024 x 1024 chunks (1,024,000
   chunk slots): sparse (5 chunks written) and dense (10^4 written), as Zarr v3 ('c/' keys), Zarr v2
   ('.' keys) and N5, each against the baseline of one `os.scandir` of a folder holding the same number
   of files (ratio = listing / baseline). The dense stores are made by writing one chunk with the
   format's own writer and copying its bytes to the other keys (same files, minutes faster).
2. Reading one 1024 x 1024 region (not chunk-aligned) of a 4 x 2048 x 2048 uint8 volume from each
   format through `unetflow.readers.open_input`, against reading the same region from an in-memory
   numpy array (ratio = reader / numpy). Files are in the OS page cache (warm); each repeat reads
   another slice so that no library cache holds the chunks.

Prints figures only; it asserts nothing about time.

    .venv/bin/python benchmarks/readers.py [--repeats R] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import tensorstore as ts
import tifffile
import zarr

from unetflow.readers import open_input

SHAPE = (1000, 32768, 32768)
CHUNK = (1, 1024, 1024)
SPARSE = [(0, 0, 0), (7, 3, 30), (250, 16, 2), (512, 31, 31), (999, 5, 17)]
DENSE = 10_000
REGION = (slice(300, 1324), slice(700, 1724))


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, the calls alternating so that machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def grid_keys(count: int) -> list[tuple[int, int, int]]:
    """The first `count` chunk grid positions in C order."""
    rows, cols = SHAPE[1] // CHUNK[1], SHAPE[2] // CHUNK[2]
    return [(i // (rows * cols), (i // cols) % rows, i % cols) for i in range(count)]


def zarr_store(path: Path, keys: list[tuple[int, int, int]], *, zarr_format: int) -> Path:
    """A Zarr array of SHAPE with the chunks at `keys` written (the first by zarr, the rest copied)."""
    array = zarr.create_array(str(path), shape=SHAPE, chunks=CHUNK, dtype="uint8", zarr_format=zarr_format)
    first = keys[0]
    array[tuple(slice(i * c, (i + 1) * c) for i, c in zip(first, CHUNK, strict=True))] = 1

    def chunk_file(key: tuple[int, int, int]) -> Path:
        return path / "c" / "/".join(map(str, key)) if zarr_format == 3 else path / ".".join(map(str, key))

    content = chunk_file(first).read_bytes()
    for key in keys[1:]:
        chunk_file(key).parent.mkdir(parents=True, exist_ok=True)
        chunk_file(key).write_bytes(content)
    return path


def n5_store(path: Path, keys: list[tuple[int, int, int]]) -> Path:
    """An N5 dataset of SHAPE (axes reversed on disk) with the blocks at `keys`, the first by tensorstore."""
    spec = {
        "driver": "n5",
        "kvstore": {"driver": "file", "path": os.fspath(path)},
        "metadata": {
            "dimensions": list(SHAPE[::-1]),
            "blockSize": list(CHUNK[::-1]),
            "dataType": "uint8",
            "compression": {"type": "gzip"},
        },
    }
    store = ts.open(spec, create=True, delete_existing=True).result().T
    first = keys[0]
    box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(first, CHUNK, strict=True))
    store[box].write(np.ones(CHUNK, np.uint8)).result()
    content = path.joinpath(*map(str, first[::-1])).read_bytes()
    for key in keys[1:]:
        target = path.joinpath(*map(str, key[::-1]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return path


def baseline_folder(folder: Path, count: int) -> Path:
    """A folder holding `count` empty files: one scandir of it is the baseline of a listing."""
    folder.mkdir()
    for i in range(count):
        (folder / str(i)).touch()
    return folder


def listing(work: Path, repeats: int) -> None:
    print(f"stored_chunks of a {' x '.join(map(str, SHAPE))} uint8 array, chunks {CHUNK}")
    print(
        f"({np.prod([s // c for s, c in zip(SHAPE, CHUNK, strict=True)]):,} chunk slots); median of {repeats}"
    )
    print(f"{'store':<28} {'written':>8} {'listed':>8} {'time ms':>9} {'scandir ms':>11} {'ratio':>7}")
    for label, keys in (("sparse", SPARSE), ("dense", grid_keys(DENSE))):
        baseline = baseline_folder(work / f"baseline-{label}", len(keys))
        stores = {
            "Zarr v3 (c/ nested)": zarr_store(work / f"{label}-v3.zarr", keys, zarr_format=3),
            "Zarr v2 ('.' flat)": zarr_store(work / f"{label}-v2.zarr", keys, zarr_format=2),
            "N5 (x/y/z nested)": n5_store(work / f"{label}.n5", keys),
        }
        for name, path in stores.items():
            volume = open_input(path)
            found = volume.stored_chunks()
            if found != set(keys):
                raise RuntimeError(f"{name}: listed {len(found or ())} chunks, expected {len(keys)}")
            seconds = interleaved_medians(
                {"list": volume.stored_chunks, "scandir": lambda folder=baseline: list(os.scandir(folder))},
                repeats,
            )
            print(
                f"{name:<28} {len(keys):>8} {len(found):>8} {seconds['list'] * 1e3:>9.3f} "
                f"{seconds['scandir'] * 1e3:>11.3f} {seconds['list'] / seconds['scandir']:>6.1f}x"
            )
        volume = open_input(stores["Zarr v3 (c/ nested)"])
        window = interleaved_medians(
            {"z": lambda volume=volume: volume.stored_chunks(z_range=(0, 8))}, repeats
        )
        print(f"{'  Zarr v3, z_range=(0, 8)':<28} {'':>8} {'':>8} {window['z'] * 1e3:>9.3f}")


def region_sources(work: Path, data: np.ndarray) -> dict[str, tuple[Path, dict[str, str]]]:
    """The volume written in every format: (path, open options)."""
    chunks = (1, 512, 512)
    sources: dict[str, tuple[Path, dict[str, str]]] = {}
    for name, options in {
        "Zarr v2 (blosc zstd)": {"zarr_format": 2},
        "Zarr v3 (zstd)": {},
        "Zarr v3 sharded 1x2048^2": {"shards": (1, 2048, 2048)},
    }.items():
        path = work / f"{name.split(' (')[0].replace(' ', '-')}-{len(sources)}.zarr"
        zarr.create_array(str(path), data=data, chunks=chunks, **options)
        sources[name] = (path, {})
    n5 = work / "region.n5"
    spec = {
        "driver": "n5",
        "kvstore": {"driver": "file", "path": os.fspath(n5)},
        "metadata": {
            "dimensions": list(data.shape[::-1]),
            "blockSize": list(chunks[::-1]),
            "dataType": "uint8",
            "compression": {"type": "gzip"},
        },
    }
    ts.open(spec, create=True).result().T.write(data).result()
    sources["N5 (gzip, tensorstore)"] = (n5, {})
    h5 = work / "region.h5"
    with h5py.File(h5, "w") as file:
        file.create_dataset("chunked", data=data, chunks=chunks, compression="gzip", compression_opts=4)
        file.create_dataset("contiguous", data=data)
    sources["HDF5 chunked (gzip)"] = (h5, {"member": "chunked"})
    sources["HDF5 contiguous"] = (h5, {"member": "contiguous"})
    tifffile.imwrite(work / "zlib.tif", data, compression="zlib", photometric="minisblack")
    tifffile.imwrite(work / "raw.tif", data, photometric="minisblack")
    sources["TIFF zlib (page by page)"] = (work / "zlib.tif", {})
    sources["TIFF uncompressed (mmap)"] = (work / "raw.tif", {})
    folder = work / "pngs"
    folder.mkdir()
    for z, plane in enumerate(data):
        iio.imwrite(folder / f"s{z}.png", plane)
    sources["PNG slice folder"] = (folder, {})
    return sources


def regions(work: Path, repeats: int) -> None:
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(2048) // 16, np.arange(2048) // 16).astype(np.uint8)
    data = (ramp[None] + rng.integers(0, 32, size=(4, 2048, 2048), dtype=np.uint8)).astype(np.uint8)
    sources = region_sources(work, data)
    y, x = REGION
    print(f"\none 1024 x 1024 region (y {y.start}:{y.stop}, x {x.start}:{x.stop}, not chunk-aligned)")
    print(f"of a 4 x 2048 x 2048 uint8 volume, chunks 1 x 512 x 512 where chunked; median of {repeats}")
    print(f"{'format':<28} {'time ms':>9} {'numpy ms':>9} {'ratio vs numpy':>15}")
    for name, (path, options) in sources.items():
        volume = open_input(path, **options)
        if not np.array_equal(volume[1, y, x], data[1, y, x]):
            raise RuntimeError(f"{name}: the region read differs from the array written")
        planes = iter(range(10**9))
        seconds = interleaved_medians(
            {
                "reader": lambda volume=volume, planes=planes: volume[next(planes) % 4, y, x],
                "numpy": lambda planes=planes: data[next(planes) % 4, y, x].copy(),
            },
            repeats,
        )
        print(
            f"{name:<28} {seconds['reader'] * 1e3:>9.3f} {seconds['numpy'] * 1e3:>9.3f} "
            f"{seconds['reader'] / seconds['numpy']:>14.1f}x"
        )


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks in a scratch folder and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="repeats of each timed call")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="unetflow-readers-", dir=args.workdir))
    try:
        listing(work, args.repeats)
        regions(work, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
